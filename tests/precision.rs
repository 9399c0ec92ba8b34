//! f16 compute (UNet and text encoder in f16, norms' statistics, attention and the VAE in f32)
//! on burn-wgpu natively (Mesa lavapipe has f16 shaders; the browser's SwiftShader does not):
//! the tiny diffusers model against diffusers' f32 results, and the embedded demo package
//! loaded in f16 as the page loads it on an f16 GPU, against its own f32 run.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use burn::tensor::{DType, Device};
use mam_e::device::{Backend, read_f32};
use mam_e::model::precision::Precision;
use mam_e::package::load_package_as;
use mam_e::pipeline::StableDiffusion;
use mam_e::pipeline::image_processor::to_rgb8;
use mam_e::pipeline::text_to_image::GenerateParams;
use mam_e::schedulers::SchedulerKind;
use mam_e::weights::load_diffusers;
use support::fixtures;

const PROMPT: &str = "a siemens mammogram in MLO view with high density and small area";

fn gpu() -> Device {
    let device = Backend::Wgpu.device().expect("a wgpu device (scripts/test installs mesa-vulkan-drivers)");
    assert!(Precision::F16.available(&device), "lavapipe has f16 shaders: this test must run in f16");
    device
}

fn generate(sd: &StableDiffusion, params: &GenerateParams, noise: Option<burn::tensor::Tensor<4>>) -> burn::tensor::Tensor<4> {
    let mut run = sd.start(params, noise).unwrap();
    while run.step() {}
    run.latents()
}

#[test]
fn f16_pipeline_stays_close_to_diffusers_f32() {
    let device = gpu();
    let sd = load_diffusers(&fixtures::path("tiny-sd"), &device).unwrap().with_precision(Precision::F16).unwrap();
    assert_eq!(sd.precision(), Precision::F16);
    assert_eq!(sd.unet.conv_in.weight.val().dtype(), DType::F16);
    assert_eq!(sd.text_encoder.text_model.final_layer_norm.gamma.val().dtype(), DType::F16);
    assert_eq!(sd.vae.decoder.conv_in.weight.val().dtype(), DType::F32, "the VAE stays f32");
    let reference = fixtures::read("reference/pipeline.safetensors");
    let params = GenerateParams { prompt: PROMPT.into(), steps: 10, guidance: 6.0, scheduler: SchedulerKind::Dpm, height: 64, width: 64, ..Default::default() };
    let latents = generate(&sd, &params, Some(fixtures::burn_tensor(&reference, "noise", &device)));
    let got = pollster::block_on(read_f32(latents)).unwrap();
    let want = fixtures::tensor(&reference, "dpm.latents").f32;
    assert!(got.iter().all(|v| v.is_finite()), "f16 latents are not finite");
    let error = fixtures::relative_error(&got, &want);
    eprintln!("f16 10-step DPM-Solver++ latents: relative error {error:.2e} against diffusers f32");
    assert!(error < 2e-2, "f16 latents differ from diffusers' f32 ones by {error:e}");
}

#[test]
fn demo_package_in_f16_makes_the_f32_image() {
    let device = gpu();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static/models/demo");
    let params = GenerateParams { prompt: PROMPT.into(), steps: 4, guidance: 4.0, height: 128, width: 128, seed: 1338, ..Default::default() };
    let image = |precision: Precision| {
        let sd = load_package_as(&dir, &device, precision).unwrap();
        assert_eq!(sd.precision(), precision);
        pollster::block_on(to_rgb8(sd.decode(generate(&sd, &params, None)))).unwrap().pixels
    };
    let (full, half) = (image(Precision::F32), image(Precision::F16));
    let mean = full.iter().zip(&half).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>() / full.len() as f64;
    let worst = full.iter().zip(&half).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap();
    eprintln!("demo 128×128, 4 steps: f16 vs f32 image mean |Δ| {mean:.3}/255, max {worst}/255");
    assert!(mean < 1.0, "the f16 image differs from the f32 one by {mean:.3}/255 on average");
}

#[test]
fn f16_is_refused_where_the_device_has_none() {
    let device = Device::flex();
    assert_eq!(Precision::best(&device), Precision::F32);
    let err = load_diffusers(&fixtures::path("tiny-sd"), &device).unwrap().with_precision(Precision::F16).err().expect("f16 on the CPU").to_string();
    assert!(err.contains("f16") && err.contains("GPU"), "{err}");
}
