//! A synthetic dataset on disk, in the layout `mam-e prepare` writes (Hugging Face imagefolder),
//! and the merging of shards' parts into one.
//!
//! ```text
//! OUT/synth.json                      the settings (every part of a dataset has the same)
//! OUT/healthy/<id>.png                healthy images            OUT/healthy/metadata.jsonl
//! OUT/lesions/<id>.png                with an inpainted lesion  OUT/lesions/metadata.jsonl
//! OUT/lesions/masks/<id>.png          the box, 255 inside
//! OUT/lesions/originals/<id>.png      the healthy image it was painted into
//! OUT/labels.csv                      (--format dicom: .dcm images, this CSV for `prepare --csv`)
//! OUT/summary.json                    counts per vendor, area, density, view
//! OUT/.records/<id>.json              one per finished image: what a re-run resumes from
//! OUT/part.json                       a shard's part only, written when it is complete
//! ```
//!
//! Files are written through temporary names and renames, each image's record last; an image
//! without a record is made again, so a killed run loses at most the batch it was on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Format, Settings, Shard, Synthesized};
use crate::data::Laterality;
use crate::data::dicom::{SyntheticImage, vendor_of, write_synthetic};
use crate::data::training_set::{Record, Summary, gray_png};
use crate::data::write_atomic;
use crate::prompt::{Area, View, caption};

/// One line of `metadata.jsonl`: a prepared set's record (so `train`, `eval` and `--like` read
/// it) and how the image was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthRecord {
    #[serde(flatten)]
    pub record: Record,
    pub index: usize,
    pub synthetic: bool,
    pub seed: u64,
    pub scheduler: String,
    pub steps: usize,
    pub guidance: f64,
    pub model: String,
    pub model_sha256: String,
    /// Lesion cases: the prompt of the healthy original (its model and settings are `synth.json`'s `healthy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_file_name: Option<String>,
    /// Lesion cases: whether the box lies wholly inside the breast (false: a small breast, the
    /// box centred in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_inside_breast: Option<bool>,
}

/// A part's completion mark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartInfo {
    pub shard: Shard,
    pub images: usize,
}

pub const SETTINGS_FILE: &str = "synth.json";
pub const PART_FILE: &str = "part.json";

/// The output folder of a run (a whole dataset, a shard's part, or a merge).
pub struct Output {
    pub root: PathBuf,
    pub settings: Settings,
}

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl Output {
    /// Opens `root` for `settings`: creates it, or resumes it when it holds the same settings;
    /// a folder made with other settings is refused (naming the first difference).
    pub fn create(root: &Path, settings: &Settings) -> Result<Output, String> {
        let path = root.join(SETTINGS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let existing: Settings = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
                if let Some(difference) = first_difference(&existing, settings) {
                    return Err(format!(
                        "{} holds a dataset made with other settings ({difference}): use another --out, or the same settings to resume it",
                        root.display()
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if root.is_dir() && std::fs::read_dir(root).map_err(|e| e.to_string())?.next().is_some() {
                    return Err(format!("{} exists and is not a `mam-e synth` output (no {SETTINGS_FILE}): choose an empty or new folder", root.display()));
                }
                std::fs::create_dir_all(root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
                let text = serde_json::to_vec_pretty(settings).map_err(|e| e.to_string())?;
                write_atomic(&path, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        for dir in ["", "healthy", "lesions", "lesions/masks", "lesions/originals", ".records"] {
            let dir = root.join(dir);
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            remove_partial_files(&dir).map_err(|e| format!("cannot clean {}: {e}", dir.display()))?;
        }
        Ok(Output { root: root.to_path_buf(), settings: settings.clone() })
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.root.join(".records").join(format!("{id}.json"))
    }

    /// The record of an image finished by an earlier run.
    pub fn finished(&self, id: &str) -> Option<SynthRecord> {
        serde_json::from_slice(&std::fs::read(self.record_path(id)).ok()?).ok()
    }

    fn extension(&self) -> &'static str {
        match self.settings.format {
            Format::Png => "png",
            Format::Dicom => "dcm",
        }
    }

    /// Writes one image's files, then its record.
    pub fn write(&self, image: &Synthesized) -> std::io::Result<SynthRecord> {
        let record = self.record_of(image);
        let folder = if image.lesion.is_some() { "lesions" } else { "healthy" };
        let kind = if image.lesion.is_some() { "with a synthetic lesion" } else { "healthy" };
        self.write_image(&self.root.join(folder).join(&record.record.file_name), &image.image, &record, kind)?;
        if let Some((original, mask, _)) = &image.lesion {
            let name = format!("{}.png", record.record.id);
            write_atomic(&self.root.join("lesions/masks").join(&name), &gray_png(mask, image.image.width, image.image.height)?)?;
            let original_file = self.root.join("lesions").join(record.original_file_name.as_deref().expect("lesion records name their original"));
            self.write_image(&original_file, original, &record, "healthy original")?;
        }
        self.write_record(&record)?;
        Ok(record)
    }

    fn write_record(&self, record: &SynthRecord) -> std::io::Result<()> {
        write_atomic(&self.record_path(&record.record.id), &serde_json::to_vec(record).map_err(io_error)?)
    }

    /// A PNG carrying the record as its `parameters`, or a DICOM file saying what it shows.
    fn write_image(&self, path: &Path, image: &crate::imaging::RgbImage, record: &SynthRecord, kind: &str) -> std::io::Result<()> {
        match self.settings.format {
            Format::Png => {
                let parameters = serde_json::to_string(record).map_err(io_error)?;
                write_atomic(path, &image.to_png(&[("parameters", parameters)]).map_err(io_error)?)
            }
            Format::Dicom => {
                let r = &record.record;
                let gray = image.to_gray();
                let synthetic = SyntheticImage {
                    gray: &gray,
                    width: image.width,
                    height: image.height,
                    laterality: if r.laterality == "R" { Laterality::R } else { Laterality::L },
                    view: if r.view == "CC" { View::Cc } else { View::Mlo },
                    vendor: vendor_of(&r.vendor),
                    kind,
                    uid_key: super::labels::image_key(self.settings.seed, record.index as u64),
                    provenance: format!(
                        "generated by mam-e with model {} (sha256 {}), seed {}, prompt \"{}\"",
                        record.model, record.model_sha256, record.seed, r.prompt
                    ),
                };
                write_synthetic(path, &synthetic)
            }
        }
    }

    fn record_of(&self, image: &Synthesized) -> SynthRecord {
        let plan = &image.plan;
        let labels = &plan.labels;
        let template = self.settings.template;
        let area_ratio = crate::data::measure::breast_ratio(&image.image.to_gray());
        // The labels the prompt carried; area measured where the template has none (VinDr's).
        let carries_area = template != crate::prompt::Template::Vindr;
        let carries_density = template != crate::prompt::Template::OmiH;
        let file_name = format!("{}.{}", plan.id, self.extension());
        let (sampling, prompt) = match (&image.lesion, &self.settings.lesion) {
            (Some(_), Some(lesion)) => (lesion, lesion.prompt.clone().unwrap_or_default()),
            _ => (&self.settings.healthy, plan.prompt.clone()),
        };
        let lesion = image.lesion.as_ref();
        SynthRecord {
            record: Record {
                file_name: file_name.clone(),
                prompt,
                mask_file_name: lesion.map(|_| format!("masks/{}.png", plan.id)),
                masked_image_file_name: None,
                id: plan.id.clone(),
                view: labels.view.word().into(),
                laterality: labels.laterality.letter().into(),
                density: carries_density.then(|| labels.density.letter().to_string()),
                vendor: labels.vendor.word().into(),
                area: if carries_area { labels.area } else { Area::from_ratio(area_ratio) }.word().into(),
                area_ratio,
                split: "training".into(),
                boxes: lesion.map(|(_, _, b)| vec![*b]).unwrap_or_default(),
            },
            index: plan.index,
            synthetic: true,
            seed: plan.seed,
            scheduler: sampling.scheduler.clone(),
            steps: sampling.steps,
            guidance: sampling.guidance,
            model: sampling.model.name.clone(),
            model_sha256: sampling.model.sha256.clone(),
            healthy_prompt: lesion.map(|_| caption(template, labels.vendor.word(), labels.view, Some(labels.density), labels.area)),
            original_file_name: lesion.map(|_| format!("originals/{file_name}")),
            box_inside_breast: lesion.map(|_| image.box_inside),
        }
    }

    /// Writes `metadata.jsonl` (both folders, by file name), `summary.json`, with DICOM the
    /// `labels.csv` that `prepare --csv` reads, and for a shard its `part.json` (last: the
    /// part is complete once it exists).
    pub fn finish(&self, records: &[SynthRecord], shard: Option<Shard>) -> std::io::Result<Summary> {
        let mut sorted: Vec<&SynthRecord> = records.iter().collect();
        sorted.sort_by(|a, b| a.record.file_name.cmp(&b.record.file_name));
        for (folder, lesion) in [("healthy", false), ("lesions", true)] {
            let mut lines = String::new();
            for r in sorted.iter().filter(|r| r.record.is_lesion() == lesion) {
                lines.push_str(&serde_json::to_string(r).map_err(io_error)?);
                lines.push('\n');
            }
            write_atomic(&self.root.join(folder).join("metadata.jsonl"), lines.as_bytes())?;
        }
        if self.settings.format == Format::Dicom {
            write_atomic(&self.root.join("labels.csv"), &labels_csv(&sorted)?)?;
        }
        let plain: Vec<Record> = sorted.iter().map(|r| r.record.clone()).collect();
        let summary = Summary::of(&plain, &[]);
        write_atomic(&self.root.join("summary.json"), &serde_json::to_vec_pretty(&summary).map_err(io_error)?)?;
        if let Some(shard) = shard {
            let part = PartInfo { shard, images: records.len() };
            write_atomic(&self.root.join(PART_FILE), &serde_json::to_vec_pretty(&part).map_err(io_error)?)?;
        }
        Ok(summary)
    }
}

/// The generic CSV `mam-e prepare --csv` reads: one row per image (lesion cases: per box).
fn labels_csv(records: &[&SynthRecord]) -> std::io::Result<Vec<u8>> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(["path", "view", "laterality", "density", "vendor", "split", "category", "xmin", "ymin", "xmax", "ymax"])?;
    for r in records {
        let r = &r.record;
        let folder = if r.is_lesion() { "lesions" } else { "healthy" };
        let common = [
            format!("{folder}/{}", r.file_name),
            r.view.clone(),
            r.laterality.clone(),
            r.density.clone().unwrap_or_default(),
            r.vendor.clone(),
            r.split.clone(),
        ];
        if r.boxes.is_empty() {
            csv.write_record(common.iter().map(String::as_str).chain(["", "", "", "", ""]))?;
        }
        for b in &r.boxes {
            let fields = ["Synthetic lesion".to_string(), b.x0.to_string(), b.y0.to_string(), b.x1.to_string(), b.y1.to_string()];
            csv.write_record(common.iter().chain(fields.iter()))?;
        }
    }
    csv.into_inner().map_err(io_error)
}

/// Removes the temporary files a killed run left (`.NAME.PID-N.partial`, see `crate::atomic`).
fn remove_partial_files(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') && name.ends_with(".partial") && path.is_file() {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// The first setting in which `a` and `b` differ, as `key: a ≠ b`.
fn first_difference(a: &Settings, b: &Settings) -> Option<String> {
    let (a, b) = (serde_json::to_value(a).ok()?, serde_json::to_value(b).ok()?);
    fn walk(path: &str, a: &serde_json::Value, b: &serde_json::Value) -> Option<String> {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => x
                .keys()
                .chain(y.keys())
                .find_map(|k| walk(&format!("{path}{}{k}", if path.is_empty() { "" } else { "." }), &x[k], y.get(k).unwrap_or(&serde_json::Value::Null))),
            _ if a != b => Some(format!("{path}: {a} ≠ {b}")),
            _ => None,
        }
    }
    walk("", &a, &b)
}

/// What a merge did.
#[derive(Debug)]
pub struct Merged {
    pub parts: usize,
    pub images: usize,
    pub summary: Summary,
}

/// Joins the parts of a sharded run into one dataset at `out` (new or empty): checks that they
/// share the settings, that each is complete, and that every index 0..count-1 is present exactly
/// once; then copies the files and writes the dataset's metadata as a single run would.
pub fn merge(parts: &[PathBuf], out: &Path) -> Result<Merged, String> {
    let (settings, records) = read_parts(parts)?;
    if out.exists() && std::fs::read_dir(out).map_err(|e| e.to_string())?.next().is_some() {
        return Err(format!("{} is not empty: merge into a new folder", out.display()));
    }
    let output = Output::create(out, &settings)?;
    let copy = |from: &Path, to: PathBuf| -> Result<(), String> {
        let bytes = std::fs::read(from).map_err(|e| format!("{}: {e}", from.display()))?;
        write_atomic(&to, &bytes).map_err(|e| format!("cannot write {}: {e}", to.display()))
    };
    let mut all = Vec::new();
    for (record, part) in records.into_values() {
        let folder = if record.record.is_lesion() { "lesions" } else { "healthy" };
        let names = [Some(&record.record.file_name), record.record.mask_file_name.as_ref(), record.original_file_name.as_ref()];
        for name in names.into_iter().flatten() {
            copy(&part.join(folder).join(name), out.join(folder).join(name))?;
        }
        output.write_record(&record).map_err(|e| format!("cannot write a record in {}: {e}", out.display()))?;
        all.push(record);
    }
    let summary = output.finish(&all, None).map_err(|e| format!("cannot write {}'s metadata: {e}", out.display()))?;
    Ok(Merged { parts: parts.len(), images: all.len(), summary })
}

/// Every record of a merge by image index, with the part it is in.
type PartRecords<'a> = BTreeMap<usize, (SynthRecord, &'a PathBuf)>;

/// The parts' shared settings and every record by index (with its part), once each part is
/// found finished, of the same dataset and shard count, and every index is there exactly once.
fn read_parts(parts: &[PathBuf]) -> Result<(Settings, PartRecords<'_>), String> {
    let Some(first) = parts.first() else { return Err("give the parts' folders to merge".into()) };
    let read_json = |path: PathBuf| -> Result<serde_json::Value, String> {
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    };
    let settings: Settings = serde_json::from_value(read_json(first.join(SETTINGS_FILE))?).map_err(|e| format!("{}: {e}", first.display()))?;
    let mut shards: BTreeMap<usize, &PathBuf> = BTreeMap::new();
    let mut records: PartRecords = BTreeMap::new();
    let mut shard_count = None;
    for part in parts {
        let theirs: Settings = serde_json::from_value(read_json(part.join(SETTINGS_FILE))?).map_err(|e| format!("{}: {e}", part.display()))?;
        if let Some(difference) = first_difference(&settings, &theirs) {
            return Err(format!(
                "{} and {} were made with different settings ({difference}): they are not parts of one dataset",
                first.display(),
                part.display()
            ));
        }
        let info: PartInfo = match std::fs::read(part.join(PART_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", part.join(PART_FILE).display()))?,
            Err(_) => return Err(format!("{} is not a finished part (no {PART_FILE}): rerun its shard, it resumes", part.display())),
        };
        if *shard_count.get_or_insert(info.shard.count) != info.shard.count {
            return Err(format!(
                "{} is shard {}/{}, but other parts are of {} shards",
                part.display(),
                info.shard.index,
                info.shard.count,
                shard_count.unwrap_or(0)
            ));
        }
        if let Some(other) = shards.insert(info.shard.index, part) {
            return Err(format!("shard {}/{} is given twice: {} and {}", info.shard.index, info.shard.count, other.display(), part.display()));
        }
        for folder in ["healthy", "lesions"] {
            let path = part.join(folder).join("metadata.jsonl");
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let record: SynthRecord = serde_json::from_str(line).map_err(|e| format!("{}: {e}", path.display()))?;
                if let Some((_, other)) = records.get(&record.index) {
                    return Err(format!("image {} is in both {} and {}", record.index, other.display(), part.display()));
                }
                records.insert(record.index, (record, part));
            }
        }
    }
    let count = shard_count.unwrap_or(1);
    let missing_shards: Vec<String> = (0..count).filter(|k| !shards.contains_key(k)).map(|k| format!("{k}/{count}")).collect();
    if !missing_shards.is_empty() {
        return Err(format!("shards {} are missing: run them (same command with --shard K/N, or the array tasks) and merge again", missing_shards.join(", ")));
    }
    let missing: Vec<usize> = (0..settings.count).filter(|i| !records.contains_key(i)).collect();
    if !missing.is_empty() {
        let list = missing.iter().take(20).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        return Err(format!(
            "{} of {} images are missing (indices {list}{}): their parts are incomplete",
            missing.len(),
            settings.count,
            if missing.len() > 20 { ", …" } else { "" }
        ));
    }
    if let Some(extra) = records.keys().find(|&&i| i >= settings.count) {
        return Err(format!("image index {extra} is beyond the dataset's count {}", settings.count));
    }
    Ok((settings, records))
}
