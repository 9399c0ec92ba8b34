//! Training examples from a prepared folder (`metadata.jsonl` + PNGs, masks for inpainting):
//! resized so the shorter side is the training resolution, then randomly cropped; no flips (as
//! MAM-E). The order and the crops are functions of (seed, sample number), so a resumed run
//! sees exactly the batches the uninterrupted run would have seen.

use std::path::{Path, PathBuf};

use crate::imaging::{RgbImage, resize};
use crate::pipeline::image_processor::normalize;
use crate::rng::NoiseRng;

/// One line of a prepared set's `metadata.jsonl`.
#[derive(Debug, Clone, serde::Deserialize)]
struct Line {
    file_name: String,
    prompt: String,
    #[serde(default)]
    mask_file_name: Option<String>,
}

/// A decoded, cropped example.
#[derive(Debug, Clone)]
pub struct Example {
    /// `[3, crop, crop]` in [-1, 1].
    pub pixels: Vec<f32>,
    pub prompt: String,
    /// `[size, size]`, 1 inside the lesion box (inpainting sets only).
    pub mask: Option<Vec<f32>>,
}

/// The examples of a prepared folder.
#[derive(Debug, Clone)]
pub struct TrainingData {
    folder: PathBuf,
    lines: Vec<Line>,
    pub resolution: usize,
    /// Side of the random crop (≤ resolution; the resolution itself unless patches are wanted).
    pub crop: usize,
}

fn mix(a: u64, b: u64) -> u64 {
    a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_add(0xD1B5_4A32_D192_ED03).rotate_left(17)
}

impl TrainingData {
    /// Opens `dir`: a folder with `metadata.jsonl`, or a prepared set's root, whose `healthy/`
    /// (or `lesions/` when `inpainting`) is used.
    pub fn open(dir: &Path, inpainting: bool, resolution: usize, crop: usize) -> Result<TrainingData, String> {
        if crop == 0 || crop > resolution {
            return Err(format!("crop {crop} must be in 1..={resolution} (the resolution)"));
        }
        let folder = if dir.join("metadata.jsonl").exists() { dir.to_path_buf() } else { dir.join(if inpainting { "lesions" } else { "healthy" }) };
        let path = folder.join("metadata.jsonl");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e} (expected a folder made by mam-e prepare)", path.display()))?;
        let mut lines = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let parsed: Line = serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
            if inpainting && parsed.mask_file_name.is_none() {
                return Err(format!("{}:{}: no mask_file_name (inpainting needs the lesions/ set)", path.display(), i + 1));
            }
            lines.push(parsed);
        }
        if lines.is_empty() {
            return Err(format!("{} lists no images", path.display()));
        }
        Ok(TrainingData { folder, lines, resolution, crop })
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The example index for global sample number `k`: epoch `k / len` is a seeded permutation.
    pub fn index(&self, seed: u64, k: u64) -> usize {
        let n = self.lines.len() as u64;
        let (epoch, position) = (k / n, k % n);
        let mut order: Vec<usize> = (0..self.lines.len()).collect();
        let mut rng = NoiseRng::new(mix(seed, epoch));
        for i in (1..order.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        order[position as usize]
    }

    /// Loads sample number `k`: decode, resize the shorter side to the resolution, crop at a
    /// seeded random offset.
    pub fn load(&self, seed: u64, k: u64) -> Result<Example, String> {
        let line = &self.lines[self.index(seed, k)];
        let read = |name: &str| -> Result<RgbImage, String> {
            let path = self.folder.join(name);
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            RgbImage::from_png(&bytes).map_err(|e| format!("{}: {e}", path.display()))
        };
        let image = read(&line.file_name)?;
        let r = self.resolution;
        let scale = r as f64 / image.width.min(image.height) as f64;
        let (w, h) = (((image.width as f64 * scale).round() as usize).max(r), ((image.height as f64 * scale).round() as usize).max(r));
        let s = self.crop;
        let mut rng = NoiseRng::new(mix(seed ^ 0xC409, k));
        let (x0, y0) = ((rng.next_u64() % (w - s + 1) as u64) as usize, (rng.next_u64() % (h - s + 1) as u64) as usize);
        let crop = |plane: Vec<f32>| -> Vec<f32> { (y0..y0 + s).flat_map(|y| plane[y * w + x0..y * w + x0 + s].to_vec()).collect() };
        let channel = |img: &RgbImage, c: usize| -> Vec<f32> {
            let plane: Vec<f32> = img.pixels.chunks_exact(3).map(|p| p[c] as f32).collect();
            crop(resize(&plane, img.width, img.height, w, h))
        };
        let mut pixels = Vec::with_capacity(3 * s * s);
        for c in 0..3 {
            pixels.extend(channel(&image, c).into_iter().map(normalize));
        }
        let mask = match &line.mask_file_name {
            Some(name) => {
                let mask = read(name)?;
                if (mask.width, mask.height) != (image.width, image.height) {
                    return Err(format!("{name}: mask size differs from its image"));
                }
                Some(channel(&mask, 0).into_iter().map(|v| if v >= 127.5 { 1.0 } else { 0.0 }).collect())
            }
            None => None,
        };
        Ok(Example { pixels, prompt: line.prompt.clone(), mask })
    }
}
