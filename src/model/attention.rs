//! `Transformer2DModel` with `BasicTransformerBlock` (diffusers `models/transformers/
//! transformer_2d.py`, `models/attention.py`): self-attention, cross-attention on the text
//! embedding, GEGLU feed-forward, around a GroupNorm and 1×1 (or linear) projections.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{Dropout, DropoutConfig, GroupNorm, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::ops::{self, scaled_dot_product_attention};
use super::resnet::{conv, group_norm};

/// diffusers `Attention` without bias on q/k/v, as the UNet uses it.
#[derive(Module, Debug)]
pub struct Attention {
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    /// `to_out.0`.
    pub to_out: Vec<Linear>,
    #[module(skip)]
    heads: usize,
}

impl Attention {
    pub fn new(query_dim: usize, context_dim: usize, heads: usize, device: &Device) -> Self {
        let no_bias = |i, o| LinearConfig::new(i, o).with_bias(false).init(device);
        Self {
            to_q: no_bias(query_dim, query_dim),
            to_k: no_bias(context_dim, query_dim),
            to_v: no_bias(context_dim, query_dim),
            to_out: vec![LinearConfig::new(query_dim, query_dim).init(device)],
            heads,
        }
    }

    /// # Shapes
    /// - x: `[batch, tokens, query_dim]`; context: `[batch, context_tokens, context_dim]`
    pub fn forward(&self, x: Tensor<3>, context: Option<Tensor<3>>) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let context = context.unwrap_or_else(|| x.clone());
        let split = |t: Tensor<3>| {
            let [b, s, d] = t.dims();
            t.reshape([b, s, self.heads, d / self.heads]).swap_dims(1, 2)
        };
        let q = split(ops::linear(&self.to_q, x));
        let k = split(ops::linear(&self.to_k, context.clone()));
        let v = split(ops::linear(&self.to_v, context));
        let out = scaled_dot_product_attention(q, k, v, false).swap_dims(1, 2).reshape([b, n, d]);
        ops::linear(&self.to_out[0], out)
    }
}

/// GEGLU feed-forward, laid out as diffusers' `ff.net` list: `[GEGLU, Dropout, Linear]`.
#[derive(Module, Debug)]
pub struct FeedForward {
    pub net: Vec<FeedForwardLayer>,
}

/// One entry of `ff.net` (loaded with enum variant names skipped, so keys are `net.0.proj.weight`).
#[derive(Module, Debug)]
pub enum FeedForwardLayer {
    Geglu(Geglu),
    Dropout(Dropout),
    Linear(Linear),
}

/// `hidden · gelu(gate)` where `[hidden, gate] = proj(x)`.
#[derive(Module, Debug)]
pub struct Geglu {
    pub proj: Linear,
}

impl FeedForward {
    pub fn new(dim: usize, device: &Device) -> Self {
        let inner = dim * 4;
        Self {
            net: vec![
                FeedForwardLayer::Geglu(Geglu { proj: LinearConfig::new(dim, inner * 2).init(device) }),
                FeedForwardLayer::Dropout(DropoutConfig::new(0.0).init()),
                FeedForwardLayer::Linear(LinearConfig::new(inner, dim).init(device)),
            ],
        }
    }

    pub fn forward(&self, mut x: Tensor<3>) -> Tensor<3> {
        for layer in &self.net {
            x = match layer {
                FeedForwardLayer::Geglu(g) => ops::geglu(ops::linear(&g.proj, x)),
                // Inference: dropout is the identity.
                FeedForwardLayer::Dropout(_) => x,
                FeedForwardLayer::Linear(l) => ops::linear(l, x),
            };
        }
        x
    }
}

#[derive(Module, Debug)]
pub struct BasicTransformerBlock {
    pub norm1: LayerNorm,
    pub attn1: Attention,
    pub norm2: LayerNorm,
    pub attn2: Attention,
    pub norm3: LayerNorm,
    pub ff: FeedForward,
}

impl BasicTransformerBlock {
    fn new(dim: usize, context_dim: usize, heads: usize, device: &Device) -> Self {
        let ln = || LayerNormConfig::new(dim).with_epsilon(1e-5).init(device);
        Self {
            norm1: ln(),
            attn1: Attention::new(dim, dim, heads, device),
            norm2: ln(),
            attn2: Attention::new(dim, context_dim, heads, device),
            norm3: ln(),
            ff: FeedForward::new(dim, device),
        }
    }

    fn forward(&self, x: Tensor<3>, context: Tensor<3>) -> Tensor<3> {
        let x = self.attn1.forward(self.norm1.forward(x.clone()), None) + x;
        let x = self.attn2.forward(self.norm2.forward(x.clone()), Some(context)) + x;
        self.ff.forward(self.norm3.forward(x.clone())) + x
    }
}

/// `proj_in` / `proj_out`: 1×1 convolutions (SD1.5) or linear layers (`use_linear_projection`).
#[derive(Module, Debug)]
pub enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

#[derive(Module, Debug)]
pub struct Transformer2DModel {
    pub norm: GroupNorm,
    pub proj_in: Projection,
    pub transformer_blocks: Vec<BasicTransformerBlock>,
    pub proj_out: Projection,
}

impl Transformer2DModel {
    pub fn new(channels: usize, heads: usize, context_dim: usize, groups: usize, linear_projection: bool, device: &Device) -> Self {
        let projection = || {
            if linear_projection {
                Projection::Linear(LinearConfig::new(channels, channels).init(device))
            } else {
                Projection::Conv(conv(channels, channels, 1, device))
            }
        };
        Self {
            norm: group_norm(groups, channels, 1e-6, device),
            proj_in: projection(),
            transformer_blocks: vec![BasicTransformerBlock::new(channels, context_dim, heads, device)],
            proj_out: projection(),
        }
    }

    /// # Shapes
    /// - x: `[batch, channels, h, w]`; context: `[batch, tokens, context_dim]`
    pub fn forward(&self, x: Tensor<4>, context: Tensor<3>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let to_tokens = |t: Tensor<4>| t.reshape([b, c, h * w]).swap_dims(1, 2);
        let to_image = |t: Tensor<3>| t.swap_dims(1, 2).reshape([b, c, h, w]);
        let normed = ops::group_norm(&self.norm, x.clone());
        let mut tokens = match &self.proj_in {
            Projection::Conv(p) => to_tokens(ops::conv2d(p, normed)),
            Projection::Linear(p) => ops::linear(p, to_tokens(normed)),
        };
        for block in &self.transformer_blocks {
            tokens = block.forward(tokens, context.clone());
        }
        let out = match &self.proj_out {
            Projection::Conv(p) => ops::conv2d(p, to_image(tokens)),
            Projection::Linear(p) => to_image(ops::linear(p, tokens)),
        };
        out + x
    }
}
