//! A package back to a diffusers folder (f32; quantized weights dequantized), so a package is
//! a starting point for `mam-e train` and loads in diffusers. Text-to-image packages ship the
//! VAE's decoder only: their folder's `vae/` has no encoder weights, and says so.

use std::path::Path;

use burn::tensor::Device;
use serde_json::json;

use super::{MANIFEST, Manifest, ModelKind};
use crate::model::precision::Precision;
use crate::weights::diffusers::{module_safetensors, read};
use crate::{Error, Result};

/// What [`export_diffusers`] wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub kind: ModelKind,
    /// False when the package had no VAE encoder (a text-to-image package).
    pub vae_encoder: bool,
    pub parameters: usize,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io { path: path.display().to_string(), reason: e.to_string() }
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    std::fs::create_dir_all(path.parent().expect("a file in a folder")).map_err(io(path))?;
    std::fs::write(path, serde_json::to_string_pretty(value).expect("JSON") + "\n").map_err(io(path))
}

/// The diffusers release whose file layout packages follow.
const DIFFUSERS_VERSION: &str = "0.35.2";

/// Writes the package at `package` as a diffusers folder at `out` (which must not exist or be
/// empty), through `.<name>.partial` and a rename.
pub fn export_diffusers(package: &Path, out: &Path) -> Result<ExportReport> {
    if out.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::Io { path: out.display().to_string(), reason: "exists and is not empty; choose a new folder".into() });
    }
    let manifest = Manifest::parse(&String::from_utf8_lossy(&read(&package.join(MANIFEST))?))?;
    let sd = super::load_package_as(package, &Device::default(), Precision::F32)?;
    let name = out.file_name().ok_or_else(|| Error::Io { path: out.display().to_string(), reason: "not a folder path".into() })?;
    let tmp = out.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    let pipeline = match manifest.kind {
        ModelKind::TextToImage => "StableDiffusionPipeline",
        ModelKind::Inpainting => "StableDiffusionInpaintPipeline",
    };
    let scheduler = manifest.configs.scheduler["_class_name"].as_str().unwrap_or("PNDMScheduler");
    // diffusers' loader reads this key for inpainting pipelines (a KeyError without it): the
    // version the UNet's config was written by, else the one the package format follows.
    let version = manifest.configs.unet["_diffusers_version"].as_str().unwrap_or(DIFFUSERS_VERSION);
    write_json(
        &tmp.join("model_index.json"),
        &json!({
            "_class_name": pipeline,
            "_diffusers_version": version,
            "feature_extractor": [null, null],
            "requires_safety_checker": false,
            "safety_checker": [null, null],
            "scheduler": ["diffusers", scheduler],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        }),
    )?;
    let configs = &manifest.configs;
    write_json(&tmp.join("scheduler/scheduler_config.json"), &configs.scheduler)?;
    let components: [(&str, &str, &serde_json::Value, Vec<u8>); 3] = [
        ("text_encoder", "model", &configs.text_encoder, module_safetensors(&sd.text_encoder)?),
        ("unet", "diffusion_pytorch_model", &configs.unet, module_safetensors(&sd.unet)?),
        ("vae", "diffusion_pytorch_model", &configs.vae, module_safetensors(&sd.vae)?),
    ];
    for (component, stem, config, bytes) in components {
        write_json(&tmp.join(component).join("config.json"), config)?;
        let path = tmp.join(component).join(format!("{stem}.safetensors"));
        std::fs::write(&path, &bytes).map_err(io(&path))?;
    }
    let parameters =
        burn::module::Module::num_params(&sd.text_encoder) + burn::module::Module::num_params(&sd.unet) + burn::module::Module::num_params(&sd.vae);
    std::fs::create_dir_all(tmp.join("tokenizer")).map_err(io(&tmp))?;
    for file in &manifest.tokenizer {
        let path = tmp.join(&file.file);
        std::fs::write(&path, read(&package.join(&file.file))?).map_err(io(&path))?;
    }
    // transformers' CLIPTokenizer needs the 77-token limit and the special tokens (SD1.5's).
    write_json(
        &tmp.join("tokenizer/tokenizer_config.json"),
        &json!({
            "bos_token": "<|startoftext|>",
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>",
            "model_max_length": 77,
            "clean_up_tokenization_spaces": false,
            "tokenizer_class": "CLIPTokenizer",
        }),
    )?;
    if out.exists() {
        std::fs::remove_dir(out).map_err(io(out))?;
    }
    std::fs::rename(&tmp, out).map_err(io(out))?;
    Ok(ExportReport { kind: manifest.kind, vae_encoder: sd.vae.encoder.is_some(), parameters })
}
