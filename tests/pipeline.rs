//! Full 10-step text-to-image runs against diffusers' StableDiffusionPipeline on the tiny
//! diffusers folder tests/fixtures/tiny-sd (fp16 text encoder with position_ids, old VAE
//! attention names, vocab.json + merges.txt tokenizer: the quirks of real SD1.5 files), from
//! the same initial noise, for every scheduler and without guidance.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use burn::tensor::Device;
use mam_e::pipeline::StableDiffusion;
use mam_e::pipeline::image_processor::to_rgb8;
use mam_e::pipeline::text_to_image::GenerateParams;
use mam_e::schedulers::SchedulerKind;
use mam_e::weights::load_diffusers;
use support::fixtures;

const PROMPT: &str = "a siemens mammogram in MLO view with high density and small area";

fn run(sd: &StableDiffusion, reference: &[u8], scheduler: SchedulerKind, guidance: f64) -> burn::tensor::Tensor<4> {
    let params = GenerateParams { prompt: PROMPT.into(), steps: 10, guidance, scheduler, height: 64, width: 64, ..Default::default() };
    let mut run = sd.start(&params, Some(fixtures::burn_tensor(reference, "noise", &sd.device))).unwrap();
    while run.step() {}
    // PNDM evaluates its first timestep twice: 11 UNet calls for 10 steps.
    let (done, total) = run.progress();
    assert_eq!((done, total), (total, if scheduler == SchedulerKind::Pndm { 11 } else { 10 }));
    run.latents()
}

#[test]
fn every_scheduler_reproduces_diffusers() {
    let device = Device::flex();
    let sd = load_diffusers(&fixtures::path("tiny-sd"), &device).unwrap();
    let reference = fixtures::read("reference/pipeline.safetensors");
    for scheduler in SchedulerKind::ALL {
        let latents = run(&sd, &reference, scheduler, 6.0);
        fixtures::assert_close(latents.clone(), &reference, &format!("{}.latents", scheduler.name()), 1e-5);
        // Decoded image: within 1/255 after rounding in at least 99.9 % of the values.
        let ours = pollster::block_on(to_rgb8(sd.decode(latents))).unwrap().pixels;
        let want = fixtures::tensor(&reference, &format!("{}.image", scheduler.name()));
        let [c, h, w] = [want.shape[1], want.shape[2], want.shape[3]];
        let mut off = 0;
        for ch in 0..c {
            for i in 0..h * w {
                let theirs = (want.f32[ch * h * w + i] * 255.0).round() as i32;
                if (ours[i * 3 + ch] as i32 - theirs).abs() > 1 {
                    off += 1;
                }
            }
        }
        eprintln!("{}: {off} of {} decoded values differ by more than 1/255", scheduler.name(), c * h * w);
        assert!(off * 1000 <= c * h * w, "{}: {off} of {} values differ by more than 1/255", scheduler.name(), c * h * w);
    }
}

#[test]
fn guidance_one_means_no_guidance_as_in_diffusers() {
    let device = Device::flex();
    let sd = load_diffusers(&fixtures::path("tiny-sd"), &device).unwrap();
    let reference = fixtures::read("reference/pipeline.safetensors");
    fixtures::assert_close(run(&sd, &reference, SchedulerKind::Dpm, 1.0), &reference, "unguided.latents", 1e-5);
}

#[test]
fn bad_generation_input_is_refused_with_the_value() {
    let device = Device::flex();
    let sd = load_diffusers(&fixtures::path("tiny-sd"), &device).unwrap();
    let bad = |params: GenerateParams| sd.start(&params, None).err().expect("refused").to_string();
    let base = GenerateParams { prompt: PROMPT.into(), height: 64, width: 64, ..Default::default() };
    let err = bad(GenerateParams { height: 60, ..base.clone() });
    assert!(err.contains("60") && err.contains("multiples of 8"), "{err}");
    let err = bad(GenerateParams { steps: 0, ..base.clone() });
    assert!(err.contains("steps"), "{err}");
    let err = bad(GenerateParams { guidance: f64::NAN, ..base.clone() });
    assert!(err.contains("guidance"), "{err}");
    let wrong_noise = sd.noise(mam_e::rng::NoiseSource::Torch, 1, [1, 4, 8, 8]).unwrap();
    let err = sd.start(&base, Some(wrong_noise)).err().unwrap().to_string();
    assert!(err.contains("[1, 4, 32, 32]"), "{err}");
    // Over-long prompts are truncated to 77 tokens and the loss reported.
    let long = GenerateParams { prompt: "breast ".repeat(100), ..base };
    assert_eq!(sd.start(&long, None).unwrap().truncated_tokens, 25);
}

#[test]
fn broken_model_folders_are_named() {
    let device = Device::flex();
    let err = load_diffusers(&fixtures::path("tokenizer"), &device).err().unwrap().to_string();
    assert!(err.contains("model_index.json"), "{err}");
    // A folder with model_index.json but no components.
    let dir = support::cli::temp_dir("pipeline", "broken");
    std::fs::create_dir_all(dir.join("unet")).unwrap();
    std::fs::write(dir.join("model_index.json"), "{}").unwrap();
    let err = load_diffusers(&dir, &device).err().unwrap().to_string();
    assert!(err.contains("tokenizer"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The same pipeline on burn-wgpu (Vulkan; Mesa lavapipe on a machine without a GPU).
#[test]
fn wgpu_pipeline_matches_diffusers() {
    let device = mam_e::device::Backend::Wgpu.device().expect("a wgpu device (scripts/test installs mesa-vulkan-drivers)");
    let sd = load_diffusers(&fixtures::path("tiny-sd"), &device).unwrap();
    let reference = fixtures::read("reference/pipeline.safetensors");
    fixtures::assert_close(run(&sd, &reference, SchedulerKind::Dpm, 6.0), &reference, "dpm.latents", 1e-5);
}
