//! The initial noise: PyTorch's CPU generator reproduced bit for bit (so a seed means what it means
//! in diffusers and MAM-E), and diffusers' pipeline given only a seed reproduced end to end.
#![cfg(not(target_arch = "wasm32"))]

mod support;
#[path = "support/torch_randn.rs"]
mod torch_randn;

use burn::tensor::Device;
use mam_e::pipeline::text_to_image::GenerateParams;
use mam_e::rng::NoiseSource;
use mam_e::schedulers::SchedulerKind;
use mam_e::weights::load_diffusers;
use support::fixtures;

#[test]
fn torch_randn_is_reproduced_bit_for_bit() {
    assert_eq!(torch_randn::check_every_case(), 1024 + 16384 + 1000 + 16);
}

/// tests/fixtures/reference/pipeline.safetensors' `noise` is diffusers' seed 4
/// (`torch.randn((1, 4, 32, 32), generator=torch.Generator().manual_seed(4))`): a generation
/// from seed 4 with PyTorch's noise, no latents given, is diffusers' run.
#[test]
fn a_seed_gives_diffusers_image_for_that_seed() {
    let device = Device::flex();
    let sd = load_diffusers(&fixtures::path("tiny-sd"), &device).unwrap();
    let reference = fixtures::read("reference/pipeline.safetensors");
    let want = fixtures::tensor(&reference, "noise");
    let noise = sd.noise(NoiseSource::Torch, 4, [1, 4, 32, 32]).unwrap();
    let got = pollster::block_on(mam_e::device::read_f32(noise)).unwrap();
    assert!(got.iter().zip(&want.f32).all(|(g, w)| g.to_bits() == w.to_bits()), "seed 4's noise differs from diffusers'");
    let params = GenerateParams {
        prompt: "a siemens mammogram in MLO view with high density and small area".into(),
        steps: 10,
        guidance: 6.0,
        scheduler: SchedulerKind::Dpm,
        height: 64,
        width: 64,
        seed: 4,
        noise: NoiseSource::Torch,
        ..Default::default()
    };
    let mut run = sd.start(&params, None).unwrap();
    while run.step() {}
    fixtures::assert_close(run.latents(), &reference, "dpm.latents", 1e-5);
    // mam-e's own generator is another stream: the same seed gives other latents.
    let ours = sd.noise(NoiseSource::Ours, 4, [1, 4, 32, 32]).unwrap();
    let ours = pollster::block_on(mam_e::device::read_f32(ours)).unwrap();
    assert!(ours.iter().zip(&want.f32).filter(|(a, b)| a != b).count() > 4000);
}

/// An image whose latents hold fewer than 16 values (8×8 on an SD1.5-factor VAE: 4 values), where
/// PyTorch draws its noise another way, is refused with the reason, not a panic; mam-e's own
/// noise still generates it.
#[test]
fn an_image_too_small_for_torch_noise_is_refused_clearly() {
    let device = Device::flex();
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static/models/demo");
    let sd = mam_e::package::load_package(&demo, &device).unwrap();
    let params = GenerateParams { prompt: "a mammogram".into(), steps: 1, height: 8, width: 8, noise: NoiseSource::Torch, ..Default::default() };
    let error = sd.start(&params, None).err().expect("4 latent values were accepted").to_string();
    assert!(error.contains("4 values") && error.contains("16 or more"), "{error}");
    let mut run = sd.start(&GenerateParams { noise: NoiseSource::Ours, ..params }, None).unwrap();
    while run.step() {}
    assert_eq!(run.latents().dims(), [1, 4, 1, 1]);
}
