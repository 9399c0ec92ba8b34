//! 2-D convolution on the CPU backend, for inference: each image's patches are gathered from its
//! NCHW planes into a `[c_in·kh·kw, pixels]` matrix (im2col, on all cores) and multiplied by the
//! weight as it is stored (`[c_out, c_in·kh·kw]`), the product landing in the NCHW output.
//!
//! burn-flex 0.22 re-lays out the whole weight (`[c_out, kh, kw, c_in]`) and the input (NHWC) on
//! one thread at every call, then copies each tile's product into place: 5 % of an SD1.5 UNet
//! step's samples on the main thread while the other core waited (up to 59 MB of weight per call
//! in the 1280-channel blocks).

use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Most values of one im2col matrix (64 MiB of f32); taller outputs are done in bands of rows.
/// SD1.5's largest UNet gather (960 channels at 64×64) is 35 M values, the VAE decoder's at
/// 512×512 is 302 M: a band keeps the buffer bounded and each gemm still several hundred pixels wide.
const MAX_COLUMN_VALUES: usize = 1 << 24;

/// Shapes of one convolution (groups 1, dilation 1).
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Zero rows added above and columns added to the left (the far sides follow from `output`).
    pub padding: [usize; 2],
    /// Output height and width.
    pub output: [usize; 2],
}

/// The convolution of `x` (`[batch, in_channels, h, w]`) with `weight`
/// (`[out_channels, in_channels, kh, kw]`) plus `bias`, as `[batch, out_channels, oh, ow]`.
pub fn conv2d(x: &[f32], weight: &[f32], bias: Option<&[f32]>, g: Geometry) -> Vec<f32> {
    banded_conv2d(x, weight, bias, g, MAX_COLUMN_VALUES)
}

/// [`conv2d`] with im2col matrices of at most `max_column_values` (or one output row).
fn banded_conv2d(x: &[f32], weight: &[f32], bias: Option<&[f32]>, g: Geometry, max_column_values: usize) -> Vec<f32> {
    let Geometry { batch, in_channels, out_channels, input: [h, w], kernel: [kh, kw], output: [oh, ow], .. } = g;
    let k = in_channels * kh * kw;
    let pixels = oh * ow;
    assert_eq!(x.len(), batch * in_channels * h * w, "input length");
    assert_eq!(weight.len(), out_channels * k, "weight length");
    let mut out: Vec<f32> = Vec::with_capacity(batch * out_channels * pixels);
    let direct = kh == 1 && kw == 1 && g.stride == [1, 1] && g.padding == [0, 0] && [oh, ow] == [h, w];
    let band_rows = (max_column_values / (k * ow).max(1)).clamp(1, oh.max(1));
    let mut columns: Vec<f32> = Vec::with_capacity(if direct { 0 } else { k * band_rows * ow });
    for image in 0..batch {
        let x = &x[image * in_channels * h * w..][..in_channels * h * w];
        let out = out.spare_capacity_mut()[image * out_channels * pixels..][..out_channels * pixels].as_mut_ptr();
        for row in (0..oh).step_by(band_rows) {
            let rows = band_rows.min(oh - row);
            let n = rows * ow;
            let rhs = if direct {
                &x[row * ow..]
            } else {
                im2col(x, &mut columns.spare_capacity_mut()[..k * n], row..row + rows, g);
                // SAFETY: `im2col` wrote all `k·n` values.
                unsafe { columns.set_len(k * n) };
                &columns[..]
            };
            let rhs_row_stride = if direct { pixels } else { n };
            // out[:, row·ow ..][c, p] = Σ weight[c, i] · rhs[i, p]: the output's rows are whole
            // planes apart (`pixels`), the band starts `row·ow` into each.
            // SAFETY: `out` has room for `out_channels` planes of `pixels`; every pointer and
            // stride below describes the slice it comes from; with `read_dst` false every output
            // value is written, never read.
            unsafe {
                gemm::gemm(
                    out_channels,
                    n,
                    k,
                    out.add(row * ow) as *mut f32,
                    1,
                    pixels as isize,
                    false,
                    weight.as_ptr(),
                    1,
                    k as isize,
                    rhs.as_ptr(),
                    1,
                    rhs_row_stride as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism(out_channels, n, k),
                );
            }
            // SAFETY: nothing reads the columns before the next band rewrites them.
            unsafe { columns.set_len(0) };
        }
    }
    // SAFETY: the gemms above wrote every output value.
    unsafe { out.set_len(batch * out_channels * pixels) };
    if let Some(bias) = bias {
        assert_eq!(bias.len(), out_channels, "bias length");
        out.par_chunks_mut(pixels.max(1)).enumerate().for_each(|(plane, values)| {
            let b = bias[plane % out_channels];
            values.iter_mut().for_each(|v| *v += b);
        });
    }
    out
}

/// Both cores for products worth splitting (burn-flex's threshold), else the calling thread.
fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    if m * n * k >= 192 * 192 * 192 { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None }
}

/// Fills `columns` (`[in_channels·kh·kw, rows·ow]`) with the input values under each kernel tap for
/// the output rows `rows`: row `(c, i, j)` holds `x[c, y·sh + i − ph, x·sw + j − pw]` for each
/// output pixel `(y, x)`, zero where that falls in the padding. One input channel per task.
fn im2col(x: &[f32], columns: &mut [MaybeUninit<f32>], rows: std::ops::Range<usize>, g: Geometry) {
    let Geometry { input: [h, w], kernel: [kh, kw], stride: [sh, sw], padding: [ph, pw], output: [_, ow], .. } = g;
    let n = rows.len() * ow;
    columns.par_chunks_mut(kh * kw * n).zip(x.par_chunks(h * w)).for_each(|(taps, plane)| {
        for (tap, column) in taps.chunks_mut(n).enumerate() {
            let (i, j) = (tap / kw, tap % kw);
            for (y, line) in rows.clone().zip(column.chunks_mut(ow)) {
                let Some(source_y) = (y * sh + i).checked_sub(ph).filter(|&sy| sy < h) else {
                    line.iter_mut().for_each(|v| _ = v.write(0.0));
                    continue;
                };
                let source = &plane[source_y * w..][..w];
                if sw == 1 {
                    // Output columns `lo..hi` read `source[lo + j − pw ..]`; the rest is padding.
                    let (lo, hi) = (pw.saturating_sub(j).min(ow), (w + pw).saturating_sub(j).min(ow));
                    let (head, tail) = line.split_at_mut(hi.max(lo));
                    head[..lo].iter_mut().chain(tail).for_each(|v| _ = v.write(0.0));
                    if lo < hi {
                        head[lo..].iter_mut().zip(&source[lo + j - pw..]).for_each(|(v, s)| _ = v.write(*s));
                    }
                    continue;
                }
                for (x, v) in line.iter_mut().enumerate() {
                    let sx = (x * sw + j).wrapping_sub(pw);
                    v.write(if sx < w { source[sx] } else { 0.0 });
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one output value at a time, summed in f64.
    fn naive(x: &[f32], weight: &[f32], bias: &[f32], g: Geometry) -> Vec<f32> {
        let Geometry { batch, in_channels, out_channels, input: [h, w], kernel: [kh, kw], stride: [sh, sw], padding: [ph, pw], output: [oh, ow] } = g;
        let mut out = Vec::new();
        for b in 0..batch {
            for o in 0..out_channels {
                for y in 0..oh {
                    for x_out in 0..ow {
                        let mut sum = bias[o] as f64;
                        for c in 0..in_channels {
                            for i in 0..kh {
                                for j in 0..kw {
                                    let (sy, sx) = ((y * sh + i) as isize - ph as isize, (x_out * sw + j) as isize - pw as isize);
                                    if (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx) {
                                        let input = x[((b * in_channels + c) * h + sy as usize) * w + sx as usize];
                                        sum += input as f64 * weight[((o * in_channels + c) * kh + i) * kw + j] as f64;
                                    }
                                }
                            }
                        }
                        out.push(sum as f32);
                    }
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32).map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0).collect()
    }

    /// 3×3 "same", the VAE's stride-2 downsampler (padding only after), a 1×1 projection and a
    /// padded 3×3 wider than its input, each whole and in bands of one and of three output rows.
    #[test]
    fn equals_the_definition() {
        let geometry = |input: [usize; 2], kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], after: [usize; 2]| {
            let output = [0, 1].map(|d| (input[d] + padding[d] + after[d] - kernel[d]) / stride[d] + 1);
            Geometry { batch: 2, in_channels: 5, out_channels: 7, input, kernel, stride, padding, output }
        };
        let cases = [
            geometry([9, 11], [3, 3], [1, 1], [1, 1], [1, 1]),
            geometry([9, 11], [3, 3], [2, 2], [0, 0], [1, 1]),
            geometry([9, 11], [1, 1], [1, 1], [0, 0], [0, 0]),
            geometry([2, 3], [3, 3], [1, 1], [2, 3], [2, 3]),
        ];
        for g in cases {
            let x = values(g.batch * g.in_channels * g.input[0] * g.input[1], 1);
            let weight = values(g.out_channels * g.in_channels * g.kernel[0] * g.kernel[1], 2);
            let bias = values(g.out_channels, 3);
            let expected = naive(&x, &weight, &bias, g);
            let k = g.in_channels * g.kernel[0] * g.kernel[1];
            for max_column_values in [usize::MAX, 1, 3 * k * g.output[1]] {
                let ours = banded_conv2d(&x, &weight, Some(&bias), g, max_column_values);
                assert_eq!(ours.len(), expected.len());
                let worst = ours.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                let largest = expected.iter().map(|v| v.abs()).fold(0.0, f32::max);
                assert!(worst <= 3e-7 * largest, "{g:?} in bands of {max_column_values}: off by {worst} (largest {largest})");
            }
        }
    }
}
