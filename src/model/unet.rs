//! `UNet2DConditionModel` (diffusers `models/unets/unet_2d_condition.py` and
//! `unet_2d_blocks.py`) for SD1.5-family configs: `CrossAttnDownBlock2D` / `DownBlock2D`,
//! `UNetMidBlock2DCrossAttn`, `UpBlock2D` / `CrossAttnUpBlock2D`. `in_channels` is 4 for
//! text-to-image and 9 for inpainting (noisy latents + mask + masked-image latents).

use super::ops;
use burn::module::Module;
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, FloatDType, Tensor};
use serde::Deserialize;

use super::attention::Transformer2DModel;
use super::embeddings::{TimestepEmbedding, timestep_embedding};
use super::precision::compute_dtype;
use super::resnet::{Downsample2D, ResnetBlock2D, Upsample2D, conv, group_norm};
use crate::{Error, Result};

/// Widest layer a config may ask for (SD1.5's is 1280; SDXL's 1280 too): a larger one is a
/// corrupt or hostile file, whose allocation would fail.
const MAX_CHANNELS: usize = 16384;

/// An int, or one value per block (diffusers accepts both for `attention_head_dim`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    One(usize),
    Each(Vec<usize>),
}

impl PerBlock {
    fn get(&self, i: usize) -> usize {
        match self {
            PerBlock::One(v) => *v,
            PerBlock::Each(v) => v[i.min(v.len() - 1)],
        }
    }
}

/// `unet/config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UNet2DConditionConfig {
    #[serde(default = "d_four")]
    pub in_channels: usize,
    #[serde(default = "d_four")]
    pub out_channels: usize,
    #[serde(default = "d_blocks")]
    pub block_out_channels: Vec<usize>,
    #[serde(default = "d_down")]
    pub down_block_types: Vec<String>,
    #[serde(default = "d_up")]
    pub up_block_types: Vec<String>,
    #[serde(default = "d_mid")]
    pub mid_block_type: Option<String>,
    #[serde(default = "d_two")]
    pub layers_per_block: usize,
    #[serde(default = "d_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "d_eps")]
    pub norm_eps: f64,
    #[serde(default = "d_cross")]
    pub cross_attention_dim: usize,
    /// The number of heads per block, whatever its name says (a diffusers naming accident).
    #[serde(default = "d_heads")]
    pub attention_head_dim: PerBlock,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock>,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default = "d_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default = "d_act")]
    pub act_fn: String,
    #[serde(default = "d_one")]
    pub transformer_layers_per_block: usize,
    #[serde(default = "d_one_f")]
    pub mid_block_scale_factor: f64,
    /// Latent side the model was trained at (64 for SD1.5: 512 pixels); diffusers' default is null.
    #[serde(default)]
    pub sample_size: Option<usize>,
}

fn d_four() -> usize {
    4
}
fn d_two() -> usize {
    2
}
fn d_one() -> usize {
    1
}
fn d_one_f() -> f64 {
    1.0
}
fn d_groups() -> usize {
    32
}
fn d_eps() -> f64 {
    1e-5
}
fn d_cross() -> usize {
    1280
}
fn d_heads() -> PerBlock {
    PerBlock::One(8)
}
fn d_true() -> bool {
    true
}
fn d_act() -> String {
    "silu".into()
}
fn d_blocks() -> Vec<usize> {
    vec![320, 640, 1280, 1280]
}
fn d_down() -> Vec<String> {
    ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"].map(String::from).to_vec()
}
fn d_up() -> Vec<String> {
    ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"].map(String::from).to_vec()
}
fn d_mid() -> Option<String> {
    Some("UNetMidBlock2DCrossAttn".into())
}

impl UNet2DConditionConfig {
    /// SD1.5's UNet (text-to-image).
    pub fn sd15() -> Self {
        serde_json::from_str(r#"{"cross_attention_dim": 768}"#).expect("valid preset")
    }

    /// The tiny test size of tests/fixtures (2 blocks of 32/64 channels, 8 groups, 4 heads).
    pub fn tiny() -> Self {
        serde_json::from_str(
            r#"{"block_out_channels": [32, 64], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
                "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 32,
                "attention_head_dim": 4, "norm_num_groups": 8}"#,
        )
        .expect("valid preset")
    }

    /// `stable-diffusion-inpainting`'s UNet: SD1.5 with 9 input channels.
    pub fn sd15_inpaint() -> Self {
        Self { in_channels: 9, ..Self::sd15() }
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(text).map_err(|e| bad_config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return Err(bad_config(format!(
                "{} block_out_channels but {} down and {} up block types",
                n,
                self.down_block_types.len(),
                self.up_block_types.len()
            )));
        }
        for t in &self.down_block_types {
            if t != "CrossAttnDownBlock2D" && t != "DownBlock2D" {
                return Err(bad_config(format!("unsupported down block {t:?}")));
            }
        }
        for t in &self.up_block_types {
            if t != "CrossAttnUpBlock2D" && t != "UpBlock2D" {
                return Err(bad_config(format!("unsupported up block {t:?}")));
            }
        }
        if self.mid_block_type.as_deref() != Some("UNetMidBlock2DCrossAttn") {
            return Err(bad_config(format!("unsupported mid block {:?}", self.mid_block_type)));
        }
        if self.act_fn != "silu" || self.transformer_layers_per_block != 1 || self.mid_block_scale_factor != 1.0 {
            return Err(bad_config("only act_fn silu, one transformer layer per block and mid_block_scale_factor 1 are supported".into()));
        }
        if self.norm_num_groups == 0 {
            return Err(bad_config("norm_num_groups is 0; group norms need at least one group".into()));
        }
        if let Some(c) = self.block_out_channels.iter().find(|c| **c == 0 || **c > MAX_CHANNELS || *c % self.norm_num_groups != 0) {
            return Err(bad_config(format!(
                "block_out_channels entry {c} must be a multiple of norm_num_groups {} from 1 to {MAX_CHANNELS}",
                self.norm_num_groups
            )));
        }
        let zero = [("in_channels", self.in_channels), ("out_channels", self.out_channels), ("cross_attention_dim", self.cross_attention_dim)];
        if let Some((name, _)) = zero.iter().find(|(_, v)| *v == 0 || *v > MAX_CHANNELS) {
            return Err(bad_config(format!("{name} must be from 1 to {MAX_CHANNELS}")));
        }
        if self.layers_per_block == 0 || self.layers_per_block > 16 {
            return Err(bad_config(format!("layers_per_block {} must be from 1 to 16", self.layers_per_block)));
        }
        let heads = self.num_attention_heads.as_ref().unwrap_or(&self.attention_head_dim);
        if let PerBlock::Each(list) = heads
            && list.len() != n
        {
            return Err(bad_config(format!("{} heads per block are listed for {n} blocks", list.len())));
        }
        for (block, &channels) in self.block_out_channels.iter().enumerate() {
            let h = self.heads(block);
            if h == 0 || channels % h != 0 {
                return Err(bad_config(format!("block {block}: {channels} channels cannot be split into {h} attention heads")));
            }
        }
        Ok(())
    }

    fn heads(&self, block: usize) -> usize {
        self.num_attention_heads.as_ref().unwrap_or(&self.attention_head_dim).get(block)
    }

    /// A model with this architecture and untrained weights.
    pub fn init(&self, device: &Device) -> UNet2DConditionModel {
        let ch = &self.block_out_channels;
        let n = ch.len();
        let (g, eps, cross, lin) = (self.norm_num_groups, self.norm_eps, self.cross_attention_dim, self.use_linear_projection);
        let temb = ch[0] * 4;
        let transformer = |c: usize, heads: usize| Transformer2DModel::new(c, heads, cross, g, lin, device);

        let down_blocks = (0..n)
            .map(|i| {
                let input = if i == 0 { ch[0] } else { ch[i - 1] };
                let out = ch[i];
                let cross_attn = self.down_block_types[i] == "CrossAttnDownBlock2D";
                UNetBlock {
                    resnets: (0..self.layers_per_block)
                        .map(|j| ResnetBlock2D::new(if j == 0 { input } else { out }, out, Some(temb), g, eps, device))
                        .collect(),
                    attentions: if cross_attn { (0..self.layers_per_block).map(|_| transformer(out, self.heads(i))).collect() } else { vec![] },
                    downsamplers: (i + 1 < n).then(|| Downsample2D::new(out, false, device)).into_iter().collect(),
                    upsamplers: vec![],
                }
            })
            .collect();

        let reversed: Vec<usize> = ch.iter().rev().copied().collect();
        let mut prev_out = reversed[0];
        let up_blocks = (0..n)
            .map(|i| {
                let out = reversed[i];
                let input = reversed[(i + 1).min(n - 1)];
                let cross_attn = self.up_block_types[i] == "CrossAttnUpBlock2D";
                let layers = self.layers_per_block + 1;
                let block = UNetBlock {
                    resnets: (0..layers)
                        .map(|j| {
                            let skip = if j == layers - 1 { input } else { out };
                            let res_in = if j == 0 { prev_out } else { out };
                            ResnetBlock2D::new(res_in + skip, out, Some(temb), g, eps, device)
                        })
                        .collect(),
                    attentions: if cross_attn { (0..layers).map(|_| transformer(out, self.heads(n - 1 - i))).collect() } else { vec![] },
                    downsamplers: vec![],
                    upsamplers: (i + 1 < n).then(|| Upsample2D::new(out, device)).into_iter().collect(),
                };
                prev_out = out;
                block
            })
            .collect();

        let last = ch[n - 1];
        UNet2DConditionModel {
            time_embedding: TimestepEmbedding::new(ch[0], temb, device),
            conv_in: conv(self.in_channels, ch[0], 3, device),
            down_blocks,
            mid_block: UNetBlock {
                resnets: vec![ResnetBlock2D::new(last, last, Some(temb), g, eps, device), ResnetBlock2D::new(last, last, Some(temb), g, eps, device)],
                attentions: vec![transformer(last, self.heads(n - 1))],
                downsamplers: vec![],
                upsamplers: vec![],
            },
            up_blocks,
            conv_norm_out: group_norm(g, ch[0], eps, device),
            conv_out: conv(ch[0], self.out_channels, 3, device),
            in_channels: self.in_channels,
            sample_size: self.sample_size,
            out_channels: self.out_channels,
            flip_sin_to_cos: self.flip_sin_to_cos,
            freq_shift: self.freq_shift,
        }
    }
}

fn bad_config(reason: String) -> Error {
    Error::Config { file: "unet/config.json".into(), reason }
}

/// Any of the UNet's blocks: resnets, optionally each followed by a transformer, then an
/// optional down- or upsampler. (The mid block is resnet, transformer, resnet.)
#[derive(Module, Debug)]
pub struct UNetBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
    pub downsamplers: Vec<Downsample2D>,
    pub upsamplers: Vec<Upsample2D>,
}

#[derive(Module, Debug)]
pub struct UNet2DConditionModel {
    pub time_embedding: TimestepEmbedding,
    pub conv_in: Conv2d,
    pub down_blocks: Vec<UNetBlock>,
    pub mid_block: UNetBlock,
    pub up_blocks: Vec<UNetBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
    #[module(skip)]
    in_channels: usize,
    #[module(skip)]
    out_channels: usize,
    #[module(skip)]
    flip_sin_to_cos: bool,
    #[module(skip)]
    freq_shift: f64,
    #[module(skip)]
    sample_size: Option<usize>,
}

impl UNet2DConditionModel {
    /// `sample_size` of its config: the latent side it was trained at (diffusers' default image
    /// size is this × the VAE factor); `None` where the config says null.
    pub fn sample_size(&self) -> Option<usize> {
        self.sample_size
    }

    /// Input channels: 4 for text-to-image, 9 for inpainting.
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// Output channels: the latent channels it denoises.
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// The predicted noise (or v) for `sample` at `timesteps`, conditioned on `context`.
    ///
    /// # Shapes
    /// - sample: `[batch, in_channels, h, w]` (any h, w; odd sizes follow the skip connections)
    /// - timesteps: one per batch entry (fractional allowed)
    /// - context: `[batch, tokens, cross_attention_dim]`
    /// - output: `[batch, out_channels, h, w]`
    pub fn forward(&self, sample: Tensor<4>, timesteps: &[f64], context: Tensor<3>) -> Tensor<4> {
        let device = sample.device();
        // In the weights' precision inside (see `precision`), f32 outside.
        let dtype = compute_dtype(&self.conv_in.weight.val());
        let (sample, context) = (sample.cast(dtype), context.cast(dtype));
        let channels = self.time_embedding.linear_1.weight.dims()[0];
        let temb = self.time_embedding.forward(timestep_embedding(timesteps, channels, self.flip_sin_to_cos, self.freq_shift, &device).cast(dtype));

        let mut x = ops::conv2d(&self.conv_in, sample);
        let mut skips = vec![x.clone()];
        for block in &self.down_blocks {
            for (j, resnet) in block.resnets.iter().enumerate() {
                x = resnet.forward(x, Some(temb.clone()));
                if let Some(attention) = block.attentions.get(j) {
                    x = attention.forward(x, context.clone());
                }
                skips.push(x.clone());
            }
            for down in &block.downsamplers {
                x = down.forward(x);
                skips.push(x.clone());
            }
        }

        let mid = &self.mid_block;
        x = mid.resnets[0].forward(x, Some(temb.clone()));
        x = mid.attentions[0].forward(x, context.clone());
        x = mid.resnets[1].forward(x, Some(temb.clone()));

        for block in &self.up_blocks {
            for (j, resnet) in block.resnets.iter().enumerate() {
                let skip = skips.pop().expect("one skip per up-block resnet");
                x = resnet.forward(Tensor::cat(vec![x, skip], 1), Some(temb.clone()));
                if let Some(attention) = block.attentions.get(j) {
                    x = attention.forward(x, context.clone());
                }
            }
            for up in &block.upsamplers {
                // Upsample to the next skip's size, which differs from 2× when a size was odd.
                let size = skips.last().map(|s| {
                    let [_, _, h, w] = s.dims();
                    [h, w]
                });
                x = up.forward(x, size);
            }
        }
        ops::conv2d(&self.conv_out, ops::group_norm_silu(&self.conv_norm_out, x)).cast(FloatDType::F32)
    }
}
