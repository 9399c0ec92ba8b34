//! `mam-e synth` as a researcher runs it, on the demo models: one dataset whatever the batch
//! size, sharding (flag, Slurm's and Kubernetes' environment) or a kill -9 in the middle; lesion
//! cases whose lesion stays in its box inside the breast; DICOM output that `prepare` reads back
//! to the same pixels; and bad input refused by name, with nothing left looking complete.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mam_e::imaging::RgbImage;
use serde_json::Value;
use support::cli::{assert_same_tree, fails, ok, png_parameters, run, temp_dir};

fn model(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("static/models").join(name).to_string_lossy().into_owned()
}

fn temp(name: &str) -> PathBuf {
    temp_dir("synth", name)
}

/// The dataset most tests make: `count` images, about half with lesions, 3 denoising steps
/// each, seed 11 unless `extra` gives one.
fn synth_args(out: &Path, count: usize, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["synth", "--model", &model("demo"), "--inpaint-model", &model("demo-inpaint"), "--steps", "3", "--lesion-steps", "3"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if !extra.contains(&"--seed") {
        args.extend(["--seed", "11"].map(String::from));
    }
    args.extend(["--lesion-fraction", "0.5", "--count", &count.to_string(), "--out", out.to_str().unwrap()].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `synth_args` drawing labels `--like` a prepared set instead of from a lesion fraction.
fn like_args(out: &Path, count: usize, set: &Path) -> Vec<String> {
    let mut args: Vec<String> = synth_args(out, count, &[]).into_iter().filter(|a| a != "--lesion-fraction" && a != "0.5").collect();
    args.extend(["--like".into(), set.to_string_lossy().into_owned()]);
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn records(root: &Path) -> Vec<Value> {
    ["healthy", "lesions"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(root.join(f).join("metadata.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<Value>>()
        })
        .collect()
}

fn read_png(path: &Path) -> RgbImage {
    RgbImage::from_png(&std::fs::read(path).unwrap()).unwrap()
}

const COUNT: usize = 8;

#[test]
fn one_dataset_whatever_the_batch_size_sharding_or_a_kill() {
    let whole = temp("whole");
    ok(&strs(&synth_args(&whole, COUNT, &[])));
    check_contents(&whole);

    let batched = temp("batched");
    ok(&strs(&synth_args(&batched, COUNT, &["--batch-size", "3"])));
    assert_same_tree(&whole, &batched);

    // Three shards, as a flag, as a Slurm array task, as a Kubernetes Indexed Job.
    let sharded = temp("sharded");
    ok(&strs(&synth_args(&sharded, COUNT, &["--shard", "0/3"])));
    let slurm = run(&strs(&synth_args(&sharded, COUNT, &[])), &[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_COUNT", "3")]);
    assert!(slurm.status.success(), "{}", String::from_utf8_lossy(&slurm.stderr));
    let k8s = run(&strs(&synth_args(&sharded, COUNT, &["--shards", "3"])), &[("JOB_COMPLETION_INDEX", "2")]);
    assert!(k8s.status.success(), "{}", String::from_utf8_lossy(&k8s.stderr));
    let parts: Vec<String> = (0..3).map(|k| sharded.join(format!("part-{k:04}-of-0003")).to_string_lossy().into_owned()).collect();
    let merged = temp("merged");
    let mut merge = vec!["synth", "merge"];
    merge.extend(parts.iter().map(String::as_str));
    merge.extend(["--out", merged.to_str().unwrap()]);
    ok(&merge);
    assert_same_tree(&whole, &merged);

    // kill -9 after the first image, then the same command again.
    let killed = temp("killed");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mam-e")).args(synth_args(&killed, COUNT, &[])).spawn().unwrap();
    let started = Instant::now();
    let done = |dir: &Path| std::fs::read_dir(dir.join(".records")).map_or(0, |d| d.count());
    while done(&killed) == 0 {
        assert!(started.elapsed() < Duration::from_secs(300), "no image within 5 minutes");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = done(&killed);
    assert!(before < COUNT, "the run finished before it was killed ({before} images)");
    let rerun = ok(&strs(&synth_args(&killed, COUNT, &[])));
    assert!(rerun.contains(&format!("{} images made", COUNT - before)) && rerun.contains(&format!("{before} already there")), "{rerun}");
    assert_same_tree(&whole, &killed);
}

/// What each image's record says is what its files show.
fn check_contents(root: &Path) {
    let records = records(root);
    assert_eq!(records.len(), COUNT);
    let mut indices: Vec<u64> = records.iter().map(|r| r["index"].as_u64().unwrap()).collect();
    indices.sort();
    assert_eq!(indices, (0..COUNT as u64).collect::<Vec<_>>());
    let lesions = records.iter().filter(|r| r.get("mask_file_name").is_some()).count();
    assert!((1..COUNT).contains(&lesions), "{lesions} lesion cases of {COUNT} at a fraction of 0.5");
    let density_words = |d: &str| match d {
        "A" => "very low",
        "B" => "low",
        "C" => "high",
        _ => "very high",
    };
    for r in &records {
        let s = |k: &str| r[k].as_str().unwrap().to_string();
        let healthy_prompt = format!("a {} mammogram in {} view with {} density and {} area", s("vendor"), s("view"), density_words(&s("density")), s("area"));
        assert_eq!(r["synthetic"], true);
        assert_eq!(r["seed"].as_u64().unwrap(), 11 + r["index"].as_u64().unwrap());
        let lesion = r.get("mask_file_name").is_some();
        let folder = root.join(if lesion { "lesions" } else { "healthy" });
        let (parameters, size) = png_parameters(&folder.join(s("file_name")));
        assert_eq!(&parameters, r, "the PNG carries its record");
        assert_eq!(size, (128, 128));
        let image = read_png(&folder.join(s("file_name")));
        // The model draws left breasts (chest wall on the left); right ones are mirrored.
        let gray = image.to_gray();
        let half = |left: bool| gray.chunks(128).flat_map(|row| if left { &row[..64] } else { &row[64..] }).map(|&g| g as u64).sum::<u64>();
        assert_eq!(half(true) > half(false), s("laterality") == "L", "{}: breast on the wrong side", s("id"));
        if !lesion {
            assert_eq!(s("prompt"), healthy_prompt);
            continue;
        }
        assert_eq!(s("prompt"), "a mammogram with a lesion");
        assert_eq!(s("healthy_prompt"), healthy_prompt);
        let b = &r["boxes"][0];
        let [x0, y0, x1, y1] = ["x0", "y0", "x1", "y1"].map(|k| b[k].as_u64().unwrap() as usize);
        assert!((12..=25).contains(&(x1 - x0)) && (12..=25).contains(&(y1 - y0)), "box {b} of the default 10–20 % sides");
        let mask = read_png(&folder.join(s("mask_file_name"))).to_gray();
        let original = read_png(&folder.join(s("original_file_name")));
        let mut changed_inside = 0;
        for y in 0..128 {
            for x in 0..128 {
                let (i, inside) = (y * 128 + x, (x0..x1).contains(&x) && (y0..y1).contains(&y));
                assert_eq!(mask[i], if inside { 255 } else { 0 }, "mask at {x},{y}");
                let same = image.pixels[3 * i..3 * i + 3] == original.pixels[3 * i..3 * i + 3];
                assert!(inside || same, "{}: changed outside the box at {x},{y}", s("id"));
                changed_inside += (!same) as usize;
            }
        }
        assert!(changed_inside > 0, "{}: nothing painted in the box", s("id"));
        if r["box_inside_breast"] == true {
            let original = original.to_gray();
            let breast = (y0..y1).flat_map(|y| (x0..x1).map(move |x| (x, y))).filter(|&(x, y)| original[y * 128 + x] > 12).count();
            assert_eq!(breast, (x1 - x0) * (y1 - y0), "{}: box leaves the breast", s("id"));
        }
    }
}

/// DICOM output: marked synthetic, labelled, and `prepare --csv labels.csv` gives back the PNG
/// run's pixels (through the 12-bit values the vendor scaling maps back) and boxes.
#[test]
fn dicom_output_round_trips_through_prepare() {
    let (png, dicom, prepared) = (temp("rt-png"), temp("rt-dicom"), temp("rt-prepared"));
    ok(&strs(&synth_args(&png, 4, &[])));
    ok(&strs(&synth_args(&dicom, 4, &["--format", "dicom"])));
    ok(&["prepare", "--csv", dicom.join("labels.csv").to_str().unwrap(), "--out", prepared.to_str().unwrap(), "--size", "128"]);
    let made = records(&png);
    let back = records(&prepared);
    assert_eq!(made.len(), back.len());
    for r in &made {
        let id = r["id"].as_str().unwrap();
        let lesion = r.get("mask_file_name").is_some();
        let folder = if lesion { "lesions" } else { "healthy" };
        let p = back.iter().find(|b| b["id"] == format!("{folder}_{id}")).unwrap_or_else(|| panic!("{id} not prepared"));
        for key in ["view", "laterality", "density", "vendor"] {
            assert_eq!(p[key], r[key], "{id}: {key}");
        }
        // prepare stores left-facing images: mirror the PNG run's right ones.
        let mut want = read_png(&png.join(folder).join(r["file_name"].as_str().unwrap())).to_gray();
        if r["laterality"] == "R" {
            want = want.chunks(128).flat_map(|row| row.iter().rev().copied()).collect();
        }
        let got = read_png(&prepared.join(folder).join(p["file_name"].as_str().unwrap())).to_gray();
        assert!(got == want, "{id}: prepared pixels differ from the PNG run's");
        if lesion {
            let b = &r["boxes"][0];
            let [x0, x1] = ["x0", "x1"].map(|k| b[k].as_u64().unwrap());
            let want_x = if r["laterality"] == "R" { [128 - x1, 128 - x0] } else { [x0, x1] };
            let got = &p["boxes"][0];
            assert_eq!([got["x0"].as_u64().unwrap(), got["x1"].as_u64().unwrap()], want_x, "{id}: box");
            assert_eq!(got["y0"], b["y0"]);
            assert_eq!(got["y1"], b["y1"]);
        }
        let file = dicom.join(folder).join(format!("{id}.dcm"));
        let obj = dicom_object::open_file(&file).unwrap();
        let text = |tag| obj.element(tag).unwrap().to_str().unwrap().trim_end_matches(['\0', ' ']).to_string();
        use dicom_dictionary_std::tags;
        assert_eq!(text(tags::IMAGE_TYPE), "DERIVED\\SECONDARY");
        assert!(text(tags::SERIES_DESCRIPTION).starts_with("SYNTHETIC"));
        assert!(text(tags::DERIVATION_DESCRIPTION).starts_with("SYNTHETIC IMAGE, NOT OF A PATIENT"));
        assert!(text(tags::DERIVATION_DESCRIPTION).contains(r["model_sha256"].as_str().unwrap()));
        assert_eq!(text(tags::PATIENT_ID), "SYNTHETIC");
        assert_eq!(text(tags::IMAGE_LATERALITY), r["laterality"].as_str().unwrap());
        assert_eq!(text(tags::VIEW_POSITION), r["view"].as_str().unwrap());
        assert!(text(tags::SOP_INSTANCE_UID).starts_with("2.25."));
    }
}

/// `--like` copies a prepared set's joint label distribution and its box sizes.
#[test]
fn like_copies_a_prepared_sets_labels() {
    let (set, out) = (temp("like-set"), temp("like-out"));
    ok(&[
        "phantom",
        "--format",
        "prepared",
        "--out",
        set.to_str().unwrap(),
        "--count",
        "12",
        "--width",
        "256",
        "--size",
        "128",
        "--lesion-fraction",
        "0.5",
        "--seed",
        "3",
    ]);
    let real = records(&set);
    let key =
        |r: &Value| ["vendor", "view", "density", "area", "laterality"].map(|k| r[k].to_string()).join(" ") + &r.get("mask_file_name").is_some().to_string();
    let real_keys: Vec<String> = real.iter().map(key).collect();
    let mut sides: Vec<u64> =
        real.iter().flat_map(|r| r["boxes"].as_array().cloned().unwrap_or_default()).map(|b| b["x1"].as_u64().unwrap() - b["x0"].as_u64().unwrap()).collect();
    sides.sort();
    ok(&strs(&like_args(&out, 10, &set)));
    for r in records(&out) {
        assert!(real_keys.contains(&key(&r)), "{} is not a label combination of the set", key(&r));
        if let Some(b) = r["boxes"].get(0) {
            let w = b["x1"].as_u64().unwrap() - b["x0"].as_u64().unwrap();
            assert!((sides[0]..=sides[sides.len() - 1]).contains(&w), "box width {w} outside the set's {sides:?}");
        }
    }
}

#[test]
fn bad_input_is_refused_by_name() {
    let out = temp("bad");
    let refused = |extra: &[&str], expected: &str| {
        let err = fails(&strs(&synth_args(&out, 4, extra)));
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
        assert!(!out.join("healthy/metadata.jsonl").exists(), "{extra:?} left a dataset behind");
    };
    refused(&["--vendor", "ge=1"], "unknown value \"ge\"");
    refused(&["--density", "a=0.5,b=0.4"], "sum to 0.9");
    refused(&["--view", "cc=0.5,cc=0.5"], "twice");
    refused(&["--shard", "3/3"], "need 0 ≤ K < N");
    refused(&["--box-size", "100-200"], "do not fit in 128×128");
    let err = fails(&strs(&like_args(&out, 4, out.parent().unwrap())));
    assert!(err.contains("no healthy/metadata.jsonl"), "{err}");
    let no_inpaint: Vec<String> = synth_args(&out, 4, &[]).into_iter().filter(|a| !a.contains("demo-inpaint") && a != "--inpaint-model").collect();
    let err = fails(&strs(&no_inpaint));
    assert!(err.contains("lesion cases need --inpaint-model"), "{err}");
    let swapped: Vec<String> = synth_args(&out, 4, &[]).into_iter().map(|a| if a.ends_with("demo-inpaint") { model("demo") } else { a }).collect();
    let err = fails(&strs(&swapped));
    assert!(err.contains("is a text-to-image model"), "{err}");
    let err = run(&strs(&synth_args(&out, 4, &[])), &[("JOB_COMPLETION_INDEX", "1")]);
    assert!(String::from_utf8_lossy(&err.stderr).contains("give --shards N"), "{}", String::from_utf8_lossy(&err.stderr));

    // A folder holding something else, or another dataset, is not written into.
    let other = temp("bad-other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    assert!(fails(&strs(&synth_args(&other, 4, &[]))).contains("not a `mam-e synth` output"));
    let made = temp("bad-made");
    ok(&strs(&synth_args(&made, 2, &[])));
    let err = fails(&strs(&synth_args(&made, 2, &["--seed", "12"])));
    assert!(err.contains("other settings (seed: 11 ≠ 12)"), "{err}");

    // Merging: a shard missing, a shard twice, parts of different datasets, an unfinished part.
    let parts = temp("bad-parts");
    for k in 0..2 {
        ok(&strs(&synth_args(&parts, 4, &["--shard", &format!("{k}/2")])));
    }
    let (p0, p1) = (parts.join("part-0000-of-0002"), parts.join("part-0001-of-0002"));
    let merge = |inputs: &[&Path]| {
        let mut args = vec!["synth".to_string(), "merge".into()];
        args.extend(inputs.iter().map(|p| p.to_string_lossy().into_owned()));
        args.extend(["--out".into(), temp("bad-merged").to_string_lossy().into_owned()]);
        fails(&strs(&args))
    };
    assert!(merge(&[&p0]).contains("shards 1/2 are missing"));
    assert!(merge(&[&p0, &p0]).contains("shard 0/2 is given twice"));
    let foreign = temp("bad-foreign");
    ok(&strs(&synth_args(&foreign, 4, &["--shard", "1/2", "--seed", "12"])));
    assert!(merge(&[&p0, &foreign.join("part-0001-of-0002")]).contains("different settings (seed: 11 ≠ 12)"));
    std::fs::remove_file(p1.join("part.json")).unwrap();
    assert!(merge(&[&p0, &p1]).contains("is not a finished part"));
    assert!(!temp("bad-merged").exists());
}

/// Unmounts a test's small tmpfs when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// A tmpfs of `size` (mount's syntax, e.g. 120k) at `dir`; needs root, as `scripts/test` runs.
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).output().unwrap();
        assert!(out.status.success(), "this test mounts a small tmpfs to fill a disk and needs root: {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs(dir.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let out = std::process::Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A disk that fills up mid-run: the image being written fails with the system's reason, no
/// half-written file or metadata is left looking complete, and the same command on a disk with
/// room completes the dataset with the bytes of an uninterrupted run.
#[test]
fn a_full_disk_fails_the_image_and_a_rerun_completes() {
    let whole = temp("disk-whole");
    ok(&strs(&synth_args(&whole, COUNT, &[])));
    let disk = Tmpfs::mount(&temp("disk"), "120k");
    let out = disk.0.join("synth");
    let err = fails(&strs(&synth_args(&out, COUNT, &[])));
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("cannot write synth-"), "the failing image is named: {err}");
    assert!(!out.join("healthy/metadata.jsonl").exists() && !out.join("lesions/metadata.jsonl").exists());
    let finished = std::fs::read_dir(out.join(".records")).unwrap().count();
    assert!(finished < COUNT, "the disk did not fill ({finished} images)");
    for r in std::fs::read_dir(out.join(".records")).unwrap() {
        let record: Value = serde_json::from_slice(&std::fs::read(r.unwrap().path()).unwrap()).unwrap();
        let folder = out.join(if record.get("mask_file_name").is_some() { "lesions" } else { "healthy" });
        read_png(&folder.join(record["file_name"].as_str().unwrap()));
    }
    disk.resize("20m");
    ok(&strs(&synth_args(&out, COUNT, &[])));
    assert_same_tree(&whole, &out);
}
