//! Data: phantoms are what their labels say; DICOM reading equals pydicom (what MAM-E ran);
//! `phantom` → `prepare` reproduces the ground truth exactly; odd inputs are reported per file;
//! a killed preparation resumes to the same result.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mam_e::data::Laterality;
use mam_e::data::dicom;
use mam_e::data::phantom::{self, PhantomSpec, render};
use mam_e::data::texture::spectrum_exponent;
use mam_e::imaging::RgbImage;
use mam_e::prompt::{Area, Density, Vendor, View};
use serde_json::Value;

mod support;

fn temp(name: &str) -> PathBuf {
    support::cli::temp_dir("data", name)
}

fn mam_e(args: &[&str]) -> std::process::Output {
    let out = support::cli::run(args, &[]);
    assert!(out.status.success(), "mam-e {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom").join(name)
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn png(path: &Path) -> RgbImage {
    RgbImage::from_png(&std::fs::read(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn specs() -> Vec<PhantomSpec> {
    let mut specs = Vec::new();
    let mut seed = 100;
    for density in Density::ALL {
        for view in View::ALL {
            for area in Area::ALL {
                let vendor = if seed % 2 == 0 { Vendor::Siemens } else { Vendor::Hologic };
                specs.push(PhantomSpec { seed, view, laterality: Laterality::L, density, vendor, target_area: area, lesions: 1 });
                seed += 1;
            }
        }
    }
    specs
}

#[test]
fn phantoms_are_what_their_labels_say() {
    let (mut area_hits, mut total) = (0, 0);
    for spec in specs() {
        let p = render(&spec, 256);
        assert_eq!(p.pixels, render(&spec, 256).pixels, "seed {} is not deterministic", spec.seed);
        let (_, area) = phantom::measured_area(&p, 256);
        area_hits += (area == spec.target_area) as usize;
        total += 1;
        // Dense fraction inside the BI-RADS class's range (the classes' quartiles).
        let (lo, hi) = match spec.density {
            Density::A => (0.0, 0.25),
            Density::B => (0.25, 0.5),
            Density::C => (0.5, 0.75),
            Density::D => (0.75, 1.0),
        };
        assert!(p.dense_fraction > lo && p.dense_fraction < hi, "{:?}: dense fraction {}", spec.density, p.dense_fraction);
        // The pectoral muscle fills the top-left corner of an MLO view with bright tissue.
        let mean = |r0: usize, r1: usize, c0: usize, c1: usize| {
            let v: Vec<f64> = (r0..r1).flat_map(|r| (c0..c1).map(move |c| (r, c))).map(|(r, c)| p.pixels[r * p.cols + c] as f64).collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        let corner = mean(0, 12, 0, 12);
        if spec.view == View::Mlo {
            assert!(corner > 0.6 * spec_max(spec.vendor), "{}: MLO corner {corner}", spec.seed);
        }
        // Background exactly 0, breast never 0; each lesion's box is its mask's bounding box.
        assert_eq!(p.pixels[p.rows / 2 * p.cols + p.cols - 1], 0, "background at the right edge");
        for lesion in &p.lesions {
            let b = lesion.finding.bbox;
            let mut found = (usize::MAX, usize::MAX, 0, 0);
            for r in b.ymin as usize..b.ymax as usize {
                for c in b.xmin as usize..b.xmax as usize {
                    if p.lesion_mask[r * p.cols + c] == 255 {
                        assert!(p.pixels[r * p.cols + c] > 0, "lesion pixel outside the breast");
                        found = (found.0.min(c), found.1.min(r), found.2.max(c + 1), found.3.max(r + 1));
                    }
                }
            }
            assert_eq!(found, (b.xmin as usize, b.ymin as usize, b.xmax as usize, b.ymax as usize), "{}: box is not the mask's", lesion.kind.name());
        }
    }
    println!("area class as targeted: {area_hits}/{total}");
    assert!(area_hits * 100 >= total * 95, "area class as targeted only {area_hits}/{total}");
}

fn spec_max(vendor: Vendor) -> f64 {
    match vendor {
        Vendor::Hologic => 4095.0,
        Vendor::Siemens => 3400.0,
    }
}

#[test]
fn phantom_texture_has_the_mammographic_power_law() {
    // Burgess et al. measured β ≈ 3 for mammographic backgrounds; fit inside the breast, away
    // from the skin, over the band where anatomy (not detector noise) dominates.
    let mut exponents = Vec::new();
    for (i, density) in [Density::B, Density::C, Density::B, Density::C].into_iter().enumerate() {
        let spec = PhantomSpec {
            seed: 900 + i as u64,
            view: View::Cc,
            laterality: Laterality::L,
            density,
            vendor: Vendor::Hologic,
            target_area: Area::Big,
            lesions: 0,
        };
        let p = render(&spec, 512);
        let (r0, c0) = (p.rows / 2 - 64, 40);
        let patch: Vec<f32> = (r0..r0 + 128).flat_map(|r| (c0..c0 + 128).map(move |c| (r, c))).map(|(r, c)| p.pixels[r * p.cols + c] as f32).collect();
        assert!(patch.iter().all(|&v| v > 0.0), "patch leaves the breast");
        exponents.push(spectrum_exponent(&patch, 128, 1.0 / 64.0, 1.0 / 8.0));
    }
    println!("phantom spectrum exponents: {exponents:?}");
    let mean = exponents.iter().sum::<f64>() / exponents.len() as f64;
    assert!((2.5..=3.5).contains(&mean), "mean β {mean} (each {exponents:?})");
}

#[test]
fn dicom_reading_matches_pydicom() {
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(fixture("cases.json")).unwrap()).unwrap();
    assert!(cases.len() >= 12);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let result = dicom::read(&fixture(&format!("{name}.dcm")));
        if let Some(error) = case["error"].as_str() {
            let message = result.err().unwrap_or_else(|| panic!("{name}: read succeeded"));
            assert!(message.contains(error), "{name}: {message}");
            continue;
        }
        let image = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        let bytes = std::fs::read(fixture(&format!("{name}.expected.f32"))).unwrap();
        let expected: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        let (y_min, y_max) = (case["y_min"].as_f64().unwrap(), case["y_max"].as_f64().unwrap());
        assert_eq!(image.values.len(), expected.len(), "{name}");
        assert!((image.max as f64 - (y_max - y_min)).abs() < 1e-3, "{name}: max {} vs {}", image.max, y_max - y_min);
        let worst = image
            .values
            .iter()
            .zip(&expected)
            .map(|(&ours, &theirs)| {
                let shifted = theirs as f64 - y_min;
                let want = if case["monochrome1"].as_bool().unwrap() { (y_max - y_min) - shifted } else { shifted };
                (ours as f64 - want).abs()
            })
            .fold(0.0, f64::max);
        assert!(worst < 1e-2, "{name}: largest difference from pydicom {worst}");
        if let Some(m) = case["manufacturer"].as_str() {
            assert_eq!(image.manufacturer.as_deref(), Some(m), "{name}");
        }
        if let Some(l) = case["laterality"].as_str() {
            assert_eq!(image.laterality.map(|l| l.letter()), Some(l), "{name}");
        }
        if let Some(v) = case["view"].as_str() {
            assert_eq!(image.view.map(|v| v.word()), Some(v), "{name}");
        }
    }
}

#[test]
fn phantom_dicom_round_trips_with_mammography_tags() {
    let options = phantom::DatasetOptions { seed: 3, cols: 128, lesion_fraction: 1.0, vendors: vec![Vendor::Hologic] };
    let entry = phantom::dataset_entry(&options, 3); // R-MLO
    let p = render(&entry.spec, 128);
    let path = temp("round-trip.dicom");
    phantom::write_phantom(&path, &p, &entry).unwrap();
    let image = dicom::read(&path).unwrap();
    assert_eq!(image.values, p.source_pixels().values);
    assert_eq!((image.laterality, image.view), (Some(Laterality::R), Some(View::Mlo)));
    let obj = dicom_object::open_file(&path).unwrap();
    let tag = |name: &str| obj.element_by_name(name).unwrap().to_str().unwrap().trim().to_string();
    assert_eq!(tag("Modality"), "MG");
    assert_eq!(tag("PresentationIntentType"), "FOR PRESENTATION");
    assert_eq!(tag("Manufacturer"), "HOLOGIC, Inc.");
    assert_eq!(tag("PatientOrientation"), "P\\FL");
    assert_eq!(tag("BitsStored"), "12");
    assert_eq!(tag("VOILUTFunction"), "LINEAR");
    let spacing: f64 = tag("PixelSpacing").split('\\').next().unwrap().parse().unwrap();
    assert!((spacing - 240.0 / 160.0).abs() < 1e-5, "pixel spacing {spacing}");
    assert_eq!(obj.meta().media_storage_sop_class_uid().trim_end_matches('\0'), "1.2.840.10008.5.1.4.1.1.1.2");
}

/// The fusion caption, written out here independently of the library's template.
fn fusion_caption(truth: &Value) -> String {
    let density = match truth["density"].as_str().unwrap() {
        "A" => "very low",
        "B" => "low",
        "C" => "high",
        _ => "very high",
    };
    format!(
        "a {} mammogram in {} view with {density} density and {} area",
        truth["vendor"].as_str().unwrap(),
        truth["view"].as_str().unwrap(),
        truth["area"].as_str().unwrap()
    )
}

/// Where a source box lands: mirrored for R, scaled so the width is `size`, shifted by the
/// centre crop of the height, then rounded outwards and clipped.
fn expected_box(l: &Value, right: bool, rows: f64, cols: f64, size: f64) -> Value {
    let (mut x0, mut x1) = (l["xmin"].as_f64().unwrap(), l["xmax"].as_f64().unwrap());
    if right {
        (x0, x1) = (cols - x1, cols - x0);
    }
    let s = size / cols;
    let top = (((rows * s).round() - size) / 2.0).floor();
    let y0 = l["ymin"].as_f64().unwrap() * s - top;
    let y1 = l["ymax"].as_f64().unwrap() * s - top;
    let c = |v: f64| v.clamp(0.0, size);
    let u = |v: f64| v as u64;
    serde_json::json!({"x0": u(c(x0 * s).floor()), "y0": u(c(y0).floor()), "x1": u(c(x1 * s).ceil()), "y1": u(c(y1).ceil())})
}

#[test]
fn phantom_then_prepare_reproduces_the_ground_truth() {
    let (raw, prepared, direct) = (temp("vindr"), temp("prepared"), temp("direct"));
    let common = ["--count", "24", "--width", "320", "--seed", "11", "--lesion-fraction", "0.5", "--size", "256"];
    mam_e(&[&["phantom", "--out", raw.to_str().unwrap()][..], &common[..]].concat());
    let header = std::fs::read_to_string(raw.join("finding_annotations.csv")).unwrap();
    assert!(header.starts_with(
        "study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,breast_density,finding_categories,finding_birads,xmin,ymin,xmax,ymax,split"
    ));
    let out = mam_e(&["prepare", "--vindr", raw.to_str().unwrap(), "--out", prepared.to_str().unwrap(), "--size", "256"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("24 images prepared") && stdout.contains("0 skipped"), "{stdout}");

    let truths = jsonl(&raw.join("phantom_labels.jsonl"));
    let mut records: HashMap<String, Value> = HashMap::new();
    for folder in ["healthy", "lesions"] {
        for r in jsonl(&prepared.join(folder).join("metadata.jsonl")) {
            records.insert(r["id"].as_str().unwrap().to_string(), r);
        }
    }
    assert_eq!(records.len(), 24);
    let (mut healthy, mut lesions) = (0, 0);
    for truth in &truths {
        let record = &records[truth["image_id"].as_str().unwrap()];
        assert_eq!(record["area_ratio"], truth["area_ratio"]);
        assert_eq!(record["area"], truth["area"]);
        assert_eq!(record["density"], truth["density"]);
        let image = png(&prepared.join(if record.get("mask_file_name").is_some() { "lesions" } else { "healthy" }).join(record["file_name"].as_str().unwrap()));
        assert_eq!((image.width, image.height), (256, 256));
        let truth_lesions = truth["lesions"].as_array().unwrap();
        if truth_lesions.is_empty() {
            healthy += 1;
            assert_eq!(record["prompt"].as_str().unwrap(), fusion_caption(truth));
            continue;
        }
        lesions += 1;
        assert_eq!(record["prompt"], "a mammogram with a lesion");
        let right = truth["laterality"] == "R";
        let want: Vec<Value> = truth_lesions.iter().map(|l| expected_box(l, right, 400.0, 320.0, 256.0)).collect();
        assert_eq!(record["boxes"].as_array().unwrap(), &want, "{}", truth["image_id"]);
        // The mask is exactly the union of the boxes; the masked image is the image with it blacked out.
        let mask = png(&prepared.join("lesions").join(record["mask_file_name"].as_str().unwrap())).to_gray();
        let masked = png(&prepared.join("lesions").join(record["masked_image_file_name"].as_str().unwrap())).to_gray();
        let gray = image.to_gray();
        for y in 0..256 {
            for x in 0..256 {
                let inside = want.iter().any(|b| {
                    let f = |k: &str| b[k].as_f64().unwrap() as usize;
                    x >= f("x0") && x < f("x1") && y >= f("y0") && y < f("y1")
                });
                let i = y * 256 + x;
                assert_eq!(mask[i], if inside { 255 } else { 0 }, "mask at {x},{y}");
                assert_eq!(masked[i], if inside { 0 } else { gray[i] }, "masked image at {x},{y}");
            }
        }
    }
    assert!(healthy >= 4 && lesions >= 4, "healthy {healthy}, lesion {lesions}: too few of one kind to test");

    // Straight to a training set: the very same metadata as through DICOM files.
    mam_e(&[&["phantom", "--format", "prepared", "--out", direct.to_str().unwrap()][..], &common[..]].concat());
    for folder in ["healthy", "lesions"] {
        let (a, b) = (prepared.join(folder).join("metadata.jsonl"), direct.join(folder).join("metadata.jsonl"));
        assert_eq!(std::fs::read_to_string(a).unwrap(), std::fs::read_to_string(b).unwrap(), "{folder}");
    }
}

/// A VinDr-layout folder of `count` healthy phantoms: the folder, its breast-level CSV lines
/// (header first) and each image's (study_id, image_id).
fn phantom_vindr(name: &str, count: usize, seed: u64) -> (PathBuf, Vec<String>, Vec<(String, String)>) {
    let raw = temp(name);
    let (count, seed) = (count.to_string(), seed.to_string());
    mam_e(&["phantom", "--out", raw.to_str().unwrap(), "--count", &count, "--width", "256", "--seed", &seed, "--lesion-fraction", "0"]);
    let rows: Vec<String> = std::fs::read_to_string(raw.join("breast-level_annotations.csv")).unwrap().lines().map(String::from).collect();
    let ids = rows[1..]
        .iter()
        .map(|r| {
            let f: Vec<&str> = r.split(',').collect();
            (f[0].to_string(), f[2].to_string())
        })
        .collect();
    (raw, rows, ids)
}

/// `prepare`'s skipped entries in `out_dir/summary.json`, as "file: reason" lines.
fn skipped_of(out_dir: &Path) -> Vec<String> {
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap()).unwrap();
    summary["skipped"].as_array().unwrap().iter().map(|s| format!("{}: {}", s["file"], s["reason"])).collect()
}

#[test]
fn prepare_reports_odd_inputs_per_file() {
    let (raw, rows, ids) = phantom_vindr("odd", 8, 4);
    let (breast_csv, finding_csv) = (raw.join("breast-level_annotations.csv"), raw.join("finding_annotations.csv"));
    let file = |k: usize| raw.join("images").join(&ids[k].0).join(format!("{}.dicom", ids[k].1));
    // 0: corrupt DICOM; 1: file deleted; 2: row removed from the breast-level CSV (file unlisted,
    // finding row orphaned); 3: a box entirely in the rows the centre crop removes; 4: a malformed
    // box; 5: an ML view.
    std::fs::write(file(0), b"DICM but not really").unwrap();
    std::fs::remove_file(file(1)).unwrap();
    let mut breast: Vec<String> = rows.iter().enumerate().filter(|(i, _)| *i != 3).map(|(_, r)| r.clone()).collect();
    breast[5] = breast[5].replace(",MLO,", ",ML,").replace(",CC,", ",ML,");
    std::fs::write(&breast_csv, breast.join("\n") + "\n").unwrap();
    let mut findings = std::fs::read_to_string(&finding_csv).unwrap();
    let row_for = |k: usize, text: &str| text.lines().find(|l| l.contains(&ids[k].1)).unwrap().to_string();
    let outside = row_for(3, &findings).replace("['No Finding'],,,,,", "['Mass'],BI-RADS 4,10,2,40,20");
    let malformed = row_for(4, &findings).replace("['No Finding'],,,,,", "['Mass'],BI-RADS 4,abc,2,40,20");
    findings = findings.replace(&row_for(3, &findings), &outside).replace(&row_for(4, &findings), &malformed);
    std::fs::write(&finding_csv, findings).unwrap();

    let out_dir = temp("odd-out");
    let out = mam_e(&["prepare", "--vindr", raw.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--size", "256"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let skipped = skipped_of(&out_dir);
    let has = |id: &str, reason: &str| skipped.iter().any(|s| s.contains(id) && s.contains(reason));
    assert!(has(&ids[0].1, "not a readable DICOM file"), "{skipped:#?}");
    assert!(has(&ids[1].1, "file missing"), "{skipped:#?}");
    assert!(has(&ids[2].1, "not listed in breast-level_annotations.csv"), "{skipped:#?}");
    assert!(has(&ids[2].1, "is not in breast-level_annotations.csv"), "{skipped:#?}");
    assert!(has(&ids[3].1, "outside the prepared image"), "{skipped:#?}");
    assert!(has("finding_annotations.csv", "is not four numbers"), "{skipped:#?}");
    assert!(has(&ids[5].1, "is not CC or MLO"), "{skipped:#?}");
    // The rest went through: 8 images minus the six above.
    assert!(stdout.contains("2 images prepared"), "{stdout}");

    // Generic CSV: 8-bit, MONOCHROME1, JPEG 2000, RLE, and an undecodable JPEG-LS file.
    let csv_dir = temp("generic");
    std::fs::create_dir_all(&csv_dir).unwrap();
    let mut csv = String::from("path,view,laterality,density,vendor\n");
    for name in ["eight_bit", "monochrome1", "jpeg2000_lossless", "rle_lossless", "jpeg_ls"] {
        std::fs::copy(fixture(&format!("{name}.dcm")), csv_dir.join(format!("{name}.dcm"))).unwrap();
        csv.push_str(&format!("{name}.dcm,CC,L,B,{}\n", if name == "eight_bit" { "SIEMENS" } else { "" }));
    }
    std::fs::write(csv_dir.join("list.csv"), csv).unwrap();
    let out_dir = temp("generic-out");
    mam_e(&["prepare", "--csv", csv_dir.join("list.csv").to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--size", "64"]);
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap()).unwrap();
    let skipped = summary["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{skipped:#?}");
    assert!(skipped[0]["reason"].as_str().unwrap().contains("JPEG-LS"), "{skipped:#?}");
    // 80×64 at size 64: no resize, rows 8..72 kept. Prepared = round(v / divisor · 255), clipped.
    for (name, divisor, monochrome1) in
        [("eight_bit", 255.0 * 3500.0 / 4095.0, false), ("monochrome1", 4095.0, true), ("jpeg2000_lossless", 4095.0, false), ("rle_lossless", 4095.0, false)]
    {
        let bytes = std::fs::read(fixture(&format!("{name}.expected.f32"))).unwrap();
        let source: Vec<f64> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect();
        let max = if name == "eight_bit" { 255.0 } else { 4095.0 };
        let gray = png(&out_dir.join("healthy").join(format!("{name}.png"))).to_gray();
        for y in 0..64 {
            for x in 0..64 {
                let v = source[(y + 8) * 64 + x];
                let v = if monochrome1 { max - v } else { v };
                let want = (v / divisor * 255.0).clamp(0.0, 255.0).round() as u8;
                assert_eq!(gray[y * 64 + x], want, "{name} at {x},{y}");
            }
        }
    }
}

#[test]
fn a_killed_preparation_resumes_to_the_same_result() {
    let raw = temp("resume-src");
    mam_e(&["phantom", "--out", raw.to_str().unwrap(), "--count", "40", "--width", "512", "--seed", "8"]);
    let (whole, killed) = (temp("resume-whole"), temp("resume-killed"));
    mam_e(&["prepare", "--vindr", raw.to_str().unwrap(), "--out", whole.to_str().unwrap()]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mam-e"))
        .args(["prepare", "--vindr", raw.to_str().unwrap(), "--out", killed.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Whatever exists under a final name is whole.
    for folder in ["healthy", "lesions", "lesions/masks", "lesions/masked"] {
        for entry in std::fs::read_dir(killed.join(folder)).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "png") && !path.file_name().unwrap().to_string_lossy().starts_with('.') {
                png(&path);
            }
        }
    }
    let out = mam_e(&["prepare", "--vindr", raw.to_str().unwrap(), "--out", killed.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("40 images prepared"), "{stdout}");
    for file in ["healthy/metadata.jsonl", "lesions/metadata.jsonl", "summary.json"] {
        assert_eq!(std::fs::read(whole.join(file)).unwrap(), std::fs::read(killed.join(file)).unwrap(), "{file}");
    }
    // A re-run over a finished set redoes nothing.
    let out = mam_e(&["prepare", "--vindr", raw.to_str().unwrap(), "--out", killed.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("(40 from an earlier run)"));
}

#[test]
fn bad_arguments_fail_clearly_and_touch_nothing() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_mam-e")).args(args).output().unwrap();
    // A phantom run into a folder with files in it is refused; the files stay.
    let busy = temp("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), "mine").unwrap();
    let out = run(&["phantom", "--count", "4", "--out", busy.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists and is not empty"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);
    // A folder that is not VinDr-Mammo: the missing CSV is named.
    let out_dir = temp("not-vindr-out");
    let out = run(&["prepare", "--vindr", busy.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("breast-level_annotations.csv"), "{}", String::from_utf8_lossy(&out.stderr));
    // A generic CSV without the required columns.
    std::fs::write(busy.join("list.csv"), "file,view\na.dcm,CC\n").unwrap();
    let out = run(&["prepare", "--csv", busy.join("list.csv").to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no column \"path\""), "{}", String::from_utf8_lossy(&out.stderr));
    // Sizes that are not multiples of 8 are refused before anything is read.
    let out = run(&["prepare", "--vindr", busy.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--size", "500"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("multiple of 8"));
}

/// Phantoms prepared as `prepare` does (`count` of them, seed `seed`, `size`²), labelled, by vendor.
fn labelled_phantoms(seed: u64, count: usize, size: usize) -> Vec<(Vendor, mam_e::data::measure::Labelled, f64)> {
    use mam_e::data::measure::Labelled;
    let options = phantom::DatasetOptions { seed, cols: size, lesion_fraction: 0.0, vendors: vec![Vendor::Siemens, Vendor::Hologic] };
    (0..count)
        .map(|index| {
            let spec = phantom::dataset_entry(&options, index).spec;
            let prepared = render(&spec, size).prepared(size);
            (spec.vendor, Labelled { gray: prepared.gray, size, view: spec.view, density: Some(spec.density) }, prepared.area_ratio)
        })
        .collect()
}

/// Per-vendor levels learned from `count` labelled phantoms (seed `seed`, `size`²), printed beside
/// the generator's own boundaries (which `measure` does not use).
fn calibrated_levels(seed: u64, count: usize, size: usize) -> Vec<(Vendor, mam_e::data::measure::Levels)> {
    let training = labelled_phantoms(seed, count, size);
    [Vendor::Siemens, Vendor::Hologic]
        .iter()
        .map(|&vendor| {
            let images: Vec<_> = training.iter().filter(|(v, _, _)| *v == vendor).map(|(_, l, _)| l.clone()).collect();
            let fit = mam_e::data::measure::calibrate(&images);
            println!("{vendor:?} at {size}²: {fit:?}; generator boundaries (dense, muscle) {:.1?}", generator_boundaries(vendor));
            (vendor, fit.levels)
        })
        .collect()
}

/// The phantom generator's own (dense, muscle) boundaries in prepared gray levels: halfway
/// between fat and gland, and between the brightest gland and the muscle.
fn generator_boundaries(vendor: Vendor) -> (f64, f64) {
    use mam_e::data::phantom::{gray_level, tissue_levels};
    let (fat, gland, muscle) = tissue_levels(vendor);
    (gray_level(vendor, 0.5 * (fat + gland)), gray_level(vendor, 0.5 * (gland + 0.07 + 0.97 * muscle)))
}

fn levels_of(levels: &[(Vendor, mam_e::data::measure::Levels)], vendor: Vendor) -> Option<mam_e::data::measure::Levels> {
    levels.iter().find(|(v, _)| *v == vendor).map(|(_, l)| *l)
}

/// Levels learned from one draw of labelled phantoms (`calibrate`) measure another draw as its
/// labels say; and they lie where the generator's tissue levels put the boundaries.
#[test]
fn measurements_calibrated_on_labelled_phantoms_agree_with_other_phantoms() {
    use mam_e::data::measure::measure;
    let levels = calibrated_levels(79, 160, 256);
    // Learned from labels alone, the levels land within 4 gray levels of the generator's own
    // boundaries (measured: 0.5 and 3.6 for dense tissue, 2.9 and 0.5 for the muscle).
    for (vendor, learned) in &levels {
        let (dense, muscle) = generator_boundaries(*vendor);
        assert!((learned.dense - dense).abs() <= 4.0 && (learned.muscle - muscle).abs() <= 4.0, "{vendor:?}: {learned:?} vs ({dense:.1}, {muscle:.1})");
    }
    let (mut area, mut view, mut density, test) = ([[0usize; 3]; 3], [[0usize; 2]; 2], [[0usize; 4]; 4], labelled_phantoms(77, 160, 256));
    for (vendor, image, area_ratio) in &test {
        let m = measure(&image.gray, 256, levels_of(&levels, *vendor));
        let idx = |a: Area| Area::ALL.iter().position(|&x| x == a).unwrap();
        area[idx(Area::from_ratio(*area_ratio))][idx(m.area)] += 1;
        view[(image.view == View::Mlo) as usize][(m.view == View::Mlo) as usize] += 1;
        let d = |d: Density| Density::ALL.iter().position(|&x| x == d).unwrap();
        density[d(image.density.unwrap())][d(m.density)] += 1;
    }
    let accuracy = |diag: usize| diag as f64 / test.len() as f64;
    let (a, v, d) = (accuracy((0..3).map(|i| area[i][i]).sum()), accuracy((0..2).map(|i| view[i][i]).sum()), accuracy((0..4).map(|i| density[i][i]).sum()));
    println!("area {a:.3} {area:?}\nview {v:.3} {view:?}\ndensity {d:.3} {density:?}");
    assert!(a >= 0.98 && v >= 0.98 && d >= 0.98, "area {a} {area:?}, view {v} {view:?}, density {d} {density:?}");
}

/// `eval calibrate` reads a prepared set (PNGs, labels) into the same levels `calibrate` learns
/// from those phantoms in memory; `eval adherence --calibration` measures with them; a file that
/// is not a calibration and a folder without a prepared set are named.
#[test]
fn eval_calibrate_writes_the_levels_adherence_measures_with() {
    let set = temp("calibrate-set");
    let file = temp("calibrate-out").join("calibration.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_string();
    mam_e(&[
        "phantom",
        "--format",
        "prepared",
        "--count",
        "48",
        "--width",
        "128",
        "--size",
        "128",
        "--lesion-fraction",
        "0",
        "--seed",
        "79",
        "--out",
        &path(&set),
    ]);
    let printed = String::from_utf8_lossy(&mam_e(&["eval", "calibrate", "--data", &path(&set), "--out", &path(&file)]).stdout).into_owned();
    let written: mam_e::data::measure::Calibration = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    for (vendor, levels) in calibrated_levels(79, 48, 128) {
        assert_eq!(written.levels(vendor.word()), Some(levels), "{vendor:?}: {written:?}");
        assert!(printed.contains(&format!("{}: dense above {:.1}, muscle from {:.1}", vendor.word(), levels.dense, levels.muscle)), "{printed}");
    }
    let report = String::from_utf8_lossy(&mam_e(&["eval", "adherence", "--phantoms", "--calibration", &path(&file), "--count", "4", "--size", "128"]).stdout)
        .into_owned();
    assert!(report.contains("hologic: dense above") && report.contains("view: ") && !report.contains("labelled phantoms"), "{report}");
    let not_one = set.join("healthy/metadata.jsonl");
    let out = support::cli::run(&["eval", "adherence", "--phantoms", "--calibration", &path(&not_one), "--count", "1", "--size", "64"], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a calibration"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = support::cli::run(&["eval", "calibrate", "--data", "/nonexistent/set", "--out", &path(&file)], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("healthy/metadata.jsonl"), "{}", String::from_utf8_lossy(&out.stderr));
    // A set none of whose rows can be used is refused, each row's reason printed, and the
    // calibration written above is left as it was.
    let unusable = temp("calibrate-unusable").join("healthy");
    std::fs::create_dir_all(&unusable).unwrap();
    let rows: Vec<String> = std::fs::read_to_string(&not_one)
        .unwrap()
        .lines()
        .map(|line| {
            let mut row: serde_json::Value = serde_json::from_str(line).unwrap();
            row["view"] = "LAT".into();
            row.to_string()
        })
        .collect();
    std::fs::write(unusable.join("metadata.jsonl"), rows.join("\n")).unwrap();
    let before = std::fs::read(&file).unwrap();
    let out = support::cli::run(&["eval", "calibrate", "--data", &path(unusable.parent().unwrap()), "--out", &path(&file)], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("no usable labelled images"), "{stderr}");
    assert_eq!(stderr.matches("view \"LAT\" is neither CC nor MLO").count(), rows.len(), "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), before, "the earlier calibration was changed");
}

/// The levels are the middle of the best run: a label set any level in a range satisfies gets
/// that range's middle, and labels no level can all satisfy get the level most of them agree on.
#[test]
fn calibration_picks_the_middle_of_the_levels_that_fit_best() {
    use mam_e::data::measure::{Labelled, calibrate};
    // A flat breast at `tissue` (chest wall to the right edge, 64²) with a bright 20×20 corner block
    // (`corner` gray) as the muscle, or none.
    let image = |tissue: u8, corner: Option<u8>, view: View, density: Density| {
        let size = 64;
        let mut gray = vec![tissue; size * size];
        if let Some(c) = corner {
            for y in 0..20 {
                for x in 0..20 {
                    gray[y * size + x] = c;
                }
            }
        }
        Labelled { gray, size, view, density: Some(density) }
    };
    // MLO muscles at 200 and 220, CC corners at 150 (tissue): the muscle level fits anywhere in
    // 151..=200, so it is 175.5; density D (all dense) at tissue 150 and A (none) at 100: dense
    // levels 100..=149 fit both, so 124.5.
    let fit = calibrate(&[
        image(150, Some(200), View::Mlo, Density::D),
        image(150, Some(220), View::Mlo, Density::D),
        image(150, None, View::Cc, Density::D),
        image(100, None, View::Cc, Density::A),
    ]);
    assert_eq!((fit.levels.muscle, fit.levels.dense), (175.5, 124.5), "{fit:?}");
    assert_eq!((fit.view_agreement, fit.density_agreement), (1.0, 1.0));
}

/// A decoder darkens an image's outermost pixels (its convolutions pad with zeros): an MLO view
/// whose first row and column came out dark still has its pectoral muscle found.
#[test]
fn the_pectoral_muscle_is_found_behind_a_dark_image_border() {
    use mam_e::data::measure::measure;
    let options = phantom::DatasetOptions { seed: 78, cols: 256, lesion_fraction: 0.0, vendors: vec![Vendor::Siemens, Vendor::Hologic] };
    let (mut checked, size) = (0, 128);
    let calibration = calibrated_levels(79, 160, size);
    for index in 0..40 {
        let entry = phantom::dataset_entry(&options, index);
        if entry.spec.view != View::Mlo {
            continue;
        }
        let levels = levels_of(&calibration, entry.spec.vendor);
        let prepared = render(&entry.spec, size).prepared(size);
        let clean = measure(&prepared.gray, size, levels);
        if clean.view != View::Mlo {
            continue; // the measurement's own misses are counted by the test above
        }
        let mut bordered = prepared.gray.clone();
        for k in 0..size {
            for i in [k, k * size] {
                bordered[i] = bordered[i].saturating_sub(25);
            }
        }
        let m = measure(&bordered, size, levels);
        assert_eq!(m.view, View::Mlo, "phantom {index}: muscle share {:.3} → {:.3} behind a dark border", clean.pectoral_share, m.pectoral_share);
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} MLO phantoms checked");
}

/// A copy of `from` with `edit` applied to its data set (dicom-rs, as a stranger's tool might write).
fn edited_dicom(from: &Path, to: &Path, edit: impl FnOnce(&mut dicom_object::DefaultDicomObject)) {
    let mut obj = dicom_object::open_file(from).unwrap();
    edit(&mut obj);
    obj.write_to_file(to).unwrap();
}

/// Ids from CSVs name files: an image_id with `../` is skipped (before, prepare wrote its PNG
/// outside the output folder), one listed twice is reported, and generic-CSV paths that flatten
/// to one output name are reported; a header claiming a huge image is refused before decoding.
/// Each is one file's skip reason; the run goes on.
#[test]
fn untrusted_ids_and_headers_are_skipped_per_file() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let (raw, rows, ids) = phantom_vindr("untrusted", 4, 9);
    let (breast_csv, finding_csv) = (raw.join("breast-level_annotations.csv"), raw.join("finding_annotations.csv"));
    let file = |k: usize| raw.join("images").join(&ids[k].0).join(format!("{}.dicom", ids[k].1));
    // 0: image_id "../../escape", whose file exists where that path leads; 1: listed twice;
    // 2: a header claiming 60000 × 60000 pixels.
    std::fs::copy(file(0), raw.join("escape.dicom")).unwrap();
    let escape = "../../escape";
    let mut breast = rows.clone();
    breast[1] = breast[1].replace(&ids[0].1, escape);
    breast.push(rows[2].clone());
    std::fs::write(&breast_csv, breast.join("\n") + "\n").unwrap();
    let findings = std::fs::read_to_string(&finding_csv).unwrap().replace(&ids[0].1, escape);
    std::fs::write(&finding_csv, findings).unwrap();
    edited_dicom(&file(2), &file(2), |obj| {
        obj.put(DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(60000u16)));
        obj.put(DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(60000u16)));
    });

    let out_dir = temp("untrusted-out").join("set");
    let out = mam_e(&["prepare", "--vindr", raw.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--size", "256"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let skipped = skipped_of(&out_dir);
    let has = |id: &str, reason: &str| skipped.iter().any(|s| s.contains(id) && s.contains(reason));
    assert!(has("escape", "not a plain name"), "{skipped:#?}");
    assert!(has(&ids[1].1, "listed twice"), "{skipped:#?}");
    assert!(has(&ids[2].1, "60000×60000 pixels"), "{skipped:#?}");
    assert!(stdout.contains("2 images prepared"), "{stdout}");
    for folder in [out_dir.parent().unwrap(), out_dir.parent().unwrap().parent().unwrap()] {
        assert!(!folder.join("escape.png").exists() && !folder.join("escape.json").exists(), "wrote outside the output folder: {}", folder.display());
    }

    // Generic CSV: "a/b.dcm" and "a_b.dcm" both flatten to the output name "a_b".
    let generic = temp("collide");
    std::fs::create_dir_all(generic.join("a")).unwrap();
    std::fs::copy(file(3), generic.join("a/b.dcm")).unwrap();
    std::fs::copy(file(3), generic.join("a_b.dcm")).unwrap();
    std::fs::write(generic.join("list.csv"), "path,view,laterality\na/b.dcm,CC,L\na_b.dcm,CC,L\n").unwrap();
    let (records, skipped) = mam_e::data::vindr::read_generic_csv(&generic.join("list.csv")).unwrap();
    assert_eq!(records.len(), 1);
    assert!(skipped.iter().any(|s| s.file.contains("a_b.dcm") && s.reason.contains("\"a_b\" is also \"a/b.dcm\"")), "{skipped:#?}");
}

/// A VOI LUT table of 40-bit, 0-bit or no entries is the file's error, named: before, dicom-rs's
/// refusal of the first and last was dropped and the window used instead (another image than the
/// file says), and 0 bits left an empty output range.
#[test]
fn impossible_voi_lut_tables_are_refused() {
    use dicom_core::value::DataSetSequence;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let source = fixture("voi_lut_sequence.dcm");
    for (name, bits, empty) in [("forty-bits", 40u16, false), ("zero-bits", 0, false), ("no-entries", 16, true)] {
        let path = temp(&format!("voi-{name}.dcm"));
        edited_dicom(&source, &path, |obj| {
            let mut item = obj.element(tags::VOILUT_SEQUENCE).unwrap().items().unwrap()[0].clone();
            let descriptor: Vec<u16> = item.element(tags::LUT_DESCRIPTOR).unwrap().to_multi_int().unwrap();
            let entries = if empty { 0 } else { descriptor[0] };
            item.put(DataElement::new(tags::LUT_DESCRIPTOR, VR::US, PrimitiveValue::from([entries, descriptor[1], bits])));
            if empty {
                item.put(DataElement::new(tags::LUT_DATA, VR::US, PrimitiveValue::Empty));
            }
            obj.put(DataElement::new(tags::VOILUT_SEQUENCE, VR::SQ, DataSetSequence::from(vec![item])));
        });
        let error = dicom::read(&path).err().unwrap_or_else(|| panic!("{name}: read"));
        assert!(error.contains("VOI LUT"), "{name}: {error}");
        assert!(!error.contains("panic") && !error.contains("decoder failed"), "{name}: a panic, contained: {error}");
    }
}
