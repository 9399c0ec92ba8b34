//! Pixels ↔ tensors, as diffusers' `VaeImageProcessor`: 8-bit values to the VAE's [−1, 1]
//! (`normalize`), channel planes first; the VAE's output back to [0, 1] (`denormalize`) and to
//! rounded 8-bit RGB (`numpy_to_pil`). Used by the pipelines, training and evaluation.

use burn::tensor::{Device, Tensor, TensorData};

use crate::Result;
use crate::imaging::RgbImage;

/// An 8-bit value (or a resized one, in 0–255) in the VAE's range [−1, 1].
pub fn normalize(value: f32) -> f32 {
    value / 127.5 - 1.0
}

/// `image` as normalized channel planes (R, G, B), `3 × height × width` values.
pub fn planes(image: &RgbImage) -> Vec<f32> {
    (0..3).flat_map(|c| image.pixels.chunks_exact(3).map(move |px| normalize(f32::from(px[c])))).collect()
}

/// `image` as the VAE's input, `[1, 3, height, width]` in [−1, 1].
pub fn preprocess(image: &RgbImage, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(planes(image), [1, 3, image.height, image.width]), device)
}

/// The VAE's output in [−1, 1] to [0, 1], clamped.
pub fn denormalize(image: Tensor<4>) -> Tensor<4> {
    (image / 2.0 + 0.5).clamp(0.0, 1.0)
}

/// Normalized channel planes (`3 × height × width`, [−1, 1]) as 8-bit RGB, rounded.
pub fn planes_to_rgb8(planes: &[f32], width: usize, height: usize) -> RgbImage {
    let plane = width * height;
    let pixels = (0..plane).flat_map(|i| (0..3).map(move |c| ((planes[c * plane + i] + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8)).collect();
    RgbImage { width, height, pixels }
}

/// An image in [0, 1], `[1, 3, h, w]`, as 8-bit RGB (rounded as diffusers' `numpy_to_pil`).
pub async fn to_rgb8(image: Tensor<4>) -> Result<RgbImage> {
    let [_, c, h, w] = image.dims();
    let values = crate::device::read_f32(image).await?;
    let mut rgb = vec![0u8; h * w * 3];
    for y in 0..h {
        for x in 0..w {
            for ch in 0..3 {
                let v = values[(ch.min(c - 1) * h + y) * w + x];
                rgb[(y * w + x) * 3 + ch] = (v * 255.0).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    Ok(RgbImage { width: w, height: h, pixels: rgb })
}
