//! Stable Diffusion pipelines as diffusers names their stages: `check_inputs` →
//! `encode_prompt` → `prepare_latents` → denoise (one `step` at a time, so callers can show
//! progress, preview, cancel, or yield to the browser's event loop) → `decode`.

pub mod image_processor;
pub mod inpaint;
pub mod output;
pub mod text_to_image;

use burn::tensor::{Device, FloatDType, Tensor, TensorData};

use crate::model::clip::ClipTextModel;
use crate::model::precision::{Precision, cast_weights, compute_dtype};
use crate::model::unet::UNet2DConditionModel;
use crate::model::vae::AutoencoderKl;
use crate::rng::NoiseSource;
use crate::schedulers::SchedulerConfig;
use crate::tokenizer::ClipTokenizer;
use crate::{Error, Result};

/// The loaded components of an SD1.5-architecture model.
pub struct StableDiffusion {
    pub tokenizer: ClipTokenizer,
    pub text_encoder: ClipTextModel,
    pub unet: UNet2DConditionModel,
    pub vae: AutoencoderKl,
    pub scheduler_config: SchedulerConfig,
    /// `vae/config.json`'s `scaling_factor`.
    pub vae_scaling_factor: f64,
    /// Pixels per latent along each side: `2^(len(vae.block_out_channels) - 1)` (8 for SD1.5).
    pub vae_scale_factor: usize,
    pub device: Device,
}

/// Text embeddings for classifier-free guidance, and how much of the prompt was cut.
pub struct PromptEmbeddings {
    /// `[2B, 77, dim]` as `[uncond × B, cond × B]` with guidance, else `[B, 77, dim]` (cond only).
    pub context: Tensor<3>,
    pub truncated_tokens: usize,
}

impl StableDiffusion {
    /// Tokenizes and encodes `prompt` (and `negative_prompt` when guiding), as diffusers'
    /// `encode_prompt`: batch order `[uncond, cond]`.
    pub fn encode_prompt(&self, prompt: &str, negative_prompt: &str, guided: bool) -> Result<PromptEmbeddings> {
        self.encode_prompts(&[prompt], negative_prompt, guided)
    }

    /// [`Self::encode_prompt`] for a batch: `[uncond × B, cond_1 … cond_B]` with guidance, as
    /// diffusers batches `num_images_per_prompt`. `truncated_tokens`: the most any prompt lost.
    pub fn encode_prompts(&self, prompts: &[&str], negative_prompt: &str, guided: bool) -> Result<PromptEmbeddings> {
        let mut rows = Vec::new();
        if guided {
            let negative = self.tokenizer.encode(negative_prompt)?.ids;
            rows.extend(std::iter::repeat_n(negative, prompts.len()));
        }
        let mut truncated_tokens = 0;
        for prompt in prompts {
            let cond = self.tokenizer.encode(prompt)?;
            truncated_tokens = truncated_tokens.max(cond.truncated_tokens);
            rows.push(cond.ids);
        }
        let context = self.text_encoder.forward_ids(&rows, &self.device);
        Ok(PromptEmbeddings { context, truncated_tokens })
    }

    /// The image side diffusers renders by default: the UNet's `sample_size` × the VAE factor
    /// (SD1.5: 64 × 8 = 512; the demo model: 16 × 8 = 128), 512 where the config has none.
    pub fn default_size(&self) -> usize {
        self.unet.sample_size().map_or(512, |s| s * self.vae_scale_factor)
    }

    /// Latent size for an image size, checking it is a multiple of the VAE factor.
    pub fn latent_size(&self, height: usize, width: usize) -> Result<[usize; 2]> {
        // diffusers requires multiples of 8 whatever the VAE; keep the same rule.
        let multiple = self.vae_scale_factor.max(8);
        if height == 0 || width == 0 || !height.is_multiple_of(multiple) || !width.is_multiple_of(multiple) {
            return Err(Error::InvalidInput { what: "image size", reason: format!("{height}×{width} must be positive multiples of {multiple}") });
        }
        Ok([height / self.vae_scale_factor, width / self.vae_scale_factor])
    }

    /// Seeded noise for `[1, channels, h, w]` from `source`, the same numbers on every platform.
    pub fn noise(&self, source: NoiseSource, seed: u64, shape: [usize; 4]) -> Result<Tensor<4>> {
        let values = source.randn(seed, shape.iter().product())?;
        Ok(Tensor::from_data(TensorData::new(values, shape), &self.device))
    }

    /// What the UNet computes in: f16 when its weights are f16 (see `model::precision`).
    pub fn precision(&self) -> Precision {
        match compute_dtype(&self.unet.conv_in.weight.val()) {
            FloatDType::F16 => Precision::F16,
            _ => Precision::F32,
        }
    }

    /// The same model computing its UNet and text encoder in `precision` (their weights cast;
    /// the VAE stays f32). f16 needs a GPU with f16 shaders.
    pub fn with_precision(self, precision: Precision) -> Result<Self> {
        precision.check(&self.device)?;
        let dtype = precision.dtype();
        Ok(StableDiffusion { text_encoder: cast_weights(self.text_encoder, dtype), unet: cast_weights(self.unet, dtype), ..self })
    }

    /// Final latents to an image in [0, 1]: `vae.decode(latents / scaling_factor) / 2 + 0.5`,
    /// clamped, as diffusers' image processor does.
    pub fn decode(&self, latents: Tensor<4>) -> Tensor<4> {
        image_processor::denormalize(self.vae.decode(latents / self.vae_scaling_factor))
    }
}
