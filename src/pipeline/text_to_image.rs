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
    pub(super) latents: Tensor<4>,
    /// Extra UNet input channels after the latents (inpainting: mask + masked-image latents),
    /// already batched like `context`.
    pub(super) conditioning: Option<Tensor<4>>,
    pub(super) guidance: f64,
    /// Latent blending for a 4-channel model's inpainting: (image latents, latent mask, initial noise).
    pub(super) blend: Option<(Tensor<4>, Tensor<4>, Tensor<4>)>,
    pub(super) index: usize,
    /// Prompt tokens beyond the 77-token context, dropped.
    pub truncated_tokens: usize,
}

impl StableDiffusion {
    /// Checks the parameters, encodes the prompt and prepares the initial latents.
    /// `init_noise` (unit Gaussian, `[1, 4, H/f, W/f]`) replaces our seeded noise, as diffusers'
    /// `latents=` argument does, so a diffusers run can be reproduced exactly.
    pub fn start(&self, params: &GenerateParams, init_noise: Option<Tensor<4>>) -> Result<Denoising<'_>> {
        if self.unet.in_channels() != self.unet.out_channels() {
            return Err(Error::InvalidInput {
                what: "model",
                reason: format!("its UNet takes {} input channels: an inpainting model needs an image and a mask", self.unet.in_channels()),
            });
        }
        self.start_with(params, init_noise, None, None)
    }

    /// `start` with extra UNet input channels (see [`Denoising`]), for the inpainting pipeline.
    pub(super) fn start_with(
        &self,
        params: &GenerateParams,
        init_noise: Option<Tensor<4>>,
        conditioning: Option<Tensor<4>>,
        blend: Option<(Tensor<4>, Tensor<4>)>,
    ) -> Result<Denoising<'_>> {
        if !(1..=1000).contains(&params.steps) {
            return Err(Error::InvalidInput { what: "steps", reason: format!("{} is outside 1..=1000", params.steps) });
        }
        if !params.guidance.is_finite() || params.guidance < 0.0 {
            return Err(Error::InvalidInput { what: "guidance", reason: format!("{} must be a finite number ≥ 0", params.guidance) });
        }
        let [h, w] = self.latent_size(params.height, params.width)?;
        let shape = [1, self.unet.out_channels(), h, w];
        let noise = match init_noise {
            Some(noise) if noise.dims() != shape => {
                return Err(Error::InvalidInput { what: "initial noise", reason: format!("shape {:?}, expected {shape:?}", noise.dims()) });
            }
            Some(noise) => noise,
            None => self.noise(params.noise, params.seed, shape)?,
        };
        let scheduler = params.scheduler.build(&self.scheduler_config, params.steps)?;
        let latents = noise.clone() * scheduler.init_noise_sigma();
        let blend = blend.map(|(image_latents, mask)| (image_latents, mask, noise));
        let embeddings = self.encode_prompt(&params.prompt, &params.negative_prompt, params.guidance > 1.0)?;
        let conditioning = conditioning.map(|c| if params.guidance > 1.0 { Tensor::cat(vec![c.clone(), c], 0) } else { c });
        Ok(Denoising {
            sd: self,
            scheduler,
            context: embeddings.context,
            latents,
            conditioning,
            guidance: params.guidance,
            blend,
            index: 0,
            truncated_tokens: embeddings.truncated_tokens,
        })
    }
}

impl Denoising<'_> {
    /// Runs one UNet evaluation and scheduler step; `false` once every step is done.
    pub fn step(&mut self) -> bool {
        let Some(&t) = self.scheduler.timesteps().get(self.index) else { return false };
        let guided = self.context.dims()[0] == 2;
        let scaled = self.scheduler.scale_model_input(self.latents.clone(), self.index);
        let (input, timesteps) = if guided { (Tensor::cat(vec![scaled.clone(), scaled], 0), vec![t, t]) } else { (scaled, vec![t]) };
        let input = match &self.conditioning {
            Some(extra) => Tensor::cat(vec![input, extra.clone()], 1),
            None => input,
        };
        let out = self.sd.unet.forward(input, &timesteps, self.context.clone());
        let noise_pred = if guided {
            let [_, c, h, w] = out.dims();
            let uncond = out.clone().slice([0..1, 0..c, 0..h, 0..w]);
            let cond = out.slice([1..2, 0..c, 0..h, 0..w]);
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
    pub fn finish_image(mut self) -> Result<crate::imaging::RgbImage> {
        while self.step() {}
        pollster::block_on(super::to_rgb8(self.sd.decode(self.latents)))
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
