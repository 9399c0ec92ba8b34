//! The pipeline in the browser, on the CPU path (burn's flex compiled to wasm32) and on WebGPU:
//! the embedded packages loaded through the same `PackageLoader` the app uses, a full
//! text-to-image run and a full inpainting run compared with the native results (tests/fixtures/reference/web-tiny.safetensors, which the native test
//! `embedded_packages_match_the_reference_the_browser_is_held_to` holds native runs to); the
//! download path's error cases. In a dedicated worker, as the app runs its pipeline: the test
//! runner's driver reads the page's text while a test runs and gives up on a page thread busy
//! for 30 s, which a loaded 2-core machine reached once with these tests on the page's thread.
#![cfg(target_arch = "wasm32")]

#[path = "support/scene.rs"]
mod scene;
#[path = "support/embedded.rs"]
#[macro_use]
mod embedded;

use embedded::load;

use mam_e::Error;
use mam_e::device::{ComputeBackend, ComputePreference};
use mam_e::device::read_f32;
use mam_e::package::{FileRef, Manifest, PackageLoader};
use mam_e::web::download::fetch_verified;
use mam_e::web::scope::now_ms;
use mam_e::weights::safetensors;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

const REFERENCE: &[u8] = include_bytes!("fixtures/reference/web-tiny.safetensors");

fn reference(name: &str) -> Vec<f32> {
    let file = safetensors::parse(REFERENCE).unwrap();
    file.tensors.iter().find(|t| t.name == name).unwrap().to_f32().unwrap()
}

fn relative_error(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let err = got.iter().zip(want).map(|(g, w)| (*g as f64 - *w as f64).abs()).fold(0.0, f64::max);
    err / want.iter().map(|w| w.abs() as f64).fold(1e-12, f64::max)
}

/// Runs every step, reading the latents back after each as the app does.
async fn finish(run: &mut mam_e::pipeline::text_to_image::Denoising<'_>) -> Vec<f32> {
    loop {
        let started = now_ms();
        let more = run.step();
        let latents = read_f32(run.latents()).await.unwrap();
        web_sys::console::log_1(&format!("step {:?}: {:.0} ms", run.progress(), now_ms() - started).into());
        if !more {
            return latents;
        }
    }
}

/// A text-to-image run on the backend `compute` picks, and an inpainting run if `inpaint`,
/// each held to the native (flex) run's final latents.
async fn generation_and_inpainting_against_native(compute: ComputePreference, inpaint: bool) {
    let text = load(package!("tiny-sd"), compute).await;
    let mut run = text.start(&scene::text_to_image_params(), None).unwrap();
    let latents = finish(&mut run).await;
    let error = relative_error(&latents, &reference("text_to_image.latents"));
    web_sys::console::log_1(&format!("{compute:?} text-to-image: relative error {error:.2e} against native").into());
    assert!(error < MAX_ERROR, "{compute:?}: text-to-image latents differ from native: {error:e}");
    let image = mam_e::pipeline::to_rgb8(text.decode(run.latents())).await.unwrap();
    assert!(image.pixels.iter().max() > image.pixels.iter().min(), "blank image");
    if !inpaint {
        return;
    }

    let inpaint = load(package!("tiny-sd-inpaint"), compute).await;
    let (image, mask) = scene::inpaint_input();
    let mut run = inpaint.start_inpaint(&scene::inpaint_params(), &image, &mask, None).unwrap();
    let latents = finish(&mut run).await;
    let error = relative_error(&latents, &reference("inpaint.latents"));
    web_sys::console::log_1(&format!("{compute:?} inpainting: relative error {error:.2e} against native").into());
    assert!(error < MAX_ERROR, "{compute:?}: inpainting latents differ from native: {error:e}");
}

/// Relative error allowed against the native run's final latents: measured 2.2e-6 / 1.2e-6 on the
/// CPU path and 2.5e-6 / 1.1e-6 on WebGPU (text-to-image / inpainting).
const MAX_ERROR: f64 = 1e-5;

#[wasm_bindgen_test]
async fn on_the_cpu_path_generation_and_inpainting_equal_native() {
    let (device, choice) = mam_e::web::models::device(ComputePreference::Cpu).await.unwrap();
    assert_eq!(choice.backend, ComputeBackend::Cpu);
    assert!(!mam_e::device::is_gpu(&device), "the CPU path's device is not flex");
    generation_and_inpainting_against_native(ComputePreference::Cpu, true).await;
}

/// The GPU code path on SwiftShader: text-to-image only, since a step there takes ≈ 25 s on two
/// cores. Inpainting's own operations (a 9-channel first convolution, the VAE encoder's strided
/// convolutions) are the self-test's convolutions in `web_gpu`; the CPU path runs it whole above.
#[wasm_bindgen_test]
async fn on_webgpu_generation_equals_native() {
    let (device, choice) = mam_e::web::models::device(ComputePreference::Gpu).await.unwrap();
    assert_eq!(choice.backend, ComputeBackend::WebGpu);
    assert!(mam_e::device::is_gpu(&device));
    generation_and_inpainting_against_native(ComputePreference::Gpu, false).await;
}

#[wasm_bindgen_test]
async fn a_missing_file_is_a_network_error_naming_it() {
    let file = FileRef { file: "no-such-shard.safetensors".into(), bytes: 10, sha256: "0".repeat(64) };
    let error = fetch_verified("/", &file, &mut |_| {}).await.err().expect("fetched a missing file");
    assert!(matches!(&error, Error::Io { path, reason } if path.ends_with("no-such-shard.safetensors") && reason.contains("HTTP 404")), "{error}");
}

#[wasm_bindgen_test]
async fn a_corrupt_shard_is_refused_before_use() {
    let (manifest, shard, _, _) = package!("tiny-sd");
    let manifest = Manifest::parse(manifest).unwrap();
    let mut flipped = shard.to_vec();
    flipped[shard.len() / 2] ^= 1;
    let (device, _) = mam_e::web::models::device(ComputePreference::Cpu).await.unwrap();
    let mut loader = PackageLoader::new(manifest.clone(), &device).unwrap();
    let error = loader.add_shard(0, &flipped).err().expect("a flipped byte passed");
    assert!(matches!(&error, Error::Corrupt { file, .. } if *file == manifest.shards[0].file), "{error}");
    assert!(loader.finish().is_err(), "a loader missing its shard must not finish");
}

/// A server that sends more than the manifest lists is cut off as soon as it passes the size,
/// not after the whole body arrived (a `data:` URL stands in for it: 10 bytes where 4 are listed).
#[wasm_bindgen_test]
async fn a_body_longer_than_listed_is_refused_while_streaming() {
    let file = FileRef { file: "0123456789".into(), bytes: 4, sha256: "0".repeat(64) };
    let mut seen = 0;
    let error = fetch_verified("data:application/octet-stream,", &file, &mut |n| seen += n).await.err().expect("an over-long body was accepted");
    assert!(matches!(&error, Error::Corrupt { reason, .. } if reason.contains("more than the 4 bytes")), "{error}");
    assert_eq!(seen, 0, "progress counted bytes past the limit");
}
