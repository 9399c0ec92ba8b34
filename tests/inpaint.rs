//! Lesion inpainting against diffusers' StableDiffusionInpaintPipeline, from the same image, mask
//! and initial noise: on tests/fixtures/tiny-sd-inpaint (9-channel UNet), and by latent blending
//! on the 4-channel tiny-sd with every scheduler.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use burn::tensor::Device;
use mam_e::imaging::RgbImage;
use mam_e::pipeline::text_to_image::GenerateParams;
use mam_e::schedulers::SchedulerKind;
use mam_e::weights::load_diffusers;
use support::fixtures;

fn params() -> GenerateParams {
    GenerateParams {
        prompt: mam_e::prompt::LESION_PROMPT.into(),
        steps: 10,
        guidance: 3.0,
        scheduler: SchedulerKind::Dpm,
        height: 64,
        width: 64,
        ..Default::default()
    }
}

#[test]
fn inpainting_reproduces_diffusers() {
    let device = Device::flex();
    let sd = load_diffusers(&fixtures::path("tiny-sd-inpaint"), &device).unwrap();
    let reference = fixtures::read("reference/inpaint.safetensors");
    let image = RgbImage::from_png(&fixtures::read("reference/inpaint_image.png")).unwrap();
    let mask = RgbImage::from_png(&fixtures::read("reference/inpaint_mask.png")).unwrap().to_gray();
    let noise = fixtures::burn_tensor(&reference, "noise", &device);
    let mut run = sd.start_inpaint(&params(), &image, &mask, Some(noise)).unwrap();
    while run.step() {}
    fixtures::assert_close(run.latents(), &reference, "latents", 1e-5);
}

#[test]
fn inpainting_refuses_what_it_cannot_do() {
    let device = Device::flex();
    let image = RgbImage::from_png(&fixtures::read("reference/inpaint_image.png")).unwrap();
    let inpaint = load_diffusers(&fixtures::path("tiny-sd-inpaint"), &device).unwrap();
    let err = inpaint.start_inpaint(&params(), &image, &vec![0; 64 * 64], None).err().unwrap().to_string();
    assert!(err.contains("empty"), "{err}");
    let err = inpaint.start_inpaint(&params(), &image, &[255; 10], None).err().unwrap().to_string();
    assert!(err.contains("mask") && err.contains("10 pixels"), "{err}");
    let small = GenerateParams { height: 32, width: 32, ..params() };
    let err = inpaint.start_inpaint(&small, &image, &vec![255; 32 * 32], None).err().unwrap().to_string();
    assert!(err.contains("64×64") && err.contains("32×32"), "{err}");
    // The inpainting model cannot do text-to-image.
    let err = inpaint.start(&params(), None).err().unwrap().to_string();
    assert!(err.contains("9 input channels"), "{err}");
    let err = RgbImage::from_png(b"\x89PNG\r\n\x1a\nbroken").err().unwrap().to_string();
    assert!(err.contains("PNG"), "{err}");
}

#[test]
fn latent_blending_with_a_four_channel_model_reproduces_diffusers() {
    let device = Device::flex();
    let sd = load_diffusers(&fixtures::path("tiny-sd"), &device).unwrap();
    let reference = fixtures::read("reference/inpaint_blend.safetensors");
    let image = RgbImage::from_png(&fixtures::read("reference/inpaint_image.png")).unwrap();
    let mask = RgbImage::from_png(&fixtures::read("reference/inpaint_mask.png")).unwrap().to_gray();
    for scheduler in SchedulerKind::ALL {
        let noise = fixtures::burn_tensor(&reference, "noise", &device);
        let params = GenerateParams { steps: 6, scheduler, ..params() };
        let mut run = sd.start_inpaint(&params, &image, &mask, Some(noise)).unwrap();
        while run.step() {}
        fixtures::assert_close(run.latents(), &reference, &format!("{}.latents", scheduler.name()), 1e-5);
    }
}
