//! `ResnetBlock2D`, `Downsample2D` and `Upsample2D` (diffusers `models/resnet.py`,
//! `models/downsampling.py`, `models/upsampling.py`) with SD's settings: SiLU, GroupNorm,
//! 3×3 convolutions, optional time-embedding projection, 1×1 shortcut when channels change.

use super::ops;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};

/// A k×k convolution with "same" padding for odd k.
pub fn conv(in_channels: usize, out_channels: usize, kernel: usize, device: &Device) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new([in_channels, out_channels], [kernel, kernel]).with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad)).init(device)
}

pub fn group_norm(groups: usize, channels: usize, eps: f64, device: &Device) -> GroupNorm {
    GroupNormConfig::new(groups, channels).with_epsilon(eps).init(device)
}

#[derive(Module, Debug)]
pub struct ResnetBlock2D {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    pub time_emb_proj: Option<Linear>,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    pub conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    /// `temb_channels` is `None` in the VAE, which has no time embedding.
    pub fn new(in_channels: usize, out_channels: usize, temb_channels: Option<usize>, groups: usize, eps: f64, device: &Device) -> Self {
        Self {
            norm1: group_norm(groups, in_channels, eps, device),
            conv1: conv(in_channels, out_channels, 3, device),
            time_emb_proj: temb_channels.map(|t| LinearConfig::new(t, out_channels).init(device)),
            norm2: group_norm(groups, out_channels, eps, device),
            conv2: conv(out_channels, out_channels, 3, device),
            conv_shortcut: (in_channels != out_channels).then(|| conv(in_channels, out_channels, 1, device)),
        }
    }

    /// # Shapes
    /// - x: `[batch, in_channels, h, w]`; temb: `[batch, temb_channels]`
    /// - output: `[batch, out_channels, h, w]`
    pub fn forward(&self, x: Tensor<4>, temb: Option<Tensor<2>>) -> Tensor<4> {
        let mut h = ops::conv2d(&self.conv1, ops::group_norm_silu(&self.norm1, x.clone()));
        if let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb) {
            let t = proj.forward(ops::silu(temb));
            let [b, c] = t.dims();
            h = h + t.reshape([b, c, 1, 1]);
        }
        let h = ops::conv2d(&self.conv2, ops::group_norm_silu(&self.norm2, h));
        let x = match &self.conv_shortcut {
            Some(shortcut) => ops::conv2d(shortcut, x),
            None => x,
        };
        x + h
    }
}

/// Stride-2 3×3 convolution. The VAE pads (0, 1, 0, 1) then convolves without padding; the
/// UNet pads 1 on every side.
#[derive(Module, Debug)]
pub struct Downsample2D {
    pub conv: Conv2d,
}

impl Downsample2D {
    pub fn new(channels: usize, vae_padding: bool, device: &Device) -> Self {
        let padding = if vae_padding { PaddingConfig2d::Explicit(0, 0, 1, 1) } else { PaddingConfig2d::Explicit(1, 1, 1, 1) };
        let conv = Conv2dConfig::new([channels, channels], [3, 3]).with_stride([2, 2]).with_padding(padding).init(device);
        Self { conv }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        ops::conv2d(&self.conv, x)
    }
}

/// Nearest-neighbour ×2 (or to an explicit size, when the UNet's skip connection is odd-sized)
/// followed by a 3×3 convolution.
#[derive(Module, Debug)]
pub struct Upsample2D {
    pub conv: Conv2d,
}

impl Upsample2D {
    pub fn new(channels: usize, device: &Device) -> Self {
        Self { conv: conv(channels, channels, 3, device) }
    }

    pub fn forward(&self, x: Tensor<4>, size: Option<[usize; 2]>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let size = size.unwrap_or([h * 2, w * 2]);
        ops::conv2d(&self.conv, interpolate(x, InterpolateOptions::new(InterpolateMode::Nearest).with_output_size(size)))
    }
}
