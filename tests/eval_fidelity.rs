//! MS-SSIM against `pytorch-msssim` (fixtures from `tests/fixtures/make_msssim_reference.py`), and
//! `mam-e eval fidelity` as a user runs it.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use mam_e::eval::ms_ssim::{Plane, ms_ssim};
use mam_e::imaging::RgbImage;
use serde_json::Value;
use support::cli::{fails, ok, temp_dir};

fn fixture_dir() -> std::path::PathBuf {
    support::fixtures::path("msssim")
}

fn plane(name: &str) -> Plane {
    let image = RgbImage::from_png(&std::fs::read(fixture_dir().join(format!("{name}.png"))).unwrap()).unwrap();
    Plane { width: image.width, height: image.height, values: image.to_gray().iter().map(|&g| g as f64).collect() }
}

#[test]
fn ms_ssim_equals_pytorch_msssim() {
    let reference: Value = serde_json::from_slice(&std::fs::read(fixture_dir().join("msssim.json")).unwrap()).unwrap();
    let mut worst = [0.0f64; 2];
    for (pair, want) in reference["pairs"].as_object().unwrap() {
        let (x, y) = pair.split_once('-').unwrap();
        let got = ms_ssim(&plane(x), &plane(y), 255.0).unwrap();
        // We compute in f64. Against the library run in f64: the same maths to rounding; against
        // its usual f32 run: its variances (E[x²] − μ², values to 65,025) lose about 6 digits.
        for (k, (precision, bound)) in [("f64", 1e-12), ("f32", 1e-5)].into_iter().enumerate() {
            let want: f64 = want[precision].as_str().unwrap().parse().unwrap();
            let error = (got - want).abs() / want;
            worst[k] = worst[k].max(error);
            assert!(error < bound, "{pair}: {got} vs pytorch-msssim's {want} in {precision} (relative error {error:e})");
        }
    }
    eprintln!("largest relative error against pytorch-msssim: {:e} (f64), {:e} (f32)", worst[0], worst[1]);
}

#[test]
fn eval_fidelity_reports_diversity_and_distributions() {
    // "Synthetic": two copies of one image (MS-SSIM 1, no diversity) and a file that is no PNG.
    let synthetic = temp_dir("fidelity", "copies");
    std::fs::create_dir_all(&synthetic).unwrap();
    for name in ["x.png", "y.png"] {
        std::fs::copy(fixture_dir().join("a.png"), synthetic.join(name)).unwrap();
    }
    std::fs::write(synthetic.join("broken.png"), b"not a png").unwrap();
    let real = fixture_dir();
    let report = temp_dir("fidelity", "report.json");
    let err = fails(&["eval", "fidelity", "--real", real.to_str().unwrap(), "--synthetic", synthetic.to_str().unwrap()]);
    assert!(err.contains("images of different sizes") && err.contains("--size"), "{err}");
    let out = ok(&[
        "eval",
        "fidelity",
        "--real",
        real.to_str().unwrap(),
        "--synthetic",
        synthetic.to_str().unwrap(),
        "--size",
        "192",
        "--json",
        report.to_str().unwrap(),
    ]);
    assert!(out.contains("skipped") && out.contains("broken.png"), "{out}");
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["real"]["images"], 5);
    assert_eq!(r["real"]["ms_ssim"]["pairs"], 10, "all pairs of 5 images");
    assert_eq!(r["synthetic"]["images"], 2);
    assert!((r["synthetic"]["ms_ssim"]["ms_ssim_mean"].as_f64().unwrap() - 1.0).abs() < 1e-12);
    assert_eq!(r["real"]["breast_gray_wasserstein_to_real"], 0.0);
    let w = r["synthetic"]["breast_gray_wasserstein_to_real"].as_f64().unwrap();
    assert!(w > 0.0, "a copy of one image differs from the set: {w}");
    // The pair a–b at its own size is the fixture's pair; resized to 192 (its size) it is unchanged.
    let err = fails(&["eval", "fidelity", "--real", real.to_str().unwrap(), "--synthetic", synthetic.to_str().unwrap(), "--size", "128"]);
    assert!(err.contains("below MS-SSIM's 161 pixels"), "{err}");
}
