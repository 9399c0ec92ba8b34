//! One generation (text-to-image or inpainting) in the page: a step at a time, giving the event
//! loop back between steps, with a live preview
//! and a cancel flag checked after every step.

use std::cell::Cell;
use std::rc::Rc;

use crate::Result;
use crate::device::read_f32;
use crate::imaging::RgbImage;
use crate::pipeline::StableDiffusion;
use crate::pipeline::image_processor::to_rgb8;
use crate::pipeline::text_to_image::GenerateParams;

/// How SD1.5 latent channels roughly map to RGB: the widely used linear approximation for
/// previews (no VAE decode).
const LATENT_RGB: [[f32; 3]; 4] = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]];

/// A `[1, 4, h, w]` latent as a cheap h×w RGB picture.
pub fn latent_preview(latents: &[f32], height: usize, width: usize) -> RgbImage {
    let plane = height * width;
    let mut pixels = Vec::with_capacity(plane * 3);
    for i in 0..plane {
        for channel in 0..3 {
            let v: f32 = LATENT_RGB.iter().enumerate().map(|(k, rgb)| rgb[channel] * latents.get(k * plane + i).copied().unwrap_or(0.0)).sum();
            pixels.push(((v + 1.0) * 127.5).clamp(0.0, 255.0) as u8);
        }
    }
    RgbImage { width, height, pixels }
}

/// What a run is asked to do.
pub enum Job {
    TextToImage,
    /// The image (at the model's size) and its mask (255 = repaint).
    Inpaint {
        image: RgbImage,
        mask: Vec<u8>,
    },
}

/// Runs `job` on `sd`; `on_step(done, total, preview)` after every step. `None` when cancelled.
pub async fn run(
    sd: &StableDiffusion,
    job: &Job,
    params: &GenerateParams,
    cancel: Rc<Cell<bool>>,
    on_step: impl Fn(usize, usize, RgbImage),
) -> Result<Option<RgbImage>> {
    let mut denoising = match job {
        Job::TextToImage => sd.start(params, None)?,
        Job::Inpaint { image, mask } => sd.start_inpaint(params, image, mask, None)?,
    };
    loop {
        let more = denoising.step();
        let latents = denoising.latents();
        let [_, _, h, w] = latents.dims();
        // Awaiting the read-back waits for the GPU and gives the event loop a turn there; on the
        // CPU it returns at once, so the loop yields itself (Cancel arrives as a message).
        let values = read_f32(latents).await?;
        super::scope::yield_now().await;
        let (done, total) = denoising.progress();
        on_step(done, total, latent_preview(&values, h, w));
        if cancel.get() {
            return Ok(None);
        }
        if !more {
            break;
        }
    }
    Ok(Some(to_rgb8(sd.decode(denoising.latents())).await?))
}
