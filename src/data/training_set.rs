//! The prepared training set on disk, in the Hugging Face imagefolder convention:
//!
//! ```text
//! OUT/healthy/<id>.png            RGB, size×size          OUT/healthy/metadata.jsonl
//! OUT/lesions/<id>.png            RGB                     OUT/lesions/metadata.jsonl
//! OUT/lesions/masks/<id>.png      gray, 255 inside boxes
//! OUT/lesions/masked/<id>.png     RGB, image * (mask < 0.5)
//! OUT/summary.json                counts (the paper's Table 1), area/density distributions, skipped files
//! OUT/.records/<id>.json          one per finished image: what makes a re-run resume
//! ```
//!
//! Each image's files are written through temporary names and renames, its record last, so a
//! killed run leaves only whole files and a re-run skips every image that has a record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::prepare::{PixelBox, Prepared, lesion_caption};
use crate::data::vindr::Skipped;
use crate::data::{Laterality, write_atomic};
use crate::imaging::RgbImage;
use crate::prompt::{Area, Density, Template, View, caption};

/// What is known about an image before it is prepared.
#[derive(Debug, Clone)]
pub struct Labels {
    pub id: String,
    pub laterality: Laterality,
    pub view: View,
    pub density: Option<Density>,
    /// Lowercase vendor word for captions and the summary.
    pub vendor: String,
    pub split: String,
    /// Lesion image (has boxes) or healthy.
    pub lesion: bool,
}

/// One line of `metadata.jsonl` (the first two fields are the imagefolder convention; the rest
/// are labels kept for evaluation and filtering).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub file_name: String,
    pub prompt: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mask_file_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub masked_image_file_name: Option<String>,
    pub id: String,
    pub view: String,
    pub laterality: String,
    pub density: Option<String>,
    pub vendor: String,
    pub area: String,
    pub area_ratio: f64,
    pub split: String,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub boxes: Vec<PixelBox>,
}

impl Record {
    pub fn is_lesion(&self) -> bool {
        self.mask_file_name.is_some()
    }
}

/// The output folder of a preparation.
#[derive(Debug, Clone)]
pub struct TrainingSet {
    pub root: PathBuf,
    pub template: Template,
}

/// An 8-bit grayscale PNG of `width`×`height` pixels.
pub fn gray_png(gray: &[u8], width: usize, height: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width as u32, height as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
    writer.write_image_data(gray).map_err(std::io::Error::other)?;
    writer.finish().map_err(std::io::Error::other)?;
    Ok(out)
}

fn rgb_png(gray: &[u8], size: usize) -> std::io::Result<Vec<u8>> {
    let image = RgbImage { width: size, height: size, pixels: gray.iter().flat_map(|&g| [g, g, g]).collect() };
    image.to_png(&[]).map_err(|e| std::io::Error::other(e.to_string()))
}

impl TrainingSet {
    /// Opens (creating) the output folder.
    pub fn create(root: &Path, template: Template) -> std::io::Result<TrainingSet> {
        for dir in ["healthy", "lesions/masks", "lesions/masked", ".records"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        Ok(TrainingSet { root: root.to_path_buf(), template })
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.root.join(".records").join(format!("{id}.json"))
    }

    /// The record of an image finished by an earlier run, if any.
    pub fn finished(&self, id: &str) -> Option<Record> {
        let bytes = std::fs::read(self.record_path(id)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes one prepared image (and for a lesion image its mask and masked image), then its record.
    pub fn write(&self, labels: &Labels, prepared: &Prepared) -> std::io::Result<Record> {
        let size = prepared.size;
        let area = Area::from_ratio(prepared.area_ratio);
        let file_name = format!("{}.png", labels.id);
        let folder = if labels.lesion { "lesions" } else { "healthy" };
        write_atomic(&self.root.join(folder).join(&file_name), &rgb_png(&prepared.gray, size)?)?;
        let (prompt, mask_file_name, masked_image_file_name) = if labels.lesion {
            write_atomic(&self.root.join("lesions/masks").join(&file_name), &gray_png(&prepared.mask(), size, size)?)?;
            write_atomic(&self.root.join("lesions/masked").join(&file_name), &rgb_png(&prepared.masked(), size)?)?;
            (lesion_caption().to_string(), Some(format!("masks/{file_name}")), Some(format!("masked/{file_name}")))
        } else {
            (caption(self.template, &labels.vendor, labels.view, labels.density, area), None, None)
        };
        let record = Record {
            file_name,
            prompt,
            mask_file_name,
            masked_image_file_name,
            id: labels.id.clone(),
            view: labels.view.word().into(),
            laterality: labels.laterality.letter().into(),
            density: labels.density.map(|d| d.letter().to_string()),
            vendor: labels.vendor.clone(),
            area: area.word().into(),
            area_ratio: prepared.area_ratio,
            split: labels.split.clone(),
            boxes: if labels.lesion { prepared.boxes.clone() } else { Vec::new() },
        };
        write_atomic(&self.record_path(&labels.id), &serde_json::to_vec(&record).map_err(std::io::Error::other)?)?;
        Ok(record)
    }

    /// Writes both `metadata.jsonl` files (sorted by file name) and `summary.json`; returns the summary.
    pub fn finish(&self, records: &[Record], skipped: &[Skipped]) -> std::io::Result<Summary> {
        let mut sorted: Vec<&Record> = records.iter().collect();
        sorted.sort_by(|a, b| a.file_name.cmp(&b.file_name));
        for (folder, lesion) in [("healthy", false), ("lesions", true)] {
            let mut lines = String::new();
            for r in sorted.iter().filter(|r| r.is_lesion() == lesion) {
                lines.push_str(&serde_json::to_string(r).map_err(std::io::Error::other)?);
                lines.push('\n');
            }
            write_atomic(&self.root.join(folder).join("metadata.jsonl"), lines.as_bytes())?;
        }
        let summary = Summary::of(records, skipped);
        write_atomic(&self.root.join("summary.json"), &serde_json::to_vec_pretty(&summary).map_err(std::io::Error::other)?)?;
        Ok(summary)
    }
}

/// Counts like the paper's Table 1, and the label distributions of the healthy set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Per vendor: (healthy, with lesion).
    pub per_vendor: BTreeMap<String, (usize, usize)>,
    /// Healthy images per area class.
    pub area: BTreeMap<String, usize>,
    /// Healthy images per BI-RADS density.
    pub density: BTreeMap<String, usize>,
    /// Healthy images per view.
    pub view: BTreeMap<String, usize>,
    pub lesion_boxes: usize,
    pub skipped: Vec<Skipped>,
}

impl Summary {
    pub fn of(records: &[Record], skipped: &[Skipped]) -> Summary {
        let mut s = Summary { skipped: skipped.to_vec(), ..Summary::default() };
        for r in records {
            let counts = s.per_vendor.entry(r.vendor.clone()).or_default();
            if r.is_lesion() {
                counts.1 += 1;
                s.lesion_boxes += r.boxes.len();
            } else {
                counts.0 += 1;
                *s.area.entry(r.area.clone()).or_default() += 1;
                *s.density.entry(r.density.clone().unwrap_or_else(|| "unknown".into())).or_default() += 1;
                *s.view.entry(r.view.clone()).or_default() += 1;
            }
        }
        s
    }

    /// A plain-text table for the terminal.
    pub fn table(&self) -> String {
        let mut out = format!("{:<12} {:>8} {:>12}\n", "vendor", "healthy", "with lesion");
        let (mut h, mut l) = (0, 0);
        for (vendor, (healthy, lesion)) in &self.per_vendor {
            out.push_str(&format!("{vendor:<12} {healthy:>8} {lesion:>12}\n"));
            (h, l) = (h + healthy, l + lesion);
        }
        out.push_str(&format!("{:<12} {h:>8} {l:>12}\n", "total"));
        let join = |m: &BTreeMap<String, usize>| m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
        out.push_str(&format!("healthy by area: {}\n", join(&self.area)));
        out.push_str(&format!("healthy by density: {}\n", join(&self.density)));
        out.push_str(&format!("healthy by view: {}\n", join(&self.view)));
        out.push_str(&format!("lesion boxes: {}\n", self.lesion_boxes));
        if !self.skipped.is_empty() {
            out.push_str(&format!("skipped {}:\n", self.skipped.len()));
            for s in &self.skipped {
                out.push_str(&format!("  {}: {}\n", s.file, s.reason));
            }
        }
        out
    }
}
