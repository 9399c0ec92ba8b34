//! `mam-e eval fidelity --real DIR --synthetic DIR`: MS-SSIM diversity of each set (overall and
//! per prompt), the gray-level distribution of breast pixels and its distance to the real set's,
//! and the breast-area distribution (weight-free); FID and KID on the FID Inception's features
//! when `--inception` names its weights.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::data::training_set::Record;
use crate::eval::fid::{Features, frechet_distance};
use crate::eval::fidelity::{AreaSummary, Diversity, area_summary, breast_histogram, diversity, sample_pairs, wasserstein};
use crate::eval::inception::{FEATURES, FidInception};
use crate::eval::kid::kid;
use crate::eval::ms_ssim::{MIN_SIDE, Plane};
use crate::imaging::RgbImage;
use crate::imaging::resize;

#[derive(Debug, clap::Args)]
pub struct FidelityArgs {
    /// The real images: a prepared set (healthy/ and lesions/ with metadata.jsonl) or a folder of PNGs.
    #[arg(long)]
    real: PathBuf,
    /// The synthetic images, as --real (e.g. a `mam-e synth` output).
    #[arg(long)]
    synthetic: PathBuf,
    /// MS-SSIM pairs per set and per prompt group (all pairs when there are fewer).
    #[arg(long, default_value_t = 200)]
    pairs: usize,
    /// Seeds the choice of MS-SSIM pairs and of KID subsets.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Resize every image to SIZE×SIZE (antialiased bilinear, as `prepare`) first: needed when
    /// sizes differ, or are below MS-SSIM's 161 pixels.
    #[arg(long)]
    size: Option<usize>,
    /// The FID Inception weights (pytorch-fid's pt_inception-2015-12-05 converted to
    /// safetensors; docs/assessment.md shows how): FID and KID are computed when given.
    #[arg(long)]
    inception: Option<PathBuf>,
    /// KID: the number of random subsets (torch-fidelity's default).
    #[arg(long, default_value_t = 100)]
    kid_subsets: usize,
    /// KID: images per subset (at most the smaller set's size).
    #[arg(long, default_value_t = 1000)]
    kid_subset_size: usize,
    /// Images per Inception batch.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// A set's images (gray, as f64, resized by `--size`; and as read, for Inception) with their
/// prompts when the set has metadata.
struct ImageSet {
    images: Vec<Plane>,
    originals: Vec<RgbImage>,
    prompts: Vec<Option<String>>,
    skipped: Vec<String>,
}

fn load_set(root: &Path, size: Option<usize>) -> anyhow::Result<ImageSet> {
    let mut files: Vec<(PathBuf, Option<String>)> = Vec::new();
    let mut labelled = false;
    for folder in ["healthy", "lesions"] {
        let metadata = root.join(folder).join("metadata.jsonl");
        let Ok(text) = std::fs::read_to_string(&metadata) else { continue };
        labelled = true;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let record: Record = serde_json::from_str(line).with_context(|| format!("{}:{}", metadata.display(), i + 1))?;
            files.push((root.join(folder).join(&record.file_name), Some(record.prompt)));
        }
    }
    if !labelled {
        let entries = std::fs::read_dir(root).with_context(|| format!("reading {}", root.display()))?;
        let mut pngs: Vec<PathBuf> =
            entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"))).collect();
        pngs.sort();
        files = pngs.into_iter().map(|p| (p, None)).collect();
    }
    let mut set = ImageSet { images: Vec::new(), originals: Vec::new(), prompts: Vec::new(), skipped: Vec::new() };
    for (path, prompt) in files {
        let decoded = std::fs::read(&path).map_err(|e| e.to_string()).and_then(|bytes| RgbImage::from_png(&bytes).map_err(|e| e.to_string()));
        let image = match decoded {
            Ok(image) => image,
            Err(e) => {
                set.skipped.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let gray: Vec<f32> = image.to_gray().iter().map(|&g| g as f32).collect();
        let (width, height, values) = match size {
            Some(s) if (image.width, image.height) != (s, s) => {
                (s, s, resize(&gray, image.width, image.height, s, s).iter().map(|&v| v.clamp(0.0, 255.0).round() as f64).collect())
            }
            _ => (image.width, image.height, gray.iter().map(|&v| v as f64).collect()),
        };
        set.images.push(Plane { width, height, values });
        set.originals.push(image);
        set.prompts.push(prompt);
    }
    if set.images.is_empty() {
        bail!(
            "{}: no readable images (a prepared set, or a folder of PNGs){}",
            root.display(),
            if set.skipped.is_empty() { String::new() } else { format!("; skipped: {}", set.skipped.join("; ")) }
        );
    }
    let first = (set.images[0].width, set.images[0].height);
    if let Some(other) = set.images.iter().find(|p| (p.width, p.height) != first) {
        bail!(
            "{}: images of different sizes ({}×{} and {}×{}): give --size N to resize them all to N×N",
            root.display(),
            first.0,
            first.1,
            other.width,
            other.height
        );
    }
    if first.0.min(first.1) < MIN_SIDE {
        bail!("{}: {}×{} images are below MS-SSIM's {MIN_SIDE} pixels: give --size N (≥ {MIN_SIDE}) to resize them", root.display(), first.0, first.1);
    }
    Ok(set)
}

/// Diversity overall and per prompt (groups of at least two images).
fn set_diversity(set: &ImageSet, pairs: usize, seed: u64, bar: &ProgressBar) -> anyhow::Result<(Option<Diversity>, BTreeMap<String, Diversity>)> {
    let measure = |indices: &[usize]| -> anyhow::Result<Option<Diversity>> {
        let chosen = sample_pairs(indices.len(), pairs, seed);
        if chosen.is_empty() {
            return Ok(None);
        }
        let planes: Vec<Plane> = indices.iter().map(|&i| set.images[i].clone()).collect();
        let d = diversity(&planes, &chosen).map_err(anyhow::Error::msg)?;
        bar.inc(chosen.len() as u64);
        Ok(Some(d))
    };
    let overall = measure(&(0..set.images.len()).collect::<Vec<_>>())?;
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, prompt) in set.prompts.iter().enumerate() {
        if let Some(p) = prompt {
            groups.entry(p.clone()).or_default().push(i);
        }
    }
    let mut per_prompt = BTreeMap::new();
    for (prompt, indices) in groups {
        if let Some(d) = measure(&indices)? {
            per_prompt.insert(prompt, d);
        }
    }
    Ok((overall, per_prompt))
}

/// The FID Inception's features of every image of a set, batch by batch.
fn inception_features(model: &FidInception, set: &ImageSet, batch: usize, bar: &ProgressBar) -> Features {
    let mut values = Vec::with_capacity(set.originals.len() * FEATURES);
    for chunk in set.originals.chunks(batch.max(1)) {
        let images: Vec<&RgbImage> = chunk.iter().collect();
        values.extend(model.features(&images).into_iter().map(f64::from));
        bar.inc(chunk.len() as u64);
    }
    Features::new(FEATURES, values)
}

/// FID and KID of the synthetic set against the real one, on the FID Inception's features.
fn inception_distances(args: &FidelityArgs, weights: &Path, real: &ImageSet, synthetic: &ImageSet) -> anyhow::Result<serde_json::Value> {
    let bytes = std::fs::read(weights).with_context(|| {
        format!(
            "the FID Inception weights {} cannot be read (docs/assessment.md: convert pytorch-fid's pt_inception-2015-12-05-6726825d.pth)",
            weights.display()
        )
    })?;
    let model = FidInception::from_safetensors(&bytes, &Device::flex()).map_err(|e| anyhow::anyhow!("{}: {e}", weights.display()))?;
    let bar = ProgressBar::new((real.originals.len() + synthetic.originals.len()) as u64)
        .with_style(ProgressStyle::with_template("{bar:30} {pos}/{len} Inception features  {elapsed} (eta {eta})").context("template")?);
    let (a, b) = (inception_features(&model, real, args.batch, &bar), inception_features(&model, synthetic, args.batch, &bar));
    bar.finish_and_clear();
    let fid = frechet_distance(&a, &b).map_err(anyhow::Error::msg)?;
    let kid = kid(&a, &b, args.kid_subsets, args.kid_subset_size, args.seed).map_err(anyhow::Error::msg)?;
    println!("FID {fid:.6}   KID {:.4e} ± {:.1e} ({} subsets of {})   weights {}", kid.mean, kid.sd, kid.subsets, kid.subset_size, weights.display());
    Ok(json!({ "fid": fid, "kid": kid, "weights": weights.display().to_string(), "weights_sha256": crate::package::hex(&Sha256::digest(&bytes)) }))
}

pub fn fidelity(args: FidelityArgs) -> anyhow::Result<()> {
    if let Some(s) = args.size.filter(|&s| s < MIN_SIDE) {
        bail!("--size {s} is below MS-SSIM's {MIN_SIDE} pixels");
    }
    if let Some(weights) = args.inception.as_ref().filter(|w| !w.is_file()) {
        bail!(
            "the FID Inception weights {} do not exist: convert pytorch-fid's pt_inception-2015-12-05-6726825d.pth to safetensors (docs/assessment.md)",
            weights.display()
        );
    }
    let real = load_set(&args.real, args.size)?;
    let synthetic = load_set(&args.synthetic, args.size)?;
    let bar = ProgressBar::new_spinner().with_style(ProgressStyle::with_template("{spinner} MS-SSIM pairs: {pos}  {elapsed}").context("template")?);
    let mut report = serde_json::Map::new();
    let real_histogram = breast_histogram(&real.images);
    for (name, set, path) in [("real", &real, &args.real), ("synthetic", &synthetic, &args.synthetic)] {
        let (overall, per_prompt) = set_diversity(set, args.pairs, args.seed, &bar)?;
        let area: AreaSummary = area_summary(&set.images);
        let histogram = breast_histogram(&set.images);
        let mean_level: f64 = histogram.iter().enumerate().map(|(l, p)| l as f64 * p).sum();
        report.insert(
            name.into(),
            json!({
                "folder": path.display().to_string(), "images": set.images.len(), "skipped": set.skipped,
                "ms_ssim": overall, "ms_ssim_per_prompt": per_prompt, "area": area,
                "breast_mean_gray": mean_level, "breast_gray_wasserstein_to_real": wasserstein(&histogram, &real_histogram),
            }),
        );
    }
    bar.finish_and_clear();
    println!("{:<10} {:>7} {:>28} {:>10} {:>12} {:>16}", "set", "images", "MS-SSIM mean ± sd (pairs)", "area", "breast gray", "gray W1 to real");
    for name in ["real", "synthetic"] {
        let r = &report[name];
        let ms = match r["ms_ssim"].as_object() {
            Some(d) => format!("{:.4} ± {:.4} ({})", d["ms_ssim_mean"].as_f64().unwrap_or(f64::NAN), d["ms_ssim_sd"].as_f64().unwrap_or(f64::NAN), d["pairs"]),
            None => "fewer than 2".into(),
        };
        println!(
            "{name:<10} {:>7} {ms:>28} {:>10.3} {:>12.1} {:>16.2}",
            r["images"].as_u64().unwrap_or(0),
            r["area"]["mean_ratio"].as_f64().unwrap_or(f64::NAN),
            r["breast_mean_gray"].as_f64().unwrap_or(f64::NAN),
            r["breast_gray_wasserstein_to_real"].as_f64().unwrap_or(f64::NAN)
        );
        for skipped in r["skipped"].as_array().into_iter().flatten() {
            println!("  skipped {}", skipped.as_str().unwrap_or_default());
        }
    }
    println!("MS-SSIM: lower is more diverse (pytorch-msssim's ms_ssim over seeded pairs); per-prompt figures in the JSON report");
    match &args.inception {
        Some(weights) => {
            report.insert("inception".into(), inception_distances(&args, weights, &real, &synthetic)?);
        }
        None => println!("FID, KID: not computed (give --inception with the FID Inception weights; docs/assessment.md)"),
    }
    if let Some(path) = &args.json {
        report.insert("pairs_per_group".into(), args.pairs.into());
        report.insert("seed".into(), args.seed.into());
        report.insert("size".into(), args.size.into());
        crate::atomic::write(path, &serde_json::to_vec_pretty(&serde_json::Value::Object(report))?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
