//! The Kernel Inception Distance (Bińkowski et al. 2018): the unbiased estimate of the squared
//! maximum mean discrepancy between two feature sets under the polynomial kernel
//! k(x, y) = (xᵀy / d + 1)³, averaged over random subsets of equal size, as torch-fidelity's
//! `kid_features_to_metric` (its defaults: 100 subsets of 1000). Reported with the standard
//! deviation over subsets (numpy's `std`, n in the denominator), as torch-fidelity reports it.

use serde::Serialize;

use super::fid::{Features, Mat, product};
use crate::rng::NoiseRng;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kid {
    pub mean: f64,
    pub sd: f64,
    pub subsets: usize,
    pub subset_size: usize,
}

/// The polynomial kernel between the rows of `a` and of `b` (`a.rows × b.rows`, row-major).
fn kernel(a: &Features, b: &Features) -> Vec<f64> {
    let gamma = 1.0 / a.dim as f64;
    let mut k = product(Mat::new(&a.values, a.rows, a.dim), Mat::new(&b.values, b.rows, b.dim).t());
    k.iter_mut().for_each(|v| *v = (*v * gamma + 1.0).powi(3));
    k
}

/// The unbiased MMD² between two sets of the same size (torch-fidelity's `mmd2`, "unbiased").
pub fn mmd2_unbiased(a: &Features, b: &Features) -> f64 {
    assert_eq!(a.rows, b.rows, "mmd2_unbiased: sets of different sizes");
    let m = a.rows as f64;
    let off_diagonal_sum = |k: Vec<f64>| k.iter().sum::<f64>() - (0..a.rows).map(|i| k[i * a.rows + i]).sum::<f64>();
    let xx = off_diagonal_sum(kernel(a, a));
    let yy = off_diagonal_sum(kernel(b, b));
    let xy: f64 = kernel(a, b).iter().sum();
    (xx + yy) / (m * (m - 1.0)) - 2.0 * xy / (m * m)
}

/// `size` distinct rows of `f` drawn by a partial Fisher–Yates shuffle.
fn subset(f: &Features, size: usize, rng: &mut NoiseRng) -> Features {
    let mut order: Vec<usize> = (0..f.rows).collect();
    for i in 0..size {
        let j = i + ((rng.uniform() * (f.rows - i) as f64) as usize).min(f.rows - i - 1);
        order.swap(i, j);
    }
    Features::new(f.dim, order[..size].iter().flat_map(|&i| f.row(i).iter().copied()).collect())
}

/// KID over `subsets` seeded subsets of `subset_size` rows of each set (at most the smaller
/// set's size). When a subset is a whole set on both sides every subset gives the same value,
/// so one is computed.
pub fn kid(a: &Features, b: &Features, subsets: usize, subset_size: usize, seed: u64) -> Result<Kid, String> {
    if a.dim != b.dim {
        return Err(format!("KID: features of {} and {} dimensions", a.dim, b.dim));
    }
    let size = subset_size.min(a.rows).min(b.rows);
    if size < 2 || subsets == 0 {
        return Err(format!("KID needs at least 2 images in each set and one subset, got {} and {} images, {subsets} subsets", a.rows, b.rows));
    }
    if size == a.rows && size == b.rows {
        return Ok(Kid { mean: mmd2_unbiased(a, b), sd: 0.0, subsets: 1, subset_size: size });
    }
    let mut rng = NoiseRng::new(seed);
    let values: Vec<f64> = (0..subsets).map(|_| mmd2_unbiased(&subset(a, size, &mut rng), &subset(b, size, &mut rng))).collect();
    let mean = values.iter().sum::<f64>() / subsets as f64;
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / subsets as f64).sqrt();
    Ok(Kid { mean, sd, subsets, subset_size: size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmd_matches_its_definition_and_subsets_are_seeded() {
        let mut rng = NoiseRng::new(1);
        let a = Features::new(3, (0..15).map(|_| rng.uniform()).collect());
        let b = Features::new(3, (0..15).map(|_| rng.uniform() + 0.2).collect());
        let k = |x: &[f64], y: &[f64]| (x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>() / 3.0 + 1.0).powi(3);
        let mut expected = 0.0;
        for i in 0..5 {
            for j in 0..5 {
                if i != j {
                    expected += (k(a.row(i), a.row(j)) + k(b.row(i), b.row(j))) / 20.0;
                }
                expected -= 2.0 * k(a.row(i), b.row(j)) / 25.0;
            }
        }
        assert!((mmd2_unbiased(&a, &b) - expected).abs() < 1e-14);
        let whole = kid(&a, &b, 10, 100, 0).unwrap();
        assert_eq!((whole.subsets, whole.subset_size, whole.sd), (1, 5, 0.0));
        let sub = kid(&a, &b, 10, 3, 4).unwrap();
        assert_eq!(sub, kid(&a, &b, 10, 3, 4).unwrap());
        assert_ne!(sub, kid(&a, &b, 10, 3, 5).unwrap());
        assert!(sub.sd > 0.0 && sub.subset_size == 3);
        assert!(kid(&a, &Features::new(3, vec![0.0; 3]), 10, 3, 0).unwrap_err().contains("at least 2"));
    }
}
