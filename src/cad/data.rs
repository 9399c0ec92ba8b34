//! CAD examples from prepared sets (`healthy/` and `lesions/` with `metadata.jsonl`, as `prepare`,
//! `phantom --format prepared` and `synth` write them): each image gray, resized to the model's
//! side (antialiased bilinear, as `prepare`; any size is accepted), scaled to [−1, 1], labelled
//! lesion (1) or healthy (0); a lesion's mask resized the same way.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::data::prepare::resize;
use crate::data::training_set::Record;
use crate::imaging::RgbImage;

#[derive(Debug, Clone)]
pub struct Example {
    pub id: String,
    pub file: PathBuf,
    pub lesion: bool,
    /// `side × side` values in [−1, 1].
    pub pixels: Vec<f32>,
    pub split: String,
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

/// A gray image file as model input: `side × side` values in [−1, 1].
pub fn read_pixels(path: &Path, side: usize) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let image = RgbImage::from_png(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(to_input(&image, side))
}

/// An image as model input (gray, resized, [−1, 1]).
pub fn to_input(image: &RgbImage, side: usize) -> Vec<f32> {
    let gray: Vec<f32> = image.to_gray().iter().map(|&g| f32::from(g)).collect();
    resize(&gray, image.width, image.height, side, side).iter().map(|v| v.clamp(0.0, 255.0) / 127.5 - 1.0).collect()
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
            match read_pixels(&file, side) {
                Ok(pixels) => examples.push(Example { id: record.id, file, lesion, pixels, split: record.split }),
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
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (hash % 10_000) as f64 / 10_000.0 < fraction
}
