//! CAD examples from prepared sets (`healthy/` and `lesions/` with `metadata.jsonl`, as `prepare`,
//! `phantom --format prepared` and `synth` write them): each image gray, resized to the model's
//! image side (antialiased bilinear, as `prepare`; any size is accepted), scaled to [−1, 1],
//! labelled lesion (1) or healthy (0) with its lesion boxes scaled the same way; and the patches
//! the classifier trains on: around a lesion, or anywhere in a healthy breast.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::model::{is_breast, to_input};
use crate::data::prepare::PixelBox;
use crate::data::training_set::Record;
use crate::imaging::RgbImage;
use crate::rng::NoiseRng;

#[derive(Debug, Clone)]
pub struct Example {
    pub id: String,
    pub file: PathBuf,
    pub lesion: bool,
    /// `side × side` values in [−1, 1].
    pub pixels: Vec<f32>,
    pub split: String,
    /// Lesion boxes in the resized image's pixels.
    pub boxes: Vec<PixelBox>,
}

/// Which images of a set: its `training` or `test` split, or all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    Training,
    Test,
    All,
}

impl Split {
    fn keeps(self, split: &str) -> bool {
        match self {
            Split::Training => split == "training",
            Split::Test => split == "test",
            Split::All => true,
        }
    }
}

fn read_image(path: &Path) -> anyhow::Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    RgbImage::from_png(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// A gray image file as model input: `side × side` values in [−1, 1].
pub fn read_pixels(path: &Path, side: usize) -> anyhow::Result<Vec<f32>> {
    Ok(to_input(&read_image(path)?, side))
}

/// The examples of `root` in `split`, and the files skipped with their reasons. Refuses a set
/// with no images or with one class only.
pub fn load(root: &Path, side: usize, split: Split) -> anyhow::Result<(Vec<Example>, Vec<String>)> {
    let (mut examples, mut skipped) = (Vec::new(), Vec::new());
    let mut found_metadata = false;
    for (folder, lesion) in [("healthy", false), ("lesions", true)] {
        let metadata = root.join(folder).join("metadata.jsonl");
        let Ok(text) = std::fs::read_to_string(&metadata) else { continue };
        found_metadata = true;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let record: Record = serde_json::from_str(line).with_context(|| format!("{}:{}", metadata.display(), i + 1))?;
            if !split.keeps(&record.split) || record.is_lesion() != lesion {
                continue;
            }
            let file = root.join(folder).join(&record.file_name);
            if lesion && record.boxes.is_empty() {
                skipped.push(format!("{}: a lesion without a box", file.display()));
                continue;
            }
            match read_image(&file) {
                Ok(image) => {
                    let scale = |v: usize, full: usize| (v * side).div_ceil(full).min(side);
                    let boxes = record
                        .boxes
                        .iter()
                        .map(|b| PixelBox {
                            x0: b.x0 * side / image.width,
                            y0: b.y0 * side / image.height,
                            x1: scale(b.x1, image.width),
                            y1: scale(b.y1, image.height),
                        })
                        .collect();
                    examples.push(Example { id: record.id, file, lesion, pixels: to_input(&image, side), split: record.split, boxes });
                }
                Err(e) => skipped.push(format!("{e:#}")),
            }
        }
    }
    if !found_metadata {
        bail!("{}: not a prepared set (no healthy/metadata.jsonl or lesions/metadata.jsonl)", root.display());
    }
    let lesions = examples.iter().filter(|e| e.lesion).count();
    if lesions == 0 || lesions == examples.len() {
        bail!("{}: {} images of the {split:?} split, {lesions} with a lesion: a classifier needs both classes", root.display(), examples.len());
    }
    Ok((examples, skipped))
}

/// Whether an example is held out for validation: a fixed share of ids chosen by their hash, so
/// the choice does not depend on the order of files or on the seed.
pub fn is_validation(id: &str, fraction: f64) -> bool {
    (id_hash(id, 0xcbf2_9ce4_8422_2325) % 10_000) as f64 / 10_000.0 < fraction
}

/// FNV-1a of an image id from the starting value `basis`: choices by id that do not depend on
/// the order of files.
pub fn id_hash(id: &str, basis: u64) -> u64 {
    id.bytes().fold(basis, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The `patch × patch` window of `pixels` (`side × side`) at (`x0`, `y0`).
pub fn crop(pixels: &[f32], side: usize, x0: usize, y0: usize, patch: usize) -> Vec<f32> {
    (y0..y0 + patch).flat_map(|y| pixels[y * side + x0..y * side + x0 + patch].iter().copied()).collect()
}

/// The top-left corner of a training patch: a lesion's patch contains one of its boxes' centres
/// (anywhere but the outer eighth of the patch), a healthy image's is centred on a breast
/// pixel (the image centre if none is found in 32 draws).
pub fn patch_origin(example: &Example, side: usize, patch: usize, rng: &mut NoiseRng) -> (usize, usize) {
    let max = side - patch;
    let draw = |rng: &mut NoiseRng, n: usize| ((rng.uniform() * n as f64) as usize).min(n.saturating_sub(1));
    if example.lesion {
        let b = example.boxes[draw(rng, example.boxes.len())];
        let (cx, cy) = ((b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2);
        let margin = patch / 8;
        let offset = |rng: &mut NoiseRng| margin + draw(rng, patch - 2 * margin);
        let (ox, oy) = (offset(rng), offset(rng));
        (cx.saturating_sub(ox).min(max), cy.saturating_sub(oy).min(max))
    } else {
        for _ in 0..32 {
            let (x, y) = (draw(rng, side), draw(rng, side));
            if is_breast(example.pixels[y * side + x]) {
                return (x.saturating_sub(patch / 2).min(max), y.saturating_sub(patch / 2).min(max));
            }
        }
        (max / 2, max / 2)
    }
}

/// The patches an image is scored on: a grid of stride `patch / 2` covering the image, those
/// whose centre is breast (all of them if none is).
pub fn grid_patches(pixels: &[f32], side: usize, patch: usize) -> Vec<(usize, usize)> {
    let stride = (patch / 2).max(1);
    let mut starts: Vec<usize> = (0..=side - patch).step_by(stride).collect();
    if starts.last() != Some(&(side - patch)) {
        starts.push(side - patch);
    }
    let all: Vec<(usize, usize)> = starts.iter().flat_map(|&y| starts.iter().map(move |&x| (x, y))).collect();
    let inside: Vec<(usize, usize)> = all.iter().copied().filter(|&(x, y)| is_breast(pixels[(y + patch / 2) * side + x + patch / 2])).collect();
    if inside.is_empty() { all } else { inside }
}
