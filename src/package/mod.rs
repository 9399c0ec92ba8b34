//! Model packages: what the browser downloads (and the CLI can load too). A folder with
//! `manifest.json` and safetensors shards of at most [`MAX_SHARD_BYTES`], each listed with its
//! size and SHA-256. The format is described in `docs/package-format.md`.

#[cfg(not(target_arch = "wasm32"))]
mod convert;
#[cfg(not(target_arch = "wasm32"))]
mod export;
mod load;
pub mod quant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};
#[cfg(not(target_arch = "wasm32"))]
pub use convert::{ComponentSize, ConvertOptions, ConvertReport, convert};
#[cfg(not(target_arch = "wasm32"))]
pub use export::{ExportReport, export_diffusers};
pub use load::PackageLoader;
#[cfg(not(target_arch = "wasm32"))]
pub use load::{load_model, load_package, load_package_as};

/// `format` of every manifest.
pub const FORMAT: &str = "mam-e-package";
/// The manifest version this build writes; it reads versions 1 to this one.
pub const VERSION: u32 = 2;
/// The manifest's file name inside a package.
pub const MANIFEST: &str = "manifest.json";
/// Largest shard: small enough for browsers to fetch and hash in one piece.
pub const MAX_SHARD_BYTES: u64 = 128 << 20;
/// Largest `manifest.json` (the demo's is 6 KB) and tokenizer file (SD1.5's `tokenizer.json`
/// is 2.2 MB): read whole, so capped while streaming.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
pub const MAX_TOKENIZER_FILE_BYTES: u64 = 16 << 20;
/// Largest whole package (SD1.5 in f32 is 4.13 GB) and most shards.
pub const MAX_PACKAGE_BYTES: u64 = 8 << 30;
pub const MAX_SHARDS: usize = 256;

/// What a package's pipeline does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// 4-channel UNet; the VAE ships without its encoder.
    TextToImage,
    /// 9-channel UNet (latents, mask, masked-image latents) and the whole VAE.
    Inpainting,
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelKind::TextToImage => "text-to-image",
            ModelKind::Inpainting => "inpainting",
        })
    }
}

/// How the weights are stored (they are always computed in f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageDtype {
    F32,
    F16,
    /// Block-wise 8-bit weights with f16 scales; sensitive tensors f16.
    Q8,
    /// Block-wise 4-bit UNet and VAE weights, 8-bit text encoder, sensitive tensors f16.
    Q4,
}

impl std::fmt::Display for StorageDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StorageDtype::F32 => "f32",
            StorageDtype::F16 => "f16",
            StorageDtype::Q8 => "q8",
            StorageDtype::Q4 => "q4",
        })
    }
}

/// A file of the package, with what its bytes must be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRef {
    /// Path relative to the package folder (or URL).
    pub file: String,
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the whole file.
    pub sha256: String,
}

impl FileRef {
    pub fn of(file: String, data: &[u8]) -> Self {
        FileRef { file, bytes: data.len() as u64, sha256: sha256_hex(data) }
    }

    /// Checks `data` is this file: size first (a truncated download), then the hash.
    pub fn verify(&self, data: &[u8]) -> Result<()> {
        if data.len() as u64 != self.bytes {
            return Err(Error::Corrupt { file: self.file.clone(), reason: format!("{} bytes, expected {}", data.len(), self.bytes) });
        }
        let got = sha256_hex(data);
        if got != self.sha256 {
            return Err(Error::Corrupt { file: self.file.clone(), reason: format!("SHA-256 {got}, expected {}", self.sha256) });
        }
        Ok(())
    }
}

/// A file name in a manifest: `/`-separated parts of letters, digits, `.`, `_` and `-`, none of
/// them empty, `.` or `..` (so no absolute path, no parent folder, no URL or query).
pub fn check_plain_path(path: &str) -> Result<()> {
    let plain = |part: &str| !part.is_empty() && part != "." && part != ".." && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if path.len() <= 255 && path.split('/').all(plain) {
        Ok(())
    } else {
        Err(Error::Package(format!("{MANIFEST} names the file \"{path}\"; files must be plain paths inside the package (letters, digits, . _ - and /, no ..)")))
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Bytes (a digest) as lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The components' diffusers configs (`config.json` of each folder), verbatim.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Configs {
    pub text_encoder: serde_json::Value,
    pub unet: serde_json::Value,
    pub vae: serde_json::Value,
    /// `scheduler/scheduler_config.json`.
    pub scheduler: serde_json::Value,
}

/// Generation settings the app starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Defaults {
    pub prompt: String,
    pub negative_prompt: String,
    pub steps: usize,
    pub guidance: f64,
    /// `dpm`, `ddim`, `pndm` or `euler`.
    pub scheduler: String,
    pub seed: u64,
    pub height: usize,
    pub width: usize,
    /// Which MAM-E model's prompts a text-to-image package takes (the page's prompt controls
    /// follow it); absent: not said (the page keeps its choice, fusion at first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<crate::prompt::Template>,
}

impl Defaults {
    /// The generation these defaults describe (their prompt and seed, PyTorch's noise), for
    /// callers to override field by field. The scheduler name was checked when the manifest was
    /// read; an unknown one (a hand-made `Defaults`) falls back to DPM-Solver++.
    pub fn params(&self) -> crate::pipeline::text_to_image::GenerateParams {
        crate::pipeline::text_to_image::GenerateParams {
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            steps: self.steps,
            guidance: self.guidance,
            scheduler: self.scheduler.parse().unwrap_or(crate::schedulers::SchedulerKind::Dpm),
            height: self.height,
            width: self.width,
            seed: self.seed,
            noise: crate::rng::NoiseSource::Torch,
        }
    }

    /// Settings the CLI and the page would otherwise refuse at Generate, or cut (the page's
    /// controls hold 32-bit steps): refused when the manifest is read.
    fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Package(format!("{MANIFEST}: default {what}")));
        if let Err(e) = self.scheduler.parse::<crate::schedulers::SchedulerKind>() {
            return bad(format!("scheduler: {e}"));
        }
        if !(1..=1000).contains(&self.steps) {
            return bad(format!("steps {}: must be 1 to 1000", self.steps));
        }
        if !self.guidance.is_finite() || !(0.0..=50.0).contains(&self.guidance) {
            return bad(format!("guidance {}: must be 0 to 50", self.guidance));
        }
        Ok(())
    }

    /// MAM-E's settings for a model of this kind rendering `pixels`² images: its GUI's prompt
    /// (the lesion tool's for inpainting), 24 DPM-Solver++ steps, guidance 6 (lesions: 3), seed 1338.
    pub fn mam_e(kind: ModelKind, pixels: usize) -> Self {
        let (prompt, guidance) = match kind {
            ModelKind::TextToImage => (crate::prompt::PromptSpec::default().to_string(), 6.0),
            ModelKind::Inpainting => (crate::prompt::LESION_PROMPT.to_string(), 3.0),
        };
        Defaults {
            prompt,
            negative_prompt: String::new(),
            steps: 24,
            guidance,
            scheduler: "dpm".into(),
            seed: 1338,
            height: pixels,
            width: pixels,
            template: None,
        }
    }

    /// A text-to-image model's defaults said to be `template`'s: its prompt in that template.
    pub fn with_template(self, template: crate::prompt::Template) -> Self {
        let prompt = crate::prompt::PromptSpec { template, ..Default::default() }.to_string();
        Defaults { prompt, template: Some(template), ..self }
    }
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub kind: ModelKind,
    pub name: String,
    pub description: String,
    /// False for random-weight packages (tests, the placeholder demo): the UI says so.
    pub trained: bool,
    pub dtype: StorageDtype,
    pub configs: Configs,
    /// `tokenizer/vocab.json` + `tokenizer/merges.txt`, or `tokenizer/tokenizer.json`.
    pub tokenizer: Vec<FileRef>,
    pub defaults: Defaults,
    pub shards: Vec<FileRef>,
}

impl Manifest {
    /// Parses `manifest.json`, checking the format and version before anything else so an
    /// old or future package gets a message about that, not about some field.
    pub fn parse(text: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::Package(format!("{MANIFEST} is not JSON: {e}")))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(Error::Package(format!("{MANIFEST} has no \"format\": \"{FORMAT}\"; this is not a mam-e model package")));
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            // Version 1 differs only in how q8/q4 convolutions are laid out; it still loads.
            Some(v) if (1..=VERSION as u64).contains(&v) => {}
            Some(v) => {
                return Err(Error::Package(format!(
                    "format version {v}; this build reads versions 1 to {VERSION} (convert the model again with this mam-e, or update mam-e)"
                )));
            }
            None => return Err(Error::Package(format!("{MANIFEST} has no format version"))),
        }
        let manifest: Manifest = serde_json::from_value(value).map_err(|e| Error::Package(format!("{MANIFEST}: {e}")))?;
        manifest.check_files()?;
        manifest.defaults.check()?;
        Ok(manifest)
    }

    /// Every listed file is a plain path inside the package (no `..`, no absolute path, no URL)
    /// with a SHA-256, and sizes are within the caps, so a package from a stranger's URL can only
    /// make us read its own folder, and only so much.
    pub fn check_files(&self) -> Result<()> {
        if self.shards.is_empty() || self.shards.len() > MAX_SHARDS {
            return Err(Error::Package(format!("{MANIFEST} lists {} shards; a package has 1 to {MAX_SHARDS}", self.shards.len())));
        }
        let listed = self.shards.iter().map(|f| (f, MAX_SHARD_BYTES)).chain(self.tokenizer.iter().map(|f| (f, MAX_TOKENIZER_FILE_BYTES)));
        for (file, cap) in listed {
            check_plain_path(&file.file)?;
            if file.bytes > cap {
                return Err(Error::Package(format!("{MANIFEST}: {} has {} bytes, more than the {cap} such a file may have", file.file, file.bytes)));
            }
            if file.sha256.len() != 64 || !file.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::Package(format!("{MANIFEST}: {} has no valid SHA-256 (\"{}\")", file.file, file.sha256)));
            }
        }
        let total = self.total_bytes();
        if total > MAX_PACKAGE_BYTES {
            return Err(Error::Package(format!("{MANIFEST} lists {total} bytes in all, more than the {MAX_PACKAGE_BYTES} a package may have")));
        }
        Ok(())
    }

    /// A lower bound on the largest buffer the GPU must bind to run this package at its default
    /// size: the token embedding (packed 8-bit when the package is quantized and its width a
    /// multiple of 64, as `weights::on_device` places it; else f32), the widest UNet 3×3
    /// convolution (an up-block's first, fed twice the channels; packed likewise), or the VAE
    /// decoder's largest activation (f32; for SD1.5, 256 channels upsampled to full size). Adapters
    /// whose `maxStorageBufferBindingSize` is smaller cannot run the package.
    pub fn largest_tensor_bytes(&self) -> Result<u64> {
        let text = crate::model::clip::ClipTextConfig::from_json(&self.configs.text_encoder.to_string())?;
        let unet = crate::model::unet::UNet2DConditionConfig::from_json(&self.configs.unet.to_string())?;
        let vae = crate::model::vae::AutoencoderKlConfig::from_json(&self.configs.vae.to_string())?;
        let quantized = matches!(self.dtype, StorageDtype::Q8 | StorageDtype::Q4);
        let bytes_per_value = |input_width: usize| if quantized && input_width.is_multiple_of(crate::weights::on_device::BLOCK) { 1 } else { 4 };
        let embedding = text.vocab_size * text.hidden_size * bytes_per_value(text.hidden_size);
        let widest = unet.block_out_channels.iter().max().copied().unwrap_or(0);
        let conv = 2 * widest * widest * 9 * bytes_per_value(2 * widest);
        // The decoder's up-block of channels[i] (i ≥ 1) upsamples to 1/2^(i-1) of the image side;
        // the last block runs at full size with channels[0].
        let pixels = self.defaults.height * self.defaults.width;
        let activation = vae.block_out_channels.iter().enumerate().map(|(i, &c)| 4 * c * pixels / (1 << (2 * i.saturating_sub(1)))).max().unwrap_or(0);
        Ok(embedding.max(conv).max(activation) as u64)
    }

    /// Bytes to download: shards and tokenizer files.
    pub fn total_bytes(&self) -> u64 {
        self.shards.iter().chain(&self.tokenizer).map(|f| f.bytes).sum()
    }

    /// About how many bytes the weights take in f32, from the download size and the storage
    /// dtype (f16 2 bytes a weight, q8 ≈ 1, q4 ≈ ½).
    pub fn f32_weight_bytes(&self) -> u64 {
        let per_stored_byte = match self.dtype {
            StorageDtype::F32 => 1,
            StorageDtype::F16 => 2,
            StorageDtype::Q8 => 4,
            StorageDtype::Q4 => 8,
        };
        per_stored_byte * self.total_bytes()
    }

    /// Refuses, before anything is downloaded, a package too large for the page's CPU path:
    /// there every weight is f32 in the wasm32 memory, which a browser caps at 4 GiB
    /// ([`CPU_WEIGHT_BUDGET_BYTES`] of it for weights, the rest for activations and shards in
    /// flight).
    pub fn check_fits_the_cpu_path(&self) -> Result<()> {
        let need = self.f32_weight_bytes();
        if need <= CPU_WEIGHT_BUDGET_BYTES {
            return Ok(());
        }
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        Err(Error::Package(format!(
            "{} is too large for the CPU path: its weights take about {:.2} GiB in f32, and a browser tab's WebAssembly memory (4 GiB at most) holds {:.1} GiB of weights; it needs a GPU with WebGPU (choose GPU in the model panel, or use a computer or browser that has one)",
            self.name,
            gib(need),
            gib(CPU_WEIGHT_BUDGET_BYTES)
        )))
    }
}

/// The most f32 weight bytes the page's CPU path takes: of wasm32's 4 GiB, the rest is for
/// activations (SD1.5 at 512×512 in f32) and shards being downloaded.
pub const CPU_WEIGHT_BUDGET_BYTES: u64 = 5 << 29;
