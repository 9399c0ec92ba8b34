//! `mam-e convert`: a diffusers folder to a package (native only).

use std::collections::BTreeMap;
use std::path::Path;

use super::quant::{self, Storage};
use super::{Configs, Defaults, FORMAT, FileRef, MANIFEST, MAX_SHARD_BYTES, Manifest, ModelKind, StorageDtype, VERSION};
use crate::weights::diffusers::{read, read_text, weights_file};
use crate::weights::safetensors::{self, Owned};
use crate::weights::{IGNORED_BUFFERS, canonical_key, write_atomically};
use crate::{Error, Result};

pub struct ConvertOptions {
    pub dtype: StorageDtype,
    pub name: String,
    pub description: String,
    /// False for random-weight models: the app labels them untrained.
    pub trained: bool,
    /// Default image side in pixels (else the UNet's `sample_size` × the VAE factor).
    pub size: Option<usize>,
    /// Which MAM-E model's prompts a text-to-image model takes, if known.
    pub template: Option<crate::prompt::Template>,
}

/// Stored size of one component.
#[derive(Debug, Clone)]
pub struct ComponentSize {
    pub component: &'static str,
    pub parameters: usize,
    /// Parameters stored as 8-bit, 4-bit and 16/32-bit floats.
    pub q8: usize,
    pub q4: usize,
    pub float: usize,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct ConvertReport {
    pub kind: ModelKind,
    pub components: Vec<ComponentSize>,
    pub shards: usize,
    pub total_bytes: u64,
}

/// Tensors stored as f16 in quantized packages whatever their size (first and last
/// convolutions, the latent 1×1 convolutions, position embeddings): errors there reach every
/// pixel or every token. Smaller tensors (biases, norms) are f16 too.
const KEEP_F16: &[&str] = &[
    "unet.conv_in.",
    "unet.conv_out.",
    "vae.encoder.conv_in.",
    "vae.quant_conv.",
    "vae.post_quant_conv.",
    "vae.decoder.conv_in.",
    "vae.decoder.conv_out.",
    "text_encoder.text_model.embeddings.position_embedding.",
];
/// Tensors with fewer values than this are not quantized.
const MIN_QUANTIZED: usize = 1024;

/// How `key` (with its component prefix) is stored in a package of `dtype`.
pub fn storage_for(dtype: StorageDtype, key: &str, shape: &[usize]) -> Storage {
    let small = shape.len() < 2 || shape.iter().product::<usize>() < MIN_QUANTIZED;
    match dtype {
        StorageDtype::F32 => Storage::F32,
        StorageDtype::F16 => Storage::F16,
        _ if small || KEEP_F16.iter().any(|p| key.starts_with(p)) => Storage::F16,
        StorageDtype::Q4 if !key.starts_with("text_encoder.") => Storage::Q4,
        _ => Storage::Q8,
    }
}

/// Shards being filled in order; each closes before it would pass [`MAX_SHARD_BYTES`].
struct ShardWriter<'a> {
    out: &'a Path,
    tensors: Vec<Owned>,
    metadata: BTreeMap<String, String>,
    bytes: u64,
    written: Vec<FileRef>,
}

impl ShardWriter<'_> {
    /// Room left for the JSON header.
    const HEADER_ALLOWANCE: u64 = 4 << 20;

    /// Adds entries that must share a shard (a quantized tensor and its scales).
    fn push(&mut self, entries: Vec<Owned>, metadata: BTreeMap<String, String>) -> Result<()> {
        let size: u64 = entries.iter().map(|e| e.data.len() as u64).sum();
        if self.bytes + size + Self::HEADER_ALLOWANCE > MAX_SHARD_BYTES && !self.tensors.is_empty() {
            self.flush()?;
        }
        self.bytes += size;
        self.tensors.extend(entries);
        self.metadata.extend(metadata);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.tensors.is_empty() {
            return Ok(());
        }
        let data = safetensors::serialize(&self.tensors, &self.metadata);
        let file = format!("model-{:05}.safetensors", self.written.len() + 1);
        write_atomically(&self.out.join(&file), &data)?;
        self.written.push(FileRef::of(file, &data));
        self.tensors.clear();
        self.metadata.clear();
        self.bytes = 0;
        Ok(())
    }
}

fn json(dir: &Path, file: &str) -> Result<serde_json::Value> {
    let text = read_text(&dir.join(file))?;
    crate::python_json::parse(&text).map_err(|e| Error::Config { file: file.into(), reason: e.to_string() })
}

/// Converts the diffusers folder `from` into a package in `out` (created if needed; must not
/// hold a package already). `progress(component, done, total)` is called per tensor. The
/// manifest is written last, so an interrupted conversion leaves no loadable package.
pub fn convert(from: &Path, out: &Path, options: &ConvertOptions, progress: &mut dyn FnMut(&str, usize, usize)) -> Result<ConvertReport> {
    let layout = |reason: String| Error::Layout { path: from.display().to_string(), reason };
    if !from.join("model_index.json").exists() {
        return Err(layout("no model_index.json (expected the diffusers layout)".into()));
    }
    let configs = Configs {
        text_encoder: json(from, "text_encoder/config.json")?,
        unet: json(from, "unet/config.json")?,
        vae: json(from, "vae/config.json")?,
        scheduler: json(from, "scheduler/scheduler_config.json")?,
    };
    // Parse with our readers now, so unsupported architectures fail before any writing.
    let unet = crate::model::unet::UNet2DConditionConfig::from_json(&configs.unet.to_string())?;
    let vae = crate::model::vae::AutoencoderKlConfig::from_json(&configs.vae.to_string())?;
    let text = crate::model::clip::ClipTextConfig::from_json(&configs.text_encoder.to_string())?;
    if text.hidden_size != unet.cross_attention_dim {
        return Err(layout(format!("text encoder width {} ≠ UNet cross_attention_dim {}", text.hidden_size, unet.cross_attention_dim)));
    }
    crate::schedulers::SchedulerConfig::from_json(&configs.scheduler.to_string())?;
    let kind = match (unet.in_channels, unet.out_channels) {
        (i, o) if i == o => ModelKind::TextToImage,
        (i, o) if i == 2 * o + 1 => ModelKind::Inpainting,
        (i, o) => return Err(layout(format!("a UNet with {i} input and {o} output channels is neither text-to-image nor inpainting"))),
    };
    if out.join(MANIFEST).exists() {
        return Err(Error::Io { path: out.display().to_string(), reason: "already holds a package; choose a new folder".into() });
    }
    std::fs::create_dir_all(out.join("tokenizer")).map_err(|e| Error::Io { path: out.display().to_string(), reason: e.to_string() })?;

    let mut shards = ShardWriter { out, tensors: Vec::new(), metadata: BTreeMap::new(), bytes: 0, written: Vec::new() };
    let mut components = Vec::new();
    for (component, stem) in [("text_encoder", "model"), ("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model")] {
        components.push(convert_component(from, (component, stem), kind, options.dtype, &mut shards, progress)?);
    }
    shards.flush()?;

    let tokenizer = copy_tokenizer(from, out)?;

    let pixels = options.size.unwrap_or(unet.sample_size.unwrap_or(64) * (1 << (vae.block_out_channels.len() - 1)));
    let defaults = match (kind, options.template) {
        (ModelKind::TextToImage, Some(template)) => Defaults::mam_e(kind, pixels).with_template(template),
        _ => Defaults::mam_e(kind, pixels),
    };
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        kind,
        name: options.name.clone(),
        description: options.description.clone(),
        trained: options.trained,
        dtype: options.dtype,
        configs,
        tokenizer,
        defaults,
        shards: shards.written,
    };
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
    write_atomically(&out.join(MANIFEST), text.as_bytes())?;
    Ok(ConvertReport { kind, components, shards: manifest.shards.len(), total_bytes: manifest.total_bytes() })
}

/// One component's tensors, each stored as `dtype` asks (a text-to-image package keeps the VAE's
/// decoder only), into `shards`; what it came to.
fn convert_component(
    from: &Path,
    (component, stem): (&'static str, &str),
    kind: ModelKind,
    dtype: StorageDtype,
    shards: &mut ShardWriter,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<ComponentSize> {
    let bytes = weights_file(from, component, stem)?;
    let file = safetensors::parse(&bytes).map_err(|reason| Error::Weights { component: component.into(), reason })?;
    let mut size = ComponentSize { component, parameters: 0, q8: 0, q4: 0, float: 0, bytes: 0 };
    let total = file.tensors.len();
    for (done, view) in file.tensors.iter().enumerate() {
        progress(component, done, total);
        let key = canonical_key(component, &view.name);
        let decoder_only = kind == ModelKind::TextToImage && component == "vae" && (key.starts_with("encoder.") || key.starts_with("quant_conv."));
        if IGNORED_BUFFERS.contains(&key.as_str()) || decoder_only {
            continue;
        }
        let values = view.to_f32().map_err(|reason| Error::Weights { component: component.into(), reason })?;
        let key = format!("{component}.{key}");
        let storage = storage_for(dtype, &key, &view.shape);
        let mut metadata = BTreeMap::new();
        let entries = quant::encode(&key, &view.shape, &values, storage, &mut metadata);
        size.parameters += values.len();
        match storage {
            Storage::Q8 => size.q8 += values.len(),
            Storage::Q4 => size.q4 += values.len(),
            _ => size.float += values.len(),
        }
        size.bytes += entries.iter().map(|e| e.data.len() as u64).sum::<u64>();
        shards.push(entries, metadata)?;
    }
    progress(component, total, total);
    Ok(size)
}

/// The tokenizer's files (`tokenizer.json`, or `vocab.json` + `merges.txt`) copied into the
/// package.
fn copy_tokenizer(from: &Path, out: &Path) -> Result<Vec<FileRef>> {
    let mut tokenizer = Vec::new();
    let names: &[&str] = if from.join("tokenizer/tokenizer.json").exists() { &["tokenizer.json"] } else { &["vocab.json", "merges.txt"] };
    for name in names {
        let data = read(&from.join("tokenizer").join(name))?;
        let file = format!("tokenizer/{name}");
        write_atomically(&out.join(&file), &data)?;
        tokenizer.push(FileRef::of(file, &data));
    }
    Ok(tokenizer)
}
