//! Device self-test: the primitive ops the SD modules are built from, run on a device and compared
//! with plain f64 implementations of their textbook definitions.
//!
//! Used by `mam-e doctor`, by the page before it trusts a WebGPU adapter, and by the native and
//! browser tests (flex, wgpu on Vulkan/lavapipe, WebGPU in Chromium).

use burn::module::Param;
use burn::nn::conv::Conv2dConfig;
use burn::nn::{GroupNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};

use crate::Result;
use crate::device::read_f32;
use crate::model::ops::{conv2d, group_norm, scaled_dot_product_attention};
use crate::rng::NoiseRng;

/// Largest accepted `max |got - want| / max |want|` for f32 against f64.
pub const TOLERANCE: f64 = 1e-4;

/// One op's agreement with its f64 reference.
#[derive(Debug, Clone, PartialEq)]
pub struct OpCheck {
    /// What was computed, with its shapes.
    pub name: String,
    /// `max |got - want|`.
    pub max_abs_err: f64,
    /// `max |want|`.
    pub max_abs_ref: f64,
}

impl OpCheck {
    /// `max |got - want| / max |want|`.
    pub fn relative_error(&self) -> f64 {
        self.max_abs_err / self.max_abs_ref.max(f64::MIN_POSITIVE)
    }
    /// Within [`TOLERANCE`].
    pub fn passed(&self) -> bool {
        self.relative_error() <= TOLERANCE
    }
    fn compare(name: String, got: &[f32], want: &[f64]) -> Self {
        assert_eq!(got.len(), want.len(), "{name}: length mismatch");
        let max_abs_err = got.iter().zip(want).map(|(g, w)| (*g as f64 - w).abs()).fold(0.0, f64::max);
        let max_abs_ref = want.iter().map(|w| w.abs()).fold(0.0, f64::max);
        // NaN anywhere must fail, and `fold(max)` drops NaN, so carry it explicitly.
        let max_abs_err = if got.iter().any(|g| !g.is_finite()) { f64::INFINITY } else { max_abs_err };
        Self { name, max_abs_err, max_abs_ref }
    }
}

/// Runs every check on `device`.
pub async fn run(device: &Device) -> Result<Vec<OpCheck>> {
    let mut rng = NoiseRng::new(2024);
    let mut checks = Vec::new();
    checks.push(check_matmul(device, &mut rng, [2, 37, 53, 29]).await?);
    checks.push(check_conv2d(device, &mut rng, [2, 5, 11, 9], 7, 1).await?);
    checks.push(check_conv2d(device, &mut rng, [1, 4, 10, 7], 6, 2).await?);
    checks.push(check_group_norm(device, &mut rng, [2, 8, 6, 5], 4).await?);
    // SD1.5's VAE decoder at 512×512: 2^20 values a group (burn-wgpu's own reduction fails here).
    checks.push(check_group_norm(device, &mut rng, [1, 4, 512, 512], 1).await?);
    checks.push(check_attention(device, &mut rng, [2, 3, 17, 13, 8], false).await?);
    checks.push(check_attention(device, &mut rng, [1, 2, 9, 9, 8], true).await?);
    Ok(checks)
}

fn tensor<const D: usize>(values: &[f32], shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

async fn check_matmul(device: &Device, rng: &mut NoiseRng, [b, m, k, n]: [usize; 4]) -> Result<OpCheck> {
    let (a, c) = (rng.randn(b * m * k), rng.randn(b * k * n));
    let got = read_f32(tensor(&a, [b, m, k], device).matmul(tensor(&c, [b, k, n], device))).await?;
    let mut want = vec![0.0; b * m * n];
    for bi in 0..b {
        for i in 0..m {
            for j in 0..n {
                want[(bi * m + i) * n + j] = (0..k).map(|l| a[(bi * m + i) * k + l] as f64 * c[(bi * k + l) * n + j] as f64).sum();
            }
        }
    }
    Ok(OpCheck::compare(format!("matmul [{b},{m},{k}]x[{b},{k},{n}]"), &got, &want))
}

/// 3×3 convolution with padding 1, as every SD conv but the 1×1 shortcuts, computed as the models
/// compute it ([`conv2d`]: on a GPU, a matrix product at stride 1 and burn's kernel at stride 2).
async fn check_conv2d(device: &Device, rng: &mut NoiseRng, [n, c, h, w]: [usize; 4], out: usize, stride: usize) -> Result<OpCheck> {
    let (x, wt, bias) = (rng.randn(n * c * h * w), rng.randn(out * c * 9), rng.randn(out));
    let mut conv = Conv2dConfig::new([c, out], [3, 3]).with_stride([stride, stride]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device);
    conv.weight = Param::from_tensor(tensor(&wt, [out, c, 3, 3], device));
    conv.bias = Some(Param::from_tensor(tensor(&bias, [out], device)));
    let y = conv2d(&conv, tensor(&x, [n, c, h, w], device));
    let got = read_f32(y).await?;
    let (ho, wo) = ((h + 2 - 3) / stride + 1, (w + 2 - 3) / stride + 1);
    let mut want = vec![0.0; n * out * ho * wo];
    for ni in 0..n {
        for o in 0..out {
            for yo in 0..ho {
                for xo in 0..wo {
                    let mut acc = bias[o] as f64;
                    for ci in 0..c {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (yi, xi) = ((yo * stride + ky) as isize - 1, (xo * stride + kx) as isize - 1);
                                if yi < 0 || xi < 0 || yi >= h as isize || xi >= w as isize {
                                    continue;
                                }
                                let xv = x[((ni * c + ci) * h + yi as usize) * w + xi as usize] as f64;
                                acc += xv * wt[((o * c + ci) * 3 + ky) * 3 + kx] as f64;
                            }
                        }
                    }
                    want[((ni * out + o) * ho + yo) * wo + xo] = acc;
                }
            }
        }
    }
    Ok(OpCheck::compare(format!("conv2d 3x3 stride {stride} [{n},{c},{h},{w}]->{out}"), &got, &want))
}

async fn check_group_norm(device: &Device, rng: &mut NoiseRng, [n, c, h, w]: [usize; 4], groups: usize) -> Result<OpCheck> {
    // An offset and a spread far from N(0, 1), where one-pass variance loses precision.
    let x: Vec<f32> = rng.randn(n * c * h * w).iter().map(|v| 3.0 * v + 20.0).collect();
    let (gamma, beta) = (rng.randn(c), rng.randn(c));
    let eps = 1e-5;
    let mut norm = GroupNormConfig::new(groups, c).with_epsilon(eps).init(device);
    norm.gamma = Some(Param::from_tensor(tensor(&gamma, [c], device)));
    norm.beta = Some(Param::from_tensor(tensor(&beta, [c], device)));
    let y = group_norm(&norm, tensor(&x, [n, c, h, w], device));
    let got = read_f32(y).await?;
    let per_group = (c / groups) * h * w;
    let mut want = vec![0.0; x.len()];
    for ni in 0..n {
        for g in 0..groups {
            let start = (ni * groups + g) * per_group;
            let vals = &x[start..start + per_group];
            let mean = vals.iter().map(|v| *v as f64).sum::<f64>() / per_group as f64;
            let var = vals.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / per_group as f64;
            for (i, v) in vals.iter().enumerate() {
                let ch = g * (c / groups) + i / (h * w);
                want[start + i] = (*v as f64 - mean) / (var + eps).sqrt() * gamma[ch] as f64 + beta[ch] as f64;
            }
        }
    }
    Ok(OpCheck::compare(format!("group_norm {groups} groups [{n},{c},{h},{w}]"), &got, &want))
}

async fn check_attention(device: &Device, rng: &mut NoiseRng, [b, heads, sq, sk, d]: [usize; 5], causal: bool) -> Result<OpCheck> {
    let (q, k, v) = (rng.randn(b * heads * sq * d), rng.randn(b * heads * sk * d), rng.randn(b * heads * sk * d));
    let y = scaled_dot_product_attention(
        tensor(&q, [b, heads, sq, d], device),
        tensor(&k, [b, heads, sk, d], device),
        tensor(&v, [b, heads, sk, d], device),
        causal,
    );
    let got = read_f32(y).await?;
    let scale = 1.0 / (d as f64).sqrt();
    let mut want = vec![0.0; b * heads * sq * d];
    for bh in 0..b * heads {
        for i in 0..sq {
            let visible = if causal { i + 1 } else { sk };
            let scores: Vec<f64> =
                (0..visible).map(|j| (0..d).map(|l| q[(bh * sq + i) * d + l] as f64 * k[(bh * sk + j) * d + l] as f64).sum::<f64>() * scale).collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = exps.iter().sum();
            for l in 0..d {
                want[(bh * sq + i) * d + l] = (0..visible).map(|j| exps[j] / total * v[(bh * sk + j) * d + l] as f64).sum();
            }
        }
    }
    let kind = if causal { "causal self-attention" } else { "cross-attention" };
    Ok(OpCheck::compare(format!("{kind} q[{b},{heads},{sq},{d}] kv[{sk}]"), &got, &want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_flags_errors_and_nan() {
        let ok = OpCheck::compare("x".into(), &[1.0, 2.0], &[1.0, 2.0]);
        assert!(ok.passed());
        let off = OpCheck::compare("x".into(), &[1.0, 2.01], &[1.0, 2.0]);
        assert!(!off.passed());
        let nan = OpCheck::compare("x".into(), &[f32::NAN, 2.0], &[1.0, 2.0]);
        assert!(!nan.passed());
    }
}
