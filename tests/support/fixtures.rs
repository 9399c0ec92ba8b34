//! Reading the reference tensors that tests/fixtures/make_reference.py writes.

use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};

pub fn path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(relative)
}

pub fn read(relative: &str) -> Vec<u8> {
    std::fs::read(path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// tiny-sd's text encoder as transformers ≥ 5 saves a `CLIPTextModel` (seen with 5.25 on an
/// SD1.5-size folder made with it): the same tensors under keys without `text_model.`, and no
/// `position_ids` buffer.
pub fn text_encoder_as_transformers_5() -> Vec<u8> {
    let bytes = read("tiny-sd/text_encoder/model.safetensors");
    let file = SafeTensors::deserialize(&bytes).expect("safetensors");
    let tensors = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| name != "text_model.embeddings.position_ids")
        .map(|(name, view)| (name.strip_prefix("text_model.").unwrap_or_else(|| panic!("{name}: no text_model. prefix")).to_string(), view));
    safetensors::serialize(tensors, Some([("format".to_string(), "pt".to_string())].into())).expect("serialize")
}

/// A named tensor with its shape: f32 values (from f32), i64 values (from i64) or f64 values
/// (from f64).
pub struct RefTensor {
    pub shape: Vec<usize>,
    pub f32: Vec<f32>,
    pub i64: Vec<i64>,
    pub f64: Vec<f64>,
}

pub fn tensor(bytes: &[u8], name: &str) -> RefTensor {
    let file = SafeTensors::deserialize(bytes).expect("safetensors");
    let view = file.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let data = view.data();
    let (mut f32s, mut i64s, mut f64s) = (Vec::new(), Vec::new(), Vec::new());
    match view.dtype() {
        Dtype::F32 => f32s = data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        Dtype::F64 => f64s = data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
        Dtype::I64 => i64s = data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
        other => panic!("{name}: unexpected dtype {other:?}"),
    }
    RefTensor { shape: view.shape().to_vec(), f32: f32s, i64: i64s, f64: f64s }
}

/// `max |got - want| / max |want|`.
pub fn relative_error(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "length");
    let err = got.iter().zip(want).map(|(g, w)| (*g as f64 - *w as f64).abs()).fold(0.0, f64::max);
    let scale = want.iter().map(|w| w.abs() as f64).fold(1e-12, f64::max);
    if got.iter().any(|g| !g.is_finite()) { f64::INFINITY } else { err / scale }
}

/// A reference f32 tensor of rank D on `device`.
pub fn burn_tensor<const D: usize>(bytes: &[u8], name: &str, device: &burn::tensor::Device) -> burn::tensor::Tensor<D> {
    let t = tensor(bytes, name);
    let shape: [usize; D] = t.shape.clone().try_into().unwrap_or_else(|_| panic!("{name}: rank {}", t.shape.len()));
    burn::tensor::Tensor::from_data(burn::tensor::TensorData::new(t.f32, shape), device)
}

/// Asserts `got` equals the reference tensor `name` within `tolerance` (relative to its max).
pub fn assert_close<const D: usize>(got: burn::tensor::Tensor<D>, bytes: &[u8], name: &str, tolerance: f64) {
    let want = tensor(bytes, name);
    assert_eq!(got.dims().to_vec(), want.shape, "{name}: shape");
    let got = pollster::block_on(mam_e::device::read_f32(got)).unwrap();
    let err = relative_error(&got, &want.f32);
    eprintln!("{name}: relative error {err:.2e} (tolerance {tolerance:.0e})");
    assert!(err <= tolerance, "{name}: relative error {err:e} > {tolerance:e}");
}
