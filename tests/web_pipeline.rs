//! The pipeline in the browser, on the CPU path (burn's flex compiled to wasm32) and on WebGPU:
//! the embedded packages loaded through the same `PackageLoader` the app uses, a full
//! text-to-image run and a full inpainting run from the scene's seed compared with diffusers' runs
//! of the same scene on the same weights (tests/fixtures/reference/web-tiny.safetensors, which the
//! native test `embedded_packages_reproduce_diffusers_from_the_seed` is held to as well); PyTorch's
//! noise in the browser, bit for bit; the download path's error cases. In a dedicated worker, as the app runs its pipeline: the test
//! runner's driver reads the page's text while a test runs and gives up on a page thread busy
//! for 30 s, which a loaded 2-core machine reached once with these tests on the page's thread.
#![cfg(target_arch = "wasm32")]

#[path = "support/scene.rs"]
mod scene;
#[path = "support/torch_randn.rs"]
mod torch_randn;
#[path = "support/embedded.rs"]
#[macro_use]
mod embedded;

use embedded::load;

use mam_e::Error;
use mam_e::device::read_f32;
use mam_e::device::{ComputeBackend, ComputePreference};
use mam_e::package::{FileRef, Manifest, PackageLoader};
use mam_e::web::download::{allow_package, fetch_text, fetch_verified};
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
/// each held to diffusers' final latents.
async fn generation_and_inpainting_against_diffusers(compute: ComputePreference, inpaint: bool) {
    let text = load(package!("fixtures/packages/tiny-sd"), compute).await;
    let mut run = text.start(&scene::text_to_image_params(), None).unwrap();
    let latents = finish(&mut run).await;
    let error = relative_error(&latents, &reference("text_to_image.latents"));
    web_sys::console::log_1(&format!("{compute:?} text-to-image: relative error {error:.2e} against diffusers").into());
    assert!(error < MAX_ERROR, "{compute:?}: text-to-image latents differ from diffusers': {error:e}");
    let image = mam_e::pipeline::image_processor::to_rgb8(text.decode(run.latents())).await.unwrap();
    assert!(image.pixels.iter().max() > image.pixels.iter().min(), "blank image");
    if !inpaint {
        return;
    }

    let inpaint = load(package!("fixtures/packages/tiny-sd-inpaint"), compute).await;
    let (image, mask) = scene::inpaint_input();
    let mut run = inpaint.start_inpaint(&scene::inpaint_params(), &image, &mask, None).unwrap();
    let latents = finish(&mut run).await;
    let error = relative_error(&latents, &reference("inpaint.latents"));
    web_sys::console::log_1(&format!("{compute:?} inpainting: relative error {error:.2e} against diffusers").into());
    assert!(error < MAX_ERROR, "{compute:?}: inpainting latents differ from diffusers': {error:e}");
}

/// Relative error allowed against diffusers' final latents: measured 1.2e-6 / 6.7e-7 on the CPU
/// path and 1.4e-6 on WebGPU (SwiftShader), 2.2e-6 / 1.1e-6 natively (text-to-image / inpainting).
const MAX_ERROR: f64 = 1e-5;

#[wasm_bindgen_test]
async fn on_the_cpu_path_generation_and_inpainting_equal_diffusers() {
    let (device, choice) = mam_e::web::models::device(ComputePreference::Cpu).await.unwrap();
    assert_eq!(choice.backend, ComputeBackend::Cpu);
    assert!(!mam_e::device::is_gpu(&device), "the CPU path's device is not flex");
    generation_and_inpainting_against_diffusers(ComputePreference::Cpu, true).await;
}

/// The GPU code path on SwiftShader: text-to-image only, since a step there takes ≈ 25 s on two
/// cores. Inpainting's own operations (a 9-channel first convolution, the VAE encoder's strided
/// convolutions) are the self-test's convolutions in `web_gpu`; the CPU path runs it whole above.
#[wasm_bindgen_test]
async fn on_webgpu_generation_equals_diffusers() {
    let (device, choice) = mam_e::web::models::device(ComputePreference::Gpu).await.unwrap();
    assert_eq!(choice.backend, ComputeBackend::WebGpu);
    assert!(mam_e::device::is_gpu(&device));
    generation_and_inpainting_against_diffusers(ComputePreference::Gpu, false).await;
}

/// The seed's noise in the browser is PyTorch's, bit for bit, as natively.
#[wasm_bindgen_test]
fn torch_noise_is_bit_identical_in_the_browser() {
    assert_eq!(torch_randn::check_every_case(), 1024 + 16384 + 1000 + 16);
}

#[wasm_bindgen_test]
async fn a_missing_file_is_a_network_error_naming_it() {
    let file = FileRef { file: "no-such-shard.safetensors".into(), bytes: 10, sha256: "0".repeat(64) };
    let error = fetch_verified("/", &file, &mut |_| {}).await.expect_err("fetched a missing file");
    assert!(matches!(&error, Error::Io { path, reason } if path.ends_with("no-such-shard.safetensors") && reason.contains("HTTP 404")), "{error}");
}

#[wasm_bindgen_test]
async fn a_corrupt_shard_is_refused_before_use() {
    let (manifest, shard, _, _) = package!("fixtures/packages/tiny-sd");
    let manifest = Manifest::parse(manifest).unwrap();
    let mut flipped = shard.to_vec();
    flipped[shard.len() / 2] ^= 1;
    let (device, _) = mam_e::web::models::device(ComputePreference::Cpu).await.unwrap();
    let mut loader = PackageLoader::new(manifest.clone(), &device).unwrap();
    let error = loader.add_shard(0, &flipped).expect_err("a flipped byte passed");
    assert!(matches!(&error, Error::Corrupt { file, .. } if *file == manifest.shards[0].file), "{error}");
    assert!(loader.finish().is_err(), "a loader missing its shard must not finish");
}

/// A server that sends more than the manifest lists is cut off as soon as it passes the size,
/// not after the whole body arrived (a `data:` URL stands in for it: 10 bytes where 4 are listed).
#[wasm_bindgen_test]
async fn a_body_longer_than_listed_is_refused_while_streaming() {
    let file = FileRef { file: "0123456789".into(), bytes: 4, sha256: "0".repeat(64) };
    let mut seen = 0;
    allow_package("data:application/octet-stream,");
    let error = fetch_verified("data:application/octet-stream,", &file, &mut |n| seen += n).await.expect_err("an over-long body was accepted");
    assert!(matches!(&error, Error::Corrupt { reason, .. } if reason.contains("more than the 4 bytes")), "{error}");
    assert_eq!(seen, 0, "progress counted bytes past the limit");
}

/// The worker fetches its own origin and the package folders the user chose, nothing else: other
/// URLs are refused before any request (a CSP cannot narrow `connect-src` to a URL typed later).
#[wasm_bindgen_test]
async fn the_worker_fetches_only_its_origin_and_the_chosen_packages() {
    let refused = |error: &Error| matches!(error, Error::InvalidInput { what: "URL", reason } if reason.contains("refusing to fetch"));
    let error = fetch_text("https://elsewhere.invalid/pkg/manifest.json").await.expect_err("fetched another origin");
    assert!(refused(&error), "{error}");
    // Its own origin: requested (and answered 404).
    let error = fetch_text("/no-such-manifest.json").await.expect_err("a missing file");
    assert!(matches!(&error, Error::Io { reason, .. } if reason.contains("HTTP 404")), "{error}");
    // A chosen package folder: requested (the network fails: .invalid does not resolve) ...
    allow_package("https://elsewhere.invalid/pkg/");
    let error = fetch_text("https://elsewhere.invalid/pkg/manifest.json").await.expect_err("no network to .invalid");
    assert!(!refused(&error), "{error}");
    // ... but not a path that climbs out of it, nor a sibling folder.
    for url in [
        "https://elsewhere.invalid/pkg/../secret/manifest.json",
        "https://elsewhere.invalid/pkg2/manifest.json",
        "https://elsewhere.invalid.attacker.example/pkg/x",
    ] {
        let error = fetch_text(url).await.expect_err("fetched outside the chosen folder");
        assert!(refused(&error), "{url}: {error}");
    }
}
