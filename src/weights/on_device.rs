//! Where a block-quantized package's weights live once loaded.
//!
//! Dequantized to f32, an SD1.5 UNet + text encoder + VAE decoder takes ≈ 4.1 GB of GPU memory —
//! too much for the 4 GB laptop GPUs the page is meant for. On a GPU the weights of a large
//! quantized package therefore stay 8-bit: burn's quantized tensors (symmetric, one f16 scale per
//! block of 64, packed four to a `u32`) that each operation dequantizes as it runs — linear
//! layers and embedding look-ups through burn's quantized matmul, convolutions one weight at a
//! time. The dequantized copies and the extra kernels cost memory and time that small models
//! need not pay (the demo package packed: 11 MiB of weights but an 82 MiB peak instead of 52,
//! and 6 % slower on lavapipe), so packages whose f32 weights stay under
//! [`PACK_ABOVE_F32_BYTES`] are placed in f32.
//!
//! burn's blocks run along one axis of the tensor as the module holds it, and its packing wants
//! that axis' length divisible by 4, so:
//! - a linear weight (PyTorch `[out, in]`, burn `[in, out]`) is blocked along `in` and stored as
//!   PyTorch lays it out — exactly the package's q8 rows, so its values are the package's own;
//! - an embedding table `[rows, width]` is blocked along the width — the package's own values —
//!   and looked up as one-hot rows times the table (see `ClipTextEmbeddings::tokens`);
//! - a convolution weight `[out, in, kh, kw]` is blocked along `in`, stored as `[out, kw, kh, in]`
//!   (burn swaps the packed axis innermost) — the layout packages of format version 2 quantize
//!   convolutions in, so their values arrive unchanged. Version 1 packages blocked the flattened
//!   `in·kh·kw` rows; their convolutions are quantized once more on this grid (about 1.5 dB).
//!
//! Only weights the package stored block-quantized (q8, or q4 taken to 8 bits), whose input width
//! is a multiple of 64, held by a `Linear`, `Conv2d` or `Embedding`, are placed this way;
//! everything else (norms, biases, the tensors the converter kept in f16) is f32. For q8
//! packages of format version 2 the packed values are the package's, so a GPU computes on the
//! same numbers as the CPU, which dequantizes everything to f32.

use std::collections::BTreeMap;

use burn::module::{ModuleMapper, Param};
use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};
use burn::tensor::{Tensor, TensorData};
use half::f16;

use super::conv_layout::in_channels_last;

/// Values per scale.
pub const BLOCK: usize = 64;

/// Quantized packages whose weights would take more than this in f32 stay 8-bit on a GPU.
pub const PACK_ABOVE_F32_BYTES: u64 = 512 << 20;

/// How the weights of a package are placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Every weight dequantized to f32 as the package stores it.
    Float,
    /// Quantized linear, convolution and embedding weights 8-bit on the device (GPUs, large
    /// quantized packages).
    Packed,
}

/// A weight the package stored block-quantized, as decoded: a diffusers key, its PyTorch shape
/// and its f32 values.
pub type QuantizedWeight = (Vec<usize>, Vec<f32>);

/// Whether `shape` can be blocked along its input axis (`[out, in]` or `[out, in, kh, kw]`).
fn fits(shape: &[usize]) -> bool {
    matches!(shape, [_, i] | [_, i, _, _] if i % BLOCK == 0)
}

/// Rows of `BLOCK`-value blocks quantized as the converter does: scale = max |x| / 127 rounded to
/// f16, values rounded to the nearest step.
fn quantize(values: &[f32]) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(values.len() / BLOCK);
    for block in values.chunks(BLOCK) {
        let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = f16::from_f32(max / 127.0).to_f32();
        scales.push(scale);
        q.extend(block.iter().map(|v| if scale > 0.0 { (v / scale).round().clamp(-127.0, 127.0) as i8 } else { 0 }));
    }
    (q, scales)
}

fn scheme(packed_axis_from_inner: usize, block: &[u8]) -> QuantScheme {
    QuantScheme::default().with_value(QuantValue::Q8S).with_store(QuantStore::PackedU32(packed_axis_from_inner)).per_block(block, ScaleDtype::F16)
}

/// A linear weight (PyTorch `[out, in]`) as the `[in, out]` tensor burn's `Linear` holds.
fn linear(shape: &[usize], values: &[f32]) -> TensorData {
    let (q, scales) = quantize(values);
    TensorData::quantized(q, [shape[1], shape[0]], scheme(1, &[BLOCK as u8, 1]), &scales, None)
}

/// An embedding table `[rows, width]` (burn's layout is PyTorch's), blocked along the width:
/// the package's own q8 values.
fn embedding(shape: &[usize], values: &[f32]) -> TensorData {
    let (q, scales) = quantize(values);
    TensorData::quantized(q, [shape[0], shape[1]], scheme(0, &[1, BLOCK as u8]), &scales, None)
}

/// A convolution weight `[out, in, kh, kw]`, blocked along `in`: stored `[out, kw, kh, in]`
/// (burn swaps the packed axis innermost), the layout q8 packages of format version 2 quantize in.
fn conv(shape: &[usize], values: &[f32]) -> TensorData {
    let (q, scales) = quantize(&in_channels_last(shape, values));
    TensorData::quantized(q, [shape[0], shape[1], shape[2], shape[3]], scheme(2, &[1, BLOCK as u8, 1, 1]), &scales, None)
}

/// Places the weights of `weights` (diffusers key → decoded values) that belong to a `Linear`,
/// `Conv2d` or `Embedding` of the module it maps; the others stay in `weights` for the ordinary load.
pub struct Placer<'a> {
    weights: &'a mut BTreeMap<String, QuantizedWeight>,
    /// Module path, with the parent's container type of each step.
    path: Vec<(String, String)>,
    /// Keys placed, and shape mismatches as messages.
    pub placed: Vec<String>,
    pub errors: Vec<String>,
}

impl<'a> Placer<'a> {
    pub fn new(weights: &'a mut BTreeMap<String, QuantizedWeight>) -> Self {
        Placer { weights, path: Vec::new(), placed: Vec::new(), errors: Vec::new() }
    }

    fn key(&self) -> String {
        // Enum variants are invisible in the keys (as in `ComponentLoad::apply`).
        self.path.iter().filter(|(_, container)| !container.starts_with("Enum:")).map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(".")
    }
}

impl ModuleMapper for Placer<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some((name, container)) = self.path.last() else { return param };
        let build: fn(&[usize], &[f32]) -> TensorData = match (name.as_str(), container.as_str(), D) {
            ("weight", "Struct:Linear", 2) => linear,
            ("weight", "Struct:Conv2d", 4) => conv,
            ("weight", "Struct:Embedding", 2) => embedding,
            _ => return param,
        };
        let key = self.key();
        let Some((shape, values)) = self.weights.get(&key) else { return param };
        if !fits(shape) {
            return param;
        }
        let data = build(shape, values);
        let expected = param.lazy_shape();
        if data.shape().as_slice() != expected.as_slice() {
            self.errors.push(format!("Shape mismatch for '{key}': the package has {shape:?}, the model expects {:?}", expected.as_slice()));
            self.weights.remove(&key);
            return param;
        }
        self.weights.remove(&key);
        self.placed.push(key);
        Param::initialized(param.id, Tensor::from_data(data, &param.lazy_device()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packed tensor's values, dequantized by burn on wgpu (lavapipe without a GPU; burn's
    /// CPU backend does not take packing along an outer axis).
    fn unpacked<const D: usize>(data: TensorData) -> (Vec<usize>, Vec<f32>) {
        let device = crate::device::Backend::Wgpu.device().expect("a Vulkan device (lavapipe)");
        let tensor = Tensor::<D>::from_data(data, &device).dequantize();
        let values = pollster::block_on(crate::device::read_f32(tensor.clone())).unwrap();
        (tensor.dims().to_vec(), values)
    }

    #[test]
    fn quantized_values_already_on_the_grid_come_back_exactly() {
        // Values that are q8 on 64-blocks, as a q8 package decodes (each block reaches ±127
        // steps: its scale is its largest value over 127), are reproduced bit for bit.
        let scales = [0.01f32, 0.0625, 3.3e-5];
        let q = |i: usize| if i % 64 == 5 { -127 } else { (i * 37 % 255) as i32 - 127 };
        let values: Vec<f32> = (0..192).map(|i| q(i) as f32 * f16::from_f32(scales[i / 64]).to_f32()).collect();
        let (_, got) = unpacked::<2>(embedding(&[3, 64], &values));
        assert_eq!(got, values);
    }

    #[test]
    fn packed_convolutions_are_blocked_along_input_channels() {
        let shape = [2, 64, 3, 3];
        let values: Vec<f32> = (0..2 * 64 * 9).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1.0 + (i % 9) as f32)).collect();
        let (dims, back) = unpacked::<4>(conv(&shape, &values));
        assert_eq!(dims, shape);
        // Each block spans 64 input channels at one (out, kh, kw): its step is its max / 127.
        for o in 0..2 {
            for k in 0..9 {
                let index = |i: usize| (o * 64 + i) * 9 + k;
                let step = (0..64).map(|i| values[index(i)].abs()).fold(0f32, f32::max) / 127.0;
                for i in 0..64 {
                    assert!((back[index(i)] - values[index(i)]).abs() <= step * 0.5 + 1e-6);
                }
            }
        }
    }

    #[test]
    fn packed_linear_weights_are_in_burns_layout() {
        let values: Vec<f32> = (0..3 * 64).map(|i| i as f32 / 64.0 - 1.5).collect();
        let (dims, t) = unpacked::<2>(linear(&[3, 64], &values));
        assert_eq!(dims, [64, 3]);
        for o in 0..3 {
            let step = (0..64).map(|j| values[o * 64 + j].abs()).fold(0f32, f32::max) / 127.0;
            for i in 0..64 {
                assert!((t[i * 3 + o] - values[o * 64 + i]).abs() <= step * 0.5 + 1e-6);
            }
        }
    }
}
