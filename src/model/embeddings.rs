//! Timestep embeddings (diffusers `models/embeddings.py`: `get_timestep_embedding`,
//! `Timesteps`, `TimestepEmbedding`).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};

use super::ops;

/// Sinusoidal embedding of (possibly fractional) timesteps, `[batch, dim]`.
///
/// `exponent = -ln(10000) · i / (dim/2 - freq_shift)`; `[sin, cos]`, or `[cos, sin]` when
/// `flip_sin_to_cos` (SD's setting). Computed on the host in f64: the batch is tiny.
pub fn timestep_embedding(timesteps: &[f64], dim: usize, flip_sin_to_cos: bool, freq_shift: f64, device: &Device) -> Tensor<2> {
    let half = dim / 2;
    let mut data = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        // diffusers computes the frequencies in f32 and multiplies in f32.
        let freqs: Vec<f32> = (0..half).map(|i| (-(10000f64.ln()) * i as f64 / (half as f64 - freq_shift)).exp() as f32).collect();
        let args: Vec<f32> = freqs.iter().map(|f| t as f32 * f).collect();
        let (sin, cos): (Vec<f32>, Vec<f32>) = args.iter().map(|a| (a.sin(), a.cos())).unzip();
        let (first, second) = if flip_sin_to_cos { (cos, sin) } else { (sin, cos) };
        data.extend(first);
        data.extend(second);
        if dim % 2 == 1 {
            data.push(0.0);
        }
    }
    Tensor::from_data(TensorData::new(data, [timesteps.len(), dim]), device)
}

/// `TimestepEmbedding`: linear, SiLU, linear.
#[derive(Module, Debug)]
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

impl TimestepEmbedding {
    pub fn new(in_channels: usize, time_embed_dim: usize, device: &Device) -> Self {
        Self { linear_1: LinearConfig::new(in_channels, time_embed_dim).init(device), linear_2: LinearConfig::new(time_embed_dim, time_embed_dim).init(device) }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        ops::linear(&self.linear_2, ops::silu(ops::linear(&self.linear_1, x)))
    }
}
