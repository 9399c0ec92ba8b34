//! `mam-e train` at tiny size: AdamW is PyTorch's update rule; a run killed with SIGKILL and
//! resumed ends with the same weights as an uninterrupted run; checkpoints are diffusers folders
//! that `generate` / `inpaint` load; VAE and inpainting training run; bad set-ups fail clearly.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::module::Module;
use burn::nn::LinearConfig;
use burn::tensor::{Device, Tensor, TensorData};
use mam_e::train::optim::{AdamW, NamedGrads, accumulate};

mod support;

use support::cli::ok;

fn temp(name: &str) -> PathBuf {
    support::cli::temp_dir("train", name)
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name).display().to_string()
}

fn run(args: &[&str]) -> std::process::Output {
    support::cli::run(args, &[])
}

/// A small prepared phantom set (healthy and lesion images, 64×64).
fn phantom_set(name: &str) -> PathBuf {
    let dir = temp(name);
    ok(&["phantom", "--format", "prepared", "--count", "16", "--width", "64", "--size", "64", "--lesion-fraction", "0.5", "--out", dir.to_str().unwrap()]);
    dir
}

#[test]
fn adamw_is_pytorchs_update_rule() {
    let device = Device::flex().autodiff();
    let mut linear = LinearConfig::new(3, 2).init(&device);
    let x = [0.5f64, -1.0, 2.0];
    let y = [1.0f64, -0.5];
    // Reference state in f64: W [out][in], b [out], moments.
    let w0 = linear.weight.val().inner().into_data().try_to_vec::<f32>().unwrap(); // burn: [in, out]
    let b0 = linear.bias.as_ref().unwrap().val().inner().into_data().try_to_vec::<f32>().unwrap();
    let mut w: Vec<f64> = (0..6).map(|k| w0[(k % 3) * 2 + k / 3] as f64).collect(); // [o][i] at o*3+i
    let mut b: Vec<f64> = b0.iter().map(|&v| v as f64).collect();
    let (mut mw, mut vw, mut mb, mut vb) = (vec![0.0; 6], vec![0.0; 6], vec![0.0; 2], vec![0.0; 2]);
    let (lr, wd, b1, b2, eps): (f64, f64, f64, f64, f64) = (0.1, 0.01, 0.9, 0.999, 1e-8);
    let mut adamw = AdamW::new(wd);
    for t in 1..=3 {
        // Loss = Σ (W x + b − y)²; dL/dW = 2 r xᵀ, dL/db = 2 r.
        let input = Tensor::<2>::from_data(TensorData::new(x.iter().map(|&v| v as f32).collect::<Vec<_>>(), [1, 3]), &device);
        let target = Tensor::<2>::from_data(TensorData::new(y.iter().map(|&v| v as f32).collect::<Vec<_>>(), [1, 2]), &device);
        let loss = (linear.forward(input) - target).powi_scalar(2).sum();
        let grads = loss.backward();
        let mut named = NamedGrads::new();
        accumulate(&linear, &grads, &mut named);
        linear = adamw.step(linear, &named, lr, 1.0);
        adamw.finish_step();
        let r: Vec<f64> = (0..2).map(|o| (0..3).map(|i| w[o * 3 + i] * x[i]).sum::<f64>() + b[o] - y[o]).collect();
        let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        let update = |p: &mut f64, m: &mut f64, v: &mut f64, g: f64| {
            *p *= 1.0 - lr * wd;
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= lr / bc1 * *m / ((*v).sqrt() / bc2.sqrt() + eps);
        };
        for o in 0..2 {
            for i in 0..3 {
                update(&mut w[o * 3 + i], &mut mw[o * 3 + i], &mut vw[o * 3 + i], 2.0 * r[o] * x[i]);
            }
            update(&mut b[o], &mut mb[o], &mut vb[o], 2.0 * r[o]);
        }
        let ours_w = linear.weight.val().inner().into_data().try_to_vec::<f32>().unwrap();
        let ours_b = linear.bias.as_ref().unwrap().val().inner().into_data().try_to_vec::<f32>().unwrap();
        for o in 0..2 {
            for i in 0..3 {
                assert!((ours_w[i * 2 + o] as f64 - w[o * 3 + i]).abs() < 1e-5, "step {t}: W[{o}][{i}] {} vs {}", ours_w[i * 2 + o], w[o * 3 + i]);
            }
            assert!((ours_b[o] as f64 - b[o]).abs() < 1e-5, "step {t}: b[{o}]");
        }
    }
    assert!(linear.num_params() == 8);
}

fn train_args<'a>(data: &'a str, out: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--data",
        data,
        "--model",
        Box::leak(fixture("tiny-sd").into_boxed_str()),
        "--out",
        out,
        "--resolution",
        "32",
        "--batch-size",
        "2",
        "--gradient-accumulation",
        "2",
        "--max-steps",
        steps,
        "--checkpoint-every",
        "2",
        "--validate-every",
        "0",
        "--learning-rate",
        "1e-3",
        "--lr-warmup",
        "2",
        "--cosine",
        "--seed",
        "5",
    ]
}

#[test]
fn a_killed_run_resumes_to_the_same_weights() {
    let data = phantom_set("phantoms-resume");
    let (whole, killed) = (temp("whole"), temp("killed"));
    let (d, w, k) = (data.to_str().unwrap(), whole.to_str().unwrap(), killed.to_str().unwrap());
    ok(&train_args(d, w, "6"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_mam-e"))
        .args(train_args(d, k, "6"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !killed.join("checkpoint-000002/training_state.json").exists() {
        assert!(started.elapsed().as_secs() < 600, "no checkpoint after 10 minutes");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!killed.join("model").exists(), "the run finished before it was killed");
    let out = ok(&[&train_args(d, k, "6")[..], &["--resume"]].concat());
    assert!(out.contains("trained 6 steps"), "{out}");
    for file in ["unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"] {
        assert!(
            std::fs::read(whole.join("model").join(file)).unwrap() == std::fs::read(killed.join("model").join(file)).unwrap(),
            "{file} differs after resume"
        );
    }
    let losses = |dir: &Path| -> Vec<String> {
        std::fs::read_to_string(dir.join("log.csv")).unwrap().lines().map(|l| l.split(',').take(4).collect::<Vec<_>>().join(",")).collect()
    };
    assert_eq!(losses(&whole), losses(&killed));
    assert_eq!(losses(&whole).len(), 7);
    // Only the newest two checkpoints are kept; each is a loadable diffusers folder.
    let names: Vec<String> =
        std::fs::read_dir(&whole).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("checkpoint-")).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let png = whole.join("generated.png");
    ok(&[
        "generate",
        "--model",
        whole.join("checkpoint-000006").to_str().unwrap(),
        "--prompt",
        "a siemens mammogram in CC view",
        "--steps",
        "2",
        "--height",
        "32",
        "--width",
        "32",
        "--output",
        png.to_str().unwrap(),
    ]);
    ok(&["train", "--plot", whole.join("log.csv").to_str().unwrap()]);
    assert!(whole.join("log.png").exists());
}

#[test]
fn vae_and_inpainting_training_run_and_their_models_load() {
    let data = phantom_set("phantoms-vae");
    let d = data.to_str().unwrap();
    let vae_out = temp("vae");
    let out = ok(&[
        "train",
        "--component",
        "vae",
        "--data",
        d,
        "--model",
        &fixture("tiny-sd"),
        "--out",
        vae_out.to_str().unwrap(),
        "--resolution",
        "32",
        "--batch-size",
        "2",
        "--max-steps",
        "8",
        "--learning-rate",
        "1e-3",
        "--checkpoint-every",
        "8",
        "--validate-every",
        "8",
    ]);
    assert!(out.contains("trained 8 steps"), "{out}");
    assert!(vae_out.join("validation/step-000008.png").exists());
    let log = std::fs::read_to_string(vae_out.join("log.csv")).unwrap();
    let losses: Vec<f64> = log.lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect();
    assert!(losses.last().unwrap() < losses.first().unwrap(), "VAE loss did not fall: {losses:?}");

    let inpaint_out = temp("inpaint");
    ok(&[
        "train",
        "--inpainting",
        "--data",
        d,
        "--model",
        &fixture("tiny-sd-inpaint"),
        "--out",
        inpaint_out.to_str().unwrap(),
        "--resolution",
        "32",
        "--batch-size",
        "2",
        "--max-steps",
        "2",
        "--learning-rate",
        "1e-4",
        "--checkpoint-every",
        "2",
        "--validate-every",
        "2",
        "--validation-steps",
        "2",
    ]);
    assert!(inpaint_out.join("validation/step-000002.png").exists());
    // The trained inpainting model paints a prepared lesion case.
    let lesions = data.join("lesions");
    let first: serde_json::Value = serde_json::from_str(std::fs::read_to_string(lesions.join("metadata.jsonl")).unwrap().lines().next().unwrap()).unwrap();
    let image = lesions.join(first["file_name"].as_str().unwrap());
    let mask = lesions.join(first["mask_file_name"].as_str().unwrap());
    let png = inpaint_out.join("painted.png");
    ok(&[
        "inpaint",
        "--model",
        inpaint_out.join("model").to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--mask",
        mask.to_str().unwrap(),
        "--steps",
        "2",
        "--output",
        png.to_str().unwrap(),
    ]);

    // With --keep-outside the painted image is the input outside the mask, exactly, and differs inside.
    let kept = inpaint_out.join("kept.png");
    ok(&[
        "inpaint",
        "--model",
        inpaint_out.join("model").to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--mask",
        mask.to_str().unwrap(),
        "--steps",
        "2",
        "--keep-outside",
        "--output",
        kept.to_str().unwrap(),
    ]);
    let read = |p: &std::path::Path| mam_e::imaging::RgbImage::from_png(&std::fs::read(p).unwrap()).unwrap();
    let (input, kept, mask_pixels) = (read(&image), read(&kept), read(&mask).to_gray());
    let (mut inside_changed, mut outside_changed) = (0, 0);
    for (i, m) in mask_pixels.iter().enumerate() {
        let changed = input.pixels[i * 3..i * 3 + 3] != kept.pixels[i * 3..i * 3 + 3];
        if *m >= 128 { inside_changed += changed as usize } else { outside_changed += changed as usize }
    }
    assert_eq!(outside_changed, 0, "pixels outside the mask changed with --keep-outside");
    assert!(inside_changed > 0, "nothing was painted inside the mask");

    // The locality measurement on it: 2 cases, each figure a mean absolute change in /255.
    let report = ok(&["eval", "inpainting", "--model", inpaint_out.join("model").to_str().unwrap(), "--data", d, "--count", "2", "--steps", "2"]);
    let numbers: Vec<f64> = report.split("/255").filter_map(|part| part.rsplit(' ').next()?.parse().ok()).collect();
    assert!(report.starts_with("2 lesion cases") && numbers.len() == 4, "{report}");
    assert!(numbers.iter().all(|n| (0.0..=255.0).contains(n)) && numbers[0] > 0.0 && numbers[2] > 0.0, "{report}");

    // A text-to-image model fine-tuned into an inpainting one: widened to 9 channels once, the
    // widened start reused when the run resumes.
    let widened_out = temp("inpaint-from-t2i");
    let (t2i, w) = (fixture("tiny-sd"), widened_out.to_str().unwrap());
    let run_args = [
        "train", "--inpainting", "--data", d, "--model", &t2i, "--out", w, "--resolution", "32", "--batch-size", "2", "--checkpoint-every", "2",
        "--validate-every", "0", "--max-steps", "2",
    ];
    assert!(ok(&run_args).contains("5 zero-initialised input channels"));
    let out = ok(&[&run_args[..run_args.len() - 1], &["3", "--resume"]].concat());
    assert!(!out.contains("zero-initialised"), "{out}");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(widened_out.join("model/unet/config.json")).unwrap()).unwrap();
    assert_eq!(config["in_channels"], 9);
    ok(&[
        "inpaint",
        "--model",
        widened_out.join("model").to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--mask",
        mask.to_str().unwrap(),
        "--steps",
        "2",
        "--output",
        png.to_str().unwrap(),
    ]);
}

/// The tensors of a safetensors file, by name (attention layers under diffusers' current names:
/// the fixture has the legacy `query`/`key`/`value`/`proj_attn`, checkpoints the current ones).
fn tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let current = |name: &str| name.replace(".query.", ".to_q.").replace(".key.", ".to_k.").replace(".value.", ".to_v.").replace(".proj_attn.", ".to_out.0.");
    mam_e::weights::safetensors::parse(&bytes).unwrap().tensors.iter().map(|t| (current(&t.name), t.to_f32().unwrap())).collect()
}

#[test]
fn decoder_only_vae_training_keeps_the_encoder_and_its_latents() {
    let data = phantom_set("phantoms-decoder");
    let out = temp("decoder-only");
    ok(&[
        "train",
        "--component",
        "vae",
        "--decoder-only",
        "--data",
        data.to_str().unwrap(),
        "--model",
        &fixture("tiny-sd"),
        "--out",
        out.to_str().unwrap(),
        "--resolution",
        "32",
        "--batch-size",
        "2",
        "--max-steps",
        "4",
        "--learning-rate",
        "1e-3",
        "--checkpoint-every",
        "4",
        "--validate-every",
        "0",
    ]);
    let file = "vae/diffusion_pytorch_model.safetensors";
    let (before, after) = (tensors(&Path::new(&fixture("tiny-sd")).join(file)), tensors(&out.join("model").join(file)));
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
    let (mut frozen, mut changed) = (0, 0);
    for (name, values) in &before {
        let encoder_side = name.starts_with("encoder.") || name.starts_with("quant_conv.");
        if encoder_side {
            assert!(after[name] == *values, "{name} changed: the encoder must stay frozen");
            frozen += 1;
        } else if after[name] != *values {
            changed += 1;
        }
    }
    assert!(frozen > 0 && changed > 0, "frozen {frozen}, changed {changed}");
    // The latent scale the diffusion model was trained with is kept.
    let scale = |dir: &Path| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(dir.join("vae/config.json")).unwrap()).unwrap()["scaling_factor"].clone()
    };
    assert_eq!(scale(Path::new(&fixture("tiny-sd"))), scale(&out.join("model")));
    let refused =
        run(&["train", "--decoder-only", "--data", data.to_str().unwrap(), "--model", &fixture("tiny-sd"), "--out", temp("decoder-unet").to_str().unwrap()]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("--decoder-only is for --component vae"));
}

#[test]
fn bad_training_setups_fail_clearly() {
    let data = phantom_set("phantoms-bad");
    let d = data.to_str().unwrap();
    let err = |args: &[&str]| {
        let out = run(args);
        assert!(!out.status.success(), "mam-e {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let out = temp("bad");
    let o = out.to_str().unwrap();
    let base = ["--model", Box::leak(fixture("tiny-sd").into_boxed_str()), "--out", o, "--resolution", "32", "--max-steps", "1"];
    assert!(err(&[&["train", "--data", d, "--resume"][..], &base[..]].concat()).contains("no checkpoint"));
    assert!(err(&[&["train", "--data", "/nonexistent"][..], &base[..]].concat()).contains("expected a folder made by mam-e prepare"));
    assert!(err(&[&["train", "--data", d, "--inpainting", "--from-scratch"][..], &base[..]].concat()).contains("inpainting training needs 9"));
    ok(&[&["train", "--data", d, "--validate-every", "0"][..], &base[..]].concat());
    assert!(err(&[&["train", "--data", d][..], &base[..]].concat()).contains("--resume"));
    assert!(
        err(&[&["train", "--data", d, "--caption-dropout", "1.5", "--resume"][..], &base[..]].concat()).contains("--caption-dropout 1.5 must be in [0, 1)")
    );
}

#[test]
fn gradient_checkpointing_trains_the_same_model() {
    // Recomputing activations in the backward pass must not change the gradients: the same
    // 3 steps (with caption dropout, so that path runs too) with and without checkpointing.
    let data = phantom_set("phantoms-checkpointing");
    let d = data.to_str().unwrap();
    let losses = |checkpointing: bool| -> Vec<f64> {
        let out = temp(&format!("checkpointing-{checkpointing}"));
        let mut args = vec![
            "train",
            "--data",
            d,
            "--model",
            Box::leak(fixture("tiny-sd").into_boxed_str()),
            "--out",
            out.to_str().unwrap(),
            "--resolution",
            "32",
            "--batch-size",
            "4",
            "--max-steps",
            "3",
            "--learning-rate",
            "1e-3",
            "--checkpoint-every",
            "3",
            "--validate-every",
            "0",
            "--caption-dropout",
            "0.5",
        ];
        if checkpointing {
            args.push("--gradient-checkpointing");
        }
        ok(&args);
        std::fs::read_to_string(out.join("log.csv")).unwrap().lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect()
    };
    let (plain, checkpointed) = (losses(false), losses(true));
    assert_eq!(plain.len(), 3);
    for (a, b) in plain.iter().zip(&checkpointed) {
        assert!((a - b).abs() <= 1e-5 * a.abs(), "loss with checkpointing {b} vs without {a} (all: {checkpointed:?} vs {plain:?})");
    }
}

#[test]
fn training_on_the_gpu_backend_matches_the_cpu() {
    // burn-wgpu (Vulkan; Mesa lavapipe on a machine without a GPU) against flex, same seed.
    let data = phantom_set("phantoms-gpu");
    let d = data.to_str().unwrap();
    let losses = |backend: &str| -> Vec<f64> {
        let out = temp(&format!("backend-{backend}"));
        ok(&[
            "train",
            "--backend",
            backend,
            "--data",
            d,
            "--model",
            &fixture("tiny-sd"),
            "--out",
            out.to_str().unwrap(),
            "--resolution",
            "32",
            "--batch-size",
            "2",
            "--max-steps",
            "3",
            "--learning-rate",
            "1e-3",
            "--checkpoint-every",
            "3",
            "--validate-every",
            "0",
        ]);
        std::fs::read_to_string(out.join("log.csv")).unwrap().lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect()
    };
    let (cpu, gpu) = (losses("cpu"), losses("wgpu"));
    for (c, g) in cpu.iter().zip(&gpu) {
        assert!((c - g).abs() <= 1e-4 * c.abs(), "loss on wgpu {g} vs cpu {c} (all: {gpu:?} vs {cpu:?})");
    }
}

#[test]
fn vae_training_resumes_with_its_optimizer_state() {
    // Constant learning rate, so stopping at step 2 and resuming to 4 is the same run as 4 at once.
    let data = phantom_set("phantoms-vae-resume");
    let d = data.to_str().unwrap();
    let run_to = |out: &Path, steps: &str, resume: bool| {
        let mut args = vec![
            "train",
            "--component",
            "vae",
            "--data",
            d,
            "--model",
            Box::leak(fixture("tiny-sd").into_boxed_str()),
            "--out",
            out.to_str().unwrap(),
            "--resolution",
            "32",
            "--batch-size",
            "2",
            "--max-steps",
            steps,
            "--learning-rate",
            "1e-3",
            "--checkpoint-every",
            "2",
            "--validate-every",
            "0",
        ];
        if resume {
            args.push("--resume");
        }
        ok(&args);
    };
    let (whole, split) = (temp("vae-whole"), temp("vae-split"));
    run_to(&whole, "4", false);
    run_to(&split, "2", false);
    run_to(&split, "4", true);
    let weights = |dir: &Path| std::fs::read(dir.join("model/vae/diffusion_pytorch_model.safetensors")).unwrap();
    assert!(weights(&whole) == weights(&split), "VAE weights differ after resume");
}

#[test]
fn eval_refuses_missing_inputs_clearly() {
    let err = |args: &[&str]| {
        let out = run(args);
        assert!(!out.status.success(), "mam-e {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let message = err(&["eval", "adherence", "--model", "/nonexistent/model", "--count", "1"]);
    assert!(message.contains("/nonexistent/model"), "{message}");
    let message = err(&["eval", "inpainting", "--model", &fixture("tiny-sd-inpaint"), "--data", "/nonexistent/set"]);
    assert!(message.contains("metadata.jsonl"), "{message}");
    // Phantoms through a model's VAE need its encoder, which text-to-image packages leave out.
    let package = temp("eval-t2i-package");
    ok(&["convert", "--from", &fixture("tiny-sd"), "--out", package.to_str().unwrap()]);
    let message = err(&["eval", "adherence", "--phantoms", "--model", package.to_str().unwrap(), "--count", "1"]);
    assert!(message.contains("has no VAE encoder"), "{message}");
    let report = ok(&["eval", "adherence", "--phantoms", "--model", &fixture("tiny-sd"), "--count", "2", "--size", "64"]);
    assert!(report.contains("view: ") && report.contains("area: "), "{report}");
    // A package converts back to a diffusers folder in f32 only.
    let message = err(&["convert", "--from", package.to_str().unwrap(), "--out", temp("eval-back").to_str().unwrap(), "--dtype", "q8"]);
    assert!(message.contains("f32 only"), "{message}");
}
