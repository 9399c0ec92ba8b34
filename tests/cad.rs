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
    let model = CadConfig::preset("tiny", SIDE, SIDE).unwrap().init(device);
    mam_e::weights::load_safetensors(model, seeded_weights(&reference()), "cad").unwrap()
}

fn fixture_input() -> Vec<f32> {
    let image = RgbImage::from_png(&support::fixtures::read("cad/image.png")).unwrap();
    mam_e::cad::model::to_input(&image, SIDE)
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
    // As the page computes it: on a device without autodiff.
    assert_close("Grad-CAM (no autodiff)", &grad_cam(&seeded_model(&plain), &x, SIDE, &plain).2, want(0), 5e-6);
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

fn phantoms(name: &str, count: &str, lesion_fraction: &str, seed: &str) -> std::path::PathBuf {
    let out = support::cli::temp_dir("cad", name);
    support::cli::ok(&[
        "phantom",
        "--format",
        "prepared",
        "--count",
        count,
        "--width",
        "128",
        "--size",
        "64",
        "--seed",
        seed,
        "--lesion-fraction",
        lesion_fraction,
        "--out",
        out.to_str().unwrap(),
    ]);
    out
}

/// `cad train`, `eval` and `explain` as a user runs them: a run stopped after one epoch and
/// started again ends with the same bytes as one run of two epochs; bad input is refused.
#[test]
fn train_resume_eval_and_explain() {
    use support::cli::{fails, ok, temp_dir};
    let data = phantoms("data", "120", "0.5", "3");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let train = |out: &std::path::Path, epochs: &str| {
        ok(&["cad", "train", "--data", &s(&data), "--out", &s(out), "--size", "64", "--patch", "32", "--epochs", epochs, "--batch-size", "8", "--seed", "4"])
    };
    let (straight, resumed) = (temp_dir("cad", "straight"), temp_dir("cad", "resumed"));
    train(&straight, "2");
    train(&resumed, "1");
    train(&resumed, "2");
    for file in ["model/model.safetensors", "checkpoint/model.safetensors", "checkpoint/optimizer.safetensors", "log.jsonl"] {
        assert!(std::fs::read(straight.join(file)).unwrap() == std::fs::read(resumed.join(file)).unwrap(), "{file} differs after a resume");
    }
    assert_eq!(std::fs::read_to_string(straight.join("log.jsonl")).unwrap().lines().count(), 2);
    let err = fails(&["cad", "train", "--data", &s(&data), "--out", &s(&straight), "--size", "64", "--patch", "32", "--epochs", "3", "--seed", "5"]);
    assert!(err.contains("holds a run with other settings"), "{err}");
    let healthy_only = phantoms("healthy", "20", "0", "3");
    let err = fails(&["cad", "train", "--data", &s(&healthy_only), "--out", &s(&temp_dir("cad", "one-class")), "--size", "64", "--patch", "32"]);
    assert!(err.contains("needs both classes"), "{err}");
    let err = fails(&["cad", "train", "--data", &s(&data), "--out", &s(&temp_dir("cad", "big-patch")), "--size", "64", "--patch", "96"]);
    assert!(err.contains("patches of 96 pixels in images of 64"), "{err}");

    // Evaluation on the test split: the AUROC in the JSON is the one scikit-learn's definition
    // gives for the scores (the ROC code is tested against it); here, its counts and range.
    let report = temp_dir("cad", "eval.json");
    let out = ok(&["cad", "eval", "--model", &s(&straight.join("model")), "--data", &s(&data), "--json", &s(&report)]);
    assert!(out.contains("AUROC"), "{out}");
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let test_images = ["healthy", "lesions"]
        .iter()
        .map(|f| std::fs::read_to_string(data.join(f).join("metadata.jsonl")).unwrap().lines().filter(|l| l.contains("\"split\":\"test\"")).count())
        .sum::<usize>();
    assert_eq!(r["images"].as_u64().unwrap() as usize, test_images);
    assert!((0.0..=1.0).contains(&r["auroc"].as_f64().unwrap()));

    // Explain a lesion image with its mask, and a healthy one without.
    let record: Value = serde_json::from_str(std::fs::read_to_string(data.join("lesions/metadata.jsonl")).unwrap().lines().next().unwrap()).unwrap();
    let image = data.join("lesions").join(record["file_name"].as_str().unwrap());
    let mask = data.join("lesions").join(record["mask_file_name"].as_str().unwrap());
    let explained = temp_dir("cad", "explain");
    let out = ok(&["cad", "explain", &s(&image), "--model", &s(&straight.join("model")), "--mask", &s(&mask), "--out", &s(&explained), "--samples", "4"]);
    assert!(out.contains("heatmap mass on the lesion"), "{out}");
    let report: Value = serde_json::from_slice(&std::fs::read(explained.join("explain.json")).unwrap()).unwrap();
    for method in ["grad_cam", "saliency", "smoothgrad", "occlusion"] {
        let ratio = report[method]["lesion_attention"]["ratio"].as_f64();
        assert!(ratio.is_some_and(f64::is_finite), "{method}: {report}");
        let npy = std::fs::read(explained.join(format!("{method}.npy"))).unwrap();
        assert_eq!(&npy[..6], b"\x93NUMPY");
        let header_len = u16::from_le_bytes([npy[8], npy[9]]) as usize;
        assert!(String::from_utf8_lossy(&npy[10..10 + header_len]).contains("'shape': (64, 64)"));
        assert_eq!(npy.len() - 10 - header_len, 64 * 64 * 4);
        let overlay = RgbImage::from_png(&std::fs::read(explained.join(format!("{method}.png"))).unwrap()).unwrap();
        assert_eq!((overlay.width, overlay.height), (64, 64));
    }
    let out = ok(&["cad", "explain", &s(&image), "--model", &s(&straight.join("model")), "--method", "grad-cam", "--out", &s(&temp_dir("cad", "no-mask"))]);
    assert!(out.contains("without the lesion-attention figures"), "{out}");

    // A model folder whose config does not match its weights.
    let broken = temp_dir("cad", "broken-model");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(straight.join("model/model.safetensors"), broken.join("model.safetensors")).unwrap();
    let mut config: Value = serde_json::from_slice(&std::fs::read(straight.join("model/config.json")).unwrap()).unwrap();
    config["widths"] = serde_json::json!([8, 16, 32, 64]);
    std::fs::write(broken.join("config.json"), config.to_string()).unwrap();
    let err = fails(&["cad", "eval", "--model", &s(&broken), "--data", &s(&data)]);
    assert!(err.contains("model.safetensors"), "{err}");
}

/// `cad study` as a user runs it: three variants over two seeds, each evaluated on the real test
/// split, the paired comparison per seed, the plot; a rerun continues without training again;
/// bad settings refused.
#[test]
fn study_trains_three_variants_and_compares_them() {
    use support::cli::{fails, ok, temp_dir};
    let (real, synthetic, out) = (phantoms("study-real", "80", "0.5", "7"), phantoms("study-synthetic", "40", "0.5", "8"), temp_dir("cad", "study"));
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let args = |seeds: &str, ratio: &str| -> Vec<String> {
        [
            "cad",
            "study",
            "--real",
            &s(&real),
            "--synthetic",
            &s(&synthetic),
            "--ratio",
            ratio,
            "--seeds",
            seeds,
            "--epochs",
            "1",
            "--size",
            "64",
            "--patch",
            "32",
            "--batch-size",
            "8",
            "--out",
            &s(&out),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let run = |seeds: &str, ratio: &str| ok(&args(seeds, ratio).iter().map(String::as_str).collect::<Vec<_>>());
    let printed = run("2", "0.5");
    let report: Value = serde_json::from_slice(&std::fs::read(out.join("study.json")).unwrap()).unwrap();
    let real_training = report["real_training_images"].as_u64().unwrap();
    assert_eq!(report["synthetic_added"].as_u64().unwrap(), (real_training as f64 * 0.5).round() as u64);
    let aurocs = |variant: &str| -> Vec<f64> {
        let runs = report["variants"][variant]["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2, "{variant}");
        runs.iter().map(|r| r["auroc"].as_f64().unwrap()).collect()
    };
    let (a, b) = (aurocs("real"), aurocs("real+synthetic"));
    aurocs("synthetic");
    // The paired test's difference is the difference of the two areas, computed another way
    // (means of DeLong's structural components, not trapezoids).
    let difference = &report["difference_real_plus_synthetic_minus_real"];
    for (k, test) in difference["paired_delong"].as_array().unwrap().iter().enumerate() {
        let d = test["difference"].as_f64().unwrap();
        assert!((d - (b[k] - a[k])).abs() < 1e-12, "seed {k}: paired difference {d} vs {} − {}", b[k], a[k]);
        let ci: Vec<f64> = test["ci95"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!(ci[0] <= d && d <= ci[1] && (0.0..=1.0).contains(&test["p_value"].as_f64().unwrap()), "{test}");
    }
    assert!(printed.contains("DeLong's paired test p ="), "{printed}");
    let svg = std::fs::read_to_string(out.join("study.svg")).unwrap();
    assert_eq!(svg.matches(r#"data-test="run""#).count(), 6);
    assert_eq!(svg.matches(r#"data-test="mean""#).count(), 3);

    // Again: every run is complete, so nothing trains and the same report comes out.
    let before = std::fs::read(out.join("study.json")).unwrap();
    run("2", "0.5");
    assert!(std::fs::read(out.join("study.json")).unwrap() == before, "a rerun changed study.json");
    assert_eq!(std::fs::read_to_string(out.join("real-seed0/log.jsonl")).unwrap().lines().count(), 1);

    for (seeds, ratio) in [("0", "0.5"), ("2", "0")] {
        let err = fails(&args(seeds, ratio).iter().map(String::as_str).collect::<Vec<_>>());
        assert!(err.contains("--seeds must be at least 1 and --ratio above 0"), "{err}");
    }
}
