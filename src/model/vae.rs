//! `AutoencoderKL` (diffusers `models/autoencoders/autoencoder_kl.py` and `vae.py`): the
//! encoder to a diagonal Gaussian over latents, and the decoder back to pixels.
//!
//! Latents are multiplied by `scaling_factor` (from `vae/config.json`, 0.18215 for SD1.5) after
//! encoding and divided by it before decoding; the pipeline does that, not this module.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::Deserialize;

use super::ops::{self, scaled_dot_product_attention};
use super::resnet::{Downsample2D, ResnetBlock2D, Upsample2D, conv, group_norm};
use crate::{Error, Result};

/// `vae/config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AutoencoderKlConfig {
    #[serde(default = "d_three")]
    pub in_channels: usize,
    #[serde(default = "d_three")]
    pub out_channels: usize,
    #[serde(default = "d_blocks")]
    pub block_out_channels: Vec<usize>,
    #[serde(default = "d_one")]
    pub layers_per_block: usize,
    #[serde(default = "d_four")]
    pub latent_channels: usize,
    #[serde(default = "d_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "d_scaling")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub down_block_types: Vec<String>,
    #[serde(default)]
    pub up_block_types: Vec<String>,
    #[serde(default = "d_act")]
    pub act_fn: String,
    #[serde(default = "d_true")]
    pub mid_block_add_attention: bool,
    #[serde(default = "d_true")]
    pub use_quant_conv: bool,
    #[serde(default = "d_true")]
    pub use_post_quant_conv: bool,
}

fn d_three() -> usize {
    3
}
fn d_one() -> usize {
    1
}
fn d_four() -> usize {
    4
}
fn d_groups() -> usize {
    32
}
fn d_blocks() -> Vec<usize> {
    vec![64]
}
fn d_scaling() -> f64 {
    0.18215
}
fn d_act() -> String {
    "silu".into()
}
fn d_true() -> bool {
    true
}

/// The VAE's GroupNorm epsilon (diffusers hard-codes 1e-6 in the VAE blocks).
const EPS: f64 = 1e-6;

impl AutoencoderKlConfig {
    /// SD1.5's VAE: 128/256/512/512 channels, 2 layers per block, 4 latent channels.
    pub fn sd15() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            latent_channels: 4,
            norm_num_groups: 32,
            scaling_factor: 0.18215,
            down_block_types: vec!["DownEncoderBlock2D".into(); 4],
            up_block_types: vec!["UpDecoderBlock2D".into(); 4],
            act_fn: "silu".into(),
            mid_block_add_attention: true,
            use_quant_conv: true,
            use_post_quant_conv: true,
        }
    }

    /// The tiny test size of tests/fixtures (32/64 channels, 1 layer per block, 8 groups).
    pub fn tiny() -> Self {
        Self { block_out_channels: vec![32, 64], layers_per_block: 1, norm_num_groups: 8, down_block_types: vec![], up_block_types: vec![], ..Self::sd15() }
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(text).map_err(|e| bad_config(e.to_string()))?;
        if config.act_fn != "silu" {
            return Err(bad_config(format!("unsupported act_fn {:?}", config.act_fn)));
        }
        let blocks = config.block_out_channels.len();
        let types_ok = |types: &[String], want: &str| types.is_empty() || (types.len() == blocks && types.iter().all(|t| t == want));
        if !types_ok(&config.down_block_types, "DownEncoderBlock2D") || !types_ok(&config.up_block_types, "UpDecoderBlock2D") {
            return Err(bad_config("only DownEncoderBlock2D / UpDecoderBlock2D blocks, one per block_out_channels entry, are supported".into()));
        }
        if config.norm_num_groups == 0 || config.latent_channels == 0 || config.layers_per_block == 0 || config.layers_per_block > 16 {
            return Err(bad_config(format!(
                "norm_num_groups {}, latent_channels {} and layers_per_block {} must be positive (layers_per_block at most 16)",
                config.norm_num_groups, config.latent_channels, config.layers_per_block
            )));
        }
        if blocks == 0 || config.block_out_channels.iter().any(|&c| c == 0 || c > 16384 || c % config.norm_num_groups != 0) {
            return Err(bad_config(format!(
                "block_out_channels {:?} must be multiples of norm_num_groups {}",
                config.block_out_channels, config.norm_num_groups
            )));
        }
        Ok(config)
    }

    /// A model with this architecture and untrained weights.
    pub fn init(&self, device: &Device) -> AutoencoderKl {
        self.build(true, device)
    }

    /// The decoder half only (and `post_quant_conv`): all text-to-image needs. [`AutoencoderKl::encode`]
    /// then fails.
    pub fn init_decoder(&self, device: &Device) -> AutoencoderKl {
        self.build(false, device)
    }

    fn build(&self, with_encoder: bool, device: &Device) -> AutoencoderKl {
        let ch = &self.block_out_channels;
        let g = self.norm_num_groups;
        let last = *ch.last().unwrap_or(&64);
        let down_blocks = || {
            ch.iter()
                .enumerate()
                .map(|(i, &out)| {
                    let input = if i == 0 { ch[0] } else { ch[i - 1] };
                    EncoderBlock {
                        resnets: (0..self.layers_per_block).map(|j| ResnetBlock2D::new(if j == 0 { input } else { out }, out, None, g, EPS, device)).collect(),
                        downsamplers: (i + 1 < ch.len()).then(|| Downsample2D::new(out, true, device)).into_iter().collect(),
                    }
                })
                .collect()
        };
        let reversed: Vec<usize> = ch.iter().rev().copied().collect();
        let up_blocks = reversed
            .iter()
            .enumerate()
            .map(|(i, &out)| {
                let input = if i == 0 { reversed[0] } else { reversed[i - 1] };
                DecoderBlock {
                    resnets: (0..=self.layers_per_block).map(|j| ResnetBlock2D::new(if j == 0 { input } else { out }, out, None, g, EPS, device)).collect(),
                    upsamplers: (i + 1 < ch.len()).then(|| Upsample2D::new(out, device)).into_iter().collect(),
                }
            })
            .collect();
        let mid = || MidBlock {
            resnets: vec![ResnetBlock2D::new(last, last, None, g, EPS, device), ResnetBlock2D::new(last, last, None, g, EPS, device)],
            attentions: if self.mid_block_add_attention { vec![SpatialAttention::new(last, g, device)] } else { vec![] },
        };
        let l = self.latent_channels;
        AutoencoderKl {
            encoder: with_encoder.then(|| Encoder {
                conv_in: conv(self.in_channels, ch[0], 3, device),
                down_blocks: down_blocks(),
                mid_block: mid(),
                conv_norm_out: group_norm(g, last, EPS, device),
                conv_out: conv(last, 2 * l, 3, device),
            }),
            decoder: Decoder {
                conv_in: conv(l, last, 3, device),
                mid_block: mid(),
                up_blocks,
                conv_norm_out: group_norm(g, ch[0], EPS, device),
                conv_out: conv(ch[0], self.out_channels, 3, device),
            },
            quant_conv: (with_encoder && self.use_quant_conv).then(|| conv(2 * l, 2 * l, 1, device)),
            post_quant_conv: self.use_post_quant_conv.then(|| conv(l, l, 1, device)),
        }
    }
}

fn bad_config(reason: String) -> Error {
    Error::Config { file: "vae/config.json".into(), reason }
}

#[derive(Module, Debug)]
pub struct AutoencoderKl {
    /// `None` in text-to-image packages, which ship the decoder only.
    pub encoder: Option<Encoder>,
    pub decoder: Decoder,
    pub quant_conv: Option<Conv2d>,
    pub post_quant_conv: Option<Conv2d>,
}

#[derive(Module, Debug)]
pub struct Encoder {
    pub conv_in: Conv2d,
    pub down_blocks: Vec<EncoderBlock>,
    pub mid_block: MidBlock,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

#[derive(Module, Debug)]
pub struct Decoder {
    pub conv_in: Conv2d,
    pub mid_block: MidBlock,
    pub up_blocks: Vec<DecoderBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

/// `DownEncoderBlock2D`.
#[derive(Module, Debug)]
pub struct EncoderBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub downsamplers: Vec<Downsample2D>,
}

/// `UpDecoderBlock2D`.
#[derive(Module, Debug)]
pub struct DecoderBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub upsamplers: Vec<Upsample2D>,
}

/// `UNetMidBlock2D` without time embedding: resnet, attention, resnet.
#[derive(Module, Debug)]
pub struct MidBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<SpatialAttention>,
}

/// diffusers `Attention` as the VAE uses it: group norm, one head over all channels, residual.
#[derive(Module, Debug)]
pub struct SpatialAttention {
    pub group_norm: GroupNorm,
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    /// `to_out.0` (diffusers keeps a dropout at `to_out.1`).
    pub to_out: Vec<Linear>,
}

impl SpatialAttention {
    fn new(channels: usize, groups: usize, device: &Device) -> Self {
        let linear = || LinearConfig::new(channels, channels).init(device);
        Self { group_norm: group_norm(groups, channels, EPS, device), to_q: linear(), to_k: linear(), to_v: linear(), to_out: vec![linear()] }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let tokens = ops::group_norm(&self.group_norm, x.clone()).reshape([b, c, h * w]).swap_dims(1, 2);
        let one_head = |t: Tensor<3>| t.reshape([b, 1, h * w, c]);
        let q = one_head(self.to_q.forward(tokens.clone()));
        let k = one_head(self.to_k.forward(tokens.clone()));
        let v = one_head(self.to_v.forward(tokens));
        let attended = scaled_dot_product_attention(q, k, v, false).reshape([b, h * w, c]);
        let out = self.to_out[0].forward(attended).swap_dims(1, 2).reshape([b, c, h, w]);
        out + x
    }
}

impl MidBlock {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, None);
        for attention in &self.attentions {
            x = attention.forward(x);
        }
        self.resnets[1].forward(x, None)
    }
}

/// The posterior over latents: a diagonal Gaussian.
pub struct LatentDistribution {
    pub mean: Tensor<4>,
    /// Clamped to [-30, 20] as diffusers does.
    pub logvar: Tensor<4>,
}

impl LatentDistribution {
    /// `mean + std * noise`.
    pub fn sample(&self, noise: Tensor<4>) -> Tensor<4> {
        self.mean.clone() + (self.logvar.clone() * 0.5).exp() * noise
    }
}

impl AutoencoderKl {
    /// Image in [-1, 1] to the latent posterior (before `scaling_factor`).
    ///
    /// # Shapes
    /// - image: `[batch, in_channels, H, W]`
    /// - mean, logvar: `[batch, latent_channels, H/2^(blocks-1), W/2^(blocks-1)]`
    pub fn encode(&self, image: Tensor<4>) -> Result<LatentDistribution> {
        let e = self.encoder.as_ref().ok_or_else(|| Error::InvalidInput {
            what: "model",
            reason: "this VAE has no encoder (a text-to-image package); inpainting needs an inpainting package".into(),
        })?;
        let mut x = ops::conv2d(&e.conv_in, image);
        for block in &e.down_blocks {
            for resnet in &block.resnets {
                x = resnet.forward(x, None);
            }
            for down in &block.downsamplers {
                x = down.forward(x);
            }
        }
        x = e.mid_block.forward(x);
        x = ops::conv2d(&e.conv_out, ops::group_norm_silu(&e.conv_norm_out, x));
        if let Some(quant) = &self.quant_conv {
            x = ops::conv2d(quant, x);
        }
        let [b, c, h, w] = x.dims();
        let half = c / 2;
        let mean = x.clone().slice([0..b, 0..half, 0..h, 0..w]);
        let logvar = x.slice([0..b, half..c, 0..h, 0..w]).clamp(-30.0, 20.0);
        Ok(LatentDistribution { mean, logvar })
    }

    /// Latents (already divided by `scaling_factor`) to an image in about [-1, 1].
    ///
    /// # Shapes
    /// - latents: `[batch, latent_channels, h, w]`
    /// - output: `[batch, out_channels, h·2^(blocks-1), w·2^(blocks-1)]`
    pub fn decode(&self, latents: Tensor<4>) -> Tensor<4> {
        let d = &self.decoder;
        let mut x = match &self.post_quant_conv {
            Some(post) => ops::conv2d(post, latents),
            None => latents,
        };
        x = ops::conv2d(&d.conv_in, x);
        x = d.mid_block.forward(x);
        for block in &d.up_blocks {
            for resnet in &block.resnets {
                x = resnet.forward(x, None);
            }
            for up in &block.upsamplers {
                x = up.forward(x, None);
            }
        }
        ops::conv2d(&d.conv_out, ops::group_norm_silu(&d.conv_norm_out, x))
    }
}
