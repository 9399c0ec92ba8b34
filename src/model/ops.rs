//! Tensor primitives shared by the SD modules that burn's `nn` does not provide as a module.
//!
//! Group normalisation is burn's own `nn::GroupNorm` (two-pass variance), except for groups
//! longer than [`MAX_REDUCED_RUN`] (see [`group_norm`]).

use burn::nn::GroupNorm;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{FloatDType, Tensor};

/// The longest run of values one burn-wgpu 0.22 `mean_dim`/`sum_dim` is trusted to reduce.
/// Measured on Mesa lavapipe: rows of 2^19 values come back as the sum of their first 2^18 only
/// (and a whole-tensor `mean()` of 2^22 values as that of its first 2^20), so the SD1.5 VAE
/// decoder's group norms at 512×512 (2^20 values a group) were wrong on the GPU. Longer runs are
/// reduced in chunks of at most this many values; `sum()` of a whole tensor was right.
pub const MAX_REDUCED_RUN: usize = 1 << 16;

/// Mean over the last axis of `[a, b, n]`, in equal chunks of at most [`MAX_REDUCED_RUN`]
/// values (the mean of equal chunks' means is the mean).
pub fn mean_last(x: Tensor<3>) -> Tensor<3> {
    let [a, b, n] = x.dims();
    if n <= MAX_REDUCED_RUN {
        return x.mean_dim(2);
    }
    let chunks = (n.div_ceil(MAX_REDUCED_RUN)..=n).find(|k| n % k == 0).expect("n divides itself");
    x.reshape([a, b * chunks, n / chunks]).mean_dim(2).reshape([a, b, chunks]).mean_dim(2)
}

/// Mean of every value (loss functions), as `sum / n`.
pub fn mean_all<const D: usize>(x: Tensor<D>) -> Tensor<1> {
    let n = x.shape().num_elements();
    x.sum() / n as f64
}

/// `torch.nn.GroupNorm` with `norm`'s groups, ε and affine parameters on `[b, c, h, w]`: burn's
/// own when a group has at most [`MAX_REDUCED_RUN`] values (it takes f16 input's statistics in
/// f32 itself), else the same two-pass statistics (biased variance) reduced in chunks, in f32
/// whatever the input's precision and returned in it.
pub fn group_norm(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let groups = norm.num_groups;
    if c / groups * h * w <= MAX_REDUCED_RUN {
        return norm.forward(x);
    }
    let dtype = FloatDType::from(x.dtype());
    let flat = x.cast(FloatDType::F32).reshape([b, groups, c / groups * h * w]);
    let centered = flat.clone() - mean_last(flat);
    let variance = mean_last(centered.clone().powi_scalar(2));
    let normalized = (centered / (variance + norm.epsilon).sqrt()).reshape([b, c, h, w]);
    let param = |p: &burn::module::Param<Tensor<1>>| p.val().cast(FloatDType::F32).reshape([1, c, 1, 1]);
    let out = match (&norm.gamma, &norm.beta) {
        (Some(gamma), Some(beta)) => normalized * param(gamma) + param(beta),
        _ => normalized,
    };
    out.cast(dtype)
}

/// Most bytes the score matrix (`batch·heads·seq_q·seq_k` f32) of one attention call may take;
/// longer query runs are split into slices, each attending to all keys (softmax rows are
/// independent, so this is exact — diffusers' "attention slicing"). burn materializes the scores
/// when its flash kernel does not apply, and on lavapipe SD1.5's first attention at 512×512
/// (2·8·4096·4096 scores, 1 GiB) failed to run at all; slices also bound GPU memory.
pub const MAX_SCORE_BYTES: usize = 64 << 20;

/// `softmax(q kᵀ / sqrt(head_dim)) v`, as `torch.nn.functional.scaled_dot_product_attention`:
/// on the CPU backend without autodiff (inference) our kernel ([`super::cpu_attention`]), else
/// burn's attention in query slices of at most [`MAX_SCORE_BYTES`] of scores.
///
/// # Shapes
/// - q: `[batch, heads, seq_q, head_dim]`; k: `[batch, heads, seq_k, head_dim]`;
///   v: `[batch, heads, seq_k, v_dim]`
/// - output: `[batch, heads, seq_q, v_dim]`
pub fn scaled_dot_product_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool) -> Tensor<4> {
    #[cfg(not(target_arch = "wasm32"))]
    if !causal && on_plain_cpu(&q.device()) {
        let dtype = FloatDType::from(q.dtype());
        return cpu_attention(q.cast(FloatDType::F32), k.cast(FloatDType::F32), v.cast(FloatDType::F32)).cast(dtype);
    }
    sliced_attention(q, k, v, causal, MAX_SCORE_BYTES)
}

fn sliced_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool, max_score_bytes: usize) -> Tensor<4> {
    // Scores and softmax in f32 whatever the inputs' precision (f16 scores overflow).
    let dtype = FloatDType::from(q.dtype());
    let (q, k, v) = (q.cast(FloatDType::F32), k.cast(FloatDType::F32), v.cast(FloatDType::F32));
    let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: causal };
    let [b, h, seq_q, d] = q.dims();
    let seq_k = k.dims()[2];
    let slice = (max_score_bytes / (b * h * seq_k * 4).max(1)).max(1);
    // A causal mask is aligned to the query positions, so causal attention (CLIP's 77 tokens)
    // is never sliced.
    if causal || seq_q <= slice {
        return attention(q, k, v, None, None, options).cast(dtype);
    }
    let slices = (0..seq_q)
        .step_by(slice)
        .map(|start| attention(q.clone().slice([0..b, 0..h, start..(start + slice).min(seq_q), 0..d]), k.clone(), v.clone(), None, None, options))
        .collect();
    Tensor::cat(slices, 2).cast(dtype)
}

/// `x · sigmoid(x)` (burn's `silu`), on all cores on the plain CPU device (see [`cpu_map`]).
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(not(target_arch = "wasm32"))]
    if on_plain_cpu(&x.device()) {
        return cpu_map(x, |v| v * sigmoid(v));
    }
    burn::tensor::activation::silu(x)
}

/// diffusers' GEGLU after its projection: `projected` `[b, n, 2·inner]` split in halves on the
/// last axis, `hidden · gelu(gate)` (erf GELU), `[b, n, inner]`; on all cores on the plain CPU
/// device (see [`cpu_map`]).
pub fn geglu(projected: Tensor<3>) -> Tensor<3> {
    let [b, n, two_inner] = projected.dims();
    let inner = two_inner / 2;
    #[cfg(not(target_arch = "wasm32"))]
    if on_plain_cpu(&projected.device()) {
        use rayon::prelude::*;
        let (device, dtype) = (projected.device(), FloatDType::from(projected.dtype()));
        let values = f32_values(projected);
        let mut out = vec![0.0f32; b * n * inner];
        out.par_chunks_mut(inner).zip(values.par_chunks(two_inner)).for_each(|(out, row)| {
            let (hidden, gate) = row.split_at(inner);
            for ((o, h), g) in out.iter_mut().zip(hidden).zip(gate) {
                *o = h * gelu(*g);
            }
        });
        return Tensor::<3>::from_data(burn::tensor::TensorData::new(out, [b, n, inner]), &device).cast(dtype);
    }
    let hidden = projected.clone().slice([0..b, 0..n, 0..inner]);
    hidden * burn::tensor::activation::gelu(projected.slice([0..b, 0..n, inner..two_inner]))
}

/// `f` on every value, in f32 whatever `x`'s precision, on all cores: burn-flex 0.22 runs
/// element-wise operations on one thread, and SiLU and GEGLU's GELU (`expf`, `erff` per value) were
/// a tenth of an SD1.5 UNet step's samples on the main thread while the other core waited.
#[cfg(not(target_arch = "wasm32"))]
fn cpu_map<const D: usize>(x: Tensor<D>, f: impl Fn(f32) -> f32 + Sync) -> Tensor<D> {
    use rayon::prelude::*;
    let (device, dtype, shape) = (x.device(), FloatDType::from(x.dtype()), x.shape());
    let mut values = f32_values(x);
    values.par_chunks_mut(1 << 14).for_each(|chunk| chunk.iter_mut().for_each(|v| *v = f(*v)));
    Tensor::<D>::from_data(burn::tensor::TensorData::new(values, shape), &device).cast(dtype)
}

/// The logistic function as burn-flex computes it (the same bits, so the CPU results do not
/// depend on which path ran).
#[cfg(not(target_arch = "wasm32"))]
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The erf GELU as burn-flex computes it: `0.5 · x · (1 + erf(x / √2))` with libm's `erff`.
#[cfg(not(target_arch = "wasm32"))]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x / std::f32::consts::SQRT_2))
}

/// Whether `device` is the CPU backend without autodiff (inference), where
/// [`super::cpu_attention`] replaces burn's attention and [`cpu_map`] its SiLU and GELU. Told by
/// the device's variant: asking a GPU for its memory pool (as `device::is_gpu` does) on every
/// attention call would cost a round trip.
#[cfg(not(target_arch = "wasm32"))]
fn on_plain_cpu(device: &burn::tensor::Device) -> bool {
    matches!(device.as_dispatch(), burn::backend::DispatchDevice::Flex(_))
}

/// [`super::cpu_attention::attention`] on f32 tensors `[b, h, seq, dim]`.
#[cfg(not(target_arch = "wasm32"))]
fn cpu_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    use burn::tensor::TensorData;
    let device = q.device();
    let ([b, h, seq_q, head_dim], [_, _, seq_k, v_dim]) = (q.dims(), v.dims());
    let dims = super::cpu_attention::Dims { heads: b * h, seq_q, seq_k, head_dim, v_dim };
    let out = super::cpu_attention::attention(&f32_values(q), &f32_values(k), &f32_values(v), dims);
    Tensor::from_data(TensorData::new(out, [b, h, seq_q, v_dim]), &device)
}

/// A CPU tensor's values in f32 (without a copy when `t` is contiguous f32 and not shared).
#[cfg(not(target_arch = "wasm32"))]
fn f32_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.cast(FloatDType::F32).into_data().try_into_vec::<f32>().expect("cast to f32")
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn sliced_attention_equals_whole() {
        let device = Device::flex();
        let t = |n: usize| Tensor::<4>::random([2, 3, n, 8], Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (t(37), t(29), t(29));
        let whole = sliced_attention(q.clone(), k.clone(), v.clone(), false, usize::MAX);
        // 2·3·29·4 bytes a query: slices of 5 queries, the last of 2.
        let sliced = sliced_attention(q, k, v, false, 5 * 2 * 3 * 29 * 4);
        let diff = (whole.clone() - sliced).abs().max().into_scalar::<f32>();
        assert!(diff <= 1e-6 * whole.abs().max().into_scalar::<f32>(), "sliced attention differs by {diff}");
    }

    /// On the plain CPU device SiLU and GEGLU run on our element-wise path; they give burn-flex's
    /// own results bit for bit (values over the sigmoid's and erf's branches), and f16 stays f16.
    #[test]
    fn cpu_activations_equal_burns() {
        let device = Device::flex();
        let x = Tensor::<3>::random([2, 33, 2 * 70], Distribution::Normal(0.0, 4.0), &device);
        let burns = burn::tensor::activation::silu(x.clone());
        assert_eq!(silu(x.clone()).into_data(), burns.into_data());
        let (hidden, gate) = (x.clone().slice([0..2, 0..33, 0..70]), x.clone().slice([0..2, 0..33, 70..140]));
        let burns = hidden * burn::tensor::activation::gelu(gate);
        assert_eq!(geglu(x.clone()).into_data(), burns.into_data());
        assert_eq!(FloatDType::from(silu(x.cast(FloatDType::F16)).dtype()), FloatDType::F16);
    }

    /// On the plain CPU device the attention is our kernel; it equals burn-flex's own (its flash
    /// path: more than 512 keys) on a UNet-like shape with a partial query block, and f16 inputs
    /// come back f16.
    #[test]
    fn cpu_kernel_equals_burns_attention() {
        let device = Device::flex();
        assert!(on_plain_cpu(&device) && !on_plain_cpu(&device.clone().autodiff()));
        let t = |n: usize| Tensor::<4>::random([2, 2, n, 40], Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (t(700), t(600), t(600));
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
        let burns = attention(q.clone(), k.clone(), v.clone(), None, None, options);
        let ours = scaled_dot_product_attention(q, k, v, false);
        let diff = (burns.clone() - ours).abs().max().into_scalar::<f32>();
        assert!(diff <= 1e-5 * burns.abs().max().into_scalar::<f32>(), "differs from burn's by {diff}");
        let half = |t: &Tensor<4>| t.clone().cast(FloatDType::F16);
        let (q, k) = (t(70), t(60));
        let out = scaled_dot_product_attention(half(&q), half(&k), half(&k), false);
        assert_eq!(FloatDType::from(out.dtype()), FloatDType::F16);
    }
}
