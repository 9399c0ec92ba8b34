//! The CAD classifier and its heatmaps: Grad-CAM, saliency, SmoothGrad and occlusion against
//! Captum 0.9 on a seeded model (`tests/fixtures/make_cad_reference.py`).
#![cfg(not(target_arch = "wasm32"))]

mod support;

use burn::module::Module;
use burn::tensor::Device;
use mam_e::cad::explain::{grad_cam, logit, occlusion, saliency, smoothgrad};
use mam_e::cad::model::{Cad, CadConfig};
use mam_e::imaging::RgbImage;
use mam_e::torch_rng::TorchGenerator;
use mam_e::weights::safetensors::{self, Owned};
use serde_json::Value;

const SIDE: usize = 64;

fn reference() -> Value {
    serde_json::from_slice(&support::fixtures::read("cad/cad.json")).unwrap()
}

fn number(v: &Value) -> f32 {
    v.as_str().unwrap().parse().unwrap()
}

/// The fixture's seeded weights in its parameter order, as a safetensors file.
fn seeded_weights(reference: &Value) -> Vec<u8> {
    let mut g = TorchGenerator::manual_seed(reference["seed"].as_u64().unwrap());
    let mut tensors = Vec::new();
    for entry in reference["parameters"].as_array().unwrap() {
        let name = entry[0].as_str().unwrap();
        let shape: Vec<usize> = entry[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        let z = g.randn(shape.iter().product());
        let values: Vec<f32> = if name.ends_with("conv.weight") || name.ends_with("conv1.weight") || name.ends_with("conv2.weight") {
            let scale = (2.0f64 / (shape[1] * shape[2] * shape[3]) as f64).sqrt() as f32;
            z.iter().map(|v| v * scale).collect()
        } else if name == "fc.weight" {
            let scale = (1.0f64 / shape[1] as f64).sqrt() as f32;
            z.iter().map(|v| v * scale).collect()
        } else if name.ends_with(".weight") {
            z.iter().map(|v| 1.0 + 0.1 * v).collect()
        } else {
            z.iter().map(|v| 0.1 * v).collect()
        };
        tensors.push(Owned::f32(name, shape, &values));
    }
    tensors.push(Owned::f32("fc.bias", vec![1], &[reference["fc_bias"].as_f64().unwrap() as f32]));
    safetensors::serialize(&tensors, &Default::default())
}

fn seeded_model(device: &Device) -> Cad {
    let model = CadConfig::preset("tiny", SIDE).unwrap().init(device);
    mam_e::weights::load_safetensors(model, seeded_weights(&reference()), "cad").unwrap()
}

fn fixture_input() -> Vec<f32> {
    let image = RgbImage::from_png(&support::fixtures::read("cad/image.png")).unwrap();
    mam_e::cad::data::to_input(&image, SIDE)
}

/// `max |got − want| / max |want|`, asserted below `bound`.
fn assert_close(what: &str, got: &[f32], want: &[f32], bound: f64) {
    let error = support::fixtures::relative_error(got, want);
    eprintln!("{what}: relative error {error:e} against Captum");
    assert!(error < bound, "{what} differs from Captum's: {error:e}");
}

#[test]
fn heatmaps_equal_captum() {
    let reference = reference();
    let plain = Device::flex();
    let device = plain.clone().autodiff();
    let model = seeded_model(&plain).fork(&device);
    let x = fixture_input();
    let maps: Vec<f32> = support::fixtures::read("cad/heatmaps.f32").chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let want = |k: usize| &maps[k * SIDE * SIDE..(k + 1) * SIDE * SIDE];

    let l = logit(&model, &x, SIDE, &device);
    let want_logit = number(&reference["logit"][0]);
    assert!(((l - want_logit) / want_logit).abs() < 1e-5, "logit {l} vs Captum's model {want_logit}");
    let (small, (h, w), cam) = grad_cam(&model, &x, SIDE, &device);
    assert_eq!((h, w), (2, 2));
    let want_small: Vec<f32> = reference["grad_cam_small"].as_array().unwrap().iter().map(number).collect();
    assert_close("Grad-CAM (2×2)", &small, &want_small, 5e-6);
    assert_close("Grad-CAM (upsampled)", &cam, want(0), 5e-6);
    assert_close("saliency", &saliency(&model, &x, SIDE, &device), want(1), 5e-6);
    let noise = &reference["noise"];
    let sg = smoothgrad(
        &model,
        &x,
        SIDE,
        noise["samples"].as_u64().unwrap() as usize,
        noise["sd"].as_f64().unwrap() as f32,
        noise["seed"].as_u64().unwrap(),
        &device,
    );
    assert_close("SmoothGrad", &sg, want(2), 5e-6);
    // Occlusion's values are differences of two logits near 0.9: their rounding is relatively
    // larger (measured 1.3e-5).
    assert_close("occlusion", &occlusion(&model, &x, SIDE, 8, 4, &device).unwrap(), want(3), 5e-5);
    assert!(occlusion(&model, &x, SIDE, 8, 9, &device).unwrap_err().contains("stride 9"));
}
