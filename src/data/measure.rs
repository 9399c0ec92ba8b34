//! What a prepared (or generated) 8-bit mammogram shows, measured from its pixels: the breast
//! area class (MAM-E's ratio of breast pixels, thresholds 0.4 and 0.6), the view (an MLO view
//! has the pectoral muscle filling the upper chest-wall corner), and the density (the share of
//! dense tissue inside the breast). `mam-e eval adherence` uses these on generated images; they
//! are validated on phantoms, whose labels are known.

use crate::data::phantom::{gray_level, tissue_levels};
use crate::prompt::{Area, Density, Vendor, View};

use crate::imaging::BREAST_LEVEL;

/// The side of the top-left square, as a share of the image side, whose muscle-bright pixels
/// start the pectoral muscle's flood fill.
const CORNER_SEED: f64 = 0.03;

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
/// - **View**: the pectoral muscle is the region of muscle-bright pixels (above the vendor's
///   level halfway between its brightest gland and its muscle) connected to the top-left corner
///   (its first 3 % of rows and columns); MLO when it covers more than 1 % of the image.
/// - **Density**: breast pixels outside the muscle and a 2 % skin band brighter than the level
///   halfway between the vendor's fat and fibroglandular tissue, over all those pixels. Without a
///   vendor, the Otsu threshold of those pixels.
pub fn measure(gray: &[u8], size: usize, vendor: Option<Vendor>) -> Measured {
    assert_eq!(gray.len(), size * size, "measure: image is not size×size");
    let breast: Vec<bool> = gray.iter().map(|&g| g > BREAST_LEVEL).collect();
    let area_ratio = breast_ratio(gray);
    let levels = vendor.map(|v| {
        let (fat, gland, muscle) = tissue_levels(v);
        let brightest_gland = gland + 0.07;
        (gray_level(v, 0.5 * (fat + gland)), gray_level(v, 0.5 * (brightest_gland + 0.97 * muscle)))
    });
    let muscle_level = levels.map_or(0.9 * 255.0, |l| l.1);
    // Flood fill of muscle-bright pixels from the corner: from each pixel of its first few rows
    // and columns, not the corner pixel alone, because a decoder's outermost pixels come out
    // darker (its convolutions pad with zeros) and a generated muscle would be missed.
    let seed = (CORNER_SEED * size as f64).ceil() as usize;
    let mut muscle = vec![false; size * size];
    let mut stack: Vec<usize> = (0..seed * seed).map(|k| (k / seed) * size + k % seed).collect();
    while let Some(i) = stack.pop() {
        if muscle[i] || (gray[i] as f64) < muscle_level {
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
    let muscle_share = muscle.iter().filter(|&&m| m).count() as f64 / (size * size) as f64;
    let view = if muscle_share > 0.01 { View::Mlo } else { View::Cc };
    let interior = erode(&breast, size, (0.02 * size as f64).round() as usize);
    // A 5×5 mean first, so texture and noise do not decide single pixels.
    let smooth = box_mean(gray, size, 2);
    let tissue: Vec<u8> = (0..size * size).filter(|&i| interior[i] && !muscle[i]).map(|i| smooth[i]).collect();
    let threshold = levels.map_or_else(|| otsu(&tissue), |l| l.0);
    let dense_fraction = if tissue.is_empty() { 0.0 } else { tissue.iter().filter(|&&v| v as f64 > threshold).count() as f64 / tissue.len() as f64 };
    Measured { area_ratio, area: Area::from_ratio(area_ratio), pectoral_share: muscle_share, view, dense_fraction, density: density_of(dense_fraction) }
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
