//! Tensor primitives shared by the SD modules: group normalisation and scaled dot-product attention.
//!
//! Kept as free functions over tensors so the modules (diffusers `ResnetBlock2D`,
//! `Transformer2DModel`, VAE mid-block) can name their own weights after diffusers keys.
//! Statistics are always computed in the tensor's float type with a two-pass variance, which is
//! what keeps f16 activations from overflowing in `sum(x²)` (issue "Model packages").

use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::Tensor;

/// `torch.nn.functional.group_norm` without the affine part.
///
/// # Shapes
/// - x: `[batch, channels, height, width]`, `channels % groups == 0`
/// - output: same as x
pub fn group_norm(x: Tensor<4>, groups: usize, eps: f64) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let grouped = x.reshape([n, groups, (c / groups) * h * w]);
    let mean = grouped.clone().mean_dim(2);
    let centred = grouped - mean;
    let var = centred.clone().square().mean_dim(2);
    (centred / (var + eps).sqrt()).reshape([n, c, h, w])
}

/// `group_norm` followed by the per-channel affine transform `x * weight + bias`.
///
/// # Shapes
/// - x: `[batch, channels, height, width]`; weight, bias: `[channels]`
pub fn group_norm_affine(
    x: Tensor<4>,
    groups: usize,
    eps: f64,
    weight: Tensor<1>,
    bias: Tensor<1>,
) -> Tensor<4> {
    let c = weight.dims()[0];
    group_norm(x, groups, eps) * weight.reshape([1, c, 1, 1]) + bias.reshape([1, c, 1, 1])
}

/// `softmax(q kᵀ / sqrt(head_dim)) v`, as `torch.nn.functional.scaled_dot_product_attention`.
///
/// # Shapes
/// - q: `[batch, heads, seq_q, head_dim]`; k: `[batch, heads, seq_k, head_dim]`;
///   v: `[batch, heads, seq_k, v_dim]`
/// - output: `[batch, heads, seq_q, v_dim]`
pub fn scaled_dot_product_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    causal: bool,
) -> Tensor<4> {
    let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: causal };
    attention(q, k, v, None, None, options)
}
