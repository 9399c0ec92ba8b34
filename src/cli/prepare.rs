//! `mam-e prepare`: a VinDr-Mammo folder or a generic CSV of DICOM files → MAM-E's training set.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::cli::phantom::TemplateArg;
use crate::data::dicom::{self, vendor_of};
use crate::data::prepare::{Scaling, SourcePixels, prepare_pixels};
use crate::data::training_set::{Labels, Record, TrainingSet};
use crate::data::vindr::{ImageRecord, Skipped, read_generic_csv, read_vindr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScalingArg {
    /// Divide by the vendor's fixed maximum (Hologic 4095, Siemens 3500) and clip, as MAM-E did.
    Vendor,
    /// Divide by the 99.5th percentile of the breast's values and clip.
    Percentile,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A VinDr-Mammo folder as published (breast-level_annotations.csv, finding_annotations.csv, images/).
    #[arg(long, required_unless_present = "csv", conflicts_with = "csv")]
    vindr: Option<PathBuf>,
    /// A CSV with columns path, view, laterality [, density, vendor, split, category, xmin, ymin, xmax, ymax].
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Output folder (created; a re-run into the same folder resumes).
    #[arg(long)]
    out: PathBuf,
    /// Side of the square training images.
    #[arg(long, default_value_t = 512)]
    size: usize,
    #[arg(long, value_enum, default_value = "fusion")]
    template: TemplateArg,
    #[arg(long, value_enum, default_value = "vendor")]
    scaling: ScalingArg,
    /// Only rows of this split (VinDr: training or test).
    #[arg(long)]
    split: Option<String>,
}

/// Prepares one image, or says why it cannot be used.
fn prepare_one(record: &ImageRecord, set: &TrainingSet, size: usize, scaling: Scaling) -> Result<Record, String> {
    if record.findings.is_empty() && !record.unboxed_findings.is_empty() {
        return Err(format!("findings without a box ({}): neither healthy nor usable for inpainting", record.unboxed_findings.join("; ")));
    }
    if !record.path.exists() {
        return Err("file missing".into());
    }
    let image = dicom::read(&record.path)?;
    if let Some(l) = image.laterality
        && l != record.laterality
    {
        return Err(format!("the DICOM says laterality {l}, the CSV {}: which way to mirror is unclear", record.laterality));
    }
    let manufacturer = record.vendor.clone().or(image.manufacturer.clone()).unwrap_or_default();
    let vendor = vendor_of(&manufacturer);
    let vendor_word = match vendor {
        Some(v) => v.word().to_string(),
        None => manufacturer.split([' ', ',']).next().filter(|w| !w.is_empty()).unwrap_or("unknown").to_ascii_lowercase(),
    };
    let source = SourcePixels { rows: image.rows, cols: image.cols, values: image.values, max: image.max, vendor };
    let boxes: Vec<_> = record.findings.iter().map(|f| f.bbox).collect();
    let prepared = prepare_pixels(&source, record.laterality, &boxes, size, scaling);
    let lesion = !record.findings.is_empty();
    if lesion && prepared.boxes.is_empty() {
        return Err(format!("all {} boxes lie outside the prepared image (the centre crop removed them)", boxes.len()));
    }
    let labels = Labels {
        id: record.id.clone(),
        laterality: record.laterality,
        view: record.view,
        density: record.density,
        vendor: vendor_word,
        split: record.split.clone(),
        lesion,
    };
    set.write(&labels, &prepared).map_err(|e| format!("cannot write the outputs: {e}"))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !(64..=2048).contains(&args.size) || !args.size.is_multiple_of(8) {
        bail!("--size {} must be a multiple of 8 in 64..=2048", args.size);
    }
    let (mut records, mut skipped) = match (&args.vindr, &args.csv) {
        (Some(root), _) => read_vindr(root).map_err(anyhow::Error::msg).context("reading the VinDr-Mammo folder")?,
        (None, Some(csv)) => read_generic_csv(csv).map_err(anyhow::Error::msg).context("reading the CSV")?,
        (None, None) => bail!("give --vindr FOLDER or --csv FILE"),
    };
    if let Some(split) = &args.split {
        records.retain(|r| &r.split == split);
    }
    let set = TrainingSet::create(&args.out, args.template.into()).with_context(|| format!("cannot create {}", args.out.display()))?;
    let scaling = match args.scaling {
        ScalingArg::Vendor => Scaling::Vendor,
        ScalingArg::Percentile => Scaling::Percentile,
    };
    let bar = ProgressBar::new(records.len() as u64)
        .with_style(ProgressStyle::with_template("prepare [{bar:30}] {pos}/{len} {per_sec} eta {eta}").expect("template"));
    let started = Instant::now();
    let resumed = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<Record, Skipped>> = records
        .par_iter()
        .map(|record| {
            let result = match set.finished(&record.id) {
                Some(done) => {
                    resumed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Ok(done)
                }
                // One file's failure, a panic included, is that file's skip reason, never the run's end.
                None => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| prepare_one(record, &set, args.size, scaling)))
                    .unwrap_or_else(|_| Err("an internal error while preparing it (a panic; please report the file)".into())),
            };
            bar.inc(1);
            result.map_err(|reason| Skipped { file: record.path.display().to_string(), reason })
        })
        .collect();
    bar.finish_and_clear();
    let mut done = Vec::new();
    for result in results {
        match result {
            Ok(record) => done.push(record),
            Err(s) => skipped.push(s),
        }
    }
    let summary = set.finish(&done, &skipped).context("writing metadata.jsonl and summary.json")?;
    print!("{}", summary.table());
    let resumed = resumed.into_inner();
    println!(
        "{} images prepared ({} from an earlier run), {} skipped, in {:.1} s → {}",
        done.len(),
        resumed,
        skipped.len(),
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
