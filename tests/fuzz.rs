//! Mutation fuzzing of every parser of untrusted bytes: package manifests, model and scheduler
//! configs, safetensors headers, DICOM files, the generic dataset CSV and PNG uploads. Each starts
//! from real examples (the embedded package, the fixtures, diffusers' saved configs) and runs
//! mutated copies — byte flips, insertions, deletions, truncations, interesting integers, and for
//! JSON values swapped for extreme ones — through the parser and the checks that follow it before
//! any allocation by size. A panic is a failure; errors are the point.
//!
//! `MAM_E_FUZZ_CASES` sets the cases per parser (default 3000, a few seconds each; DICOM, which
//! decodes whole images, runs a tenth of them);
//! `MAM_E_FUZZ_SEED` the generator's seed. `scripts/fuzz` runs long campaigns.
#![cfg(not(target_arch = "wasm32"))]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use mam_e::rng::NoiseRng;
use serde_json::Value;

fn cases() -> usize {
    std::env::var("MAM_E_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000)
}

fn seed() -> u64 {
    std::env::var("MAM_E_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(2024)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn below(rng: &mut NoiseRng, n: usize) -> usize {
    if n == 0 { 0 } else { (rng.next_u64() % n as u64) as usize }
}

const INTERESTING: [u64; 12] = [0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, u64::MAX];

/// One byte-level mutation of `bytes`.
fn mutate_bytes(rng: &mut NoiseRng, bytes: &mut Vec<u8>) {
    let len = bytes.len();
    match below(rng, 7) {
        0 if len > 0 => {
            let i = below(rng, len);
            bytes[i] ^= 1 << below(rng, 8);
        }
        1 if len > 0 => {
            let i = below(rng, len);
            bytes[i] = INTERESTING[below(rng, 5)] as u8;
        }
        2 => {
            let at = below(rng, len + 1);
            let n = 1 + below(rng, 16);
            let inserted: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            bytes.splice(at..at, inserted);
        }
        3 if len > 0 => {
            let at = below(rng, len);
            let n = 1 + below(rng, (len - at).min(64));
            bytes.drain(at..at + n);
        }
        4 => bytes.truncate(below(rng, len + 1)),
        5 if len >= 4 => {
            let at = below(rng, len - 3);
            let value = INTERESTING[below(rng, INTERESTING.len())] as u32;
            let value = if rng.next_u64() & 1 == 0 { value.to_le_bytes() } else { value.to_be_bytes() };
            bytes[at..at + 4].copy_from_slice(&value);
        }
        6 if len > 1 => {
            // Copy a chunk over another place (repeats structure, e.g. a tag or a JSON key).
            let (from, to) = (below(rng, len), below(rng, len));
            let n = 1 + below(rng, (len - from).min(len - to).min(32));
            let chunk = bytes[from..from + n].to_vec();
            bytes[to..to + n].copy_from_slice(&chunk);
        }
        _ => bytes.push(rng.next_u64() as u8),
    }
}

/// Extreme values for a JSON leaf.
fn extreme(rng: &mut NoiseRng) -> Value {
    let choices = [
        serde_json::json!(0),
        serde_json::json!(-1),
        serde_json::json!(1),
        serde_json::json!(3),
        serde_json::json!(1e308),
        serde_json::json!(-1e308),
        serde_json::json!(4_294_967_296u64),
        serde_json::json!(u64::MAX),
        serde_json::json!(i64::MIN),
        serde_json::json!(0.5),
        serde_json::json!([]),
        serde_json::json!([0]),
        serde_json::json!({}),
        serde_json::json!(null),
        serde_json::json!(""),
        serde_json::json!("../../etc/passwd"),
        serde_json::json!(true),
        serde_json::json!("x".repeat(300)),
    ];
    choices[below(rng, choices.len())].clone()
}

/// All leaves and containers of `value`, as JSON pointers.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => map.iter().for_each(|(k, v)| pointers(v, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out)),
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| pointers(v, format!("{at}/{i}"), out)),
        _ => {}
    }
}

/// A structure-aware mutation: a value replaced, removed, or an array grown or emptied.
fn mutate_json(rng: &mut NoiseRng, value: &mut Value) {
    let mut all = Vec::new();
    pointers(value, String::new(), &mut all);
    let pointer = all[below(rng, all.len())].clone();
    if pointer.is_empty() {
        *value = extreme(rng);
        return;
    }
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let replacement = extreme(rng);
    let remove = rng.next_u64().is_multiple_of(4);
    match value.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            let key = key.replace("~1", "/").replace("~0", "~");
            if remove {
                map.remove(&key);
            } else {
                map.insert(key, replacement);
            }
        }
        Some(Value::Array(items)) => {
            let i: usize = key.parse().unwrap();
            match below(rng, 3) {
                0 => {
                    items.remove(i);
                }
                1 => {
                    let copy = items[i].clone();
                    items.extend(std::iter::repeat_n(copy, 1 + below(rng, 40)));
                }
                _ => items[i] = replacement,
            }
        }
        _ => {}
    }
}

/// A mutated copy of one of `seeds`: JSON seeds are mutated as values half of the time.
fn mutant(rng: &mut NoiseRng, seeds: &[Vec<u8>], json: bool) -> Vec<u8> {
    let seed = &seeds[below(rng, seeds.len())];
    if json
        && rng.next_u64() & 1 == 0
        && let Ok(mut value) = serde_json::from_slice::<Value>(seed)
    {
        for _ in 0..1 + below(rng, 3) {
            mutate_json(rng, &mut value);
        }
        return value.to_string().into_bytes();
    }
    let mut bytes = seed.clone();
    for _ in 0..1 + below(rng, 4) {
        mutate_bytes(rng, &mut bytes);
    }
    bytes
}

/// Runs `parse` on `cases()` mutants; panics (with the first panicking input saved) if any panicked.
fn fuzz(name: &str, seeds: Vec<Vec<u8>>, json: bool, parse: impl Fn(&[u8]) -> bool) {
    fuzz_cases(name, cases(), seeds, json, parse)
}

fn fuzz_cases(name: &str, total: usize, seeds: Vec<Vec<u8>>, json: bool, parse: impl Fn(&[u8]) -> bool) {
    let mut rng = NoiseRng::new(seed() ^ name.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)));
    // The seeds themselves must parse without panicking too.
    let mut inputs: Vec<Vec<u8>> = seeds.clone();
    let (mut panics, mut accepted, mut first) = (0, 0, None);
    let start = std::time::Instant::now();
    for case in 0..total + seeds.len() {
        let input = if case < inputs.len() { std::mem::take(&mut inputs[case]) } else { mutant(&mut rng, &seeds, json) };
        match catch_unwind(AssertUnwindSafe(|| parse(&input))) {
            Ok(ok) => accepted += ok as usize,
            Err(_) => {
                panics += 1;
                first.get_or_insert(input);
            }
        }
    }
    eprintln!("{name}: {} cases in {:.1} s, {accepted} accepted, {panics} panics", total + seeds.len(), start.elapsed().as_secs_f64());
    if let Some(input) = first {
        let saved = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-{name}.bin"));
        std::fs::write(&saved, &input).unwrap();
        panic!("{name}: {panics} of {total} inputs panicked; the first is in {}", saved.display());
    }
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(root().join(path)).unwrap()
}

fn manifest_seeds() -> Vec<Vec<u8>> {
    ["tests/fixtures/packages/tiny-sd", "tests/fixtures/packages/tiny-sd-inpaint", "static/models/demo", "static/models/demo-inpaint"]
        .iter()
        .map(|p| read(format!("{p}/manifest.json")))
        .collect()
}

fn config_seeds(component: &str) -> Vec<Vec<u8>> {
    manifest_seeds().iter().map(|m| serde_json::from_slice::<Value>(m).unwrap()["configs"][component].to_string().into_bytes()).collect()
}

#[test]
fn manifests() {
    use mam_e::package::{Manifest, ModelKind};
    fuzz("manifest", manifest_seeds(), true, |bytes| {
        let Ok(text) = std::str::from_utf8(bytes) else { return false };
        let Ok(manifest) = Manifest::parse(text) else { return false };
        let _ = manifest.total_bytes();
        let _ = manifest.check_fits_the_cpu_path();
        let _ = (manifest.kind == ModelKind::Inpainting, manifest.defaults.scheduler.parse::<mam_e::schedulers::SchedulerKind>());
        manifest.check_files().is_ok()
    });
}

#[test]
fn model_configs() {
    use mam_e::model::{clip::ClipTextConfig, unet::UNet2DConditionConfig, vae::AutoencoderKlConfig};
    let text = |bytes: &[u8]| std::str::from_utf8(bytes).map(str::to_string).ok();
    fuzz("unet-config", config_seeds("unet"), true, |b| text(b).is_some_and(|t| UNet2DConditionConfig::from_json(&t).is_ok()));
    fuzz("vae-config", config_seeds("vae"), true, |b| text(b).is_some_and(|t| AutoencoderKlConfig::from_json(&t).is_ok()));
    fuzz("clip-config", config_seeds("text_encoder"), true, |b| text(b).is_some_and(|t| ClipTextConfig::from_json(&t).is_ok()));
}

#[test]
fn scheduler_configs() {
    use mam_e::schedulers::{SchedulerConfig, SchedulerKind};
    let saved: Value = serde_json::from_slice(&read("tests/fixtures/scheduler_configs.json")).unwrap();
    let mut seeds: Vec<Vec<u8>> = saved.as_object().unwrap().values().map(|t| t.as_str().unwrap().as_bytes().to_vec()).collect();
    seeds.extend(config_seeds("scheduler"));
    fuzz("scheduler-config", seeds, true, |bytes| {
        let Ok(text) = std::str::from_utf8(bytes) else { return false };
        let Ok(config) = SchedulerConfig::from_json(text) else { return false };
        for kind in SchedulerKind::ALL {
            for steps in [1, 2, 24, 1000] {
                let _ = kind.build(&config, steps);
            }
        }
        true
    });
}

#[test]
fn safetensors_files() {
    use mam_e::weights::safetensors;
    let seeds = vec![read("tests/fixtures/reference/web-tiny.safetensors"), read("tests/fixtures/reference/clip.safetensors")];
    fuzz("safetensors", seeds, false, |bytes| {
        let Ok(file) = safetensors::parse(bytes) else { return false };
        file.tensors.iter().all(|tensor| tensor.to_f32().is_ok())
    });
}

#[test]
fn png_uploads() {
    let seeds = vec![read("tests/fixtures/reference/inpaint_image.png"), read("tests/fixtures/reference/inpaint_mask.png")];
    fuzz("png", seeds, false, |bytes| mam_e::imaging::RgbImage::from_png(bytes).is_ok());
}

/// Each case is written to a file first: the readers take paths, as `prepare` gives them.
fn through_file(name: &str, file_name: &str) -> impl Fn(&[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(file_name);
    move |bytes| {
        std::fs::write(&path, bytes).unwrap();
        path.clone()
    }
}

#[test]
fn dicom_files() {
    let dir = root().join("tests/fixtures/dicom");
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "dcm")).collect();
    names.sort();
    let seeds = names.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let write = through_file("dicom", "case.dcm");
    fuzz_cases("dicom", cases() / 10, seeds, false, |bytes| mam_e::data::dicom::read(&write(bytes)).is_ok());
}

#[test]
fn dataset_csvs() {
    let seeds = vec![
        b"path,view,laterality,density,vendor,split,category,xmin,ymin,xmax,ymax\nimages/a.dcm,CC,L,B,siemens,training,Mass,10,20,30,40\nimages/a.dcm,CC,L,B,siemens,training,Mass,50,60,70,80\nimages/b.dcm,MLO,R,D,hologic,test,,,,,\n".to_vec(),
        b"path,view,laterality\nx/y.dcm,MLO,L\n".to_vec(),
    ];
    let write = through_file("csv", "dataset.csv");
    fuzz("generic-csv", seeds, false, |bytes| mam_e::data::vindr::read_generic_csv(&write(bytes)).is_ok());
}
