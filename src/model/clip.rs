//! CLIP text encoder (transformers' `CLIPTextModel`), the `text_encoder/` of an SD1.5 repository.
//!
//! Field names are the transformers weight keys (`text_model.encoder.layers.0.self_attn.q_proj`),
//! so loading needs no rename table. Output is `last_hidden_state`, what SD conditions on.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::{DType, Device, FloatDType, Int, Tensor, TensorData};
use serde::Deserialize;

use super::ops::{self, scaled_dot_product_attention};
use crate::{Error, Result};

/// `text_encoder/config.json`, with transformers' `CLIPTextConfig` defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipTextConfig {
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "d_act")]
    pub hidden_act: String,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
}

fn d_vocab() -> usize {
    49408
}
fn d_hidden() -> usize {
    512
}
fn d_intermediate() -> usize {
    2048
}
fn d_layers() -> usize {
    12
}
fn d_heads() -> usize {
    8
}
fn d_positions() -> usize {
    77
}
fn d_act() -> String {
    "quick_gelu".into()
}
fn d_eps() -> f64 {
    1e-5
}

impl ClipTextConfig {
    /// SD1.5's text encoder: CLIP ViT-L/14, 12 layers, 768 wide, 12 heads.
    pub fn sd15() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
        }
    }

    /// The tiny test size of tests/fixtures (2 layers, 32 wide, 4 heads, real vocabulary).
    pub fn tiny() -> Self {
        Self { hidden_size: 32, intermediate_size: 37, num_hidden_layers: 2, num_attention_heads: 4, ..Self::sd15() }
    }

    /// Parses `text_encoder/config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(text).map_err(|e| Error::Config { file: "text_encoder/config.json".into(), reason: e.to_string() })?;
        config.activation()?;
        if config.num_attention_heads == 0 || !config.hidden_size.is_multiple_of(config.num_attention_heads) {
            return Err(Error::Config {
                file: "text_encoder/config.json".into(),
                reason: format!("hidden_size {} is not a multiple of num_attention_heads {}", config.hidden_size, config.num_attention_heads),
            });
        }
        Ok(config)
    }

    fn activation(&self) -> Result<Activation> {
        match self.hidden_act.as_str() {
            "quick_gelu" => Ok(Activation::QuickGelu),
            "gelu" => Ok(Activation::Gelu),
            other => Err(Error::Config { file: "text_encoder/config.json".into(), reason: format!("unsupported hidden_act {other:?}") }),
        }
    }

    /// A model with this architecture and untrained weights (to load weights into).
    pub fn init(&self, device: &Device) -> Result<ClipTextModel> {
        let activation = self.activation()?;
        let (d, eps) = (self.hidden_size, self.layer_norm_eps);
        let layer_norm = || LayerNormConfig::new(d).with_epsilon(eps).init(device);
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let layers = (0..self.num_hidden_layers)
            .map(|_| ClipEncoderLayer {
                self_attn: ClipAttention {
                    q_proj: linear(d, d),
                    k_proj: linear(d, d),
                    v_proj: linear(d, d),
                    out_proj: linear(d, d),
                    num_heads: self.num_attention_heads,
                },
                layer_norm1: layer_norm(),
                mlp: ClipMlp { fc1: linear(d, self.intermediate_size), fc2: linear(self.intermediate_size, d), activation },
                layer_norm2: layer_norm(),
            })
            .collect();
        Ok(ClipTextModel {
            text_model: ClipTextTransformer {
                embeddings: ClipTextEmbeddings {
                    token_embedding: EmbeddingConfig::new(self.vocab_size, d).init(device),
                    position_embedding: EmbeddingConfig::new(self.max_position_embeddings, d).init(device),
                },
                encoder: ClipEncoder { layers },
                final_layer_norm: layer_norm(),
            },
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activation {
    /// `x * sigmoid(1.702 x)`, OpenAI CLIP's approximation.
    QuickGelu,
    Gelu,
}

/// `CLIPTextModel`.
#[derive(Module, Debug)]
pub struct ClipTextModel {
    pub text_model: ClipTextTransformer,
}

#[derive(Module, Debug)]
pub struct ClipTextTransformer {
    pub embeddings: ClipTextEmbeddings,
    pub encoder: ClipEncoder,
    pub final_layer_norm: LayerNorm,
}

#[derive(Module, Debug)]
pub struct ClipTextEmbeddings {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
}

impl ClipTextEmbeddings {
    /// The token embeddings of `ids`: a lookup, or, for a table kept 8-bit on the GPU (see
    /// `weights::on_device`), one-hot rows times the table, which burn's quantized matmul reads
    /// packed (a lookup would first dequantize all of SD1.5's 49408×768 table: 152 MB, more than
    /// many GPUs bind at once).
    fn tokens(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let table = self.token_embedding.weight.val();
        if !matches!(table.dtype(), DType::QFloat(_)) {
            return self.token_embedding.forward(ids);
        }
        let [batch, seq] = ids.dims();
        let [vocab, width] = table.dims();
        ids.reshape([batch * seq]).one_hot::<2>(vocab).float().matmul(table).reshape([batch, seq, width])
    }
}

#[derive(Module, Debug)]
pub struct ClipEncoder {
    pub layers: Vec<ClipEncoderLayer>,
}

#[derive(Module, Debug)]
pub struct ClipEncoderLayer {
    pub self_attn: ClipAttention,
    pub layer_norm1: LayerNorm,
    pub mlp: ClipMlp,
    pub layer_norm2: LayerNorm,
}

#[derive(Module, Debug)]
pub struct ClipAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    #[module(skip)]
    num_heads: usize,
}

#[derive(Module, Debug)]
pub struct ClipMlp {
    pub fc1: Linear,
    pub fc2: Linear,
    #[module(skip)]
    activation: Activation,
}

impl ClipTextModel {
    /// `last_hidden_state` for token ids.
    ///
    /// # Shapes
    /// - ids: `[batch][seq]` with `seq <= max_position_embeddings`
    /// - output: `[batch, seq, hidden_size]`
    pub fn forward_ids(&self, ids: &[Vec<u32>], device: &Device) -> Tensor<3> {
        let (batch, seq) = (ids.len(), ids.first().map_or(0, |r| r.len()));
        let flat: Vec<i64> = ids.iter().flatten().map(|&i| i as i64).collect();
        self.forward(Tensor::<2, Int>::from_data(TensorData::new(flat, [batch, seq]), device))
    }

    /// # Shapes
    /// - input_ids: `[batch, seq]`
    /// - output: `[batch, seq, hidden_size]`
    pub fn forward(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        let t = &self.text_model;
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &device).reshape([1, seq]).repeat_dim(0, batch);
        let mut x = t.embeddings.tokens(input_ids) + t.embeddings.position_embedding.forward(positions);
        for layer in &t.encoder.layers {
            x = layer.forward(x);
        }
        // f16 weights compute in f16 (see `precision`); the embeddings leave in f32.
        t.final_layer_norm.forward(x).cast(FloatDType::F32)
    }
}

impl ClipEncoderLayer {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }
}

impl ClipAttention {
    /// Causal multi-head self-attention.
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, s, d] = x.dims();
        let heads = |t: Tensor<3>| t.reshape([b, s, self.num_heads, d / self.num_heads]).swap_dims(1, 2);
        let q = heads(ops::linear(&self.q_proj, x.clone()));
        let k = heads(ops::linear(&self.k_proj, x.clone()));
        let v = heads(ops::linear(&self.v_proj, x));
        let out = scaled_dot_product_attention(q, k, v, true).swap_dims(1, 2).reshape([b, s, d]);
        ops::linear(&self.out_proj, out)
    }
}

impl ClipMlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = ops::linear(&self.fc1, x);
        let h = match self.activation {
            Activation::QuickGelu => h.clone() * sigmoid(h * 1.702),
            Activation::Gelu => gelu(h),
        };
        ops::linear(&self.fc2, h)
    }
}
