//! The reader study's ROC analysis against scikit-learn (`roc_curve`, `roc_auc_score`) and
//! DeLong's variance from its pairwise definition, on fixtures made by
//! `tests/fixtures/make_roc_reference.py`; and `mam-e eval roc` as a user runs it.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use mam_e::eval::roc::{Rating, analyse, auc, delong, delong_paired, roc_curve};
use serde_json::Value;
use support::cli::{fails, ok, temp_dir};

fn cases() -> Vec<(String, Vec<Rating>, Value)> {
    let fixture: Value = serde_json::from_slice(&support::fixtures::read("roc.json")).unwrap();
    fixture["cases"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, case)| {
            let real = case["real"].as_array().unwrap().iter().map(|v| v.as_u64() == Some(1));
            let ratings = real.zip(case["score"].as_array().unwrap()).map(|(real, s)| Rating { real, score: float(s) }).collect();
            (name.clone(), ratings, case.clone())
        })
        .collect()
}

/// The fixture's numbers are strings (Python's repr), parsed exactly.
fn float(v: &Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(float).collect()
}

#[test]
fn curves_and_areas_equal_scikit_learns() {
    for (name, ratings, want) in cases() {
        let curve = roc_curve(&ratings).unwrap();
        // Same counts, same divisions: equal to the last bit.
        assert_eq!(curve.fpr, floats(&want["fpr"]), "{name}: fpr");
        assert_eq!(curve.tpr, floats(&want["tpr"]), "{name}: tpr");
        assert_eq!(curve.thresholds, floats(&want["thresholds"]), "{name}: thresholds");
        // numpy sums the trapezoids pairwise, we in order: the last bits may differ.
        let (got, expected) = (auc(&curve), float(&want["auroc"]));
        assert!((got - expected).abs() <= 4.0 * f64::EPSILON, "{name}: AUROC {got} vs {expected}");
    }
}

#[test]
fn delong_variance_equals_its_pairwise_definition() {
    for (name, ratings, want) in cases() {
        let (area, variance) = delong(&ratings).unwrap();
        let expected = float(&want["delong_variance"]);
        assert!((variance - expected).abs() <= 1e-12 * expected, "{name}: variance {variance} vs {expected}");
        assert!((area - float(&want["auroc"])).abs() <= 1e-12, "{name}: the Mann–Whitney area is the trapezoid area");
        let result = analyse(&ratings).unwrap();
        let half_width = 1.959963984540054 * expected.sqrt();
        assert!((result.ci95[0] - (area - half_width).max(0.0)).abs() < 1e-12 && (result.ci95[1] - (area + half_width).min(1.0)).abs() < 1e-12, "{name}");
    }
}

/// DeLong's test of two correlated scorings (two CADs on one test set) against the pairwise
/// definition of the structural components' covariance.
#[test]
fn paired_delong_equals_its_pairwise_definition() {
    let fixture: Value = serde_json::from_slice(&support::fixtures::read("roc.json")).unwrap();
    let case = &fixture["paired"];
    let real: Vec<bool> = case["real"].as_array().unwrap().iter().map(|v| v.as_u64() == Some(1)).collect();
    let scoring = |key: &str| -> Vec<Rating> { real.iter().zip(floats(&case[key])).map(|(&real, score)| Rating { real, score }).collect() };
    let (first, second) = (scoring("first"), scoring("second"));
    let got = delong_paired(&first, &second).unwrap();
    let (difference, variance, p) = (float(&case["difference"]), float(&case["variance"]), float(&case["p_value"]));
    eprintln!("paired DeLong: difference {} vs {difference}, variance {} vs {variance}, p {} vs {p}", got.difference, got.variance, got.p_value);
    assert!((got.difference - difference).abs() <= 1e-15, "difference {} vs {difference}", got.difference);
    assert!((got.variance - variance).abs() <= 1e-14 * variance, "variance {} vs {variance}", got.variance);
    assert!((got.p_value - p).abs() <= 1e-13, "p-value {} vs {p}", got.p_value);
    let half_width = 1.959963984540054 * variance.sqrt();
    assert!((got.ci95[0] - (difference - half_width)).abs() < 1e-14 && (got.ci95[1] - (difference + half_width)).abs() < 1e-14);
    // A scoring against itself: no difference, no variance, p = 1.
    let same = delong_paired(&first, &first).unwrap();
    assert_eq!((same.difference, same.variance, same.p_value), (0.0, 0.0, 1.0));
    let mut relabelled = second.clone();
    relabelled[0].real = !relabelled[0].real;
    assert!(delong_paired(&first, &relabelled).unwrap_err().contains("same images"));
}

#[test]
fn eval_roc_reports_plots_and_refuses_bad_files() {
    let dir = temp_dir("eval-roc", "study");
    std::fs::create_dir_all(&dir).unwrap();
    let (name, ratings, want) = cases().into_iter().find(|(n, _, _)| n == "paper_like_53_near_chance").unwrap();
    let mut csv = String::from("image,class,rating\n");
    for (i, r) in ratings.iter().enumerate() {
        csv.push_str(&format!("img{i}.png,{},{}\n", if r.real { "real" } else { "synthetic" }, r.score));
    }
    let path = dir.join("ratings.csv");
    std::fs::write(&path, csv).unwrap();
    let (plot, json) = (dir.join("roc.png"), dir.join("roc.json"));
    let out = ok(&["eval", "roc", path.to_str().unwrap(), "--plot", plot.to_str().unwrap(), "--json", json.to_str().unwrap()]);
    let auroc = float(&want["auroc"]);
    assert!(out.contains(&format!("AUROC {auroc:.4}")), "{name}: {out}");
    assert!(out.contains("27 real and 26 synthetic"), "{out}");
    assert!(out.contains("readers could not tell synthetic from real"), "{out}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!((report["auroc"].as_f64().unwrap() - auroc).abs() < 1e-15);
    let counted: u64 = ["real", "synthetic"].iter().flat_map(|c| report["histogram"][c].as_array().unwrap().iter().map(|n| n.as_u64().unwrap())).sum();
    assert_eq!(counted, 53);
    let image = mam_e::imaging::RgbImage::from_png(&std::fs::read(&plot).unwrap()).unwrap();
    assert_eq!((image.width, image.height), (432, 432));

    let bad = dir.join("bad.csv");
    for (content, expected) in [
        ("", "empty"),
        ("class,rating\nreal,4\nreal,3\n", "only real images were rated"),
        ("class,rating\nreal,4\nsynthetic,-1\n", "line 3: rating -1 is outside 0–4"),
        ("image,score\na,1\n", "no column \"class\""),
    ] {
        std::fs::write(&bad, content).unwrap();
        let err = fails(&["eval", "roc", bad.to_str().unwrap()]);
        assert!(err.contains(expected), "expected {expected:?}: {err}");
    }
}
