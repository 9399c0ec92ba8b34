//! Multi-scale structural similarity (Wang, Simoncelli & Bovik 2003) as `pytorch-msssim`'s
//! `ms_ssim` computes it, the figure MAM-E and the field report for a set's diversity (the mean
//! over pairs of its images: lower is more diverse): an 11-pixel Gaussian window (σ 1.5) applied
//! without padding, K = (0.01, 0.03), five scales weighted 0.0448, 0.2856, 0.3001, 0.2363,
//! 0.1333, 2×2 average pooling between them (an odd side padded with a zero on both ends), the
//! contrast-structure terms and the last scale's SSIM clipped at 0. In f64 (the reference
//! computes in f32).

/// The window's side and the Gaussian's σ.
const WINDOW: usize = 11;
const SIGMA: f64 = 1.5;
const WEIGHTS: [f64; 5] = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333];
const K1: f64 = 0.01;
const K2: f64 = 0.03;

/// The smallest image side five scales allow: larger than (11 − 1) · 2⁴.
pub const MIN_SIDE: usize = (WINDOW - 1) * 16 + 1;

/// A gray image in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f64>,
}

fn gaussian_window() -> [f64; WINDOW] {
    let mut g = [0.0; WINDOW];
    for (i, v) in g.iter_mut().enumerate() {
        let x = i as f64 - (WINDOW / 2) as f64;
        *v = (-(x * x) / (2.0 * SIGMA * SIGMA)).exp();
    }
    let sum: f64 = g.iter().sum();
    g.map(|v| v / sum)
}

impl Plane {
    fn map2(&self, other: &Plane, f: impl Fn(f64, f64) -> f64) -> Plane {
        Plane { width: self.width, height: self.height, values: self.values.iter().zip(&other.values).map(|(&a, &b)| f(a, b)).collect() }
    }

    /// The window applied without padding, along rows' direction first (height), then width.
    fn blur(&self, window: &[f64; WINDOW]) -> Plane {
        let (w, h) = (self.width, self.height);
        let h2 = h + 1 - WINDOW;
        let mut tall = vec![0.0; w * h2];
        for y in 0..h2 {
            for x in 0..w {
                tall[y * w + x] = (0..WINDOW).map(|k| window[k] * self.values[(y + k) * w + x]).sum();
            }
        }
        let w2 = w + 1 - WINDOW;
        let mut out = vec![0.0; w2 * h2];
        for y in 0..h2 {
            for x in 0..w2 {
                out[y * w2 + x] = (0..WINDOW).map(|k| window[k] * tall[y * w + x + k]).sum();
            }
        }
        Plane { width: w2, height: h2, values: out }
    }

    /// 2×2 average pooling; an odd side gets a zero on both ends (counted in the average).
    fn pool(&self) -> Plane {
        let (pw, ph) = (self.width % 2, self.height % 2);
        let (w2, h2) = ((self.width + 2 * pw - 2) / 2 + 1, (self.height + 2 * ph - 2) / 2 + 1);
        let at = |x: isize, y: isize| {
            if x < 0 || y < 0 || x >= self.width as isize || y >= self.height as isize { 0.0 } else { self.values[y as usize * self.width + x as usize] }
        };
        let mut out = vec![0.0; w2 * h2];
        for y in 0..h2 {
            for x in 0..w2 {
                let (x0, y0) = ((2 * x) as isize - pw as isize, (2 * y) as isize - ph as isize);
                out[y * w2 + x] = (at(x0, y0) + at(x0 + 1, y0) + at(x0, y0 + 1) + at(x0 + 1, y0 + 1)) / 4.0;
            }
        }
        Plane { width: w2, height: h2, values: out }
    }
}

/// Mean SSIM and mean contrast-structure term of two planes at one scale.
fn ssim_and_cs(x: &Plane, y: &Plane, window: &[f64; WINDOW], data_range: f64) -> (f64, f64) {
    let (c1, c2) = ((K1 * data_range).powi(2), (K2 * data_range).powi(2));
    let (mu1, mu2) = (x.blur(window), y.blur(window));
    let (xx, yy, xy) = (x.map2(x, |a, b| a * b).blur(window), y.map2(y, |a, b| a * b).blur(window), x.map2(y, |a, b| a * b).blur(window));
    let n = mu1.values.len();
    let (mut ssim, mut cs) = (0.0, 0.0);
    for i in 0..n {
        let (m1, m2) = (mu1.values[i], mu2.values[i]);
        let (s1, s2, s12) = (xx.values[i] - m1 * m1, yy.values[i] - m2 * m2, xy.values[i] - m1 * m2);
        let cs_i = (2.0 * s12 + c2) / (s1 + s2 + c2);
        cs += cs_i;
        ssim += (2.0 * m1 * m2 + c1) / (m1 * m1 + m2 * m2 + c1) * cs_i;
    }
    (ssim / n as f64, cs / n as f64)
}

/// MS-SSIM of two gray images of the same size (values 0–`data_range`).
pub fn ms_ssim(x: &Plane, y: &Plane, data_range: f64) -> Result<f64, String> {
    if (x.width, x.height) != (y.width, y.height) {
        return Err(format!("images of different sizes: {}×{} and {}×{}", x.width, x.height, y.width, y.height));
    }
    if x.width.min(x.height) < MIN_SIDE {
        return Err(format!("{}×{} images are too small for MS-SSIM's five scales (the smaller side must be at least {MIN_SIDE})", x.width, x.height));
    }
    let window = gaussian_window();
    let (mut x, mut y) = (x.clone(), y.clone());
    let mut value = 1.0;
    for (level, weight) in WEIGHTS.iter().enumerate() {
        let (ssim, cs) = ssim_and_cs(&x, &y, &window, data_range);
        if level + 1 < WEIGHTS.len() {
            value *= cs.max(0.0).powf(*weight);
            (x, y) = (x.pool(), y.pool());
        } else {
            value *= ssim.max(0.0).powf(*weight);
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(w: usize, h: usize, f: impl Fn(usize, usize) -> f64) -> Plane {
        Plane { width: w, height: h, values: (0..h).flat_map(|y| (0..w).map(move |x| (x, y))).map(|(x, y)| f(x, y)).collect() }
    }

    #[test]
    fn identical_images_score_one_and_sizes_are_checked() {
        let a = plane(170, 165, |x, y| ((x * 7 + y * 13) % 255) as f64);
        assert!((ms_ssim(&a, &a, 255.0).unwrap() - 1.0).abs() < 1e-12);
        let small = plane(160, 200, |_, _| 0.0);
        assert!(ms_ssim(&small, &small, 255.0).unwrap_err().contains("at least 161"));
        assert!(ms_ssim(&a, &plane(171, 165, |_, _| 0.0), 255.0).unwrap_err().contains("different sizes"));
    }

    #[test]
    fn pooling_pads_odd_sides_on_both_ends() {
        // 3×1: padded to [0, 1, 2, 3, 0] across and [0, row, 0] down; windows at columns -1..1 and 1..3.
        let p = plane(3, 1, |x, _| (x + 1) as f64).pool();
        assert_eq!((p.width, p.height), (2, 1));
        assert_eq!(p.values, vec![1.0 / 4.0, (2.0 + 3.0) / 4.0]);
    }
}
