//! Text-to-image (diffusers `StableDiffusionPipeline`): classifier-free guidance with batch
//! order `[uncond, cond]`, guidance only when the scale is above 1 (as diffusers).

use burn::tensor::Tensor;

use super::StableDiffusion;
use crate::rng::NoiseSource;
use crate::schedulers::{Scheduler, SchedulerKind};
use crate::{Error, Result};

/// Everything that determines an image.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GenerateParams {
    pub prompt: String,
    pub negative_prompt: String,
    pub steps: usize,
    pub guidance: f64,
    pub scheduler: SchedulerKind,
    pub height: usize,
    pub width: usize,
    pub seed: u64,
    /// Which generator turns the seed into initial latents.
    pub noise: NoiseSource,
}

impl GenerateParams {
    /// The seed of image `index` of a batch starting at `first`: `first + index`, wrapping past
    /// 2^64 − 1 to 0 (a seed near the top must not overflow).
    pub fn batch_seed(first: u64, index: u64) -> u64 {
        first.wrapping_add(index)
    }

    /// The parameters as stored in a PNG's `parameters` chunk (the CLI and the web app add the
    /// model, laterality and software).
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "prompt": self.prompt, "negative_prompt": self.negative_prompt, "steps": self.steps,
            "guidance": self.guidance, "scheduler": self.scheduler.name(), "height": self.height,
            "width": self.width, "seed": self.seed, "noise": self.noise.name(),
        })
    }
}

impl Default for GenerateParams {
    /// MAM-E's defaults for the fusion model.
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: String::new(),
            steps: 24,
            guidance: 6.0,
            scheduler: SchedulerKind::Dpm,
            height: 512,
            width: 512,
            seed: 1338,
            noise: NoiseSource::Torch,
        }
    }
}

/// A denoising run in progress: call [`Denoising::step`] until it returns `false`.
pub struct Denoising<'a> {
    pub(super) sd: &'a StableDiffusion,
    pub(super) scheduler: Box<dyn Scheduler>,
    pub(super) context: Tensor<3>,
    /// `[B, 4, h, w]`: B images denoised together.
    pub(super) latents: Tensor<4>,
    /// Extra UNet input channels after the latents (inpainting: mask + masked-image latents),
    /// already batched like `context`.
    pub(super) conditioning: Option<Tensor<4>>,
    pub(super) guidance: f64,
    /// Latent blending for a 4-channel model's inpainting: (image latents, latent mask, initial noise).
    pub(super) blend: Option<(Tensor<4>, Tensor<4>, Tensor<4>)>,
    pub(super) index: usize,
    /// Prompt tokens beyond the 77-token context, dropped (the most of any prompt in the batch).
    pub truncated_tokens: usize,
}

impl StableDiffusion {
    /// Checks the parameters, encodes the prompt and prepares the initial latents.
    /// `init_noise` (unit Gaussian, `[1, 4, H/f, W/f]`) replaces our seeded noise, as diffusers'
    /// `latents=` argument does, so a diffusers run can be reproduced exactly.
    pub fn start(&self, params: &GenerateParams, init_noise: Option<Tensor<4>>) -> Result<Denoising<'_>> {
        self.start_batch(std::slice::from_ref(params), init_noise)
    }

    /// Text-to-image for B images in one UNet batch: each its own prompt and seed, the rest
    /// (steps, guidance, scheduler, size, negative prompt, noise source) shared. Image *i* gets
    /// the noise its own `start` would.
    pub fn start_batch(&self, params: &[GenerateParams], init_noise: Option<Tensor<4>>) -> Result<Denoising<'_>> {
        if self.unet.in_channels() != self.unet.out_channels() {
            return Err(Error::InvalidInput {
                what: "model",
                reason: format!("its UNet takes {} input channels: an inpainting model needs an image and a mask", self.unet.in_channels()),
            });
        }
        self.start_with(params, init_noise, None, None)
    }

    /// `start_batch` with extra UNet input channels (see [`Denoising`]), for the inpainting pipeline.
    pub(super) fn start_with(
        &self,
        params: &[GenerateParams],
        init_noise: Option<Tensor<4>>,
        conditioning: Option<Tensor<4>>,
        blend: Option<(Tensor<4>, Tensor<4>)>,
    ) -> Result<Denoising<'_>> {
        let first = check_batch(params)?;
        if !(1..=1000).contains(&first.steps) {
            return Err(Error::InvalidInput { what: "steps", reason: format!("{} is outside 1..=1000", first.steps) });
        }
        if !first.guidance.is_finite() || first.guidance < 0.0 {
            return Err(Error::InvalidInput { what: "guidance", reason: format!("{} must be a finite number ≥ 0", first.guidance) });
        }
        let [h, w] = self.latent_size(first.height, first.width)?;
        let shape = [1, self.unet.out_channels(), h, w];
        let batch_shape = [params.len(), shape[1], h, w];
        let noise = match init_noise {
            Some(noise) if noise.dims() != batch_shape => {
                return Err(Error::InvalidInput { what: "initial noise", reason: format!("shape {:?}, expected {batch_shape:?}", noise.dims()) });
            }
            Some(noise) => noise,
            None => Tensor::cat(params.iter().map(|p| self.noise(p.noise, p.seed, shape)).collect::<Result<Vec<_>>>()?, 0),
        };
        let scheduler = first.scheduler.build(&self.scheduler_config, first.steps)?;
        let latents = noise.clone() * scheduler.init_noise_sigma();
        let blend = blend.map(|(image_latents, mask)| (image_latents, mask, noise));
        let guided = first.guidance > 1.0;
        let prompts: Vec<&str> = params.iter().map(|p| p.prompt.as_str()).collect();
        let embeddings = self.encode_prompts(&prompts, &first.negative_prompt, guided)?;
        let conditioning = conditioning.map(|c| if guided { Tensor::cat(vec![c.clone(), c], 0) } else { c });
        Ok(Denoising {
            sd: self,
            scheduler,
            context: embeddings.context,
            latents,
            conditioning,
            guidance: first.guidance,
            blend,
            index: 0,
            truncated_tokens: embeddings.truncated_tokens,
        })
    }
}

/// The batch's shared settings (its first image's), refusing an empty batch or one whose images
/// differ in anything but prompt and seed.
fn check_batch(params: &[GenerateParams]) -> Result<&GenerateParams> {
    let first = params.first().ok_or_else(|| Error::InvalidInput { what: "batch", reason: "it has no images".into() })?;
    let shared = |p: &GenerateParams| GenerateParams { prompt: String::new(), seed: 0, ..p.clone() };
    if let Some(other) = params.iter().find(|p| shared(p) != shared(first)) {
        return Err(Error::InvalidInput {
            what: "batch",
            reason: format!("its images differ in more than prompt and seed ({:?} vs {:?})", shared(first), shared(other)),
        });
    }
    Ok(first)
}

impl Denoising<'_> {
    /// Runs one UNet evaluation and scheduler step; `false` once every step is done.
    pub fn step(&mut self) -> bool {
        let Some(&t) = self.scheduler.timesteps().get(self.index) else { return false };
        let batch = self.latents.dims()[0];
        let guided = self.context.dims()[0] == 2 * batch;
        let scaled = self.scheduler.scale_model_input(self.latents.clone(), self.index);
        let (input, timesteps) = if guided { (Tensor::cat(vec![scaled.clone(), scaled], 0), vec![t; 2 * batch]) } else { (scaled, vec![t; batch]) };
        let input = match &self.conditioning {
            Some(extra) => Tensor::cat(vec![input, extra.clone()], 1),
            None => input,
        };
        let out = self.sd.unet.forward(input, &timesteps, self.context.clone());
        let noise_pred = if guided {
            let uncond = out.clone().narrow(0, 0, batch);
            let cond = out.narrow(0, batch, batch);
            uncond.clone() + (cond - uncond) * self.guidance
        } else {
            out
        };
        self.latents = self.scheduler.step(noise_pred, self.index, self.latents.clone());
        if let Some((image_latents, mask, noise)) = &self.blend {
            // diffusers: outside the mask, the image latents noised to the next timestep (clean
            // after the last step).
            let proper = if self.index + 1 < self.scheduler.timesteps().len() {
                self.scheduler.add_noise(image_latents.clone(), noise.clone(), self.index + 1)
            } else {
                image_latents.clone()
            };
            self.latents = proper * (mask.ones_like() - mask.clone()) + self.latents.clone() * mask.clone();
        }
        self.index += 1;
        self.index < self.scheduler.timesteps().len()
    }

    /// Steps done so far and in all.
    pub fn progress(&self) -> (usize, usize) {
        (self.index, self.scheduler.timesteps().len())
    }

    /// The current latents (after the last step: the final ones, before VAE decoding).
    pub fn latents(&self) -> Tensor<4> {
        self.latents.clone()
    }

    /// Runs the remaining steps and decodes: the final image, for native callers that need no
    /// per-step progress (the page and `mam-e generate` step themselves).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn finish_image(self) -> Result<crate::imaging::RgbImage> {
        Ok(self.finish_images()?.remove(0))
    }

    /// Runs the remaining steps and decodes each image of the batch on its own (the VAE at
    /// batch 1, so image *i* decodes as it would alone and SD1.5-size batches fit in memory).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn finish_images(mut self) -> Result<Vec<crate::imaging::RgbImage>> {
        while self.step() {}
        let batch = self.latents.dims()[0];
        (0..batch).map(|i| pollster::block_on(super::image_processor::to_rgb8(self.sd.decode(self.latents.clone().narrow(0, i, 1))))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::GenerateParams;

    #[test]
    fn batch_seeds_wrap_at_the_top_of_u64() {
        assert_eq!(GenerateParams::batch_seed(1338, 2), 1340);
        assert_eq!(GenerateParams::batch_seed(u64::MAX - 1, 1), u64::MAX);
        assert_eq!(GenerateParams::batch_seed(u64::MAX, 1), 0);
        assert_eq!(GenerateParams::batch_seed(u64::MAX, 15), 14);
    }
}
