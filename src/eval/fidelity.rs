//! Weight-free fidelity and diversity figures of an image set against a real one: MS-SSIM
//! diversity over seeded pairs, the gray-level distribution of breast pixels (and its
//! Wasserstein-1 distance to the real set's), and the breast-area distribution.

use serde::Serialize;

use crate::eval::ms_ssim::{Plane, ms_ssim};
use crate::imaging::BREAST_LEVEL;
use crate::prompt::Area;
use crate::rng::NoiseRng;

/// Up to `count` distinct pairs (i < j) of `n` items: all of them when there are no more than
/// `count`, else drawn without repetition from a generator seeded by `seed`.
pub fn sample_pairs(n: usize, count: usize, seed: u64) -> Vec<(usize, usize)> {
    let all = n * n.saturating_sub(1) / 2;
    if all <= count {
        return (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))).collect();
    }
    let mut rng = NoiseRng::new(seed);
    let mut chosen = std::collections::BTreeSet::new();
    while chosen.len() < count {
        let (i, j) = ((rng.uniform() * n as f64) as usize % n, (rng.uniform() * n as f64) as usize % n);
        if i != j {
            chosen.insert((i.min(j), i.max(j)));
        }
    }
    chosen.into_iter().collect()
}

/// The mean and the sample standard deviation (n − 1; 0 for one value) of `values`.
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let sd = if values.len() > 1 { (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt() } else { 0.0 };
    (mean, sd)
}

/// Mean and sample standard deviation of MS-SSIM over the pairs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diversity {
    pub pairs: usize,
    pub ms_ssim_mean: f64,
    pub ms_ssim_sd: f64,
}

pub fn diversity(images: &[Plane], pairs: &[(usize, usize)]) -> Result<Diversity, String> {
    if pairs.is_empty() {
        return Err(format!("MS-SSIM diversity needs at least 2 images, got {}", images.len()));
    }
    let values: Vec<f64> = pairs.iter().map(|&(i, j)| ms_ssim(&images[i], &images[j], 255.0)).collect::<Result<_, _>>()?;
    let (mean, sd) = mean_sd(&values);
    Ok(Diversity { pairs: values.len(), ms_ssim_mean: mean, ms_ssim_sd: sd })
}

/// The share of each gray level among breast pixels (above `BREAST_LEVEL`) of a set.
pub fn breast_histogram(images: &[Plane]) -> [f64; 256] {
    let mut counts = [0f64; 256];
    for image in images {
        for &v in &image.values {
            let level = v.round().clamp(0.0, 255.0) as usize;
            if level > BREAST_LEVEL as usize {
                counts[level] += 1.0;
            }
        }
    }
    let total: f64 = counts.iter().sum();
    if total > 0.0 {
        counts.iter_mut().for_each(|c| *c /= total);
    }
    counts
}

/// The Wasserstein-1 (earth mover's) distance between two gray-level distributions, in gray
/// levels: the area between their cumulative distributions.
pub fn wasserstein(a: &[f64; 256], b: &[f64; 256]) -> f64 {
    let (mut ca, mut cb, mut distance) = (0.0, 0.0, 0.0);
    for level in 0..255 {
        ca += a[level];
        cb += b[level];
        distance += (ca - cb).abs();
    }
    distance
}

/// Breast area: the mean ratio of breast pixels and the share of each of MAM-E's classes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AreaSummary {
    pub mean_ratio: f64,
    pub small: f64,
    pub medium: f64,
    pub big: f64,
}

pub fn area_summary(images: &[Plane]) -> AreaSummary {
    let ratios: Vec<f64> =
        images.iter().map(|p| p.values.iter().filter(|&&v| v.round() > BREAST_LEVEL as f64).count() as f64 / p.values.len() as f64).collect();
    let n = ratios.len().max(1) as f64;
    let share = |class: Area| ratios.iter().filter(|&&r| Area::from_ratio(r) == class).count() as f64 / n;
    AreaSummary { mean_ratio: ratios.iter().sum::<f64>() / n, small: share(Area::Small), medium: share(Area::Medium), big: share(Area::Big) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_distinct_and_seeded() {
        assert_eq!(sample_pairs(3, 10, 0), vec![(0, 1), (0, 2), (1, 2)]);
        let p = sample_pairs(100, 50, 7);
        assert_eq!(p.len(), 50);
        assert!(p.iter().all(|&(i, j)| i < j && j < 100));
        assert_eq!(p, sample_pairs(100, 50, 7));
        assert_ne!(p, sample_pairs(100, 50, 8));
        assert!(sample_pairs(1, 10, 0).is_empty());
    }

    #[test]
    fn wasserstein_of_shifted_distributions_is_the_shift() {
        let (mut a, mut b) = ([0.0; 256], [0.0; 256]);
        a[100] = 0.5;
        a[110] = 0.5;
        b[103] = 0.5;
        b[113] = 0.5;
        assert!((wasserstein(&a, &b) - 3.0).abs() < 1e-12);
        assert_eq!(wasserstein(&a, &a), 0.0);
    }
}
