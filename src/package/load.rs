//! Loading a package shard by shard: each shard is checked against the manifest (size, SHA-256),
//! decoded to f32 and applied to the modules, then dropped, so host memory peaks at about one
//! shard plus the model. Shards may arrive in any order (the browser fetches several at once).

use std::collections::BTreeMap;

use burn::tensor::Device;

use super::quant::{self, Decoded};
use super::{Manifest, ModelKind, StorageDtype};
use crate::model::clip::{ClipTextConfig, ClipTextModel};
use crate::model::precision::Precision;
use crate::model::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use crate::model::vae::{AutoencoderKl, AutoencoderKlConfig};
use crate::pipeline::StableDiffusion;
use crate::schedulers::SchedulerConfig;
use crate::tokenizer::ClipTokenizer;
use crate::weights::on_device::{PACK_ABOVE_F32_BYTES, Placement, QuantizedWeight};
use crate::weights::{ComponentLoad, PlainWeight, safetensors};
use crate::{Error, Result};

/// A tensor's shape and values (f32), or those of one part of a split tensor.
type TensorPart = (Vec<usize>, Vec<f32>);

/// A package being loaded: modules with their architecture, filled in as shards arrive.
pub struct PackageLoader {
    manifest: Manifest,
    text_encoder: ComponentLoad<ClipTextModel>,
    unet: ComponentLoad<UNet2DConditionModel>,
    vae: ComponentLoad<AutoencoderKl>,
    placement: Placement,
    precision: Precision,
    scheduler_config: SchedulerConfig,
    vae_scaling_factor: f64,
    vae_scale_factor: usize,
    /// Parts of split tensors seen so far: key → parts by index.
    parts: BTreeMap<String, Vec<Option<TensorPart>>>,
    shards_done: Vec<bool>,
    tokenizer_files: BTreeMap<String, Vec<u8>>,
    device: Device,
}

impl PackageLoader {
    /// Checks the manifest (configs, kind, shard sizes) and builds the modules.
    pub fn new(manifest: Manifest, device: &Device) -> Result<Self> {
        manifest.check_files()?;
        let configs = &manifest.configs;
        let text_config = ClipTextConfig::from_json(&configs.text_encoder.to_string())?;
        let unet_config = UNet2DConditionConfig::from_json(&configs.unet.to_string())?;
        let vae_config = AutoencoderKlConfig::from_json(&configs.vae.to_string())?;
        let scheduler_config = SchedulerConfig::from_json(&configs.scheduler.to_string())?;
        let channels = (unet_config.in_channels, unet_config.out_channels);
        let kind_fits = match manifest.kind {
            ModelKind::TextToImage => channels.0 == channels.1,
            ModelKind::Inpainting => channels.0 == 2 * channels.1 + 1,
        };
        if !kind_fits {
            return Err(Error::Package(format!("a {} package cannot have a UNet with {} input and {} output channels", manifest.kind, channels.0, channels.1)));
        }
        if text_config.hidden_size != unet_config.cross_attention_dim {
            return Err(Error::Package(format!(
                "text encoder width {} ≠ UNet cross_attention_dim {}",
                text_config.hidden_size, unet_config.cross_attention_dim
            )));
        }
        let vae = match manifest.kind {
            ModelKind::TextToImage => vae_config.init_decoder(device),
            ModelKind::Inpainting => vae_config.init(device),
        };
        let quantized = matches!(manifest.dtype, StorageDtype::Q8 | StorageDtype::Q4);
        let placement =
            if quantized && crate::device::is_gpu(device) && manifest.f32_weight_bytes() > PACK_ABOVE_F32_BYTES { Placement::Packed } else { Placement::Float };
        Ok(PackageLoader {
            text_encoder: ComponentLoad::new(text_config.init(device)?, "text_encoder").with_placement(placement),
            unet: ComponentLoad::new(unet_config.init(device), "unet").with_placement(placement),
            vae: ComponentLoad::new(vae, "vae").with_placement(placement),
            placement,
            precision: Precision::F32,
            scheduler_config,
            vae_scaling_factor: vae_config.scaling_factor,
            vae_scale_factor: 1 << (vae_config.block_out_channels.len() - 1),
            parts: BTreeMap::new(),
            shards_done: vec![false; manifest.shards.len()],
            tokenizer_files: BTreeMap::new(),
            manifest,
            device: device.clone(),
        })
    }

    /// Computes the UNet and text encoder in `precision` (see `model::precision`); call before
    /// adding shards. f16 needs a GPU with f16 shaders. A package kept 8-bit on the GPU stays
    /// f32 compute whatever is asked (burn's quantized kernels dequantize to f32):
    /// [`Self::precision`] says what was chosen.
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        precision.check(&self.device)?;
        self.precision = if self.placement == Placement::Packed { Precision::F32 } else { precision };
        self.text_encoder.set_dtype(self.precision.dtype());
        self.unet.set_dtype(self.precision.dtype());
        Ok(self)
    }

    /// What the UNet and text encoder will compute in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Verifies shard `index` of the manifest's list and applies its tensors.
    pub fn add_shard(&mut self, index: usize, bytes: &[u8]) -> Result<()> {
        let entry = self.manifest.shards.get(index).ok_or_else(|| Error::Package(format!("no shard number {index}")))?.clone();
        entry.verify(bytes)?;
        let bad = |reason: String| Error::Package(format!("{}: {reason}", entry.file));
        let file = safetensors::parse(bytes).map_err(bad)?;
        let mut batches: BTreeMap<String, (Vec<PlainWeight>, BTreeMap<String, QuantizedWeight>)> = BTreeMap::new();
        for decoded in quant::decode(&file).map_err(bad)? {
            let (key, shape, values, quantized) = match decoded {
                Decoded::Whole { key, shape, values, quantized } => (key, shape, values, quantized),
                Decoded::Part { key, index, count, shape, values } => match self.add_part(key, index, count, shape, values).map_err(bad)? {
                    Some((key, (shape, values))) => (key, shape, values, false),
                    None => continue,
                },
            };
            let (component, name) = key.split_once('.').ok_or_else(|| bad(format!("tensor {key} names no component")))?;
            let (plain, quantized_weights) = batches.entry(component.to_string()).or_default();
            if quantized {
                quantized_weights.insert(name.to_string(), (shape, values));
            } else {
                plain.push((name.to_string(), shape, values));
            }
        }
        for (component, (tensors, quantized)) in batches {
            match component.as_str() {
                "text_encoder" => self.text_encoder.apply_all(tensors, quantized),
                "unet" => self.unet.apply_all(tensors, quantized),
                "vae" => self.vae.apply_all(tensors, quantized),
                other => return Err(bad(format!("unknown component {other:?}"))),
            }
        }
        self.shards_done[index] = true;
        Ok(())
    }

    /// Stores one part of a split tensor; the whole tensor once every part is in.
    fn add_part(&mut self, key: String, index: usize, count: usize, shape: Vec<usize>, values: Vec<f32>) -> Result<Option<(String, TensorPart)>, String> {
        let slots = self.parts.entry(key.clone()).or_insert_with(|| vec![None; count]);
        if slots.len() != count || index >= count {
            return Err(format!("part {index} of {count} of {key} does not fit the parts seen before"));
        }
        slots[index] = Some((shape, values));
        if slots.iter().any(Option::is_none) {
            return Ok(None);
        }
        let parts = self.parts.remove(&key).expect("present").into_iter().flatten();
        let (mut shape, mut values) = (Vec::new(), Vec::new());
        for (part_shape, part_values) in parts {
            if shape.is_empty() {
                shape = part_shape;
            } else {
                shape[0] += part_shape[0];
            }
            values.extend(part_values);
        }
        Ok(Some((key, (shape, values))))
    }

    /// Verifies and keeps tokenizer file `index` of the manifest's list.
    pub fn add_tokenizer_file(&mut self, index: usize, bytes: Vec<u8>) -> Result<()> {
        let entry = self.manifest.tokenizer.get(index).ok_or_else(|| Error::Package(format!("no tokenizer file number {index}")))?;
        entry.verify(&bytes)?;
        self.tokenizer_files.insert(entry.file.clone(), bytes);
        Ok(())
    }

    /// The loaded model, once every shard and tokenizer file is in and every tensor fits.
    pub fn finish(self) -> Result<StableDiffusion> {
        let missing: Vec<&str> = self.manifest.shards.iter().zip(&self.shards_done).filter(|(_, done)| !**done).map(|(s, _)| s.file.as_str()).collect();
        if !missing.is_empty() {
            return Err(Error::Package(format!("shard(s) not loaded: {}", missing.join(", "))));
        }
        if let Some(key) = self.parts.keys().next() {
            return Err(Error::Package(format!("tensor {key} is split into parts, and some are in no shard")));
        }
        let text = |name: &str| -> Result<String> {
            let bytes = self.tokenizer_files.get(name).ok_or_else(|| Error::Package(format!("tokenizer file {name} is not loaded")))?;
            String::from_utf8(bytes.clone()).map_err(|e| Error::Package(format!("{name}: {e}")))
        };
        let tokenizer = if self.manifest.tokenizer.iter().any(|f| f.file == "tokenizer/tokenizer.json") {
            ClipTokenizer::from_tokenizer_json(&text("tokenizer/tokenizer.json")?)?
        } else {
            ClipTokenizer::from_vocab_merges(&text("tokenizer/vocab.json")?, &text("tokenizer/merges.txt")?)?
        };
        Ok(StableDiffusion {
            tokenizer,
            text_encoder: self.text_encoder.finish()?,
            unet: self.unet.finish()?,
            vae: self.vae.finish()?,
            scheduler_config: self.scheduler_config,
            vae_scaling_factor: self.vae_scaling_factor,
            vae_scale_factor: self.vae_scale_factor,
            device: self.device,
        })
    }
}

/// Loads the package in folder `dir` (native), one shard in memory at a time, computing in f32.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_package(dir: &std::path::Path, device: &Device) -> Result<StableDiffusion> {
    load_package_as(dir, device, Precision::F32)
}

/// [`load_package`], computing the UNet and text encoder in `precision` (see
/// [`PackageLoader::with_precision`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn load_package_as(dir: &std::path::Path, device: &Device, precision: Precision) -> Result<StableDiffusion> {
    // Each file's size is checked before it is read: a huge or swapped file costs nothing.
    let read = |file: &str, bytes: u64| {
        let path = dir.join(file);
        let found = std::fs::metadata(&path).map_err(|e| Error::Io { path: path.display().to_string(), reason: e.to_string() })?.len();
        if found != bytes {
            return Err(Error::Corrupt { file: file.to_string(), reason: format!("{found} bytes, expected {bytes}") });
        }
        crate::weights::diffusers::read(&path)
    };
    let manifest_path = dir.join(super::MANIFEST);
    let manifest_bytes = std::fs::metadata(&manifest_path).map(|m| m.len()).unwrap_or(0);
    if manifest_bytes > super::MAX_MANIFEST_BYTES {
        return Err(Error::Package(format!(
            "{} has {manifest_bytes} bytes, more than a manifest may have ({})",
            manifest_path.display(),
            super::MAX_MANIFEST_BYTES
        )));
    }
    let manifest = Manifest::parse(&String::from_utf8_lossy(&crate::weights::diffusers::read(&manifest_path)?))?;
    let files = manifest.tokenizer.clone();
    let shards = manifest.shards.clone();
    let mut loader = PackageLoader::new(manifest, device)?.with_precision(precision)?;
    for (i, file) in files.iter().enumerate() {
        loader.add_tokenizer_file(i, read(&file.file, file.bytes)?)?;
    }
    for (i, shard) in shards.iter().enumerate() {
        loader.add_shard(i, &read(&shard.file, shard.bytes)?)?;
    }
    loader.finish()
}

/// Loads `dir`, a package (it has `manifest.json`) or a diffusers folder, computing in
/// `precision`: what every CLI `--model` flag takes.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_model(dir: &std::path::Path, device: &Device, precision: Precision) -> Result<StableDiffusion> {
    if dir.join(super::MANIFEST).exists() {
        load_package_as(dir, device, precision)
    } else {
        crate::weights::load_diffusers(dir, device)?.with_precision(precision)
    }
}
