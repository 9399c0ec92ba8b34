//! The Fréchet Inception Distance (Heusel et al. 2017) between two sets of features: the
//! Fréchet distance between Gaussians fitted to them,
//!
//! ```text
//! FID = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr √(Σ₁Σ₂)
//! ```
//!
//! with the sample covariances (n − 1 in the denominator), as pytorch-fid's
//! `calculate_frechet_distance`. pytorch-fid takes `scipy.linalg.sqrtm` of the product, which is
//! inaccurate when the covariances are singular (fewer images than feature dimensions, the usual
//! case with 2048 Inception features). Here the trace is computed from eigenvalues instead, exact
//! in both cases: Σ₁Σ₂ has the eigenvalues of a symmetric positive semi-definite matrix, so
//! tr √(Σ₁Σ₂) = Σ √λᵢ with
//!
//! - n ≤ d: λ the eigenvalues of CᵀC, C = X₁X₂ᵀ / √((n₁−1)(n₂−1)) (X the centred features): the
//!   nonzero eigenvalues of Σ₁Σ₂ = X₁ᵀX₁X₂ᵀX₂ / ((n₁−1)(n₂−1)) are those of (X₂X₁ᵀ)(X₁X₂ᵀ);
//! - n > d: λ the eigenvalues of D^½ Vᵀ Σ₂ V D^½ with Σ₁ = V D Vᵀ (similar to Σ₁^½ Σ₂ Σ₁^½).

use super::eigen::SymmetricEigen;

/// Feature vectors, one row of `dim` values per image.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    pub rows: usize,
    pub dim: usize,
    pub values: Vec<f64>,
}

impl Features {
    pub fn new(dim: usize, values: Vec<f64>) -> Self {
        assert!(dim > 0 && values.len().is_multiple_of(dim), "Features: {} values are not rows of {dim}", values.len());
        Self { rows: values.len() / dim, dim, values }
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    pub fn mean(&self) -> Vec<f64> {
        let mut mean = vec![0.0; self.dim];
        for i in 0..self.rows {
            mean.iter_mut().zip(self.row(i)).for_each(|(m, x)| *m += x);
        }
        mean.iter_mut().for_each(|m| *m /= self.rows as f64);
        mean
    }

    /// The rows minus their mean.
    fn centered(&self) -> Features {
        let mean = self.mean();
        let values = self.values.chunks_exact(self.dim).flat_map(|row| row.iter().zip(&mean).map(|(x, m)| x - m)).collect();
        Features { rows: self.rows, dim: self.dim, values }
    }
}

/// A row-major matrix as stored, read transposed or not.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f64],
    pub rows: usize,
    pub cols: usize,
    pub transposed: bool,
}

impl<'a> Mat<'a> {
    pub fn new(data: &'a [f64], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "Mat: {} values for {rows}×{cols}", data.len());
        Self { data, rows, cols, transposed: false }
    }

    pub fn t(self) -> Self {
        Self { transposed: !self.transposed, ..self }
    }

    /// Rows and columns of the matrix as read.
    fn shape(&self) -> (usize, usize) {
        if self.transposed { (self.cols, self.rows) } else { (self.rows, self.cols) }
    }

    /// The strides of a row index and of a column index, as read.
    fn strides(&self) -> (isize, isize) {
        if self.transposed { (1, self.cols as isize) } else { (self.cols as isize, 1) }
    }
}

/// The product `a · b` (row-major result).
pub(crate) fn product(a: Mat, b: Mat) -> Vec<f64> {
    let ((m, k), (k2, n)) = (a.shape(), b.shape());
    assert_eq!(k, k2, "product: inner dimensions differ");
    let ((a_rs, a_cs), (b_rs, b_cs)) = (a.strides(), b.strides());
    let mut out = vec![0.0; m * n];
    if m == 0 || n == 0 || k == 0 {
        return out;
    }
    // SAFETY: the pointers and strides describe `a`, `b` and `out` as sized above.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.data.as_ptr(),
            a_cs,
            a_rs,
            b.data.as_ptr(),
            b_cs,
            b_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    out
}

/// tr √(Σ₁Σ₂) for the sample covariances of two sets (see the module documentation).
pub fn trace_sqrt_product(a: &Features, b: &Features) -> f64 {
    let (xa, xb) = (a.centered(), b.centered());
    let d = a.dim;
    // Eigenvalues below the rounding of the largest are zeros of a rank-deficient matrix (the
    // Gram matrix has rank ≤ d, the covariances ≤ n − 1): their square roots (≈ 1e−8 of the
    // largest root each) would add up, so they count as zero.
    let roots = |m: &[f64], n: usize| {
        let values = SymmetricEigen::new(m, n, false).values;
        let tolerance = values.last().copied().unwrap_or(0.0).abs() * n as f64 * f64::EPSILON;
        values.iter().filter(|&&l| l > tolerance).map(|l| l.sqrt()).sum::<f64>()
    };
    if a.rows.min(b.rows) <= d {
        // C = X₁X₂ᵀ (n₁ × n₂); the eigenvalues of the smaller of CᵀC and CCᵀ.
        let c = product(Mat::new(&xa.values, a.rows, d), Mat::new(&xb.values, b.rows, d).t());
        let c = Mat::new(&c, a.rows, b.rows);
        let gram = if b.rows <= a.rows { product(c.t(), c) } else { product(c, c.t()) };
        roots(&gram, a.rows.min(b.rows)) / (((a.rows - 1) * (b.rows - 1)) as f64).sqrt()
    } else {
        let covariance = |x: &Features| {
            let x = Mat::new(&x.values, x.rows, d);
            let mut s = product(x.t(), x);
            s.iter_mut().for_each(|v| *v /= (x.rows - 1) as f64);
            s
        };
        let (sa, sb) = (covariance(&xa), covariance(&xb));
        let eig = SymmetricEigen::new(&sa, d, true);
        // `vectors` holds the eigenvectors as contiguous columns: read row-major, it is Vᵀ.
        let vt = Mat::new(&eig.vectors, d, d);
        let sb_v = product(Mat::new(&sb, d, d), vt.t());
        let mut m = product(vt, Mat::new(&sb_v, d, d));
        let half: Vec<f64> = eig.values.iter().map(|&l| l.max(0.0).sqrt()).collect();
        for i in 0..d {
            for j in 0..d {
                m[i * d + j] *= half[i] * half[j];
            }
        }
        roots(&m, d)
    }
}

/// The Fréchet distance between Gaussians fitted to two feature sets (at least two rows each).
pub fn frechet_distance(a: &Features, b: &Features) -> Result<f64, String> {
    if a.dim != b.dim {
        return Err(format!("FID: features of {} and {} dimensions", a.dim, b.dim));
    }
    if a.rows < 2 || b.rows < 2 {
        return Err(format!("FID needs at least 2 images in each set, got {} and {}", a.rows, b.rows));
    }
    let (ma, mb) = (a.mean(), b.mean());
    let mean_term: f64 = ma.iter().zip(&mb).map(|(x, y)| (x - y).powi(2)).sum();
    let trace = |x: &Features| x.centered().values.iter().map(|v| v * v).sum::<f64>() / (x.rows - 1) as f64;
    Ok(mean_term + trace(a) + trace(b) - 2.0 * trace_sqrt_product(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::NoiseRng;

    fn random(rows: usize, dim: usize, scale: f64, shift: f64, seed: u64) -> Features {
        let mut rng = NoiseRng::new(seed);
        Features::new(dim, (0..rows * dim).map(|_| scale * (rng.uniform() - 0.5) + shift).collect())
    }

    #[test]
    fn product_matches_the_definition_for_every_transpose() {
        let a = random(3, 4, 1.0, 0.0, 1);
        let b = random(4, 5, 1.0, 0.0, 2);
        let bt = random(5, 4, 1.0, 0.0, 3);
        let at = random(4, 3, 1.0, 0.0, 4);
        let get = |f: &Features, i: usize, j: usize| f.values[i * f.dim + j];
        fn mat(f: &Features) -> Mat<'_> {
            Mat::new(&f.values, f.rows, f.dim)
        }
        let ab = product(mat(&a), mat(&b));
        let abt = product(mat(&a), mat(&bt).t());
        let atb = product(mat(&at).t(), mat(&b));
        for i in 0..3 {
            for j in 0..5 {
                let close = |x: f64, y: f64| assert!((x - y).abs() < 1e-14, "({i}, {j}): {x} vs {y}");
                close(ab[i * 5 + j], (0..4).map(|k| get(&a, i, k) * get(&b, k, j)).sum());
                close(abt[i * 5 + j], (0..4).map(|k| get(&a, i, k) * get(&bt, j, k)).sum());
                close(atb[i * 5 + j], (0..4).map(|k| get(&at, k, i) * get(&b, k, j)).sum());
            }
        }
    }

    #[test]
    fn both_routes_give_the_same_trace() {
        // 40 and 30 rows in 6 dimensions take the covariance route (30 > 6); the same rows with
        // 34 zero dimensions added take the Gram route (30 ≤ 40); the trace is the same.
        let (a1, b1) = (random(40, 6, 1.0, 0.0, 7), random(30, 6, 1.5, 0.2, 8));
        let covariance_route = trace_sqrt_product(&a1, &b1);
        // The same two sets padded to 40 dimensions with zeros take the Gram route.
        let pad = |f: &Features| Features::new(40, f.values.chunks(6).flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0.0, 34))).collect());
        let gram_route = trace_sqrt_product(&pad(&a1), &pad(&b1));
        assert!((covariance_route - gram_route).abs() < 1e-12 * covariance_route, "{covariance_route} vs {gram_route}");
    }

    #[test]
    fn identical_sets_are_at_distance_zero_and_a_shift_adds_its_square() {
        let a = random(20, 5, 1.0, 0.0, 9);
        assert!(frechet_distance(&a, &a).unwrap().abs() < 1e-12);
        let shifted = Features::new(5, a.values.iter().enumerate().map(|(i, v)| v + if i % 5 == 2 { 0.5 } else { 0.0 }).collect());
        assert!((frechet_distance(&a, &shifted).unwrap() - 0.25).abs() < 1e-12);
        assert!(frechet_distance(&a, &Features::new(5, a.values[..5].to_vec())).unwrap_err().contains("at least 2"));
    }
}
