//! Lesion inpainting (diffusers `StableDiffusionInpaintPipeline`, MAM-E's lesion tool).
//!
//! With a 9-channel UNet (MAM-E's): the UNet sees `cat([scaled latents, mask, masked-image
//! latents])`, where `masked_image = image * (mask < 0.5)`, the mask is resized to latent size by
//! nearest neighbour, and the masked-image latents are the VAE posterior **mean**
//! (deterministic; diffusers samples it) times `scaling_factor`.
//!
//! With a 4-channel (text-to-image) UNet: latent blending — after every step the latents outside
//! the mask are replaced by the image's latents (posterior mean × `scaling_factor`) noised to the
//! next timestep, as diffusers does for such models.

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Tensor, TensorData};

use super::StableDiffusion;
use super::text_to_image::{Denoising, GenerateParams};
use crate::imaging::RgbImage;
use crate::{Error, Result};

/// Latent channels + mask + masked-image latents.
pub const INPAINT_CHANNELS: usize = 4 + 1 + 4;

impl StableDiffusion {
    /// Starts inpainting `image` where `mask` (8-bit gray, one byte per pixel; ≥ 128 means
    /// "repaint", as diffusers binarises at 0.5) is set. Both must be `params.height` ×
    /// `params.width`.
    pub fn start_inpaint(&self, params: &GenerateParams, image: &RgbImage, mask: &[u8], init_noise: Option<Tensor<4>>) -> Result<Denoising<'_>> {
        self.start_inpaint_batch(std::slice::from_ref(params), &[(image, mask)], init_noise)
    }

    /// [`Self::start_inpaint`] for B images in one UNet batch: image *i* is `items[i]` painted
    /// with `params[i]` (which may differ in prompt and seed only).
    pub fn start_inpaint_batch(&self, params: &[GenerateParams], items: &[(&RgbImage, &[u8])], init_noise: Option<Tensor<4>>) -> Result<Denoising<'_>> {
        let channels = self.unet.in_channels();
        if channels != INPAINT_CHANNELS && channels != self.unet.out_channels() {
            return Err(Error::InvalidInput {
                what: "model",
                reason: format!(
                    "its UNet takes {channels} input channels: inpainting needs {INPAINT_CHANNELS} (an inpainting model) or {} (latent blending)",
                    self.unet.out_channels()
                ),
            });
        }
        if items.len() != params.len() {
            return Err(Error::InvalidInput { what: "batch", reason: format!("{} images for {} parameter sets", items.len(), params.len()) });
        }
        let Some(first) = params.first() else { return Err(Error::InvalidInput { what: "batch", reason: "it has no images".into() }) };
        let (h, w) = (first.height, first.width);
        let [lh, lw] = self.latent_size(h, w)?;
        let mut inputs = Vec::new();
        for (image, mask) in items {
            inputs.push(self.inpaint_inputs(image, mask, [h, w], [lh, lw])?);
        }
        let (masks, latents): (Vec<_>, Vec<_>) = inputs.into_iter().unzip();
        let (masks, latents) = (Tensor::cat(masks, 0), Tensor::cat(latents, 0));
        if channels != INPAINT_CHANNELS {
            return self.start_with(params, init_noise, None, Some((latents, masks)));
        }
        self.start_with(params, init_noise, Some(Tensor::cat(vec![masks, latents], 1)), None)
    }

    /// One image's latent-size mask and latents: of the masked image for a 9-channel UNet, of
    /// the whole image for latent blending.
    fn inpaint_inputs(&self, image: &RgbImage, mask: &[u8], [h, w]: [usize; 2], latent_size: [usize; 2]) -> Result<(Tensor<4>, Tensor<4>)> {
        if (image.height, image.width) != (h, w) {
            return Err(Error::InvalidInput { what: "image", reason: format!("{}×{}, expected {h}×{w}", image.height, image.width) });
        }
        if mask.len() != h * w {
            return Err(Error::InvalidInput { what: "mask", reason: format!("{} pixels, expected {h}×{w} = {}", mask.len(), h * w) });
        }
        if mask.iter().all(|&m| m < 128) {
            return Err(Error::InvalidInput { what: "mask", reason: "it is empty: paint where the lesion should appear".into() });
        }
        let binary: Vec<f32> = mask.iter().map(|&m| if m >= 128 { 1.0 } else { 0.0 }).collect();
        // masked_image = image * (mask < 0.5) for the inpainting UNet; the image itself for
        // blending. In [-1, 1], channels first.
        let keep = |i: usize| if self.unet.in_channels() == INPAINT_CHANNELS { 1.0 - binary[i] } else { 1.0 };
        let mut pixels = super::image_processor::planes(image);
        for (k, value) in pixels.iter_mut().enumerate() {
            *value *= keep(k % (h * w));
        }
        let device = &self.device;
        let mask = Tensor::<4>::from_data(TensorData::new(binary, [1, 1, h, w]), device);
        let mask_latent = interpolate(mask, InterpolateOptions::new(InterpolateMode::Nearest).with_output_size(latent_size));
        let pixels = Tensor::<4>::from_data(TensorData::new(pixels, [1, 3, h, w]), device);
        Ok((mask_latent, self.vae.encode(pixels)?.mean * self.vae_scaling_factor))
    }
}
