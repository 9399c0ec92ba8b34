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
    let vae = load_safetensors(vae_config.init(device), weights_file(dir, "vae", "diffusion_pytorch_model")?, "vae")?;
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
