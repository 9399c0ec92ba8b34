//! Where the CAD looks (MAM-E §3.3, Fig. 6): heatmaps of the lesion logit over the input, each as
//! Captum 0.9 computes it for a model with one output per image:
//!
//! - **Grad-CAM** (Selvaraju et al. 2017; Captum's `LayerGradCam` with `relu_attributions=True`
//!   on the last stage, upsampled by `LayerAttribution.interpolate`, bilinear): ReLU(Σₖ αₖ Aₖ),
//!   αₖ the spatial mean of ∂y/∂Aₖ. The head is global average pooling and one linear layer, so
//!   ∂y/∂Aₖ is `fc.weight[k] / (h·w)` at every position: no backward pass is needed, and the
//!   page computes it too.
//! - **Saliency** (Simonyan et al. 2014; Captum's `Saliency`): |∂y/∂x| (native only: it needs
//!   burn's autodiff).
//! - **SmoothGrad** (Smilkov et al. 2017; Captum's `NoiseTunnel(Saliency)`, `smoothgrad`): the
//!   mean of |∂y/∂x| at `samples` copies of x plus Gaussian noise of standard deviation `noise`
//!   (in input units, [−1, 1]); the noise is PyTorch's `randn` from `seed`.
//! - **Occlusion** (Zeiler & Fergus 2014; Captum's `Occlusion`, baseline 0 = mid-gray): each
//!   window of `window`² pixels, moved by `stride` (the last one cut at the border), set to 0;
//!   a pixel's value is the mean drop of the logit over the windows that covered it.

use burn::tensor::{Device, Tensor, TensorData};

use super::model::Cad;
use crate::imaging::{RgbImage, interpolate_bilinear};
#[cfg(not(target_arch = "wasm32"))]
use crate::torch_rng::TorchGenerator;

fn input(pixels: &[f32], side: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(pixels.to_vec(), [pixels.len() / (side * side), 1, side, side]), device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 tensors")
}

/// The logit of one image (`model` on any device).
pub fn logit(model: &Cad, pixels: &[f32], side: usize, device: &Device) -> f32 {
    values(model.forward(input(pixels, side, device)))[0]
}

/// Grad-CAM at the last stage's resolution (`h × w`, returned with it) and upsampled to the input.
pub fn grad_cam(model: &Cad, pixels: &[f32], side: usize, device: &Device) -> (Vec<f32>, (usize, usize), Vec<f32>) {
    let features = model.features(input(pixels, side, device));
    let [_, channels, h, w] = features.dims();
    let activations = values(features);
    // αₖ = ∂y/∂Aₖ averaged over positions = fc.weight[k] / (h·w) (fc.weight is `[channels, 1]`).
    let alpha: Vec<f32> = values(model.fc.weight.val()).iter().map(|&weight| weight / (h * w) as f32).collect();
    let cam: Vec<f32> = (0..h * w).map(|i| (0..channels).map(|k| alpha[k] * activations[k * h * w + i]).sum::<f32>().max(0.0)).collect();
    let upsampled = interpolate_bilinear(&cam, w, h, side, side);
    (cam, (h, w), upsampled)
}

#[cfg(not(target_arch = "wasm32"))]
/// |∂y/∂x| for each image of `pixels` (a batch of `side²` planes), summed over the batch
/// gradient (each image's logit depends on its own pixels only).
fn abs_gradients(model: &Cad, pixels: &[f32], side: usize, device: &Device) -> Vec<f32> {
    let x = input(pixels, side, device).require_grad();
    let grads = model.forward(x.clone()).sum().backward();
    values(x.grad(&grads).expect("the input requires a gradient").abs())
}

#[cfg(not(target_arch = "wasm32"))]
pub fn saliency(model: &Cad, pixels: &[f32], side: usize, device: &Device) -> Vec<f32> {
    abs_gradients(model, pixels, side, device)
}

#[cfg(not(target_arch = "wasm32"))]
/// The noisy copies SmoothGrad averages over: `x + noise · randn`, PyTorch's generator from `seed`.
pub fn smoothgrad_inputs(pixels: &[f32], samples: usize, noise: f32, seed: u64) -> Vec<f32> {
    let mut generator = TorchGenerator::manual_seed(seed);
    let z = generator.randn(samples * pixels.len());
    z.chunks_exact(pixels.len()).flat_map(|z| pixels.iter().zip(z).map(|(p, z)| p + noise * z)).collect()
}

#[cfg(not(target_arch = "wasm32"))]
pub fn smoothgrad(model: &Cad, pixels: &[f32], side: usize, samples: usize, noise: f32, seed: u64, device: &Device) -> Vec<f32> {
    let noisy = smoothgrad_inputs(pixels, samples, noise, seed);
    let mut sum = vec![0.0f32; pixels.len()];
    // A few copies at a time: the gradient of a batch holds all of them.
    for chunk in noisy.chunks(pixels.len() * 8) {
        for (k, g) in abs_gradients(model, chunk, side, device).into_iter().enumerate() {
            sum[k % pixels.len()] += g;
        }
    }
    sum.iter().map(|s| s / samples as f32).collect()
}

/// numpy's `.npy` (format 1.0) of a float32 `height × width` array.
pub fn npy(values: &[f32], height: usize, width: usize) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({height}, {width}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.bytes());
    out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    out
}

/// The jet colour map at t ∈ [0, 1].
fn jet(t: f32) -> [f32; 3] {
    let f = |x: f32| (1.5 - (4.0 * t - x).abs()).clamp(0.0, 1.0);
    [f(3.0), f(2.0), f(1.0)]
}

/// The heatmap (scaled to its maximum, negatives as 0) in jet over the gray image (`side²`
/// model inputs in [−1, 1]); `opacity` of the heatmap from 0 (image only) to 1 (heatmap only).
pub fn overlay(gray: &[f32], heatmap: &[f32], side: usize, opacity: f32) -> RgbImage {
    let max = heatmap.iter().fold(0.0f32, |m, &v| m.max(v));
    let pixels = gray
        .iter()
        .zip(heatmap)
        .flat_map(|(&g, &h)| {
            let colour = jet(if max > 0.0 { h.max(0.0) / max } else { 0.0 });
            let g = (g + 1.0) * 127.5;
            colour.map(|c| ((1.0 - opacity) * g + opacity * 255.0 * c).round().clamp(0.0, 255.0) as u8)
        })
        .collect();
    RgbImage { width: side, height: side, pixels }
}

/// Window starts along a side: Captum's `ceil((side − window) / stride) + 1` positions.
fn starts(side: usize, window: usize, stride: usize) -> Vec<usize> {
    let count = (side.saturating_sub(window)).div_ceil(stride) + 1;
    (0..count).map(|k| k * stride).collect()
}

/// Refuses a window and stride occlusion cannot use on a `side`-pixel image.
pub fn check_occlusion(side: usize, window: usize, stride: usize) -> Result<(), String> {
    if window == 0 || stride == 0 || window > side || stride > window {
        return Err(format!("occlusion: window {window} and stride {stride} on a {side}-pixel image (1 ≤ stride ≤ window ≤ side)"));
    }
    Ok(())
}

pub fn occlusion(model: &Cad, pixels: &[f32], side: usize, window: usize, stride: usize, device: &Device) -> Result<Vec<f32>, String> {
    check_occlusion(side, window, stride)?;
    let base = logit(model, pixels, side, device);
    let positions: Vec<(usize, usize)> =
        starts(side, window, stride).into_iter().flat_map(|y| starts(side, window, stride).into_iter().map(move |x| (y, x))).collect();
    let (mut total, mut count) = (vec![0.0f32; side * side], vec![0u32; side * side]);
    for batch in positions.chunks(16) {
        let mut occluded = Vec::with_capacity(batch.len() * side * side);
        for &(y0, x0) in batch {
            let mut copy = pixels.to_vec();
            for y in y0..(y0 + window).min(side) {
                copy[y * side + x0..y * side + (x0 + window).min(side)].fill(0.0);
            }
            occluded.extend(copy);
        }
        let logits = values(model.forward(input(&occluded, side, device)));
        for (&(y0, x0), l) in batch.iter().zip(logits) {
            for y in y0..(y0 + window).min(side) {
                for x in x0..(x0 + window).min(side) {
                    total[y * side + x] += base - l;
                    count[y * side + x] += 1;
                }
            }
        }
    }
    Ok(total.iter().zip(&count).map(|(t, &c)| t / c as f32).collect())
}

/// The lesion probability of a logit (the sigmoid).
pub fn probability(logit: f32) -> f32 {
    1.0 / (1.0 + (-logit).exp())
}

/// How much of a heatmap's positive mass falls on the lesion, against the lesion's share of the
/// breast: a ratio above 1 means the CAD looks at the lesion more than at a random spot of
/// the breast of its size.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LesionAttention {
    /// Σ heatmap⁺ inside the mask / Σ heatmap⁺ inside the breast.
    pub mass_in_lesion: f64,
    /// Mask pixels / breast pixels.
    pub lesion_share_of_breast: f64,
    pub ratio: f64,
}

/// `mask` and `breast`: one flag per pixel of the heatmap.
pub fn lesion_attention(heatmap: &[f32], mask: &[bool], breast: &[bool]) -> Option<LesionAttention> {
    let in_breast = |i: &usize| breast[*i] || mask[*i];
    let positive = |i: usize| f64::from(heatmap[i].max(0.0));
    let breast_mass: f64 = (0..heatmap.len()).filter(in_breast).map(positive).sum();
    let lesion_mass: f64 = (0..heatmap.len()).filter(|&i| mask[i]).map(positive).sum();
    let breast_pixels = (0..heatmap.len()).filter(in_breast).count();
    let lesion_pixels = mask.iter().filter(|&&m| m).count();
    if breast_mass <= 0.0 || lesion_pixels == 0 {
        return None;
    }
    let mass_in_lesion = lesion_mass / breast_mass;
    let lesion_share_of_breast = lesion_pixels as f64 / breast_pixels as f64;
    Some(LesionAttention { mass_in_lesion, lesion_share_of_breast, ratio: mass_in_lesion / lesion_share_of_breast })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_positions_follow_captum() {
        // ceil((10 − 4) / 3) + 1 = 3 windows: 0, 3, 6 (the last reaches the border exactly).
        assert_eq!(starts(10, 4, 3), vec![0, 3, 6]);
        // ceil((10 − 4) / 4) + 1 = 3: 0, 4, 8 (the last cut to 8..10).
        assert_eq!(starts(10, 4, 4), vec![0, 4, 8]);
        assert_eq!(starts(8, 8, 2), vec![0]);
    }

    #[test]
    fn attention_of_a_map_that_is_all_on_the_lesion() {
        let mask = [false, true, true, false];
        let breast = [true, true, true, true];
        let a = lesion_attention(&[0.0, 1.0, 3.0, -2.0], &mask, &breast).unwrap();
        assert_eq!((a.mass_in_lesion, a.lesion_share_of_breast, a.ratio), (1.0, 0.5, 2.0));
        assert!(lesion_attention(&[0.0; 4], &mask, &breast).is_none());
    }
}
