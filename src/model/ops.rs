//! Tensor primitives shared by the SD modules that burn's `nn` does not provide as a module.
//!
//! On the plain CPU device (inference) convolution, group norm, attention, SiLU and GEGLU are our
//! own kernels on all cores; elsewhere group normalisation is burn's own `nn::GroupNorm` (two-pass
//! variance), except for groups longer than [`MAX_REDUCED_RUN`] (see [`group_norm`]). On a GPU
//! without autodiff, stride-1 convolutions are matrix products ([`gpu_conv`]); on SwiftShader they
//! stay direct and linear layers are 1×1 convolutions ([`GpuKernels`]).

#[cfg(not(target_arch = "wasm32"))]
use burn::backend::flex::FlexTensor;
use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear, PaddingConfig2d};
use burn::tensor::module::attention;
use burn::tensor::ops::{AttentionModuleOptions, ConvOptions};
use burn::tensor::{FloatDType, Int, Tensor, TensorData};

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

/// `torch.nn.GroupNorm` with `norm`'s groups, ε and affine parameters on `[b, c, h, w]`: on the
/// plain CPU device our kernel (in f32; see [`cpu_group_norm`]), else burn's own when a group has at most [`MAX_REDUCED_RUN`] values (it takes f16 input's statistics in
/// f32 itself), else the same two-pass statistics (biased variance) reduced in chunks, in f32
/// whatever the input's precision and returned in it.
pub fn group_norm(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    #[cfg(not(target_arch = "wasm32"))]
    if on_plain_cpu(&x.device())
        && let (Some(gamma), Some(beta)) = (plain_optional(&norm.gamma), plain_optional(&norm.beta))
    {
        return cpu_group_norm(norm, x, [gamma, beta], false);
    }
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

/// `silu(group_norm(norm, x))`, the pre-activation of every ResNet block and of the UNet's and
/// VAE's outputs: one pass over the values after the statistics on the plain CPU device.
pub fn group_norm_silu(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    #[cfg(not(target_arch = "wasm32"))]
    if on_plain_cpu(&x.device())
        && let (Some(gamma), Some(beta)) = (plain_optional(&norm.gamma), plain_optional(&norm.beta))
    {
        return cpu_group_norm(norm, x, [gamma, beta], true);
    }
    silu(group_norm(norm, x))
}

/// `conv`'s forward pass: on the CPU backend without autodiff (inference) our kernel
/// ([`super::cpu_conv`]) for groups 1, dilation 1 and explicit padding (all of SD's); on a GPU
/// without autodiff a matrix product ([`gpu_conv`]) when the stride is 1 too (unless
/// [`GpuKernels::DirectConvolutions`]); else burn's.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let PaddingConfig2d::Explicit(top, left, bottom, right) = conv.padding else { return conv.forward(x) };
    if conv.groups != 1 || conv.dilation != [1, 1] {
        return conv.forward(x);
    }
    let padding = [top, left, bottom, right];
    #[cfg(not(target_arch = "wasm32"))]
    if on_plain_cpu(&x.device())
        && let Some(weight) = plain_param(&conv.weight)
        && let Some(bias) = plain_optional(&conv.bias)
    {
        return cpu_conv(conv, x, &weight, bias.as_ref(), padding);
    }
    if conv.stride == [1, 1] && GpuKernels::current() == GpuKernels::MatrixProducts && on_plain_gpu(&x.device()) {
        return gpu_conv(conv, x, padding);
    }
    conv.forward(x)
}

/// Which of burn's GPU kernels run the convolutions and linear layers. Process-wide: a process
/// computes on one GPU (the page sets it from its WebGPU adapter, [`GpuKernels::for_adapter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuKernels {
    /// Convolutions as matrix products ([`gpu_conv`]), linear layers as burn's: the faster on
    /// hardware GPUs (2.5–3.6× on an H200) and on Mesa lavapipe.
    MatrixProducts,
    /// Convolutions direct, linear layers as 1×1 convolutions ([`linear_as_convolution`]):
    /// SwiftShader (Chromium's software WebGPU) runs burn's matrix product several times slower
    /// per FLOP than its direct convolution (docs/performance.md).
    DirectConvolutions,
}

static DIRECT_CONVOLUTIONS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl GpuKernels {
    /// Direct convolutions on SwiftShader, matrix products elsewhere. `description` is the
    /// adapter's as [`crate::device::Adapter::Found`] holds it.
    pub fn for_adapter(description: &str) -> GpuKernels {
        if description.to_lowercase().contains("swiftshader") { GpuKernels::DirectConvolutions } else { GpuKernels::MatrixProducts }
    }

    /// The kernels in use (matrix products unless [`GpuKernels::select`] said otherwise).
    pub fn current() -> GpuKernels {
        if DIRECT_CONVOLUTIONS.load(std::sync::atomic::Ordering::Relaxed) { GpuKernels::DirectConvolutions } else { GpuKernels::MatrixProducts }
    }

    /// Uses these kernels for every GPU computation from now on.
    pub fn select(self) {
        DIRECT_CONVOLUTIONS.store(self == GpuKernels::DirectConvolutions, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `linear`'s forward pass on `x` `[.., d_in]`: burn's, except on a GPU with
/// [`GpuKernels::DirectConvolutions`].
pub fn linear<const D: usize>(linear: &Linear, x: Tensor<D>) -> Tensor<D> {
    if GpuKernels::current() == GpuKernels::DirectConvolutions && on_plain_gpu(&x.device()) {
        return linear_as_convolution(linear, x);
    }
    linear.forward(x)
}

/// `linear` on `x` `[.., d_in]` as a 1×1 convolution: the rows of `x` are the pixels of a
/// `[1, d_in, rows, 1]` image (a permuted view, channels last in memory), the weight
/// `[d_in, d_out]` transposed to `[d_out, d_in, 1, 1]`.
pub fn linear_as_convolution<const D: usize>(linear: &Linear, x: Tensor<D>) -> Tensor<D> {
    let mut shape = x.dims();
    let d_in = shape[D - 1];
    let rows = x.shape().num_elements() / d_in;
    let weight = linear.weight.val();
    let d_out = weight.dims()[1];
    let weight = weight.transpose().reshape([d_out, d_in, 1, 1]);
    let image = x.reshape([1, rows, 1, d_in]).permute([0, 3, 1, 2]);
    let out = burn::tensor::module::conv2d(image, weight, linear.bias.as_ref().map(Param::val), ConvOptions::new([1, 1], [0, 0], [1, 1], 1));
    shape[D - 1] = d_out;
    out.permute([0, 2, 3, 1]).reshape(shape)
}

/// Most bytes of one column matrix of [`gpu_conv`]; taller outputs are computed in bands of rows
/// (the SD1.5 VAE decoder's 512×512 layers would need 1.2 GB at once).
pub const MAX_COLUMN_BYTES: usize = 64 << 20;

/// A stride-1 convolution on a GPU as one matrix product (im2col): the input zero-padded once,
/// its `kh·kw` shifted windows gathered by one `select` into a `[b, c_in·kh·kw, rows·w_out]`
/// column matrix in the order of the weight's own layout ([`im2col_indices`]), multiplied by the
/// weight viewed as `[c_out, c_in·kh·kw]`. Without tensor cores (CMMA/MMA, which WGSL lacks)
/// burn-cubecl's only kernel for a 3×3 convolution is a direct one, and on an H200 (Vulkan) it was
/// 74 % of SD1.5's UNet step and 91 % of its VAE decoding, at a sixth of the throughput per FLOP of
/// burn's matrix product (docs/performance.md, "On a GPU"). One gather rather than a slice per
/// window and their concatenation (12 % and 9 % faster UNet and VAE on lavapipe).
fn gpu_conv(conv: &Conv2d, x: Tensor<4>, [top, left, bottom, right]: [usize; 4]) -> Tensor<4> {
    let [b, c_in, h, w] = x.dims();
    let device = x.device();
    let weight = conv.weight.val();
    let [c_out, _, kh, kw] = weight.dims();
    let (h_out, w_out) = (h + top + bottom + 1 - kh, w + left + right + 1 - kw);
    let (padded_h, padded_w) = (h + top + bottom, w + left + right);
    let depth = c_in * kh * kw;
    let weight = weight.reshape([1, c_out, depth]);
    let bytes_per_row = b * depth * w_out * x.dtype().size();
    let rows = (MAX_COLUMN_BYTES / bytes_per_row.max(1)).clamp(1, h_out);
    let padded = if top + left + bottom + right > 0 { x.pad((left, right, top, bottom), 0.0) } else { x };
    let band = |first: usize| {
        let last = (first + rows).min(h_out);
        let columns = if kh * kw == 1 {
            // The input's own rows are the columns: no gather.
            padded.clone().slice([0..b, 0..c_in, first..last, 0..w_out]).reshape([b, depth, (last - first) * w_out])
        } else {
            let indices = im2col_indices([c_in, padded_h, padded_w], [kh, kw], first..last, w_out, &device);
            padded.clone().reshape([b, c_in * padded_h * padded_w]).select(1, indices).reshape([b, depth, (last - first) * w_out])
        };
        weight.clone().matmul(columns).reshape([b, c_out, last - first, w_out])
    };
    let mut bands: Vec<Tensor<4>> = (0..h_out).step_by(rows).map(band).collect();
    let out = if bands.len() == 1 { bands.remove(0) } else { Tensor::cat(bands, 2) };
    match &conv.bias {
        Some(bias) => out + bias.val().reshape([1, c_out, 1, 1]),
        None => out,
    }
}

/// For [`gpu_conv`]: where each column-matrix entry comes from in a `[c, padded_h, padded_w]`
/// input flattened per image, for output rows `rows` (all `w_out` columns) of a `[kh, kw]`
/// kernel: entry `((c·kh + ky)·kw + kx, (y − rows.start)·w_out + x)` of the `[c·kh·kw, rows·w_out]`
/// matrix, flattened, is `c·padded_h·padded_w + (y + ky)·padded_w + x + kx`. Built on the device
/// as the sum of a per-tap and a per-pixel offset (two small uploads and one broadcast addition).
fn im2col_indices(
    [c, padded_h, padded_w]: [usize; 3],
    [kh, kw]: [usize; 2],
    rows: std::ops::Range<usize>,
    w_out: usize,
    device: &burn::tensor::Device,
) -> Tensor<1, Int> {
    let index = |i: usize| i32::try_from(i).expect("a GPU tensor has fewer than 2^31 values");
    let taps: Vec<i32> = (0..c).flat_map(|c| (0..kh).flat_map(move |ky| (0..kw).map(move |kx| index(c * padded_h * padded_w + ky * padded_w + kx)))).collect();
    let pixels: Vec<i32> = rows.clone().flat_map(|y| (0..w_out).map(move |x| index(y * padded_w + x))).collect();
    let (depth, n) = (taps.len(), pixels.len());
    let taps = Tensor::<2, Int>::from_data(TensorData::new(taps, [depth, 1]), device);
    let pixels = Tensor::<2, Int>::from_data(TensorData::new(pixels, [1, n]), device);
    (taps + pixels).reshape([depth * n])
}

/// Most bytes the score matrix (`batch·heads·seq_q·seq_k` f32) of one attention call may take;
/// longer query runs are split into slices, each attending to all keys (softmax rows are
/// independent, so this is exact — diffusers' "attention slicing"). The scores are materialized
/// (by [`unmasked_attention`], and by burn's attention without its flash kernels), and on
/// lavapipe SD1.5's first attention at 512×512 (2·8·4096·4096 scores, 1 GiB) failed to run at
/// all; slices also bound GPU memory.
pub const MAX_SCORE_BYTES: usize = 64 << 20;

/// `softmax(q kᵀ / sqrt(head_dim)) v`, as `torch.nn.functional.scaled_dot_product_attention`:
/// on the CPU backend without autodiff (inference) our kernel ([`super::cpu_attention`]), else
/// [`unmasked_attention`] in query slices of at most [`MAX_SCORE_BYTES`] of scores, or burn's
/// attention when `causal`.
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
    let [b, h, seq_q, d] = q.dims();
    let seq_k = k.dims()[2];
    let slice = (max_score_bytes / (b * h * seq_k * 4).max(1)).max(1);
    // A causal mask is aligned to the query positions, so causal attention (CLIP's 77 tokens)
    // is never sliced.
    if causal {
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: true };
        return attention(q, k, v, None, None, options).cast(dtype);
    }
    if seq_q <= slice {
        return unmasked_attention(q, k, v).cast(dtype);
    }
    let slices = (0..seq_q)
        .step_by(slice)
        .map(|start| unmasked_attention(q.clone().slice([0..b, 0..h, start..(start + slice).min(seq_q), 0..d]), k.clone(), v.clone()))
        .collect();
    Tensor::cat(slices, 2).cast(dtype)
}

/// `softmax(q kᵀ / sqrt(head_dim)) v` without a mask, in two passes fewer over the
/// `[.., seq_q, seq_k]` scores than burn's attention (which burn-cubecl runs as separate kernels
/// without its `autotune` feature): the scale is applied to `q` and the softmax's division to
/// the product's `[.., seq_q, v_dim]` rows. On lavapipe, at 1,024 tokens (the tiny diffusers
/// model at 64×64) those two passes took 37 and 87 ms a call, the division now 2 ms.
fn unmasked_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let scale = 1.0 / (q.dims()[3] as f64).sqrt();
    let scores = (q * scale).matmul(k.swap_dims(2, 3));
    let max = scores.clone().max_dim(3);
    let weights = (scores - max).exp();
    let sum = weights.clone().sum_dim(3);
    weights.matmul(v) / sum
}

/// `x · sigmoid(x)` (burn's `silu`), on all cores on the plain CPU device (see [`cpu_map`]).
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(not(target_arch = "wasm32"))]
    if on_plain_cpu(&x.device()) {
        return cpu_map(x, silu_value);
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
        let mut out = Vec::with_capacity(b * n * inner);
        out.spare_capacity_mut()[..b * n * inner].par_chunks_mut(inner).zip(values.par_chunks(two_inner)).for_each(|(out, row)| {
            let (hidden, gate) = row.split_at(inner);
            for ((o, h), g) in out.iter_mut().zip(hidden).zip(gate) {
                o.write(h * gelu(*g));
            }
        });
        // SAFETY: every row above wrote all of its `inner` values.
        unsafe { out.set_len(b * n * inner) };
        return cpu_tensor(out, [b, n, inner], &device).cast(dtype);
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
    let (device, dtype, shape) = (x.device(), FloatDType::from(x.dtype()), x.dims());
    let mut values = f32_values(x);
    values.par_chunks_mut(1 << 14).for_each(|chunk| chunk.iter_mut().for_each(|v| *v = f(*v)));
    cpu_tensor(values, shape, &device).cast(dtype)
}

/// `v · sigmoid(v)`, as burn-flex's SiLU.
#[cfg(not(target_arch = "wasm32"))]
fn silu_value(v: f32) -> f32 {
    v * sigmoid(v)
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

/// Whether `device` is a GPU backend without autodiff (inference), where [`gpu_conv`] replaces
/// burn's convolution; told by the device's variant, as [`on_plain_cpu`].
fn on_plain_gpu(device: &burn::tensor::Device) -> bool {
    matches!(device.as_dispatch(), burn::backend::DispatchDevice::Cube(_))
}

/// [`super::cpu_attention::attention`] on f32 tensors `[b, h, seq, dim]`.
#[cfg(not(target_arch = "wasm32"))]
fn cpu_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let device = q.device();
    let ([b, h, seq_q, head_dim], [_, _, seq_k, v_dim]) = (q.dims(), v.dims());
    let dims = super::cpu_attention::Dims { heads: b * h, seq_q, seq_k, head_dim, v_dim };
    let out = super::cpu_attention::attention(&f32_values(q), &f32_values(k), &f32_values(v), dims);
    cpu_tensor(out, [b, h, seq_q, v_dim], &device)
}

/// [`super::cpu_conv::conv2d`] with `conv`'s weight, bias and stride and `padding` (top, left,
/// bottom, right), in f32 whatever `x`'s precision; the input, weight and bias are read in place
/// (a module's tensors are shared, so taking their values would copy them at every call).
#[cfg(not(target_arch = "wasm32"))]
fn cpu_conv(conv: &Conv2d, x: Tensor<4>, weight: &FlexTensor, bias: Option<&FlexTensor>, [top, left, bottom, right]: [usize; 4]) -> Tensor<4> {
    let (device, dtype) = (x.device(), FloatDType::from(x.dtype()));
    let [batch, in_channels, h, w] = x.dims();
    let [out_channels, _, kh, kw] = conv.weight.dims();
    let [sh, sw] = conv.stride;
    let output = [(h + top + bottom - kh) / sh + 1, (w + left + right - kw) / sw + 1];
    let geometry =
        super::cpu_conv::Geometry { batch, in_channels, out_channels, input: [h, w], kernel: [kh, kw], stride: conv.stride, padding: [top, left], output };
    let x = flex_f32(x);
    let out = super::cpu_conv::conv2d(flex_values(&x), flex_values(weight), bias.map(flex_values), geometry);
    cpu_tensor(out, [batch, out_channels, output[0], output[1]], &device).cast(dtype)
}

/// [`group_norm`] (then SiLU when `then_silu`) on all cores, reading `x` in place (the ResNet blocks
/// keep it for their shortcut, so taking its values would copy it on one thread): one
/// task per (image, group) for its mean and biased variance (two passes) and its values
/// `(x − μ)·γ/σ + β`. burn's own made seven passes over the tensor on one thread.
#[cfg(not(target_arch = "wasm32"))]
fn cpu_group_norm(norm: &GroupNorm, x: Tensor<4>, [gamma, beta]: [Option<FlexTensor>; 2], then_silu: bool) -> Tensor<4> {
    use rayon::prelude::*;
    let (device, dtype, shape) = (x.device(), FloatDType::from(x.dtype()), x.dims());
    let [_, c, h, w] = shape;
    let (groups, epsilon) = (norm.num_groups, norm.epsilon);
    let (gamma, beta) = (gamma.as_ref().map(flex_values), beta.as_ref().map(flex_values));
    let x = flex_f32(x);
    let (per_group, len) = (c / groups, x.layout().num_elements());
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len].par_chunks_mut(per_group * h * w).zip(flex_values(&x).par_chunks(per_group * h * w)).enumerate().for_each(
        |(index, (out, group))| {
            let n = group.len() as f64;
            let mean = sum_wide(group, |v| v) / n;
            let centre = mean as f32;
            let variance = sum_wide(group, |v| (v - centre) * (v - centre)) / n - (mean - centre as f64).powi(2);
            let inverse = 1.0 / (variance + epsilon).sqrt();
            let first = (index % groups) * per_group;
            for (channel, (out, plane)) in (first..).zip(out.chunks_mut(h * w).zip(group.chunks(h * w))) {
                let gamma = gamma.map_or(1.0, |g| g[channel] as f64);
                let scale = (gamma * inverse) as f32;
                // Centred first (exact for values near the mean), so a large mean does not cancel.
                let shift = (beta.map_or(0.0, |b| b[channel] as f64) - (mean - centre as f64) * gamma * inverse) as f32;
                let pairs = out.iter_mut().zip(plane);
                if then_silu {
                    pairs.for_each(|(o, v)| _ = o.write(silu_value((v - centre) * scale + shift)));
                } else {
                    pairs.for_each(|(o, v)| _ = o.write((v - centre) * scale + shift));
                }
            }
        },
    );
    // SAFETY: every (image, group) task above wrote all of its values.
    unsafe { out.set_len(len) };
    cpu_tensor(out, shape, &device).cast(dtype)
}

/// Σ f(v) over `values`, accurate for a group's tens of thousands of values and vectorised: 16 f32
/// lanes within blocks of 256 values, the blocks' sums added in f64.
#[cfg(not(target_arch = "wasm32"))]
fn sum_wide(values: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    const LANES: usize = 16;
    values
        .chunks(LANES * LANES)
        .map(|block| {
            let mut lanes = [0.0f32; LANES];
            let mut rows = block.chunks_exact(LANES);
            for row in &mut rows {
                lanes.iter_mut().zip(row).for_each(|(lane, v)| *lane += f(*v));
            }
            let rest: f32 = rows.remainder().iter().map(|v| f(*v)).sum();
            lanes.iter().map(|&lane| lane as f64).sum::<f64>() + rest as f64
        })
        .sum()
}

/// A plain-CPU tensor as burn-flex's contiguous f32 tensor (the same storage when it is one).
#[cfg(not(target_arch = "wasm32"))]
fn flex_f32<const D: usize>(t: Tensor<D>) -> FlexTensor {
    try_flex_f32(t).expect("a tensor on the plain CPU device")
}

/// [`flex_f32`], or `None` for a tensor that is not burn-flex's without autodiff.
#[cfg(not(target_arch = "wasm32"))]
fn try_flex_f32<const D: usize>(t: Tensor<D>) -> Option<FlexTensor> {
    let t = t.cast(FloatDType::F32).try_into_primitive::<burn::backend::Flex>().ok()?;
    Some(if t.is_contiguous() { t } else { t.to_contiguous() })
}

/// A module's parameter as [`flex_f32`], or `None` when it is not a plain CPU tensor: a module being
/// trained holds autodiff tensors even where it runs without gradients (the VAE encoding the
/// training images), and those keep burn's own operations.
#[cfg(not(target_arch = "wasm32"))]
fn plain_param<const D: usize>(param: &Param<Tensor<D>>) -> Option<FlexTensor> {
    try_flex_f32(param.val())
}

/// [`plain_param`] of an optional parameter: `Some(None)` when there is none.
#[cfg(not(target_arch = "wasm32"))]
fn plain_optional<const D: usize>(param: &Option<Param<Tensor<D>>>) -> Option<Option<FlexTensor>> {
    param.as_ref().map_or(Some(None), |p| plain_param(p).map(Some))
}

/// The values of a contiguous f32 [`flex_f32`] tensor, borrowed.
#[cfg(not(target_arch = "wasm32"))]
fn flex_values(t: &FlexTensor) -> &[f32] {
    let (start, end) = t.layout().contiguous_offsets().expect("contiguous");
    &t.storage::<f32>()[start..end]
}

/// A CPU tensor of `shape` holding `values` (f32).
#[cfg(not(target_arch = "wasm32"))]
fn cpu_tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &burn::tensor::Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
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
    fn direct_convolutions_on_swiftshader_only() {
        assert_eq!(GpuKernels::for_adapter("google swiftshader Subzero"), GpuKernels::DirectConvolutions);
        assert_eq!(GpuKernels::for_adapter("Google SwiftShader"), GpuKernels::DirectConvolutions);
        assert_eq!(GpuKernels::for_adapter("mesa llvmpipe"), GpuKernels::MatrixProducts);
        assert_eq!(GpuKernels::for_adapter("nvidia hopper NVIDIA H200"), GpuKernels::MatrixProducts);
    }

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

    /// Our unmasked attention (scale on `q`, division after the product) against burn's
    /// (scale and division on the scores), both on flex; measured 0.7–1.0e-6 of the largest value.
    #[test]
    fn unmasked_attention_equals_burns() {
        let device = Device::flex();
        let t = |n: usize| Tensor::<4>::random([2, 3, n, 8], Distribution::Normal(0.0, 2.0), &device);
        let (q, k, v) = (t(37), t(29), t(29));
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
        let burns = attention(q.clone(), k.clone(), v.clone(), None, None, options);
        let diff = (burns.clone() - unmasked_attention(q, k, v)).abs().max().into_scalar::<f32>();
        let error = diff / burns.abs().max().into_scalar::<f32>();
        eprintln!("unmasked attention against burn's: {error:.2e} of the largest value");
        assert!(error <= 2e-6, "unmasked attention differs from burn's by {error:e} of the largest value");
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

    /// On the plain CPU device group norms are our kernel; they equal the definition computed in
    /// f64 (random γ and β, values far from zero), with and without the SiLU after, and f16 stays f16.
    #[test]
    fn cpu_group_norm_equals_the_definition() {
        use burn::nn::GroupNormConfig;
        let device = Device::flex();
        let values = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().unwrap();
        let mut norm = GroupNormConfig::new(3, 6).with_epsilon(1e-5).init(&device);
        let (gamma, beta) = (Tensor::random([6], Distribution::Normal(1.0, 0.5), &device), Tensor::random([6], Distribution::Normal(0.0, 0.5), &device));
        norm.gamma = Some(Param::from_tensor(gamma.clone()));
        norm.beta = Some(Param::from_tensor(beta.clone()));
        let (gamma, beta) = (values(gamma), values(beta));
        let x = Tensor::<4>::random([2, 6, 9, 7], Distribution::Normal(0.0, 3.0), &device) + 20.0;
        let data = values(x.clone().flatten(0, 3));
        let mut expected = Vec::new();
        for group in data.chunks(2 * 63) {
            let n = group.len() as f64;
            let mean = group.iter().map(|&v| v as f64).sum::<f64>() / n;
            let variance = group.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            expected.extend(group.iter().map(|&v| (v as f64 - mean) / (variance + 1e-5).sqrt()));
        }
        let expected: Vec<f64> = expected.iter().enumerate().map(|(i, v)| v * gamma[i / 63 % 6] as f64 + beta[i / 63 % 6] as f64).collect();
        let close = |ours: Tensor<4>, f: fn(f64) -> f64| {
            let worst = values(ours.flatten(0, 3)).iter().zip(&expected).map(|(a, b)| (*a as f64 - f(*b)).abs()).fold(0.0, f64::max);
            let largest = expected.iter().map(|v| f(*v).abs()).fold(0.0, f64::max);
            assert!(worst <= 2.5e-7 * largest, "differs from the definition by {worst} (largest {largest})");
        };
        close(group_norm(&norm, x.clone()), |v| v);
        close(group_norm_silu(&norm, x.clone()), |v| v / (1.0 + (-v).exp()));
        assert_eq!(FloatDType::from(group_norm_silu(&norm, x.cast(FloatDType::F16)).dtype()), FloatDType::F16);
    }

    /// On the plain CPU device convolutions are our kernel; they equal burn-flex's own (a 3×3
    /// "same" with bias, a stride-2 one padded after only, as the VAE's downsampler) and f16 stays f16.
    #[test]
    fn cpu_conv_equals_burns() {
        use burn::nn::conv::Conv2dConfig;
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 6, 13, 10], Distribution::Normal(0.0, 1.0), &device);
        let convs = [
            Conv2dConfig::new([6, 9], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(&device),
            Conv2dConfig::new([6, 9], [3, 3]).with_stride([2, 2]).with_padding(PaddingConfig2d::Explicit(0, 0, 1, 1)).with_bias(false).init(&device),
        ];
        for conv in convs {
            let burns = conv.forward(x.clone());
            let ours = conv2d(&conv, x.clone());
            assert_eq!(ours.dims(), burns.dims());
            let diff = (burns.clone() - ours).abs().max().into_scalar::<f32>();
            let largest = burns.abs().max().into_scalar::<f32>();
            assert!(diff <= 8e-7 * largest, "differs from burn's by {diff} (largest {largest})");
            assert_eq!(FloatDType::from(conv2d(&conv, x.clone().cast(FloatDType::F16)).dtype()), FloatDType::F16);
        }
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
