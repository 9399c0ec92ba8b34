//! Image plumbing shared by the web app and the CLI: PNG with the generation parameters
//! embedded, and the left/right mirror (MAM-E trains on left-facing breasts; a right breast is
//! the generated image mirrored).

use crate::{Error, Result};

/// Gray level above which a pixel counts as breast. Prepared images have a background of exactly
/// 0; generated ones a few levels of noise, hence a small margin.
pub const BREAST_LEVEL: u8 = 12;

/// 8-bit RGB pixels, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// Mirrors left-right.
    pub fn mirrored(&self) -> RgbImage {
        let mut pixels = Vec::with_capacity(self.pixels.len());
        for row in self.pixels.chunks_exact(self.width * 3) {
            for px in row.chunks_exact(3).rev() {
                pixels.extend_from_slice(px);
            }
        }
        RgbImage { width: self.width, height: self.height, pixels }
    }

    /// This image and its mask (one byte a pixel) as the model sees them: a right breast's
    /// mirrored to face left, as MAM-E's training images do; a left breast's as they are.
    pub fn to_model_orientation(&self, mask: &[u8], right_breast: bool) -> (RgbImage, Vec<u8>) {
        if !right_breast {
            return (self.clone(), mask.to_vec());
        }
        let mask = mask.chunks_exact(self.width).flat_map(|row| row.iter().rev().copied()).collect();
        (self.mirrored(), mask)
    }

    /// This image inside the mask (8-bit gray, ≥ 128 = inside) and `original` outside it: an
    /// inpainting result that leaves the rest of the mammogram exactly as it was.
    pub fn keep_outside(&self, original: &RgbImage, mask: &[u8]) -> RgbImage {
        assert_eq!((self.width, self.height, mask.len()), (original.width, original.height, original.width * original.height), "keep_outside: sizes differ");
        let mut pixels = self.pixels.clone();
        for (i, &m) in mask.iter().enumerate() {
            if m < 128 {
                pixels[i * 3..i * 3 + 3].copy_from_slice(&original.pixels[i * 3..i * 3 + 3]);
            }
        }
        RgbImage { width: self.width, height: self.height, pixels }
    }

    /// Fits the image to `width`×`height`: the largest centred crop of the target's aspect ratio,
    /// then a box-filter resize. Also says what was done, for the UI.
    pub fn fit_to(&self, width: usize, height: usize) -> (RgbImage, String) {
        let (sw, sh) = (self.width as f64, self.height as f64);
        let (crop_w, crop_h) =
            if sw * height as f64 > sh * width as f64 { (sh * width as f64 / height as f64, sh) } else { (sw, sw * height as f64 / width as f64) };
        let (x0, y0) = ((sw - crop_w) / 2.0, (sh - crop_h) / 2.0);
        let (fx, fy) = (crop_w / width as f64, crop_h / height as f64);
        let mut pixels = Vec::with_capacity(width * height * 3);
        for ty in 0..height {
            let (ya, yb) = (y0 + ty as f64 * fy, y0 + (ty + 1) as f64 * fy);
            let rows = (ya.floor() as usize)..(yb.ceil() as usize).clamp(ya.floor() as usize + 1, self.height);
            for tx in 0..width {
                let (xa, xb) = (x0 + tx as f64 * fx, x0 + (tx + 1) as f64 * fx);
                let cols = (xa.floor() as usize)..(xb.ceil() as usize).clamp(xa.floor() as usize + 1, self.width);
                let mut sum = [0u32; 3];
                let mut n = 0;
                for y in rows.clone() {
                    for x in cols.clone() {
                        let i = (y.min(self.height - 1) * self.width + x.min(self.width - 1)) * 3;
                        for (c, total) in sum.iter_mut().enumerate() {
                            *total += self.pixels[i + c] as u32;
                        }
                        n += 1;
                    }
                }
                pixels.extend(sum.iter().map(|s| ((*s + n / 2) / n.max(1)) as u8));
            }
        }
        let mut note = String::new();
        if (crop_w.round() as usize, crop_h.round() as usize) != (self.width, self.height) {
            note.push_str(&format!("centre-cropped from {}×{} to {}×{}, ", self.width, self.height, crop_w.round(), crop_h.round()));
        }
        note.push_str(&format!("resized to {width}×{height}"));
        (RgbImage { width, height, pixels }, note)
    }

    /// Decodes an 8-bit PNG (gray, gray+alpha, RGB or RGBA; alpha dropped).
    pub fn from_png(bytes: &[u8]) -> Result<RgbImage> {
        let bad = |reason: String| Error::InvalidInput { what: "PNG image", reason };
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().map_err(|e| bad(e.to_string()))?;
        let size = reader.output_buffer_size().ok_or_else(|| bad("image too large".into()))?;
        let mut buf = vec![0; size];
        let frame = reader.next_frame(&mut buf).map_err(|e| bad(e.to_string()))?;
        let (width, height) = (frame.width as usize, frame.height as usize);
        let channels = frame.color_type.samples();
        let pixels = buf[..frame.buffer_size()]
            .chunks_exact(channels)
            .flat_map(|p| match channels {
                1 | 2 => [p[0], p[0], p[0]],
                _ => [p[0], p[1], p[2]],
            })
            .collect();
        Ok(RgbImage { width, height, pixels })
    }

    /// Luma (ITU-R 601, as PIL's "L" conversion), one byte per pixel.
    pub fn to_gray(&self) -> Vec<u8> {
        self.pixels.chunks_exact(3).map(|p| ((p[0] as u32 * 299 + p[1] as u32 * 587 + p[2] as u32 * 114 + 500) / 1000) as u8).collect()
    }

    /// A PNG with each `(keyword, text)` stored as an iTXt chunk (UTF-8), so the parameters
    /// travel with the image.
    pub fn to_png(&self, text: &[(&str, String)]) -> Result<Vec<u8>> {
        let png_error = |e: png::EncodingError| Error::InvalidInput { what: "PNG encoding", reason: e.to_string() };
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        for (keyword, value) in text {
            encoder.add_itxt_chunk(keyword.to_string(), value.clone()).map_err(png_error)?;
        }
        let mut writer = encoder.write_header().map_err(png_error)?;
        writer.write_image_data(&self.pixels).map_err(png_error)?;
        writer.finish().map_err(png_error)?;
        Ok(out)
    }
}

/// Resizes a `w`×`h` gray image to `nw`×`nh` with a triangle (bilinear) filter whose support
/// widens when shrinking (antialiased, as PIL's BILINEAR); separable, rows first.
pub fn resize(pixels: &[f32], w: usize, h: usize, nw: usize, nh: usize) -> Vec<f32> {
    if (w, h) == (nw, nh) {
        return pixels.to_vec();
    }
    let horizontal = filter_weights(w, nw);
    let mut tmp = vec![0f32; nw * h];
    for r in 0..h {
        let row = &pixels[r * w..(r + 1) * w];
        for (o, (start, weights)) in horizontal.iter().enumerate() {
            tmp[r * nw + o] = weights.iter().enumerate().map(|(k, wt)| wt * row[start + k]).sum();
        }
    }
    let vertical = filter_weights(h, nh);
    let mut out = vec![0f32; nw * nh];
    for (o, (start, weights)) in vertical.iter().enumerate() {
        let dst = &mut out[o * nw..(o + 1) * nw];
        for (k, wt) in weights.iter().enumerate() {
            let src = &tmp[(start + k) * nw..(start + k + 1) * nw];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += wt * s;
            }
        }
    }
    out
}

/// Per output sample: first input index and normalised triangle weights.
fn filter_weights(input: usize, output: usize) -> Vec<(usize, Vec<f32>)> {
    let ratio = input as f64 / output as f64;
    let support = ratio.max(1.0);
    (0..output)
        .map(|o| {
            let centre = (o as f64 + 0.5) * ratio;
            let lo = ((centre - support).floor().max(0.0)) as usize;
            let hi = ((centre + support).ceil() as usize).min(input);
            let mut weights: Vec<f64> = (lo..hi).map(|i| (1.0 - ((i as f64 + 0.5 - centre) / support).abs()).max(0.0)).collect();
            let total: f64 = weights.iter().sum();
            if total > 0.0 {
                weights.iter_mut().for_each(|w| *w /= total);
            }
            (lo, weights.into_iter().map(|w| w as f32).collect())
        })
        .collect()
}

/// A plane resized as PyTorch's `F.interpolate(mode="bilinear", align_corners=False)` (no
/// antialiasing), as pytorch-fid resizes its inputs and Captum upsamples Grad-CAM maps.
pub fn interpolate_bilinear(plane: &[f32], width: usize, height: usize, new_width: usize, new_height: usize) -> Vec<f32> {
    assert_eq!(plane.len(), width * height, "interpolate_bilinear: plane size");
    let (ys, xs) = (linear_taps(height, new_height), linear_taps(width, new_width));
    let mut out = Vec::with_capacity(new_width * new_height);
    for &(y0, y1, wy) in &ys {
        for &(x0, x1, wx) in &xs {
            let top = (1.0 - wx) * plane[y0 * width + x0] + wx * plane[y0 * width + x1];
            let bottom = (1.0 - wx) * plane[y1 * width + x0] + wx * plane[y1 * width + x1];
            out.push((1.0 - wy) * top + wy * bottom);
        }
    }
    out
}

/// PyTorch's bilinear source taps with `align_corners=False`: for each output index, the two
/// input indices and the weight of the second.
fn linear_taps(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|o| {
            let source = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (source as usize).min(input - 1);
            let i1 = if i0 + 1 < input { i0 + 1 } else { i0 };
            (i0, i1, source - i0 as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_constants_and_averages_when_shrinking() {
        let flat = vec![7.0f32; 30 * 20];
        assert!(resize(&flat, 30, 20, 13, 9).iter().all(|&v| (v - 7.0).abs() < 1e-5));
        // Halving 0/2 stripes gives their mean away from the borders (taps ¼ ¾ ¾ ¼).
        let stripes: Vec<f32> = (0..16 * 4).map(|i| if i % 2 == 0 { 0.0 } else { 2.0 }).collect();
        let halved = resize(&stripes, 16, 4, 8, 2);
        assert!(halved.chunks(8).all(|row| row[1..7].iter().all(|&v| (v - 1.0).abs() < 1e-5)), "{halved:?}");
    }

    #[test]
    fn fit_to_crops_the_centre_and_averages_boxes() {
        // 4×2, fitted to 1×1: the centre 2×2 square (columns 1 and 2), averaged.
        let pixels = [0u8, 10, 20, 30].iter().cycle().take(8).flat_map(|&v| [v, v, v]).collect();
        let (fitted, note) = RgbImage { width: 4, height: 2, pixels }.fit_to(1, 1);
        assert_eq!(fitted.pixels, vec![15, 15, 15]);
        assert_eq!(note, "centre-cropped from 4×2 to 2×2, resized to 1×1");
        let same = RgbImage { width: 2, height: 2, pixels: (0..12).collect() };
        assert_eq!(same.fit_to(2, 2).0, same);
    }

    #[test]
    fn png_round_trips_pixels_and_parameters() {
        let image = RgbImage { width: 3, height: 2, pixels: (0..18).collect() };
        let bytes = image.to_png(&[("parameters", "{\"seed\": 1338, \"prompt\": \"a mammogram — CC\"}".into())]).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let text = &reader.info().utf8_text[0];
        assert_eq!(text.keyword, "parameters");
        assert!(text.get_text().unwrap().contains("— CC"));
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        assert_eq!(buf, image.pixels);
    }

    #[test]
    fn keep_outside_takes_the_original_outside_the_mask() {
        let original = RgbImage { width: 2, height: 1, pixels: vec![1, 2, 3, 4, 5, 6] };
        let painted = RgbImage { width: 2, height: 1, pixels: vec![9, 9, 9, 8, 8, 8] };
        assert_eq!(painted.keep_outside(&original, &[255, 0]).pixels, vec![9, 9, 9, 4, 5, 6]);
    }

    #[test]
    fn a_right_breast_and_its_mask_are_mirrored_together_for_the_model() {
        // 3×2: a bright pixel at the right end of the first row, masked there.
        let image = RgbImage { width: 3, height: 2, pixels: vec![0, 0, 0, 1, 1, 1, 9, 9, 9, 2, 2, 2, 3, 3, 3, 4, 4, 4] };
        let mask = vec![0, 0, 255, 0, 0, 0];
        let (seen, seen_mask) = image.to_model_orientation(&mask, true);
        assert_eq!(seen.pixels[..9], [9, 9, 9, 1, 1, 1, 0, 0, 0]);
        assert_eq!(seen_mask, [255, 0, 0, 0, 0, 0]);
        assert_eq!(image.to_model_orientation(&mask, false), (image.clone(), mask.clone()));
    }

    #[test]
    fn mirror_reverses_each_row() {
        let image = RgbImage { width: 2, height: 1, pixels: vec![1, 2, 3, 4, 5, 6] };
        assert_eq!(image.mirrored().pixels, vec![4, 5, 6, 1, 2, 3]);
        assert_eq!(image.mirrored().mirrored(), image);
    }
}
