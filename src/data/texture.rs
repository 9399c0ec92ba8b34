//! Power-law ("1/f^β") random textures, the statistical model of mammographic anatomical noise:
//! the power spectrum of mammograms falls as P(f) ∝ f^-β with β ≈ 3 (Burgess et al., Med. Phys.
//! 2001; Heine & Velthuizen 2002). Made by shaping white Gaussian noise in the Fourier domain.

use rustfft::FftPlanner;
use rustfft::num_complex::Complex32;

use crate::rng::NoiseRng;

/// A Gaussian random field of `width`×`height` (row-major) whose isotropic power spectrum falls
/// as f^-`beta`, normalised to zero mean and unit variance. The DC term is zero.
pub fn power_law_noise(width: usize, height: usize, beta: f64, rng: &mut NoiseRng) -> Vec<f32> {
    let mut field: Vec<Complex32> = Vec::with_capacity(width * height);
    for ky in 0..height {
        let fy = ky.min(height - ky) as f64 / height as f64;
        for kx in 0..width {
            let fx = kx.min(width - kx) as f64 / width as f64;
            let f2 = fx * fx + fy * fy;
            let amplitude = if f2 == 0.0 { 0.0 } else { f2.powf(-beta / 4.0) };
            let (re, im) = (rng.normal(), rng.normal());
            field.push(Complex32::new((amplitude * re) as f32, (amplitude * im) as f32));
        }
    }
    fft_2d(&mut field, width, height, true);
    let mut values: Vec<f32> = field.iter().map(|c| c.re).collect();
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let scale = if var > 0.0 { 1.0 / var.sqrt() } else { 0.0 };
    for v in &mut values {
        *v = ((*v as f64 - mean) * scale) as f32;
    }
    values
}

/// The exponent β of a power-law fit P(f) ∝ f^-β to the radially averaged power spectrum of a
/// square `size`×`size` patch (row-major), over spatial frequencies `f_min..f_max` in cycles per
/// pixel. A Hann window suppresses the patch edges; the mean is removed first.
pub fn spectrum_exponent(patch: &[f32], size: usize, f_min: f64, f_max: f64) -> f64 {
    assert_eq!(patch.len(), size * size, "spectrum_exponent: patch is not size×size");
    let mean = patch.iter().map(|&v| v as f64).sum::<f64>() / patch.len() as f64;
    let hann = |i: usize| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (size - 1) as f64).cos();
    let mut field: Vec<Complex32> =
        (0..size * size).map(|i| Complex32::new(((patch[i] as f64 - mean) * hann(i / size) * hann(i % size)) as f32, 0.0)).collect();
    fft_2d(&mut field, size, size, false);
    // Radial bins one frequency step wide; fit log P against log f by least squares.
    let bins = size / 2;
    let (mut power, mut count) = (vec![0.0f64; bins], vec![0usize; bins]);
    for ky in 0..size {
        let fy = ky.min(size - ky) as f64;
        for kx in 0..size {
            let fx = kx.min(size - kx) as f64;
            let bin = (fx * fx + fy * fy).sqrt().round() as usize;
            if bin > 0 && bin < bins {
                power[bin] += field[ky * size + kx].norm_sqr() as f64;
                count[bin] += 1;
            }
        }
    }
    let points: Vec<(f64, f64)> = (1..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| (b as f64 / size as f64, power[b] / count[b] as f64))
        .filter(|&(f, p)| f >= f_min && f <= f_max && p > 0.0)
        .map(|(f, p)| (f.ln(), p.ln()))
        .collect();
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(a, b), &(x, y)| (a + (x - mx) * (y - my), b + (x - mx) * (x - mx)));
    -sxy / sxx
}

/// In-place 2-D FFT of a row-major `width`×`height` field (rows, then columns through a transpose).
fn fft_2d(field: &mut [Complex32], width: usize, height: usize, inverse: bool) {
    let mut planner = FftPlanner::<f32>::new();
    let plan = |planner: &mut FftPlanner<f32>, n| if inverse { planner.plan_fft_inverse(n) } else { planner.plan_fft_forward(n) };
    plan(&mut planner, width).process(field);
    let mut transposed = vec![Complex32::new(0.0, 0.0); width * height];
    for y in 0..height {
        for x in 0..width {
            transposed[x * height + y] = field[y * width + x];
        }
    }
    plan(&mut planner, height).process(&mut transposed);
    for x in 0..width {
        for y in 0..height {
            field[y * width + x] = transposed[x * height + y];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_has_the_exponent_it_was_made_with() {
        for beta in [2.0, 3.0] {
            let mut rng = NoiseRng::new(7);
            let noise = power_law_noise(256, 256, beta, &mut rng);
            let mean = noise.iter().map(|&v| v as f64).sum::<f64>() / noise.len() as f64;
            let var = noise.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / noise.len() as f64;
            assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4, "mean {mean}, variance {var}");
            // The Hann window leaks low-frequency power into high frequencies, so fit a middle band.
            let fitted = spectrum_exponent(&noise, 256, 0.01, 0.1);
            assert!((fitted - beta).abs() < 0.25, "β = {beta}: fitted {fitted}");
        }
    }

    #[test]
    fn white_noise_is_flat() {
        let mut rng = NoiseRng::new(3);
        let white: Vec<f32> = (0..128 * 128).map(|_| rng.normal() as f32).collect();
        let fitted = spectrum_exponent(&white, 128, 0.02, 0.45);
        assert!(fitted.abs() < 0.15, "white noise fitted β {fitted}");
    }
}
