//! The page's generation speed in this browser, printed (no timing is asserted): the embedded
//! demo package, as the page runs it, on the CPU path (flex on wasm32) and on WebGPU. Run by
//! `scripts/bench-web`, not by `scripts/test`:
//! `cargo test --target wasm32-unknown-unknown --test web_bench -- --nocapture` (the dev build: a
//! release build was no faster, docs/performance.md).
#![cfg(target_arch = "wasm32")]

#[path = "support/embedded.rs"]
#[macro_use]
mod embedded;

use mam_e::device::{ComputePreference, read_f32};
use mam_e::pipeline::text_to_image::GenerateParams;
use mam_e::web::scope::now_ms;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn say(line: String) {
    web_sys::console::log_1(&line.into());
}

/// Times the text encoder, each UNet CFG step and the VAE decode, then whole generations, of a
/// 10-step 128×128 run with guidance (the demo's size), as the page's worker runs them.
async fn bench(compute: ComputePreference) {
    let started = now_ms();
    let sd = embedded::load(package!("../static/models/demo"), compute).await;
    say(format!("{compute:?}: loaded in {:.0} ms", now_ms() - started));
    let params = GenerateParams {
        prompt: "a siemens mammogram in MLO view with high density and small area".into(),
        steps: 10,
        guidance: 6.0,
        height: 128,
        width: 128,
        seed: 1338,
        ..Default::default()
    };
    let mut wholes = Vec::new();
    // SwiftShader takes minutes a round: one warm-up and one measured round there.
    let rounds = if compute == ComputePreference::Cpu { 4 } else { 2 };
    for round in 0..rounds {
        let (mut text, mut steps) = (Vec::new(), Vec::new());
        let t0 = now_ms();
        let embeddings = sd.encode_prompt(&params.prompt, "", true).unwrap();
        read_f32(embeddings.context).await.unwrap();
        text.push(now_ms() - t0);
        let mut run = sd.start(&params, None).unwrap();
        loop {
            let t = now_ms();
            let more = run.step();
            read_f32(run.latents()).await.unwrap();
            steps.push(now_ms() - t);
            if !more {
                break;
            }
        }
        let t = now_ms();
        let image = mam_e::pipeline::image_processor::to_rgb8(sd.decode(run.latents())).await.unwrap();
        let decode = now_ms() - t;
        assert!(image.pixels.iter().max() > image.pixels.iter().min(), "blank image");
        let whole = now_ms() - t0;
        // Round 0 includes shader compilation on WebGPU: reported, left out of the medians.
        say(format!(
            "{compute:?} round {round}: text encoder {:.1} ms, UNet CFG step median {:.1} ms (first {:.1}), VAE decode {:.1} ms, whole generation {:.0} ms",
            text[0],
            median(steps.clone()),
            steps[0],
            decode,
            whole
        ));
        if round > 0 {
            wholes.push(whole);
        }
    }
    say(format!("{compute:?}: whole 10-step 128×128 generation, median of {} after a warm-up: {:.0} ms", wholes.len(), median(wholes)));
}

#[wasm_bindgen_test]
async fn demo_generation_speed_on_the_cpu_path() {
    bench(ComputePreference::Cpu).await;
}

#[wasm_bindgen_test]
async fn demo_generation_speed_on_webgpu() {
    bench(ComputePreference::Gpu).await;
}
