//! Tensor primitives shared by the SD modules that burn's `nn` does not provide as a module.
//!
//! Group normalisation is burn's own `nn::GroupNorm` (two-pass variance, statistics widened to
//! f32 for f16 inputs), used directly by the modules.

use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::Tensor;

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
