//! `mam-e phantom`: procedural mammograms with exact labels, as a VinDr-Mammo folder (16-bit
//! DICOM + CSVs) or directly as a prepared training set.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::data::phantom::{DatasetEntry, DatasetOptions, Phantom, PhantomSpec, dataset_entry, measured_area, render, write_phantom};
use crate::data::prepare::{Scaling, prepare_pixels};
use crate::data::training_set::{Labels, Record, TrainingSet, gray_png};
use crate::data::vindr::{VindrRow, write_vindr_csvs};
use crate::data::{Laterality, write_atomic};
use crate::imaging::RgbImage;
use crate::prompt::{Area, Density, Template, Vendor, View};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// VinDr-Mammo layout: images/<study_id>/<image_id>.dicom and the two annotation CSVs.
    Vindr,
    /// A prepared training set, as `mam-e prepare` writes it.
    Prepared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VendorArg {
    Siemens,
    Hologic,
    Both,
}

/// `--template` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TemplateArg {
    /// view + area (the OMI-H model)
    OmiH,
    /// view + density (the VinDr model)
    Vindr,
    /// vendor + view + density + area (the fusion model)
    Fusion,
}

impl From<TemplateArg> for Template {
    fn from(t: TemplateArg) -> Template {
        match t {
            TemplateArg::OmiH => Template::OmiH,
            TemplateArg::Vindr => Template::Vindr,
            TemplateArg::Fusion => Template::Fusion,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of images (studies of four: L-CC, L-MLO, R-CC, R-MLO).
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Output folder (must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "vindr")]
    format: Format,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image width in pixels; the height is 5/4 of it (a 240 mm tall detector).
    #[arg(long, default_value_t = 512)]
    width: usize,
    /// Share of images with lesions (masses or calcification clusters).
    #[arg(long, default_value_t = 0.3)]
    lesion_fraction: f64,
    #[arg(long, value_enum, default_value = "both")]
    vendor: VendorArg,
    /// Prepared image size: the output size with --format prepared, and the size at which the
    /// ground truth's breast area is measured (as `mam-e prepare --size` will).
    #[arg(long, default_value_t = 512)]
    size: usize,
    /// Caption template (with --format prepared).
    #[arg(long, value_enum, default_value = "fusion")]
    template: TemplateArg,
    /// Also write a contact sheet PNG: rows density A–D; columns CC, MLO for Siemens then Hologic.
    #[arg(long)]
    contact_sheet: Option<PathBuf>,
}

/// Ground truth for one phantom (a line of `phantom_labels.jsonl`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct GroundTruth {
    pub image_id: String,
    pub study_id: String,
    pub file: String,
    pub laterality: String,
    pub view: String,
    pub density: String,
    pub vendor: String,
    pub area_ratio: f64,
    pub area: String,
    pub dense_fraction: f64,
    pub seed: u64,
    pub lesions: Vec<LesionTruth>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct LesionTruth {
    pub kind: String,
    pub size_mm: f64,
    pub category: String,
    pub birads: u8,
    pub xmin: f64,
    pub ymin: f64,
    pub xmax: f64,
    pub ymax: f64,
}

/// The ground truth of a phantom whose prepared image has breast/image ratio `area_ratio`.
fn ground_truth(entry: &DatasetEntry, phantom: &Phantom, file: String, area_ratio: f64) -> GroundTruth {
    GroundTruth {
        image_id: entry.image_id.clone(),
        study_id: entry.study_id.clone(),
        file,
        laterality: entry.spec.laterality.letter().into(),
        view: entry.spec.view.word().into(),
        density: entry.spec.density.letter().to_string(),
        vendor: entry.spec.vendor.word().into(),
        area_ratio,
        area: Area::from_ratio(area_ratio).word().into(),
        dense_fraction: phantom.dense_fraction,
        seed: entry.spec.seed,
        lesions: phantom
            .lesions
            .iter()
            .map(|l| LesionTruth {
                kind: l.kind.name().into(),
                size_mm: l.size_mm,
                category: l.finding.category.clone(),
                birads: l.finding.birads.unwrap_or(0),
                xmin: l.finding.bbox.xmin,
                ymin: l.finding.bbox.ymin,
                xmax: l.finding.bbox.xmax,
                ymax: l.finding.bbox.ymax,
            })
            .collect(),
    }
}

fn ensure_empty(out: &Path) -> anyhow::Result<()> {
    if out.exists() && std::fs::read_dir(out).with_context(|| format!("{} is not a readable folder", out.display()))?.next().is_some() {
        bail!("{} already exists and is not empty: choose a new folder (nothing was written)", out.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.width < 64 || args.width > 4096 {
        bail!("--width {} is outside 64..=4096", args.width);
    }
    if !(0.0..=1.0).contains(&args.lesion_fraction) {
        bail!("--lesion-fraction {} is not in 0..=1", args.lesion_fraction);
    }
    if let Some(path) = &args.contact_sheet {
        contact_sheet(path, args.seed)?;
        println!("contact sheet: {}", path.display());
        if args.count == 0 {
            return Ok(());
        }
    }
    ensure_empty(&args.out)?;
    let vendors = match args.vendor {
        VendorArg::Siemens => vec![Vendor::Siemens],
        VendorArg::Hologic => vec![Vendor::Hologic],
        VendorArg::Both => vec![Vendor::Siemens, Vendor::Hologic],
    };
    let options = DatasetOptions { seed: args.seed, cols: args.width, lesion_fraction: args.lesion_fraction, vendors };
    let set = match args.format {
        Format::Prepared => Some(TrainingSet::create(&args.out, args.template.into())?),
        Format::Vindr => None,
    };
    if args.format == Format::Vindr {
        std::fs::create_dir_all(args.out.join("lesion_masks"))?;
    }
    let bar =
        ProgressBar::new(args.count as u64).with_style(ProgressStyle::with_template("phantoms [{bar:30}] {pos}/{len} {per_sec} eta {eta}").expect("template"));
    let started = Instant::now();
    let made: Vec<Made> = (0..args.count)
        .into_par_iter()
        .map(|index| {
            let made = make(&args, &options, set.as_ref(), index);
            bar.inc(1);
            made
        })
        .collect::<anyhow::Result<_>>()?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let mut truth_lines = String::new();
    for (_, truth, _) in &made {
        truth_lines.push_str(&serde_json::to_string(truth)?);
        truth_lines.push('\n');
    }
    write_atomic(&args.out.join("phantom_labels.jsonl"), truth_lines.as_bytes())?;
    match &set {
        None => write_vindr_csvs(&args.out, &made.iter().map(|(row, _, _)| row.clone()).collect::<Vec<_>>())?,
        Some(set) => {
            let records: Vec<Record> = made.into_iter().filter_map(|(_, _, r)| r).collect();
            let summary = set.finish(&records, &[])?;
            print!("{}", summary.table());
        }
    }
    println!(
        "{} phantoms ({}×{}) in {:.1} s: {:.1} images/s → {}",
        args.count,
        options.cols,
        options.cols * 5 / 4,
        seconds,
        args.count as f64 / seconds,
        args.out.display()
    );
    Ok(())
}

/// One phantom's CSV row, ground truth and (in a prepared set) training record.
type Made = (VindrRow, GroundTruth, Option<Record>);

/// Renders phantom `index` and writes it: as a DICOM file (with its lesion mask) in VinDr's
/// layout, or prepared into `set`.
fn make(args: &Args, options: &DatasetOptions, set: Option<&TrainingSet>, index: usize) -> anyhow::Result<Made> {
    let entry = dataset_entry(options, index);
    let phantom = render(&entry.spec, options.cols);
    let file = format!("images/{}/{}.dicom", entry.study_id, entry.image_id);
    // The prepared image's area ratio is the label; a prepared set has it already.
    let (record, area_ratio) = match set {
        None => {
            std::fs::create_dir_all(args.out.join("images").join(&entry.study_id))?;
            write_phantom(&args.out.join(&file), &phantom, &entry)?;
            if !phantom.lesions.is_empty() {
                let mask = gray_png(&phantom.lesion_mask, phantom.cols, phantom.rows)?;
                write_atomic(&args.out.join("lesion_masks").join(format!("{}.png", entry.image_id)), &mask)?;
            }
            (None, measured_area(&phantom, args.size).0)
        }
        Some(set) => {
            let boxes: Vec<_> = phantom.lesions.iter().map(|l| l.finding.bbox).collect();
            let prepared = prepare_pixels(&phantom.source_pixels(), entry.spec.laterality, &boxes, args.size, Scaling::Vendor);
            let labels = Labels {
                id: entry.image_id.clone(),
                laterality: entry.spec.laterality,
                view: entry.spec.view,
                density: Some(entry.spec.density),
                vendor: entry.spec.vendor.word().into(),
                split: entry.split.into(),
                lesion: !phantom.lesions.is_empty(),
            };
            (Some(set.write(&labels, &prepared)?), prepared.area_ratio)
        }
    };
    let truth = ground_truth(&entry, &phantom, file, area_ratio);
    let row = VindrRow {
        study_id: entry.study_id.clone(),
        series_id: entry.series_id.clone(),
        image_id: entry.image_id.clone(),
        laterality: entry.spec.laterality,
        view: entry.spec.view,
        height: phantom.rows,
        width: phantom.cols,
        density: entry.spec.density,
        split: entry.split.into(),
        findings: phantom.lesions.iter().map(|l| l.finding.clone()).collect(),
    };
    Ok((row, truth, record))
}

/// Rows density A–D; columns CC and MLO for Siemens, then Hologic; medium area; 256-pixel cells.
fn contact_sheet(path: &Path, seed: u64) -> anyhow::Result<()> {
    const CELL: usize = 256;
    const GAP: usize = 6;
    let columns = [(Vendor::Siemens, View::Cc), (Vendor::Siemens, View::Mlo), (Vendor::Hologic, View::Cc), (Vendor::Hologic, View::Mlo)];
    let (width, height) = (columns.len() * (CELL + GAP) + GAP, Density::ALL.len() * (CELL + GAP) + GAP);
    let mut sheet = RgbImage { width, height, pixels: vec![40; width * height * 3] };
    let cells: Vec<(usize, usize, Vec<u8>)> = Density::ALL
        .iter()
        .enumerate()
        .flat_map(|(row, &density)| columns.iter().enumerate().map(move |(col, &(vendor, view))| (row, col, density, vendor, view)))
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|(row, col, density, vendor, view)| {
            let spec =
                PhantomSpec { seed: seed ^ (row * 4 + col) as u64, view, laterality: Laterality::L, density, vendor, target_area: Area::Medium, lesions: 0 };
            (row, col, render(&spec, 512).prepared(CELL).gray)
        })
        .collect();
    for (row, col, gray) in cells {
        let (x0, y0) = (GAP + col * (CELL + GAP), GAP + row * (CELL + GAP));
        for y in 0..CELL {
            for x in 0..CELL {
                let i = ((y0 + y) * width + x0 + x) * 3;
                sheet.pixels[i..i + 3].fill(gray[y * CELL + x]);
            }
        }
    }
    let legend = "rows: density A, B, C, D; columns: siemens CC, siemens MLO, hologic CC, hologic MLO (MAM-E phantoms, prepared as for training)";
    write_atomic(path, &sheet.to_png(&[("Description", legend.to_string())])?)?;
    Ok(())
}
