//! What a prepared (or generated) 8-bit mammogram shows, measured from its pixels: the breast
//! area class (MAM-E's ratio of breast pixels, thresholds 0.4 and 0.6), the view (an MLO view
//! has the pectoral muscle filling the upper chest-wall corner), and the density (the share of
//! dense tissue inside the breast). `mam-e eval adherence` uses these on generated images.
//!
//! The two gray levels that split tissue classes (dense tissue above one, pectoral muscle above
//! the other) differ between vendors and datasets, so they are learned from labelled images of
//! the same kind ([`calibrate`]): per vendor, the levels at which the measured view and density
//! agree with the most labels. Without them, density falls back to each image's Otsu threshold.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::imaging::BREAST_LEVEL;
use crate::prompt::{Area, Density, View};

/// The side of the top-left square, as a share of the image side, whose muscle-bright pixels
/// start the pectoral muscle's flood fill.
const CORNER_SEED: f64 = 0.03;

/// An image is MLO when its pectoral muscle covers more than this share of it.
const MLO_SHARE: f64 = 0.01;

/// The muscle level without a calibration.
pub const UNCALIBRATED_MUSCLE: f64 = 0.9 * 255.0;

/// The gray levels (8-bit) that split one vendor's tissue classes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Levels {
    /// Breast pixels brighter than this (after a 5×5 mean) are dense tissue.
    pub dense: f64,
    /// Pixels at least this bright, connected to the upper chest-wall corner, are pectoral muscle.
    pub muscle: f64,
}

/// The measurements of one left-facing image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    pub area_ratio: f64,
    pub area: Area,
    /// Share of the image the pectoral muscle covers (0 in a CC view).
    pub pectoral_share: f64,
    pub view: View,
    pub dense_fraction: f64,
    pub density: Density,
}

/// The share of an image's pixels that are breast (above [`BREAST_LEVEL`]): MAM-E's area ratio.
pub fn breast_ratio(gray: &[u8]) -> f64 {
    gray.iter().filter(|&&g| g > BREAST_LEVEL).count() as f64 / gray.len() as f64
}

/// The BI-RADS class of a dense-tissue fraction (the 4th edition's quartiles).
pub fn density_of(dense_fraction: f64) -> Density {
    match dense_fraction {
        f if f < 0.25 => Density::A,
        f if f < 0.5 => Density::B,
        f if f < 0.75 => Density::C,
        _ => Density::D,
    }
}

/// Measures a `size`×`size` gray image of a left-facing breast (chest wall on the left).
///
/// - **Area**: breast pixels (above [`BREAST_LEVEL`]) over all pixels.
/// - **View**: the pectoral muscle is the region of pixels at least `levels.muscle` bright
///   connected to the top-left corner (its first 3 % of rows and columns); MLO when it covers
///   more than 1 % of the image.
/// - **Density**: breast pixels outside the muscle and a 2 % skin band brighter than
///   `levels.dense`, over all those pixels. Without levels, the muscle level is 0.9 × 255 and the
///   dense level each image's Otsu threshold of those pixels.
pub fn measure(gray: &[u8], size: usize, levels: Option<Levels>) -> Measured {
    assert_eq!(gray.len(), size * size, "measure: image is not size×size");
    let area_ratio = breast_ratio(gray);
    let muscle = pectoral_muscle(gray, size, levels.map_or(UNCALIBRATED_MUSCLE, |l| l.muscle));
    let pectoral_share = share(&muscle);
    let view = view_of(pectoral_share);
    let tissue = tissue_values(gray, size, &muscle);
    let dense = levels.map_or_else(|| otsu(&tissue), |l| l.dense);
    let dense_fraction = if tissue.is_empty() { 0.0 } else { tissue.iter().filter(|&&v| v as f64 > dense).count() as f64 / tissue.len() as f64 };
    Measured { area_ratio, area: Area::from_ratio(area_ratio), pectoral_share, view, dense_fraction, density: density_of(dense_fraction) }
}

/// The pectoral muscle of a left-facing image: pixels at least `level` bright connected to the
/// top-left corner. Filled from each pixel of the corner's first few rows and columns, not the
/// corner pixel alone, because a decoder's outermost pixels come out darker (its convolutions
/// pad with zeros) and a generated muscle would be missed.
fn pectoral_muscle(gray: &[u8], size: usize, level: f64) -> Vec<bool> {
    let seed = (CORNER_SEED * size as f64).ceil() as usize;
    let mut muscle = vec![false; size * size];
    let mut stack: Vec<usize> = (0..seed * seed).map(|k| (k / seed) * size + k % seed).collect();
    while let Some(i) = stack.pop() {
        if muscle[i] || (gray[i] as f64) < level {
            continue;
        }
        muscle[i] = true;
        let (x, y) = (i % size, i / size);
        if x + 1 < size {
            stack.push(i + 1);
        }
        if x > 0 {
            stack.push(i - 1);
        }
        if y + 1 < size {
            stack.push(i + size);
        }
        if y > 0 {
            stack.push(i - size);
        }
    }
    muscle
}

/// The share of a mask's pixels that are set.
fn share(mask: &[bool]) -> f64 {
    mask.iter().filter(|&&m| m).count() as f64 / mask.len() as f64
}

/// MLO when the pectoral muscle covers more than [`MLO_SHARE`] of the image.
fn view_of(pectoral_share: f64) -> View {
    if pectoral_share > MLO_SHARE { View::Mlo } else { View::Cc }
}

/// The breast's tissue, whose bright share is its density: the 5×5 means (so texture and noise
/// do not decide single pixels) of breast pixels outside `muscle` and a 2 % skin band.
fn tissue_values(gray: &[u8], size: usize, muscle: &[bool]) -> Vec<u8> {
    let breast: Vec<bool> = gray.iter().map(|&g| g > BREAST_LEVEL).collect();
    let interior = erode(&breast, size, (0.02 * size as f64).round() as usize);
    let smooth = box_mean(gray, size, 2);
    (0..size * size).filter(|&i| interior[i] && !muscle[i]).map(|i| smooth[i]).collect()
}

/// One labelled image for [`calibrate`]: left-facing gray pixels, its view and (if known) its
/// BI-RADS density.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub gray: Vec<u8>,
    pub size: usize,
    pub view: View,
    pub density: Option<Density>,
}

/// Levels learned for one vendor, and how well the measurement then agrees with the labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    pub levels: Levels,
    pub images: usize,
    /// Share of the images whose measured view equals the label.
    pub view_agreement: f64,
    /// Share of the images with a density label whose measured density equals it.
    pub density_agreement: f64,
}

/// Per-vendor levels (keys: vendors in lowercase, as the prompts name them), as
/// `mam-e eval calibrate` writes them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub vendors: BTreeMap<String, Fit>,
}

impl Calibration {
    /// The levels for `vendor` (any case), if it was calibrated.
    pub fn levels(&self, vendor: &str) -> Option<Levels> {
        self.vendors.get(&vendor.to_lowercase()).map(|fit| fit.levels)
    }
}

/// The levels at which measurements of `images` (one vendor's) agree with the most labels.
///
/// - **Muscle**: each image is MLO for every level up to the brightest one at which its corner
///   region still passes 1 % of the image (found by bisection: the region only shrinks as the
///   level rises). The level is the middle of the widest run of levels that classify the most
///   images right.
/// - **Dense**: with that muscle, each image's tissue values; the level (again the middle of the
///   best run of whole gray levels) at which the most images fall in their labelled density
///   quartile. Images without a density label do not vote; with none at all, the dense level is
///   the mean of the images' Otsu thresholds.
pub fn calibrate(images: &[Labelled]) -> Fit {
    // An image's view is MLO at muscle level t iff t ≤ its critical level (t in 0..=256).
    let critical: Vec<usize> = images
        .iter()
        .map(|image| {
            let mlo_at = |t: usize| view_of(share(&pectoral_muscle(&image.gray, image.size, t as f64))) == View::Mlo;
            // mlo_at(0) holds (the whole image is one region); find the last t with mlo_at(t).
            let (mut lo, mut hi) = (0usize, 257usize);
            while hi - lo > 1 {
                let mid = (lo + hi) / 2;
                if mlo_at(mid) { lo = mid } else { hi = mid }
            }
            lo
        })
        .collect();
    let muscle_votes: Vec<usize> =
        (0..=256).map(|t| images.iter().zip(&critical).filter(|(image, c)| (t <= **c) == (image.view == View::Mlo)).count()).collect();
    let muscle = best_run_middle(&muscle_votes);
    let tissues: Vec<Vec<u8>> = images.iter().map(|image| tissue_values(&image.gray, image.size, &pectoral_muscle(&image.gray, image.size, muscle))).collect();
    let labelled: Vec<(&Vec<u8>, Density)> = tissues.iter().zip(images).filter_map(|(t, image)| image.density.map(|d| (t, d))).collect();
    let dense = if labelled.is_empty() {
        tissues.iter().map(|t| otsu(t)).sum::<f64>() / tissues.len().max(1) as f64
    } else {
        // Dense at level t: values above t, i.e. at least t + 1; votes for t = 0..=255.
        let fractions = |t: &Vec<u8>| -> Vec<f64> {
            let mut above = [0usize; 257];
            for &v in t {
                above[v as usize] += 1;
            }
            for v in (0..256).rev() {
                above[v] += above[v + 1];
            }
            (0..256).map(|level| if t.is_empty() { 0.0 } else { above[level + 1] as f64 / t.len() as f64 }).collect()
        };
        let per_image: Vec<(Vec<f64>, Density)> = labelled.iter().map(|(t, d)| (fractions(t), *d)).collect();
        let votes: Vec<usize> = (0..256).map(|level| per_image.iter().filter(|(f, d)| density_of(f[level]) == *d).count()).collect();
        best_run_middle(&votes)
    };
    let levels = Levels { dense, muscle };
    let measured: Vec<Measured> = images.iter().map(|image| measure(&image.gray, image.size, Some(levels))).collect();
    let share = |hits: usize, of: usize| if of == 0 { 0.0 } else { hits as f64 / of as f64 };
    let view_hits = images.iter().zip(&measured).filter(|(image, m)| image.view == m.view).count();
    let density_hits = images.iter().zip(&measured).filter(|(image, m)| image.density == Some(m.density)).count();
    Fit {
        levels,
        images: images.len(),
        view_agreement: share(view_hits, images.len()),
        density_agreement: share(density_hits, images.iter().filter(|i| i.density.is_some()).count()),
    }
}

/// The middle of the longest run of indices where `votes` reaches its maximum (the first such
/// run on a tie): a level as far as the labels allow from levels that classify worse.
fn best_run_middle(votes: &[usize]) -> f64 {
    let best = votes.iter().copied().max().unwrap_or(0);
    let (mut start, mut widest) = (None::<usize>, (0usize, 0usize));
    for (i, &v) in votes.iter().enumerate() {
        if v != best {
            start = None;
            continue;
        }
        let first = *start.get_or_insert(i);
        if i - first > widest.1 - widest.0 || votes[widest.0] != best {
            widest = (first, i);
        }
    }
    (widest.0 + widest.1) as f64 / 2.0
}

/// Otsu's threshold of 8-bit values (maximum between-class variance); values above it are the
/// brighter class.
fn otsu(values: &[u8]) -> f64 {
    let mut histogram = [0usize; 256];
    for &v in values {
        histogram[v as usize] += 1;
    }
    let total = values.len() as f64;
    let sum_all: f64 = histogram.iter().enumerate().map(|(v, &c)| v as f64 * c as f64).sum();
    let (mut weight, mut sum, mut best, mut threshold) = (0.0, 0.0, -1.0, 0.0);
    for (v, &c) in histogram.iter().enumerate() {
        weight += c as f64;
        sum += v as f64 * c as f64;
        if weight == 0.0 || weight == total {
            continue;
        }
        let (mean_lo, mean_hi) = (sum / weight, (sum_all - sum) / (total - weight));
        let between = weight * (total - weight) * (mean_lo - mean_hi).powi(2);
        if between > best {
            (best, threshold) = (between, v as f64 + 0.5);
        }
    }
    threshold
}

/// A summed-area table of a `size`×`size` image: entry `(y, x)` of the `(size+1)²` table is the
/// sum of `value(i)` over the pixels above and left of it.
fn summed_area(size: usize, value: impl Fn(usize) -> u64) -> Vec<u64> {
    let w = size + 1;
    let mut sum = vec![0u64; w * w];
    for y in 0..size {
        for x in 0..size {
            sum[(y + 1) * w + x + 1] = value(y * size + x) + sum[y * w + x + 1] + sum[(y + 1) * w + x] - sum[y * w + x];
        }
    }
    sum
}

/// The sum over the window `x0..x1` × `y0..y1` from a [`summed_area`] table.
fn window_sum(sum: &[u64], size: usize, (x0, y0, x1, y1): (usize, usize, usize, usize)) -> u64 {
    let w = size + 1;
    sum[y1 * w + x1] + sum[y0 * w + x0] - sum[y0 * w + x1] - sum[y1 * w + x0]
}

/// The mean over each pixel's `(2r+1)²` neighbourhood (clipped at the borders).
fn box_mean(gray: &[u8], size: usize, r: usize) -> Vec<u8> {
    let sum = summed_area(size, |i| gray[i] as u64);
    let mut out = vec![0u8; size * size];
    for y in 0..size {
        for x in 0..size {
            let window = (x.saturating_sub(r), y.saturating_sub(r), (x + r + 1).min(size), (y + r + 1).min(size));
            let area = (window.2 - window.0) * (window.3 - window.1);
            out[y * size + x] = (window_sum(&sum, size, window) as f64 / area as f64).round() as u8;
        }
    }
    out
}

/// Pixels whose `(2r+1)²` neighbourhood is all `mask` (a box erosion).
fn erode(mask: &[bool], size: usize, r: usize) -> Vec<bool> {
    let sum = summed_area(size, |i| mask[i] as u64);
    let mut out = vec![false; size * size];
    for y in r..size.saturating_sub(r) {
        for x in r..size.saturating_sub(r) {
            out[y * size + x] = window_sum(&sum, size, (x - r, y - r, x + r + 1, y + r + 1)) as usize == (2 * r + 1) * (2 * r + 1);
        }
    }
    out
}
