//! Scaled dot-product attention on the CPU backend, for inference: in blocks of query rows, each
//! one gemm for the scores, an exact softmax with a vectorised `exp`, and one gemm for the values.
//!
//! burn-flex 0.22's own attention (online softmax over tiles of 64 keys) spent 30 % of an SD1.5
//! UNet step in its scalar softmax loop and libm's `expf`; this computes the same function with
//! whole score rows (two passes, as PyTorch's math kernel) and AVX-512/AVX2 arithmetic.

use rayon::prelude::*;

/// Query rows per block: the block's scores (`QUERY_BLOCK × seq_k` f32) stay in the core's cache
/// for the softmax and the second gemm.
const QUERY_BLOCK: usize = 64;

/// Shapes of one attention call: `q` is `[batch·heads, seq_q, head_dim]`, `k` is
/// `[batch·heads, seq_k, head_dim]`, `v` is `[batch·heads, seq_k, v_dim]`, all contiguous.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub heads: usize,
    pub seq_q: usize,
    pub seq_k: usize,
    pub head_dim: usize,
    pub v_dim: usize,
}

/// `softmax(q kᵀ / sqrt(head_dim)) v` for every head, returned as `[batch·heads, seq_q, v_dim]`.
/// Its length is the two `gemm` calls, whose 18 arguments each stand one to a line.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], dims: Dims) -> Vec<f32> {
    let Dims { heads, seq_q, seq_k, head_dim, v_dim } = dims;
    assert_eq!(q.len(), heads * seq_q * head_dim, "query length");
    assert_eq!(k.len(), heads * seq_k * head_dim, "key length");
    assert_eq!(v.len(), heads * seq_k * v_dim, "value length");
    let mut out = vec![0.0f32; heads * seq_q * v_dim];
    if out.is_empty() {
        return out;
    }
    assert!(seq_k > 0, "attention over no keys");
    let scale = 1.0 / (head_dim as f32).sqrt();
    let exp = Exp::detect();
    out.par_chunks_mut(seq_q * v_dim).enumerate().for_each(|(head, out)| {
        let q = &q[head * seq_q * head_dim..][..seq_q * head_dim];
        let k = &k[head * seq_k * head_dim..][..seq_k * head_dim];
        let v = &v[head * seq_k * v_dim..][..seq_k * v_dim];
        out.par_chunks_mut(QUERY_BLOCK * v_dim).enumerate().for_each_init(Vec::new, |scores, (block, out)| {
            let rows = out.len() / v_dim;
            let q = &q[block * QUERY_BLOCK * head_dim..][..rows * head_dim];
            scores.resize(rows * seq_k, 0.0);
            // scores = scale · q kᵀ  (k is row-major [seq_k, head_dim], read as its transpose)
            // SAFETY: every pointer and stride below describes the slice it comes from.
            unsafe {
                gemm::gemm(
                    rows,
                    seq_k,
                    head_dim,
                    scores.as_mut_ptr(),
                    1,
                    seq_k as isize,
                    false,
                    q.as_ptr(),
                    1,
                    head_dim as isize,
                    k.as_ptr(),
                    head_dim as isize,
                    1,
                    0.0,
                    scale,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            let mut inverse_sums = [0.0f32; QUERY_BLOCK];
            for (row, inverse) in scores.chunks_exact_mut(seq_k).zip(&mut inverse_sums) {
                *inverse = 1.0 / exp.softmax_numerators(row);
            }
            // out = exp(scores − max) v, then each row divided by its sum
            // SAFETY: as above.
            unsafe {
                gemm::gemm(
                    rows,
                    v_dim,
                    seq_k,
                    out.as_mut_ptr(),
                    1,
                    v_dim as isize,
                    false,
                    scores.as_ptr(),
                    1,
                    seq_k as isize,
                    v.as_ptr(),
                    1,
                    v_dim as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            for (row, inverse) in out.chunks_exact_mut(v_dim).zip(inverse_sums) {
                row.iter_mut().for_each(|x| *x *= inverse);
            }
        });
    });
    out
}

/// The widest `exp` this CPU runs, chosen once per call.
#[derive(Clone, Copy)]
enum Exp {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Exp {
    fn detect() -> Exp {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return Exp::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Exp::Avx2;
            }
        }
        Exp::Portable
    }

    /// Replaces `row` by `exp(row − max(row))` and returns the sum of the new values.
    fn softmax_numerators(self, row: &mut [f32]) -> f32 {
        match self {
            // SAFETY: detect() saw the CPU features these functions are compiled for.
            #[cfg(target_arch = "x86_64")]
            Exp::Avx512 => unsafe { numerators_avx512(row) },
            #[cfg(target_arch = "x86_64")]
            Exp::Avx2 => unsafe { numerators_avx2(row) },
            Exp::Portable => numerators(row),
        }
    }
}

// The vector paths, in explicit vector registers: the maximum, then `exp` and the sum in one pass
// (the compiler does not vectorise float reductions, which would reorder the additions, and left
// the scalar `exp` loop unvectorised at opt-level 1, the tests' build: a third of a UNet step).

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn numerators_avx512(row: &mut [f32]) -> f32 {
    use std::arch::x86_64::*;
    let whole = row.len() / 16 * 16;
    let mut lanes = _mm512_set1_ps(f32::NEG_INFINITY);
    for chunk in row[..whole].chunks_exact(16) {
        // SAFETY: the chunk holds 16 floats.
        lanes = _mm512_max_ps(lanes, unsafe { _mm512_loadu_ps(chunk.as_ptr()) });
    }
    let max = row[whole..].iter().copied().fold(_mm512_reduce_max_ps(lanes), greater);
    let (max_lanes, mut sums) = (_mm512_set1_ps(max), _mm512_setzero_ps());
    for chunk in row[..whole].chunks_exact_mut(16) {
        // SAFETY: as above.
        let e = exp_avx512(_mm512_sub_ps(unsafe { _mm512_loadu_ps(chunk.as_ptr()) }, max_lanes));
        unsafe { _mm512_storeu_ps(chunk.as_mut_ptr(), e) };
        sums = _mm512_add_ps(sums, e);
    }
    exp_minus(&mut row[whole..], max);
    _mm512_reduce_add_ps(sums) + row[whole..].iter().sum::<f32>()
}

/// [`exp`] on 16 lanes, with fused multiply-adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn exp_avx512(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let c = _mm512_set1_ps;
    // max(−87, x), with NaN passed through (the instruction returns its second operand then).
    let x = _mm512_max_ps(c(-87.0), x);
    let shifted = _mm512_fmadd_ps(x, c(LOG2_E), c(ROUND));
    let n = _mm512_sub_ps(shifted, c(ROUND));
    let r = _mm512_fnmadd_ps(n, c(LN2_LO), _mm512_fnmadd_ps(n, c(LN2_HI), x));
    let p = TAYLOR[1..].iter().fold(c(TAYLOR[0]), |p, &k| _mm512_fmadd_ps(p, r, c(k)));
    let n_bits = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_set1_epi32(ROUND.to_bits() as i32));
    let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(n_bits, _mm512_set1_epi32(127))));
    _mm512_mul_ps(p, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn numerators_avx2(row: &mut [f32]) -> f32 {
    use std::arch::x86_64::*;
    let lanes_of = |v: __m256| {
        let mut out = [0.0f32; 8];
        // SAFETY: `out` holds 8 floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
        out
    };
    let whole = row.len() / 8 * 8;
    let mut lanes = _mm256_set1_ps(f32::NEG_INFINITY);
    for chunk in row[..whole].chunks_exact(8) {
        // SAFETY: the chunk holds 8 floats.
        lanes = _mm256_max_ps(lanes, unsafe { _mm256_loadu_ps(chunk.as_ptr()) });
    }
    let max = lanes_of(lanes).into_iter().chain(row[whole..].iter().copied()).fold(f32::NEG_INFINITY, greater);
    let (max_lanes, mut sums) = (_mm256_set1_ps(max), _mm256_setzero_ps());
    for chunk in row[..whole].chunks_exact_mut(8) {
        // SAFETY: as above.
        let e = exp_avx2(_mm256_sub_ps(unsafe { _mm256_loadu_ps(chunk.as_ptr()) }, max_lanes));
        unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), e) };
        sums = _mm256_add_ps(sums, e);
    }
    exp_minus(&mut row[whole..], max);
    lanes_of(sums).iter().sum::<f32>() + row[whole..].iter().sum::<f32>()
}

/// [`exp`] on 8 lanes, with fused multiply-adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn exp_avx2(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let c = _mm256_set1_ps;
    let x = _mm256_max_ps(c(-87.0), x);
    let shifted = _mm256_fmadd_ps(x, c(LOG2_E), c(ROUND));
    let n = _mm256_sub_ps(shifted, c(ROUND));
    let r = _mm256_fnmadd_ps(n, c(LN2_LO), _mm256_fnmadd_ps(n, c(LN2_HI), x));
    let p = TAYLOR[1..].iter().fold(c(TAYLOR[0]), |p, &k| _mm256_fmadd_ps(p, r, c(k)));
    let n_bits = _mm256_sub_epi32(_mm256_castps_si256(shifted), _mm256_set1_epi32(ROUND.to_bits() as i32));
    let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n_bits, _mm256_set1_epi32(127))));
    _mm256_mul_ps(p, scale)
}

fn numerators(row: &mut [f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, greater);
    exp_minus(row, max);
    row.iter().sum()
}

/// The larger of two scores, NaN-blind like the vector max instructions.
#[inline(always)]
fn greater(m: f32, x: f32) -> f32 {
    if x > m { x } else { m }
}

/// `row[i] = exp(row[i] − max)`.
#[inline(always)]
fn exp_minus(row: &mut [f32], max: f32) {
    for x in row.iter_mut() {
        *x = exp(*x - max);
    }
}

/// `eˣ` for `x ≤ 0` (a score minus its row's maximum), relative error below 2e-7: `x = n·ln 2 + r`
/// with `|r| ≤ ln 2 / 2`, `eʳ` by its Taylor polynomial to degree 7, `2ⁿ` built in the exponent
/// bits. Inputs below −87 (whose `eˣ` is under 2⁻¹²⁵, nothing next to the row's `e⁰ = 1`) give
/// `e⁻⁸⁷`; NaN stays NaN (a comparison, not `f32::max`, which would drop it). Branch-free and
/// without float-to-int casts; [`exp_avx512`] and [`exp_avx2`] are the same steps on lanes.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = if x < -87.0 { -87.0 } else { x };
    let shifted = x * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = TAYLOR[1..].iter().fold(TAYLOR[0], |p, &k| p * r + k);
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    p * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split so that n·LN2_HI is exact for |n| < 2¹⁰ (Cody and Waite).
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// Adding 1.5·2²³ rounds to the nearest integer n, which the sum's low mantissa bits then hold:
/// its bits are ROUND's plus n.
const ROUND: f32 = 12_582_912.0;
/// `eʳ`'s Taylor coefficients, highest degree first: `1/7!, 1/6!, …, 1/1!, 1/0!`.
const TAYLOR: [f32; 8] = [1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_f64_exp() {
        let mut worst: f64 = 0.0;
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let want = (x as f64).exp();
            worst = worst.max((exp(x) as f64 - want).abs() / want);
        }
        assert!(worst < 2e-7, "relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(f32::NEG_INFINITY), exp(-87.0));
    }

    /// The vector `exp`s (fused multiply-adds) against f64 on the same points, NaN and −∞ too.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_exps_match_f64_exp() {
        use std::arch::x86_64::*;
        let mut points: Vec<f32> = (0..=200_000).map(|i| -87.0 * i as f32 / 200_000.0).collect();
        points.extend([f32::NAN, f32::NEG_INFINITY, -1000.0]);
        points.resize(points.len().next_multiple_of(16), 0.0);
        let mut lanes = Vec::new();
        // SAFETY: each path runs only where the CPU has its features; loads and stores stay in `points`/`out`.
        unsafe {
            if is_x86_feature_detected!("avx512f") {
                let mut out = vec![0.0f32; points.len()];
                for (x, o) in points.chunks_exact(16).zip(out.chunks_exact_mut(16)) {
                    _mm512_storeu_ps(o.as_mut_ptr(), exp_avx512(_mm512_loadu_ps(x.as_ptr())));
                }
                lanes.push(("avx512", out));
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                let mut out = vec![0.0f32; points.len()];
                for (x, o) in points.chunks_exact(8).zip(out.chunks_exact_mut(8)) {
                    _mm256_storeu_ps(o.as_mut_ptr(), exp_avx2(_mm256_loadu_ps(x.as_ptr())));
                }
                lanes.push(("avx2", out));
            }
        }
        for (name, out) in lanes {
            for (&x, &e) in points.iter().zip(&out) {
                if x.is_nan() {
                    assert!(e.is_nan(), "{name}: exp(NaN) = {e}");
                    continue;
                }
                let want = f64::from(x.max(-87.0)).exp();
                assert!((f64::from(e) - want).abs() <= 2e-7 * want, "{name}: exp({x}) = {e}, not {want}");
            }
        }
    }

    /// Every `exp` this CPU has gives the same numerators as the portable one, including a row
    /// whose length is no multiple of the lanes.
    #[test]
    fn simd_numerators_equal_portable() {
        let row: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1000) as f32 / 37.0 - 13.0).collect();
        let mut portable = row.clone();
        let sum = numerators(&mut portable);
        let mut fast = row.clone();
        let fast_sum = Exp::detect().softmax_numerators(&mut fast[..]);
        for (p, f) in portable.iter().zip(&fast) {
            assert!((p - f).abs() <= 2e-7 * p.abs().max(1e-30), "{p} vs {f}");
        }
        assert!((sum - fast_sum).abs() <= 1e-6 * sum, "{sum} vs {fast_sum}");
    }

    /// Against softmax attention computed in f64 the plain way, with query rows that leave a
    /// partial block and keys that leave a partial lane.
    #[test]
    fn equals_f64_attention() {
        let dims = Dims { heads: 3, seq_q: QUERY_BLOCK * 2 + 5, seq_k: 37, head_dim: 8, v_dim: 6 };
        let value = |i: usize, salt: usize| (((i * 2654435761 + salt * 40503) % 10007) as f32 / 10007.0 - 0.5) * 4.0;
        let q: Vec<f32> = (0..dims.heads * dims.seq_q * dims.head_dim).map(|i| value(i, 1)).collect();
        let k: Vec<f32> = (0..dims.heads * dims.seq_k * dims.head_dim).map(|i| value(i, 2)).collect();
        let v: Vec<f32> = (0..dims.heads * dims.seq_k * dims.v_dim).map(|i| value(i, 3)).collect();
        let got = attention(&q, &k, &v, dims);
        let Dims { heads, seq_q, seq_k, head_dim, v_dim } = dims;
        let mut worst: f64 = 0.0;
        for h in 0..heads {
            for i in 0..seq_q {
                let scores: Vec<f64> = (0..seq_k)
                    .map(|j| {
                        (0..head_dim).map(|c| q[(h * seq_q + i) * head_dim + c] as f64 * k[(h * seq_k + j) * head_dim + c] as f64).sum::<f64>()
                            / (head_dim as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for c in 0..v_dim {
                    let want = (0..seq_k).map(|j| weights[j] * v[(h * seq_k + j) * v_dim + c] as f64).sum::<f64>() / total;
                    worst = worst.max((got[(h * seq_q + i) * v_dim + c] as f64 - want).abs());
                }
            }
        }
        assert!(worst < 1e-5, "max |Δ| {worst:e}");
    }
}
