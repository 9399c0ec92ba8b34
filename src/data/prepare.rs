//! MAM-E's preprocessing, from a decoded mammogram to a training image (SPEC "Data preparation"):
//! VOI-applied values → 8-bit (divided by a per-vendor fixed maximum, clipped, as the originals;
//! or a percentile window) → right breasts mirrored to face left → shorter side resized to the
//! target size → centre crop → gray repeated into RGB. The breast area ratio is the share of
//! non-zero pixels of that image; lesion boxes go through the same mirror, scale and crop.

use crate::data::BoundingBox;
use crate::data::Laterality;
use crate::imaging::resize;
use crate::prompt::{LESION_PROMPT, Vendor};

/// How VOI-applied values become 8-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scaling {
    /// Divide by the vendor's fixed maximum (Hologic 4095, Siemens 3500, for 12-bit output;
    /// others by the output maximum) and clip: what MAM-E did.
    Vendor,
    /// Divide by the 99.5th percentile of the breast's (non-zero) values and clip.
    Percentile,
}

/// The lesion images' caption (the inpainting model's toy prompt).
pub fn lesion_caption() -> &'static str {
    LESION_PROMPT
}

/// VOI-applied pixels of one image, as stored (not yet mirrored).
#[derive(Debug, Clone)]
pub struct SourcePixels {
    pub rows: usize,
    pub cols: usize,
    /// Values in `0..=max`, 0 black.
    pub values: Vec<f32>,
    pub max: f32,
    pub vendor: Option<Vendor>,
}

impl SourcePixels {
    /// The divisor that maps values to 8-bit under `scaling`.
    pub fn divisor(&self, scaling: Scaling) -> f32 {
        match scaling {
            Scaling::Vendor => {
                let twelve_bit = match self.vendor {
                    Some(Vendor::Hologic) => 4095.0,
                    Some(Vendor::Siemens) => 3500.0,
                    None => 4095.0,
                };
                self.max * twelve_bit / 4095.0
            }
            Scaling::Percentile => {
                let mut breast: Vec<f32> = self.values.iter().copied().filter(|&v| v > 0.0).collect();
                if breast.is_empty() {
                    return self.max;
                }
                let k = ((breast.len() - 1) as f64 * 0.995) as usize;
                let p = *breast.select_nth_unstable_by(k, |a, b| a.total_cmp(b)).1;
                if p > 0.0 { p } else { self.max }
            }
        }
    }
}

/// A box in the prepared image's pixels: columns `x0..x1`, rows `y0..y1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PixelBox {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

/// One prepared image.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub size: usize,
    /// `size`×`size` gray pixels.
    pub gray: Vec<u8>,
    pub area_ratio: f64,
    /// The boxes that are still inside the image after the crop (clipped to it).
    pub boxes: Vec<PixelBox>,
    /// How many boxes fell entirely outside the crop.
    pub boxes_outside: usize,
}

impl Prepared {
    /// The box mask: 255 inside any box, 0 elsewhere.
    pub fn mask(&self) -> Vec<u8> {
        let mut mask = vec![0u8; self.size * self.size];
        for b in &self.boxes {
            for row in mask[b.y0 * self.size..b.y1 * self.size].chunks_exact_mut(self.size) {
                row[b.x0..b.x1].fill(255);
            }
        }
        mask
    }

    /// `image * (mask < 0.5)`: the image with the boxes blacked out.
    pub fn masked(&self) -> Vec<u8> {
        self.gray.iter().zip(self.mask()).map(|(&g, m)| if m >= 128 { 0 } else { g }).collect()
    }
}

/// Where a box of the source image lands in the prepared image (before rounding to pixels):
/// mirrored if `mirror` (source width `cols`), scaled by `scale`, shifted by the crop offset.
pub fn transform_box(b: &BoundingBox, cols: usize, mirror: bool, scale: f64, offset: (usize, usize)) -> BoundingBox {
    let (xmin, xmax) = if mirror { (cols as f64 - b.xmax, cols as f64 - b.xmin) } else { (b.xmin, b.xmax) };
    BoundingBox {
        xmin: xmin * scale - offset.0 as f64,
        xmax: xmax * scale - offset.0 as f64,
        ymin: b.ymin * scale - offset.1 as f64,
        ymax: b.ymax * scale - offset.1 as f64,
    }
}

/// The geometry of the resize and crop: scale, resized width and height, crop offset (x, y).
pub fn geometry(rows: usize, cols: usize, size: usize) -> (f64, usize, usize, (usize, usize)) {
    let scale = size as f64 / rows.min(cols) as f64;
    let (w, h) =
        if cols <= rows { (size, ((rows as f64 * scale).round() as usize).max(size)) } else { (((cols as f64 * scale).round() as usize).max(size), size) };
    (scale, w, h, ((w - size) / 2, (h - size) / 2))
}

/// Runs MAM-E's preprocessing on one image; `boxes` are in the source image's pixels.
pub fn prepare_pixels(source: &SourcePixels, laterality: Laterality, boxes: &[BoundingBox], size: usize, scaling: Scaling) -> Prepared {
    let (rows, cols) = (source.rows, source.cols);
    let divisor = source.divisor(scaling);
    let mirror = laterality == Laterality::R;
    // 8-bit first (the originals saved 8-bit images, then resized them), mirrored while at it.
    let mut eight = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let v = source.values[r * cols + c] / divisor * 255.0;
            let c_out = if mirror { cols - 1 - c } else { c };
            eight[r * cols + c_out] = v.clamp(0.0, 255.0).round();
        }
    }
    let (scale, w, h, offset) = geometry(rows, cols, size);
    let resized = resize(&eight, cols, rows, w, h);
    let mut gray = Vec::with_capacity(size * size);
    for r in offset.1..offset.1 + size {
        gray.extend(resized[r * w + offset.0..r * w + offset.0 + size].iter().map(|&v| v.clamp(0.0, 255.0).round() as u8));
    }
    let area_ratio = gray.iter().filter(|&&g| g > 0).count() as f64 / (size * size) as f64;
    let mut kept = Vec::new();
    let mut boxes_outside = 0;
    for b in boxes {
        let t = transform_box(b, cols, mirror, scale, offset);
        let clip = |v: f64| v.clamp(0.0, size as f64);
        let pixel = PixelBox {
            x0: clip(t.xmin).floor() as usize,
            y0: clip(t.ymin).floor() as usize,
            x1: clip(t.xmax).ceil() as usize,
            y1: clip(t.ymax).ceil() as usize,
        };
        if pixel.x0 < pixel.x1 && pixel.y0 < pixel.y1 {
            kept.push(pixel);
        } else {
            boxes_outside += 1;
        }
    }
    Prepared { size, gray, area_ratio, boxes: kept, boxes_outside }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_of_a_portrait_image() {
        // 3518×2800 (VinDr-like) to 512: width 512, height round(3518·512/2800) = 643, crop 65 rows.
        let (scale, w, h, offset) = geometry(3518, 2800, 512);
        assert_eq!((w, h, offset), (512, 643, (0, 65)));
        assert!((scale - 512.0 / 2800.0).abs() < 1e-12);
    }
}
