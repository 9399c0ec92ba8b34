//! Model packages: `convert` of the tiny diffusers folders, loading shard by shard, the same
//! images as from the diffusers folder, quantization error within budget, and every kind of bad
//! package refused with a specific error.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use mam_e::Error;
use mam_e::package::quant::{self, Decoded, Storage};
use mam_e::package::{ConvertOptions, Manifest, ModelKind, StorageDtype, convert, export_diffusers, load_package};
use mam_e::pipeline::StableDiffusion;
use mam_e::pipeline::text_to_image::GenerateParams;
use mam_e::schedulers::SchedulerKind;
use mam_e::weights::load_diffusers;
use mam_e::weights::safetensors::{self, Owned};
use support::fixtures;

fn temp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("package-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn make_package(model: &str, dtype: StorageDtype, name: &str) -> PathBuf {
    convert_folder(&fixtures::path(model), dtype, name)
}

fn convert_folder(folder: &Path, dtype: StorageDtype, name: &str) -> PathBuf {
    let out = temp_dir(name);
    let options = ConvertOptions { dtype, name: name.into(), description: String::new(), trained: false, size: None, template: None };
    convert(folder, &out, &options, &mut |_, _, _| {}).unwrap();
    out
}

/// Final latents and the decoded image (values in [0, 1]) of a 10-step guided run.
fn generate(sd: &StableDiffusion) -> (Vec<f32>, Vec<f32>) {
    let params = GenerateParams {
        prompt: "a hologic mammogram in CC view".into(),
        steps: 10,
        guidance: 6.0,
        scheduler: SchedulerKind::Dpm,
        height: 64,
        width: 64,
        seed: 7,
        ..Default::default()
    };
    let mut run = sd.start(&params, None).unwrap();
    while run.step() {}
    let latents = run.latents();
    let image = sd.decode(latents.clone());
    let read = |t| pollster::block_on(mam_e::device::read_f32(t)).unwrap();
    (read(latents), read(image))
}

/// PSNR in dB of images with values in [0, 1].
fn psnr(got: &[f32], want: &[f32]) -> f64 {
    let mse = got.iter().zip(want).map(|(g, w)| ((g - w) as f64).powi(2)).sum::<f64>() / got.len() as f64;
    10.0 * (1.0 / mse.max(1e-20)).log10()
}

#[test]
fn f32_package_gives_the_diffusers_folders_image_exactly() {
    let device = Device::flex();
    let package = make_package("tiny-sd", StorageDtype::F32, "tiny-f32");
    let manifest = Manifest::parse(&std::fs::read_to_string(package.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.kind, ModelKind::TextToImage);
    assert!(!manifest.trained);
    assert_eq!((manifest.defaults.steps, manifest.defaults.guidance, manifest.defaults.seed), (24, 6.0, 1338));
    let from_folder = generate(&load_diffusers(&fixtures::path("tiny-sd"), &device).unwrap());
    let from_package = generate(&load_package(&package, &device).unwrap());
    assert_eq!(from_folder.0, from_package.0, "latents");
    assert_eq!(from_folder.1, from_package.1, "image");
}

#[test]
fn quantized_packages_stay_within_their_error_budgets() {
    let device = Device::flex();
    let f32_package = make_package("tiny-sd", StorageDtype::F32, "budget-f32");
    let (latents, image) = generate(&load_package(&f32_package, &device).unwrap());
    let f32_bytes = dir_bytes(&f32_package);
    // (dtype, largest final-latent relative error, smallest PSNR). The PSNR floors are the
    // issue's budgets (q8 35 dB, q4 28 dB); measured here: f16 1.8e-4 / 90 dB, q8 3.3e-3 / 58 dB,
    // q4 4.1e-2 / 35 dB.
    for (dtype, max_error, min_psnr) in [(StorageDtype::F16, 1e-3, 60.0), (StorageDtype::Q8, 2e-2, 35.0), (StorageDtype::Q4, 0.15, 28.0)] {
        let name = format!("budget-{dtype:?}");
        let package = make_package("tiny-sd", dtype, &name);
        let (got_latents, got_image) = generate(&load_package(&package, &device).unwrap());
        let error = fixtures::relative_error(&got_latents, &latents);
        let db = psnr(&got_image, &image);
        let bytes = dir_bytes(&package);
        eprintln!("{dtype:?}: {bytes} bytes ({:.2} of f32), final latents relative error {error:.2e}, image PSNR {db:.1} dB", bytes as f64 / f32_bytes as f64);
        assert!(error <= max_error, "{dtype:?}: latent error {error:e} > {max_error:e}");
        assert!(db >= min_psnr, "{dtype:?}: PSNR {db:.1} dB < {min_psnr} dB");
        assert!(bytes < f32_bytes, "{dtype:?} package is not smaller than f32");
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        total += if entry.file_type().unwrap().is_dir() { dir_bytes(&entry.path()) } else { entry.metadata().unwrap().len() };
    }
    total
}

#[test]
fn block_quantization_error_is_at_most_half_a_step() {
    // Known maths: symmetric rounding to a grid of step s = max|x| / q_max errs by at most s / 2
    // (plus the f16 rounding of s itself, which the bound below allows for).
    let values: Vec<f32> = (0..3 * 100).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1.0 + (i / 100) as f32)).collect();
    for (storage, max_q, block) in [(Storage::Q8, 127.0, quant::Q8_BLOCK), (Storage::Q4, 7.0, quant::Q4_BLOCK)] {
        let mut metadata = BTreeMap::new();
        let entries = quant::encode("w", &[3, 100], &values, storage, &mut metadata);
        let bytes = safetensors::serialize(&entries, &metadata);
        let decoded = quant::decode(&safetensors::parse(&bytes).unwrap()).unwrap();
        let [Decoded::Whole { key, shape, values: got, .. }] = &decoded[..] else { panic!("one tensor expected") };
        assert_eq!((key.as_str(), shape.as_slice()), ("w", &[3, 100][..]));
        for (row, (got_row, want_row)) in got.chunks(100).zip(values.chunks(100)).enumerate() {
            for (b, (g, w)) in got_row.chunks(block).zip(want_row.chunks(block)).enumerate() {
                let step = w.iter().fold(0f32, |m, v| m.max(v.abs())) / max_q;
                let worst = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(worst <= step * 0.5 * 1.01 + 1e-6, "{storage:?} row {row} block {b}: error {worst} > half step {}", step / 2.0);
            }
        }
    }
}

#[test]
fn convolutions_are_blocked_along_input_channels_and_version_1_layouts_still_decode() {
    // Version 2 blocks a [out, in, kh, kw] weight along `in` (stored [out, kw, kh, in]);
    // version 1 blocked the flattened PyTorch rows. Both decode to the PyTorch order, each
    // within half a step of its own blocks.
    let shape = [2, 64, 3, 3];
    let values: Vec<f32> = (0..2 * 64 * 9).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1.0 + (i % 9) as f32)).collect();
    let decode = |entries: Vec<Owned>, metadata: &BTreeMap<String, String>| -> Vec<f32> {
        let decoded = quant::decode(&safetensors::parse(&safetensors::serialize(&entries, metadata)).unwrap()).unwrap();
        let [Decoded::Whole { shape: got_shape, values, .. }] = &decoded[..] else { panic!("one tensor expected") };
        assert_eq!(got_shape.as_slice(), &shape);
        values.clone()
    };
    let torch = |o: usize, i: usize, k: usize| (o * 64 + i) * 9 + k;
    // Version 2: each (out, kh·kw) run of 64 input channels has its own step.
    let mut metadata = BTreeMap::new();
    let entries = quant::encode("w", &shape, &values, Storage::Q8, &mut metadata);
    assert_eq!(metadata["quant.w"], "q8 64 2,64,3,3 in-last");
    let got = decode(entries, &metadata);
    for o in 0..2 {
        for k in 0..9 {
            let step = (0..64).map(|i| values[torch(o, i, k)].abs()).fold(0f32, f32::max) / 127.0;
            for i in 0..64 {
                assert!((got[torch(o, i, k)] - values[torch(o, i, k)]).abs() <= step * 0.5 * 1.01 + 1e-6);
            }
        }
    }
    // Version 1: the same tensor quantized as flattened rows, recorded with its 4-D shape.
    let mut metadata = BTreeMap::new();
    let entries = quant::encode("w", &[2, 64 * 9], &values, Storage::Q8, &mut metadata);
    metadata.insert("quant.w".into(), "q8 64 2,64,3,3".into());
    let got = decode(entries, &metadata);
    for (g, w) in got.chunks(64).zip(values.chunks(64)) {
        let step = w.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        assert!(g.iter().zip(w).all(|(a, b)| (a - b).abs() <= step * 0.5 * 1.01 + 1e-6));
    }
}

#[test]
fn our_safetensors_writer_is_read_by_the_reference_implementation() {
    let entries = vec![
        Owned::f32("a.weight", vec![2, 3], &[1.0, -2.0, 3.5, 0.0, 1e-8, -7.25]),
        Owned { name: "b".into(), dtype: safetensors::Dtype::I8, shape: vec![3], data: vec![255, 0, 7] },
    ];
    let metadata = BTreeMap::from([("k".to_string(), "v".to_string())]);
    let bytes = safetensors::serialize(&entries, &metadata);
    let (_, reference_meta) = ::safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(reference_meta.metadata().as_ref().and_then(|m| m.get("k")).map(String::as_str), Some("v"));
    let file = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let a = file.tensor("a.weight").unwrap();
    assert_eq!((a.dtype(), a.shape()), (::safetensors::Dtype::F32, &[2, 3][..]));
    assert_eq!(a.data(), &entries[0].data[..]);
    assert_eq!(file.tensor("b").unwrap().data(), &[255, 0, 7]);
}

/// A fresh f16 package to damage.
fn damaged(name: &str) -> (PathBuf, Manifest) {
    let package = make_package("tiny-sd", StorageDtype::F16, name);
    let manifest = Manifest::parse(&std::fs::read_to_string(package.join("manifest.json")).unwrap()).unwrap();
    (package, manifest)
}

fn load_error(package: &Path) -> Error {
    match load_package(package, &Device::flex()) {
        Ok(_) => panic!("{} loaded", package.display()),
        Err(e) => {
            eprintln!("{e}");
            e
        }
    }
}

#[test]
fn a_truncated_shard_is_refused_by_name() {
    let (package, manifest) = damaged("truncated");
    let shard = package.join(&manifest.shards[0].file);
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    let error = load_error(&package);
    assert!(matches!(&error, Error::Corrupt { file, reason } if file == &manifest.shards[0].file && reason.contains("bytes, expected")), "{error}");
}

#[test]
fn a_flipped_byte_fails_the_hash_check_naming_the_shard() {
    let (package, manifest) = damaged("flipped");
    let last = manifest.shards.last().unwrap();
    let shard = package.join(&last.file);
    let mut bytes = std::fs::read(&shard).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&shard, &bytes).unwrap();
    let error = load_error(&package);
    assert!(matches!(&error, Error::Corrupt { file, reason } if file == &last.file && reason.contains("SHA-256")), "{error}");
}

#[test]
fn a_missing_shard_is_named() {
    let (package, manifest) = damaged("missing");
    std::fs::remove_file(package.join(&manifest.shards[0].file)).unwrap();
    let error = load_error(&package);
    assert!(matches!(&error, Error::Io { path, .. } if path.ends_with(&manifest.shards[0].file)), "{error}");
}

/// Rewrites the manifest after `edit`.
fn edit_manifest(package: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = package.join("manifest.json");
    let mut value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(&path, serde_json::to_string(&value).unwrap()).unwrap();
}

#[test]
fn file_names_outside_the_package_and_oversized_files_are_refused_before_reading() {
    let package = make_package("tiny-sd", StorageDtype::Q8, "untrusted");
    // A secret beside the package, with exactly the size and hash the manifest could list.
    let secret = package.parent().unwrap().join("secret.safetensors");
    std::fs::copy(package.join("model-00001.safetensors"), &secret).unwrap();
    let original = std::fs::read_to_string(package.join("manifest.json")).unwrap();
    let device = Device::flex();
    for name in [
        "../secret.safetensors", "/etc/passwd", "https://example.com/x.safetensors", "a//b", "./model-00001.safetensors", "tokenizer/../../secret.safetensors",
        "x?y=1", "",
    ] {
        std::fs::write(package.join("manifest.json"), &original).unwrap();
        edit_manifest(&package, |m| m["shards"][0]["file"] = name.into());
        let error = load_package(&package, &device).err().unwrap_or_else(|| panic!("{name:?} was read"));
        assert!(error.to_string().contains(&format!("names the file \"{name}\"")), "{name:?}: {error}");
    }
    let refused = |edit: &dyn Fn(&mut serde_json::Value)| {
        std::fs::write(package.join("manifest.json"), &original).unwrap();
        edit_manifest(&package, |m| edit(m));
        load_package(&package, &device).err().expect("accepted").to_string()
    };
    let error = refused(&|m| m["shards"][0]["bytes"] = ((128u64 << 20) + 1).into());
    assert!(error.contains("more than the 134217728 such a file may have"), "{error}");
    let error = refused(&|m| m["tokenizer"][0]["bytes"] = ((16u64 << 20) + 1).into());
    assert!(error.contains("more than the 16777216 such a file may have"), "{error}");
    let error = refused(&|m| m["shards"][0]["sha256"] = "../..".into());
    assert!(error.contains("no valid SHA-256"), "{error}");
    let error = refused(&|m| m["shards"] = serde_json::json!([]));
    assert!(error.contains("lists 0 shards"), "{error}");
    let error = refused(&|m| {
        let shard = m["shards"][0].clone();
        m["shards"] = serde_json::Value::Array(vec![serde_json::json!({"file": "big.safetensors", "bytes": 128u64 << 20, "sha256": "0".repeat(64)}); 66]);
        m["shards"][0] = shard;
    });
    assert!(error.contains("more than the 8589934592 a package may have"), "{error}");
    // A shard file larger than listed is refused by its size, before it is read.
    std::fs::write(package.join("manifest.json"), &original).unwrap();
    let shard = package.join("model-00001.safetensors");
    let mut grown = std::fs::read(&shard).unwrap();
    grown.extend_from_slice(&[0; 16]);
    std::fs::write(&shard, &grown).unwrap();
    let error = load_package(&package, &device).err().expect("a grown shard loaded");
    assert!(matches!(&error, Error::Corrupt { reason, .. } if reason.contains("bytes, expected")), "{error}");
    // An oversized manifest is refused before it is parsed.
    std::fs::write(package.join("manifest.json"), vec![b' '; (1 << 20) + 1]).unwrap();
    let error = load_package(&package, &device).err().expect("a 1 MiB manifest parsed");
    assert!(error.to_string().contains("more than a manifest may have"), "{error}");
}

#[test]
fn an_unknown_manifest_version_is_refused() {
    let (package, _) = damaged("version");
    edit_manifest(&package, |m| m["version"] = 3.into());
    let error = load_error(&package);
    assert!(matches!(&error, Error::Package(reason) if reason.contains("format version 3")), "{error}");
}

#[test]
fn a_tensor_of_the_wrong_shape_is_named() {
    let (package, manifest) = damaged("shape");
    // Re-store unet.conv_in.weight with one output channel fewer, and re-hash the shard, so only
    // the shape is wrong.
    let index = manifest.shards.iter().position(|s| {
        let bytes = std::fs::read(package.join(&s.file)).unwrap();
        safetensors::parse(&bytes).unwrap().tensors.iter().any(|t| t.name == "unet.conv_in.weight")
    });
    let shard = &manifest.shards[index.unwrap()];
    let bytes = std::fs::read(package.join(&shard.file)).unwrap();
    let file = safetensors::parse(&bytes).unwrap();
    let entries: Vec<Owned> = file
        .tensors
        .iter()
        .map(|t| {
            let (shape, data) = if t.name == "unet.conv_in.weight" {
                let row = t.data.len() / t.shape[0];
                let mut shape = t.shape.clone();
                shape[0] -= 1;
                (shape, t.data[row..].to_vec())
            } else {
                (t.shape.clone(), t.data.to_vec())
            };
            Owned { name: t.name.clone(), dtype: t.dtype, shape, data }
        })
        .collect();
    let rewritten = safetensors::serialize(&entries, &file.metadata);
    std::fs::write(package.join(&shard.file), &rewritten).unwrap();
    let fresh = mam_e::package::FileRef::of(shard.file.clone(), &rewritten);
    let i = index.unwrap();
    edit_manifest(&package, |m| {
        m["shards"][i]["bytes"] = fresh.bytes.into();
        m["shards"][i]["sha256"] = fresh.sha256.clone().into();
    });
    let error = load_error(&package);
    assert!(matches!(&error, Error::Weights { component, reason } if component == "unet" && reason.contains("conv_in")), "{error}");
}

#[test]
fn packages_of_the_wrong_kind_are_refused() {
    let device = Device::flex();
    // An inpainting package in text-to-image.
    let inpaint = load_package(&make_package("tiny-sd-inpaint", StorageDtype::F16, "kind-inpaint"), &device).unwrap();
    let params = GenerateParams { steps: 2, height: 64, width: 64, ..Default::default() };
    let error = inpaint.start(&params, None).err().expect("text-to-image on an inpainting package");
    assert!(error.to_string().contains("inpainting"), "{error}");
    // A text-to-image package (decoder-only VAE, 4-channel UNet) for inpainting.
    let text = load_package(&make_package("tiny-sd", StorageDtype::F16, "kind-t2i"), &device).unwrap();
    let image = mam_e::imaging::RgbImage { width: 64, height: 64, pixels: vec![128; 64 * 64 * 3] };
    let error = text.start_inpaint(&params, &image, &vec![255; 64 * 64], None).err().expect("inpainting on a text-to-image package");
    assert!(error.to_string().contains("no encoder") && error.to_string().contains("needs an inpainting package"), "{error}");
    // A manifest that claims text-to-image over a 9-channel UNet.
    let package = make_package("tiny-sd-inpaint", StorageDtype::F16, "kind-lie");
    edit_manifest(&package, |m| m["kind"] = "text-to-image".into());
    let error = load_error(&package);
    assert!(matches!(&error, Error::Package(reason) if reason.contains("9 input")), "{error}");
}

#[test]
fn a_tensor_split_into_parts_across_shards_loads_whole() {
    // The f32 package's one shard, rewritten as two, with the token embedding in three row-wise
    // parts: part 0 in the first shard, parts 1 and 2 in the second (as a 152 MB SD1.5 embedding
    // would be at the 64 MiB part limit).
    let device = Device::flex();
    let whole = make_package("tiny-sd", StorageDtype::F32, "parts-whole");
    let want = generate(&load_package(&whole, &device).unwrap());
    let package = make_package("tiny-sd", StorageDtype::F32, "parts-split");
    let manifest = Manifest::parse(&std::fs::read_to_string(package.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.shards.len(), 1);
    let bytes = std::fs::read(package.join(&manifest.shards[0].file)).unwrap();
    let file = safetensors::parse(&bytes).unwrap();
    let (mut first, mut second, mut metadata) = (Vec::new(), Vec::new(), BTreeMap::new());
    for (i, view) in file.tensors.iter().enumerate() {
        let values = view.to_f32().unwrap();
        if view.name == "text_encoder.text_model.embeddings.token_embedding.weight" {
            let parts = quant::encode_with_part_limit(&view.name, &view.shape, &values, Storage::F32, view.data.len() / 3 + 1, &mut metadata);
            assert_eq!(parts.len(), 3);
            let mut parts = parts.into_iter();
            first.push(parts.next().unwrap());
            second.extend(parts);
        } else {
            let target = if i % 2 == 0 { &mut first } else { &mut second };
            target.extend(quant::encode(&view.name, &view.shape, &values, Storage::F32, &mut metadata));
        }
    }
    std::fs::remove_file(package.join(&manifest.shards[0].file)).unwrap();
    let mut refs = Vec::new();
    for (n, entries) in [first, second].iter().enumerate() {
        let data = safetensors::serialize(entries, &BTreeMap::new());
        let name = format!("split-{n}.safetensors");
        std::fs::write(package.join(&name), &data).unwrap();
        refs.push(serde_json::to_value(mam_e::package::FileRef::of(name, &data)).unwrap());
    }
    edit_manifest(&package, |m| m["shards"] = serde_json::Value::Array(refs));
    assert_eq!(generate(&load_package(&package, &device).unwrap()), want);
}

#[test]
fn largest_gpu_buffer_of_sd15() {
    // In f32 the token embedding (49408 tokens × 768 × 4 bytes) is more than WebGPU's default
    // 128 MiB storage binding, so the page checks the adapter's limit before downloading; q8
    // packages keep it 8-bit on the GPU, and the VAE decoder's largest activation at 512×512
    // (its 256-channel block upsampled to 512², × 4 bytes; lavapipe failed to allocate exactly
    // this) is then the largest buffer.
    let manifest = Manifest::parse(&std::fs::read_to_string(make_package("tiny-sd", StorageDtype::Q8, "largest").join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.largest_tensor_bytes().unwrap(), 4 * 49408 * 32, "tiny: the 32-wide token embedding, not 8-bit on the GPU");
    let mut sd15 = manifest;
    sd15.configs.text_encoder["hidden_size"] = 768.into();
    sd15.configs.unet["block_out_channels"] = serde_json::json!([320, 640, 1280, 1280]);
    sd15.configs.vae["block_out_channels"] = serde_json::json!([128, 256, 512, 512]);
    for key in ["down_block_types", "up_block_types"] {
        sd15.configs.unet.as_object_mut().unwrap().remove(key); // diffusers' defaults are SD1.5's
        sd15.configs.vae.as_object_mut().unwrap().remove(key);
    }
    sd15.configs.unet["cross_attention_dim"] = 768.into();
    (sd15.defaults.height, sd15.defaults.width) = (512, 512);
    assert_eq!(sd15.largest_tensor_bytes().unwrap(), 268_435_456);
    // At 256×256 in f16 (dequantized to f32 on the GPU) the token embedding is the largest.
    sd15.dtype = StorageDtype::F16;
    (sd15.defaults.height, sd15.defaults.width) = (256, 256);
    assert_eq!(sd15.largest_tensor_bytes().unwrap(), 151_781_376);
    assert!(sd15.largest_tensor_bytes().unwrap() > 128 << 20);
}

#[test]
fn the_cpu_path_takes_the_demo_packages_and_refuses_sd15_before_downloading() {
    let demo =
        |dir: &str| Manifest::parse(&std::fs::read_to_string(format!("{}/static/models/{dir}/manifest.json", env!("CARGO_MANIFEST_DIR"))).unwrap()).unwrap();
    for dir in ["demo", "demo-inpaint"] {
        demo(dir).check_fits_the_cpu_path().unwrap();
    }
    // SD1.5 in q8 as `convert` writes it (README: 1017 MiB in 9 shards): ≈ 4 GiB of f32 weights,
    // more than wasm32's memory can hold beside the activations.
    let mut sd15 = demo("demo");
    sd15.name = "sd15-q8".into();
    sd15.dtype = StorageDtype::Q8;
    sd15.shards =
        (1..=9).map(|i| mam_e::package::FileRef { file: format!("model-{i:05}.safetensors"), bytes: (1017 << 20) / 9, sha256: "0".repeat(64) }).collect();
    let error = sd15.check_fits_the_cpu_path().unwrap_err().to_string();
    // 4 × (1017 MiB of shards + 1.4 MB of tokenizer) = 3.98 GiB.
    assert!(error.contains("sd15-q8 is too large for the CPU path: its weights take about 3.98 GiB in f32"), "{error}");
    assert!(error.contains("needs a GPU with WebGPU"), "{error}");
    // The same model in q4 (611 MiB) is as large once expanded to f32.
    sd15.dtype = StorageDtype::Q4;
    sd15.shards.truncate(5);
    assert!(sd15.check_fits_the_cpu_path().is_err());
}

#[test]
fn convert_refuses_to_overwrite_a_package() {
    let package = make_package("tiny-sd", StorageDtype::Q8, "twice");
    let options = ConvertOptions { dtype: StorageDtype::Q8, name: "x".into(), description: String::new(), trained: true, size: None, template: None };
    let error = convert(&fixtures::path("tiny-sd"), &package, &options, &mut |_, _, _| {}).expect_err("second convert");
    assert!(error.to_string().contains("already holds a package"), "{error}");
}

#[test]
fn a_package_converts_back_to_a_diffusers_folder_with_the_same_images() {
    let device = Device::flex();
    for (model, kind) in [("tiny-sd", ModelKind::TextToImage), ("tiny-sd-inpaint", ModelKind::Inpainting)] {
        let package = make_package(model, StorageDtype::Q8, &format!("back-{model}"));
        let folder = temp_dir(&format!("back-{model}-diffusers"));
        let report = export_diffusers(&package, &folder).unwrap();
        assert_eq!(report.kind, kind);
        // Text-to-image packages ship the VAE decoder only; inpainting ones the whole VAE.
        assert_eq!(report.vae_encoder, kind == ModelKind::Inpainting);
        let (from_package, from_folder) = (load_package(&package, &device).unwrap(), load_diffusers(&folder, &device).unwrap());
        assert_eq!(from_folder.vae.encoder.is_some(), report.vae_encoder);
        if kind == ModelKind::TextToImage {
            // The dequantized weights, written in f32, are the package's exactly.
            assert_eq!(generate(&from_package), generate(&from_folder));
        } else {
            let x = burn::tensor::Tensor::<4>::ones([1, 3, 64, 64], &device) * 0.25;
            let read = |t| pollster::block_on(mam_e::device::read_f32(t)).unwrap();
            assert_eq!(read(from_package.vae.encode(x.clone()).unwrap().mean), read(from_folder.vae.encode(x).unwrap().mean));
        }
        // A folder diffusers' CLIPTokenizer reads: its 77-token limit is written.
        let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(folder.join("tokenizer/tokenizer_config.json")).unwrap()).unwrap();
        assert_eq!(config["model_max_length"], 77);
        // diffusers' from_pretrained raises KeyError on an inpainting pipeline's model_index.json
        // without `_diffusers_version` (found exporting tiny-sd-inpaint for the browser reference).
        let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(folder.join("model_index.json")).unwrap()).unwrap();
        assert_eq!(index["_diffusers_version"], "0.35.2");
        let error = export_diffusers(&package, &folder).expect_err("second export into the same folder");
        assert!(error.to_string().contains("not empty"), "{error}");
    }
}

#[path = "support/scene.rs"]
mod scene;

/// The tiny random-weight packages the browser tests embed (tests/fixtures/packages/) natively, given only the scene's seed, against
/// diffusers' runs of the same scene on the same weights (tests/fixtures/reference/web-tiny.safetensors,
/// from tests/fixtures/make_web_reference.py), which the browser test (tests/web_pipeline.rs) is
/// held to as well.
#[test]
fn embedded_packages_reproduce_diffusers_from_the_seed() {
    let device = Device::flex();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let reference = std::fs::read(root.join("tests/fixtures/reference/web-tiny.safetensors")).unwrap();
    let text = load_package(&root.join("tests/fixtures/packages/tiny-sd"), &device).unwrap();
    let mut run = text.start(&scene::text_to_image_params(), None).unwrap();
    while run.step() {}
    fixtures::assert_close(run.latents(), &reference, "text_to_image.latents", 1e-5);
    let inpaint = load_package(&root.join("tests/fixtures/packages/tiny-sd-inpaint"), &device).unwrap();
    let (image, mask) = scene::inpaint_input();
    let mut run = inpaint.start_inpaint(&scene::inpaint_params(), &image, &mask, None).unwrap();
    while run.step() {}
    fixtures::assert_close(run.latents(), &reference, "inpaint.latents", 1e-5);
}

/// A diffusers folder whose text encoder transformers 5 saved (keys without `text_model.`) loads,
/// and converts to a package, with the same weights: the same latents and image as tiny-sd's.
#[test]
fn a_folder_saved_with_transformers_5_loads_and_converts() {
    let device = Device::flex();
    let folder = temp_dir("transformers-5-folder");
    copy_dir(&fixtures::path("tiny-sd"), &folder);
    std::fs::write(folder.join("text_encoder/model.safetensors"), fixtures::text_encoder_as_transformers_5()).unwrap();
    let package = convert_folder(&folder, StorageDtype::F32, "transformers-5-package");
    let want = generate(&load_diffusers(&fixtures::path("tiny-sd"), &device).unwrap());
    assert!(want == generate(&load_diffusers(&folder, &device).unwrap()), "the folder's images differ from tiny-sd's");
    assert!(want == generate(&load_package(&package, &device).unwrap()), "the package's images differ from tiny-sd's");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() { copy_dir(&entry.path(), &target) } else { std::fs::copy(entry.path(), target).map(drop).unwrap() }
    }
}

#[test]
fn convert_refuses_a_folder_that_is_not_a_diffusers_model() {
    let out = temp_dir("not-diffusers");
    let options = ConvertOptions { dtype: StorageDtype::Q8, name: "x".into(), description: String::new(), trained: true, size: None, template: None };
    let error = convert(&fixtures::path("tokenizer"), &out, &options, &mut |_, _, _| {}).expect_err("converted a tokenizer folder");
    assert!(error.to_string().contains("model_index.json"), "{error}");
    assert!(!out.exists(), "a failed conversion left {}", out.display());
}

/// A manifest's `defaults` that generation would refuse (or the page cut) are refused when the
/// manifest is read, naming the setting.
#[test]
fn impossible_default_settings_are_refused_by_name() {
    let package = make_package("tiny-sd", StorageDtype::F16, "bad-defaults");
    for (key, value, want) in [
        ("scheduler", serde_json::json!("heun"), "default scheduler"),
        ("steps", serde_json::json!(4_294_967_301u64), "default steps 4294967301"),
        ("steps", serde_json::json!(0), "default steps 0"),
        ("guidance", serde_json::json!(-1.0), "default guidance -1"),
    ] {
        let original = std::fs::read_to_string(package.join("manifest.json")).unwrap();
        edit_manifest(&package, |m| m["defaults"][key] = value.clone());
        let error = load_error(&package);
        assert!(matches!(&error, Error::Package(reason) if reason.contains(want)), "{key} {value}: {error}");
        std::fs::write(package.join("manifest.json"), original).unwrap();
    }
}

/// `convert --template` says which MAM-E model a package is: the manifest's defaults carry the
/// template and a prompt in it (the page's prompt controls follow it); without it, none is said.
#[test]
fn a_package_says_which_mam_e_model_it_is() {
    use mam_e::prompt::Template;
    for (template, prompt) in [(Template::OmiH, "a mammogram in MLO view with small area"), (Template::Vindr, "a mammogram in MLO view with high density")] {
        let out = temp_dir(&format!("template-{template:?}"));
        let options =
            ConvertOptions { dtype: StorageDtype::F16, name: "t".into(), description: String::new(), trained: false, size: None, template: Some(template) };
        convert(&fixtures::path("tiny-sd"), &out, &options, &mut |_, _, _| {}).unwrap();
        let text = std::fs::read_to_string(out.join("manifest.json")).unwrap();
        let defaults = Manifest::parse(&text).unwrap().defaults;
        assert_eq!((defaults.template, defaults.prompt.as_str()), (Some(template), prompt));
        let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(raw["defaults"]["template"], if template == Template::OmiH { "omi-h" } else { "vindr" });
    }
    let plain = Manifest::parse(&std::fs::read_to_string(make_package("tiny-sd", StorageDtype::F16, "template-none").join("manifest.json")).unwrap()).unwrap();
    assert_eq!(plain.defaults.template, None);
}
