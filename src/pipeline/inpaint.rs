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

use super::text_to_image::{Denoising, GenerateParams};
use super::StableDiffusion;
use crate::imaging::RgbImage;
use crate::{Error, Result};

/// Latent channels + mask + masked-image latents.
const INPAINT_CHANNELS: usize = 4 + 1 + 4;

impl StableDiffusion {
    /// Starts inpainting `image` where `mask` (8-bit gray, one byte per pixel; ≥ 128 means
    /// "repaint", as diffusers binarises at 0.5) is set. Both must be `params.height` ×
    /// `params.width`.
    pub fn start_inpaint(&self, params: &GenerateParams, image: &RgbImage, mask: &[u8], init_noise: Option<Tensor<4>>) -> Result<Denoising<'_>> {
        let channels = self.unet.in_channels();
        if channels != INPAINT_CHANNELS && channels != self.unet.out_channels() {
            return Err(Error::InvalidInput {
                what: "model",
                reason: format!("its UNet takes {channels} input channels: inpainting needs {INPAINT_CHANNELS} (an inpainting model) or {} (latent blending)", self.unet.out_channels()),
            });
        }
        let (h, w) = (params.height, params.width);
        if (image.height, image.width) != (h, w) {
            return Err(Error::InvalidInput { what: "image", reason: format!("{}×{}, expected {h}×{w}", image.height, image.width) });
        }
        if mask.len() != h * w {
            return Err(Error::InvalidInput { what: "mask", reason: format!("{} pixels, expected {h}×{w} = {}", mask.len(), h * w) });
        }
        if mask.iter().all(|&m| m < 128) {
            return Err(Error::InvalidInput { what: "mask", reason: "it is empty: paint where the lesion should appear".into() });
        }
        let [lh, lw] = self.latent_size(h, w)?;
        let binary: Vec<f32> = mask.iter().map(|&m| if m >= 128 { 1.0 } else { 0.0 }).collect();
        // masked_image = image * (mask < 0.5), in [-1, 1], channels first.
        let mut masked = vec![0.0f32; 3 * h * w];
        for (i, px) in image.pixels.chunks_exact(3).enumerate() {
            for c in 0..3 {
                masked[c * h * w + i] = (px[c] as f32 / 127.5 - 1.0) * (1.0 - binary[i]);
            }
        }
        let device = &self.device;
        let mask = Tensor::<4>::from_data(TensorData::new(binary, [1, 1, h, w]), device);
        let mask_latent = interpolate(mask, InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([lh, lw]));
        if channels != INPAINT_CHANNELS {
            let pixels: Vec<f32> = (0..3).flat_map(|c| image.pixels.chunks_exact(3).map(move |px| px[c] as f32 / 127.5 - 1.0)).collect();
            let image = Tensor::<4>::from_data(TensorData::new(pixels, [1, 3, h, w]), device);
            let image_latents = self.vae.encode(image)?.mean * self.vae_scaling_factor;
            return self.start_with(params, init_noise, None, Some((image_latents, mask_latent)));
        }
        let masked = Tensor::<4>::from_data(TensorData::new(masked, [1, 3, h, w]), device);
        let masked_latents = self.vae.encode(masked)?.mean * self.vae_scaling_factor;
        self.start_with(params, init_noise, Some(Tensor::cat(vec![mask_latent, masked_latents], 1)), None)
    }
}
