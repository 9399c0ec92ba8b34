//! A diffusers-layout model folder (`model_index.json`, `text_encoder/`, `unet/`, `vae/`,
//! `tokenizer/`, `scheduler/`) loaded into a [`StableDiffusion`], as MAM-E's published weights are.

use std::path::Path;

use burn::tensor::Device;

use super::load_safetensors;
use crate::model::clip::ClipTextConfig;
use crate::model::unet::UNet2DConditionConfig;
use crate::model::vae::AutoencoderKlConfig;
use crate::pipeline::StableDiffusion;
use crate::schedulers::SchedulerConfig;
use crate::tokenizer::ClipTokenizer;
use crate::{Error, Result};

pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io { path: path.display().to_string(), reason: e.to_string() })
}

pub(crate) fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read(path)?).map_err(|e| Error::Io { path: path.display().to_string(), reason: e.to_string() })
}

/// A module's weights as a diffusers/transformers safetensors file (f32, PyTorch key names and
/// layouts: linear weights `[out, in]`, norms `weight`/`bias`).
pub(crate) fn module_safetensors<M: burn::module::Module + burn::store::ModuleSnapshot>(module: &M) -> Result<Vec<u8>> {
    let mut owned = Vec::new();
    for tensor in module.collect(None, Some(Box::new(burn::store::BurnToPyTorchAdapter)), true) {
        let (name, dtype, shape, _, bytes) = tensor.into_parts().map_err(|e| Error::Weights { component: "module".into(), reason: format!("{e:?}") })?;
        if dtype != burn::tensor::DType::F32 {
            return Err(Error::Weights { component: name, reason: format!("is {dtype:?}; only f32 modules are written (load in f32)") });
        }
        let values: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        owned.push(super::safetensors::Owned::f32(name, shape.to_vec(), &values));
    }
    let metadata = std::collections::BTreeMap::from([("format".to_string(), "pt".to_string())]);
    Ok(super::safetensors::serialize(&owned, &metadata))
}

/// The weights file of a component: `<stem>.safetensors`, else the `fp16` variant.
pub(crate) fn weights_file(dir: &Path, component: &str, stem: &str) -> Result<Vec<u8>> {
    let folder = dir.join(component);
    for name in [format!("{stem}.safetensors"), format!("{stem}.fp16.safetensors")] {
        let path = folder.join(&name);
        if path.exists() {
            return read(&path);
        }
    }
    let reason = if folder.join(format!("{stem}.bin")).exists() {
        format!("{component}/ has only PyTorch .bin weights; convert them to safetensors (e.g. diffusers' save_pretrained(safe_serialization=True))")
    } else {
        format!("{component}/{stem}.safetensors is missing")
    };
    Err(Error::Layout { path: dir.display().to_string(), reason })
}

/// The tokenizer of a diffusers folder: `tokenizer/tokenizer.json`, else `vocab.json` + `merges.txt`.
pub(crate) fn load_tokenizer(dir: &Path) -> Result<ClipTokenizer> {
    let tokenizer_dir = dir.join("tokenizer");
    if tokenizer_dir.join("tokenizer.json").exists() {
        ClipTokenizer::from_tokenizer_json(&read_text(&tokenizer_dir.join("tokenizer.json"))?)
    } else {
        ClipTokenizer::from_vocab_merges(&read_text(&tokenizer_dir.join("vocab.json"))?, &read_text(&tokenizer_dir.join("merges.txt"))?)
    }
}

/// Loads every component of the diffusers folder `dir` onto `device`.
pub fn load_diffusers(dir: &Path, device: &Device) -> Result<StableDiffusion> {
    if !dir.join("model_index.json").exists() {
        return Err(Error::Layout { path: dir.display().to_string(), reason: "no model_index.json (expected the diffusers layout)".into() });
    }
    let tokenizer = load_tokenizer(dir)?;
    let text_config = ClipTextConfig::from_json(&read_text(&dir.join("text_encoder/config.json"))?)?;
    let text_encoder = load_safetensors(text_config.init(device)?, weights_file(dir, "text_encoder", "model")?, "text_encoder")?;
    let unet_config = UNet2DConditionConfig::from_json(&read_text(&dir.join("unet/config.json"))?)?;
    let unet = load_safetensors(unet_config.init(device), weights_file(dir, "unet", "diffusion_pytorch_model")?, "unet")?;
    let vae_config = AutoencoderKlConfig::from_json(&read_text(&dir.join("vae/config.json"))?)?;
    let vae_weights = weights_file(dir, "vae", "diffusion_pytorch_model")?;
    // A folder written from a text-to-image package has the decoder only (`mam-e convert`).
    let has_encoder = super::safetensors::parse(&vae_weights).map_or(true, |f| f.tensors.iter().any(|t| t.name.starts_with("encoder.")));
    let vae_module = if has_encoder { vae_config.init(device) } else { vae_config.init_decoder(device) };
    let vae = load_safetensors(vae_module, vae_weights, "vae")?;
    let scheduler_config = SchedulerConfig::from_json(&read_text(&dir.join("scheduler/scheduler_config.json"))?)?;
    if text_config.hidden_size != unet_config.cross_attention_dim {
        return Err(Error::Layout {
            path: dir.display().to_string(),
            reason: format!("text encoder width {} ≠ UNet cross_attention_dim {}", text_config.hidden_size, unet_config.cross_attention_dim),
        });
    }
    Ok(StableDiffusion {
        tokenizer,
        text_encoder,
        unet,
        vae,
        scheduler_config,
        vae_scaling_factor: vae_config.scaling_factor,
        vae_scale_factor: 1 << (vae_config.block_out_channels.len() - 1),
        device: device.clone(),
    })
}
