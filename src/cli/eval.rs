//! `mam-e eval adherence`: does a model obey its prompts? Generates images over random fusion
//! prompts and measures each (area class, view by the pectoral muscle, density by dense-tissue
//! share; `data::measure`, with per-vendor gray levels learned from labelled images), printing
//! confusion matrices. `mam-e eval calibrate`: those levels from a labelled prepared set.
//! `mam-e eval inpainting`: do inpainted lesions stay inside their masks?

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::cli::BackendArg;
use crate::data::measure::{Calibration, Labelled, Measured, UNCALIBRATED_MUSCLE, calibrate, measure};
use crate::data::training_set::Record;
use crate::device::Backend;
use crate::imaging::RgbImage;
use crate::model::precision::Precision;
use crate::package::load_model;
use crate::pipeline::image_processor::{denormalize, preprocess, to_rgb8};
use crate::pipeline::text_to_image::GenerateParams;
use crate::prompt::{Area, Density, Priority, PromptSpec, Template, Vendor, View};
use crate::rng::NoiseRng;
use crate::schedulers::SchedulerKind;

#[derive(Debug, clap::Subcommand)]
pub enum EvalCommand {
    /// Generate over random prompts and measure whether each image obeys its prompt.
    Adherence(AdherenceArgs),
    /// Learn the gray levels `adherence` measures view and density with, per vendor, from a
    /// labelled prepared set (like the model's training data).
    Calibrate(CalibrateArgs),
    /// Inpaint the lesion boxes of a prepared lesion set and measure the change outside the masks.
    Inpainting(InpaintingArgs),
    /// A reader study's ratings (class, 0–4 rating) → ROC curve, AUROC with DeLong's 95 % CI.
    Roc(super::roc::RocArgs),
    /// MS-SSIM diversity, breast gray-level and area distributions of a synthetic set vs a real one.
    Fidelity(super::fidelity::FidelityArgs),
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: EvalCommand,
}

#[derive(Debug, clap::Args)]
pub struct AdherenceArgs {
    /// A model package or diffusers folder (text-to-image).
    #[arg(long, required_unless_present = "phantoms")]
    model: Option<PathBuf>,
    /// Measure phantoms (whose labels are known) instead of a model's images: the measurement's own
    /// accuracy. With --model, each phantom first goes through that model's VAE (encoded, decoded):
    /// the most its UNet could reach.
    #[arg(long)]
    phantoms: bool,
    #[arg(long, default_value_t = 100)]
    count: usize,
    #[arg(long, default_value_t = 25)]
    steps: usize,
    #[arg(long, default_value_t = 4.0)]
    guidance: f64,
    /// Image side (default: the model's).
    #[arg(long)]
    size: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write report.json, the first 16 images (images.png) and a prompt grid (grid.png:
    /// one row per prompt of GRID_PROMPTS, 4 seeds each; prompts listed in grid.txt).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendArg,
    /// Per-vendor gray levels from `mam-e eval calibrate` on labelled images like the model's
    /// training data. Without it they are learned from 160 labelled phantoms of another seed:
    /// right for models trained on phantoms (the demo), not for real mammograms.
    #[arg(long)]
    calibration: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// A prepared set (`prepare`, `phantom --format prepared`): its healthy/ images and their
    /// view, density and vendor labels.
    #[arg(long)]
    data: PathBuf,
    /// Where to write the levels (JSON) for `eval adherence --calibration`.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct InpaintingArgs {
    /// An inpainting model package or diffusers folder.
    #[arg(long)]
    model: PathBuf,
    /// A prepared set (its lesions/ folder is used).
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value_t = 20)]
    count: usize,
    #[arg(long, default_value_t = 25)]
    steps: usize,
    #[arg(long, default_value_t = 3.0)]
    guidance: f64,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendArg,
}

/// A confusion matrix: rows are what the prompt asked, columns what was measured.
fn matrix_text(title: &str, labels: &[&str], m: &[Vec<usize>]) -> String {
    let total: usize = m.iter().flatten().sum();
    let correct: usize = (0..m.len()).map(|i| m[i][i]).sum();
    let mut out = format!("{title}: {correct}/{total} = {:.1} %\n{:>12}", 100.0 * correct as f64 / total.max(1) as f64, "asked \\ got");
    for l in labels {
        out.push_str(&format!(" {l:>9}"));
    }
    out.push('\n');
    for (i, row) in m.iter().enumerate() {
        out.push_str(&format!("{:>12}", labels[i]));
        for v in row {
            out.push_str(&format!(" {v:>9}"));
        }
        out.push('\n');
    }
    out
}

fn position<T: PartialEq>(all: &[T], x: T) -> usize {
    all.iter().position(|a| *a == x).expect("member")
}

/// Tallies of a run.
struct Tally {
    area: Vec<Vec<usize>>,
    view: Vec<Vec<usize>>,
    density: Vec<Vec<usize>>,
    dense_sum: [f64; 4],
    dense_n: [usize; 4],
}

impl Tally {
    fn new() -> Tally {
        Tally { area: vec![vec![0; 3]; 3], view: vec![vec![0; 2]; 2], density: vec![vec![0; 4]; 4], dense_sum: [0.0; 4], dense_n: [0; 4] }
    }
    fn add(&mut self, asked: &PromptSpec, m: &Measured) {
        self.area[position(&Area::ALL, asked.area)][position(&Area::ALL, m.area)] += 1;
        self.view[position(&View::ALL, asked.view)][position(&View::ALL, m.view)] += 1;
        let d = position(&Density::ALL, asked.density);
        self.density[d][position(&Density::ALL, m.density)] += 1;
        self.dense_sum[d] += m.dense_fraction;
        self.dense_n[d] += 1;
    }
    fn report(&self) -> (String, serde_json::Value) {
        let means: Vec<f64> = (0..4).map(|i| self.dense_sum[i] / self.dense_n[i].max(1) as f64).collect();
        let monotone = means.windows(2).all(|w| w[0] < w[1]);
        let mut text = matrix_text("area", &["small", "medium", "big"], &self.area);
        text += &matrix_text("view", &["CC", "MLO"], &self.view);
        text += &matrix_text("density", &["very low", "low", "high", "very high"], &self.density);
        text += &format!(
            "mean dense fraction by asked density: {} (monotone: {})\n",
            means.iter().map(|m| format!("{m:.3}")).collect::<Vec<_>>().join(" < "),
            if monotone { "yes" } else { "NO" }
        );
        let json = json!({"area": self.area, "view": self.view, "density": self.density, "mean_dense_fraction": means, "density_monotone": monotone});
        (text, json)
    }
}

/// The rows of `grid.png`: contrasting prompts, so a reader can see each attribute change.
const GRID_PROMPTS: [(Vendor, View, Density, Area); 6] = [
    (Vendor::Siemens, View::Cc, Density::A, Area::Small),
    (Vendor::Siemens, View::Mlo, Density::C, Area::Medium),
    (Vendor::Siemens, View::Cc, Density::D, Area::Big),
    (Vendor::Hologic, View::Cc, Density::B, Area::Big),
    (Vendor::Hologic, View::Mlo, Density::D, Area::Medium),
    (Vendor::Hologic, View::Mlo, Density::A, Area::Small),
];

fn random_spec(rng: &mut NoiseRng) -> PromptSpec {
    let pick = |rng: &mut NoiseRng, n: usize| (rng.next_u64() % n as u64) as usize;
    PromptSpec {
        vendor: Vendor::ALL[pick(rng, 2)],
        view: View::ALL[pick(rng, 2)],
        density: Density::ALL[pick(rng, 4)],
        area: Area::ALL[pick(rng, 3)],
        priority: Priority::Density,
        template: Template::Fusion,
    }
}

/// The model's image side: a package's default height, or a diffusers folder's UNet
/// `sample_size` times the VAE factor.
fn default_size(model: &std::path::Path) -> anyhow::Result<usize> {
    let read =
        |p: PathBuf| -> anyhow::Result<serde_json::Value> { Ok(serde_json::from_str(&std::fs::read_to_string(&p).with_context(|| p.display().to_string())?)?) };
    if model.join("manifest.json").exists() {
        return read(model.join("manifest.json"))?["defaults"]["height"].as_u64().map(|v| v as usize).context("manifest without defaults.height");
    }
    let unet = read(model.join("unet/config.json"))?;
    let vae = read(model.join("vae/config.json"))?;
    let sample = unet["sample_size"].as_u64().unwrap_or(64) as usize;
    let levels = vae["block_out_channels"].as_array().map_or(4, |a| a.len());
    Ok(sample << (levels - 1))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        EvalCommand::Adherence(a) => adherence(a),
        EvalCommand::Calibrate(a) => calibrate_command(a),
        EvalCommand::Inpainting(a) => inpainting(a),
        EvalCommand::Roc(a) => super::roc::roc(a),
        EvalCommand::Fidelity(a) => super::fidelity::fidelity(a),
    }
}

fn adherence(args: AdherenceArgs) -> anyhow::Result<()> {
    // The model, loaded once, serves the random prompts and the grid.
    let device = Backend::from(args.backend).device()?;
    let sd = match &args.model {
        Some(model) => Some(load_model(model, &device, Precision::F32).with_context(|| format!("loading {}", model.display()))?),
        None => None,
    };
    let size = match (args.size, &args.model) {
        (Some(size), _) => size,
        (None, Some(model)) => default_size(model)?,
        (None, None) => 256,
    };
    if let (true, Some(sd), Some(model)) = (args.phantoms, &sd, &args.model)
        && sd.vae.encoder.is_none()
    {
        bail!(
            "{} has no VAE encoder (text-to-image packages ship the decoder only): with --phantoms, pass a model whose VAE has both halves (an inpainting package or a diffusers folder)",
            model.display()
        );
    }
    let calibration = match &args.calibration {
        Some(path) => read_calibration(path)?,
        None => {
            println!("levels learned from {PHANTOM_CALIBRATION_COUNT} labelled phantoms (pass --calibration from `mam-e eval calibrate` for other data)");
            phantom_calibration(args.seed ^ PHANTOM_CALIBRATION_SEED, PHANTOM_CALIBRATION_COUNT, size)
        }
    };
    print!("{}", calibration_text(&calibration));
    let mut rng = NoiseRng::new(args.seed ^ 0xADE5);
    let (mut tally, mut gallery) = (Tally::new(), Vec::new());
    let bar = ProgressBar::new(args.count as u64).with_style(ProgressStyle::with_template("eval [{bar:30}] {pos}/{len} eta {eta}").context("template")?);
    for i in 0..args.count {
        let (spec, image) = match &sd {
            _ if args.phantoms => phantom_case(&mut rng, size, sd.as_ref())?,
            Some(sd) => {
                let spec = random_spec(&mut rng);
                let params = GenerateParams {
                    prompt: spec.to_string(),
                    steps: args.steps,
                    guidance: args.guidance,
                    scheduler: SchedulerKind::Dpm,
                    height: size,
                    width: size,
                    seed: rng.next_u64() % 1_000_000,
                    ..GenerateParams::default()
                };
                (spec, sd.start(&params, None)?.finish_image()?)
            }
            None => unreachable!("clap requires --model unless --phantoms"),
        };
        tally.add(&spec, &measure(&image.to_gray(), size, calibration.levels(spec.vendor.word())));
        if i < 16 {
            gallery.push(image);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (text, mut json) = tally.report();
    json["calibration"] = serde_json::to_value(&calibration)?;
    print!("{text}");
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out)?;
        if let (Some(sd), false) = (&sd, args.phantoms) {
            write_grid(sd, &args, size, out)?;
        }
        crate::weights::write_atomically(&out.join("report.json"), serde_json::to_string_pretty(&json)?.as_bytes())?;
        if !gallery.is_empty() {
            crate::weights::write_atomically(&out.join("images.png"), &crate::train::grid(&gallery, 4).to_png(&[])?)?;
        }
        println!("wrote {}", out.display());
    }
    Ok(())
}

/// A random phantom prepared as `prepare` would, its area label what was measured when it was
/// made, sent through `sd`'s VAE when given; and the prompt it answers.
fn phantom_case(rng: &mut NoiseRng, size: usize, sd: Option<&crate::pipeline::StableDiffusion>) -> anyhow::Result<(PromptSpec, RgbImage)> {
    use crate::data::Laterality;
    use crate::data::phantom::{PhantomSpec, render};
    let mut spec = random_spec(rng);
    let phantom_spec = PhantomSpec {
        seed: rng.next_u64(),
        view: spec.view,
        laterality: Laterality::L,
        density: spec.density,
        vendor: spec.vendor,
        target_area: spec.area,
        lesions: 0,
    };
    let prepared = render(&phantom_spec, size).prepared(size);
    spec.area = Area::from_ratio(prepared.area_ratio);
    let image = RgbImage { width: size, height: size, pixels: prepared.gray.iter().flat_map(|&g| [g, g, g]).collect() };
    Ok((spec, if let Some(sd) = sd { vae_round_trip(sd, &image)? } else { image }))
}

/// `grid.png`: one row per prompt of [`GRID_PROMPTS`], 4 seeds each (the prompts in `grid.txt`).
fn write_grid(sd: &crate::pipeline::StableDiffusion, args: &AdherenceArgs, size: usize, out: &Path) -> anyhow::Result<()> {
    let (mut tiles, mut rows) = (Vec::new(), String::new());
    for (vendor, view, density, area) in GRID_PROMPTS {
        let prompt = PromptSpec { vendor, view, density, area, priority: Priority::Density, template: Template::Fusion }.to_string();
        for seed in 0..4 {
            let params = GenerateParams {
                prompt: prompt.clone(),
                steps: args.steps,
                guidance: args.guidance,
                height: size,
                width: size,
                seed: 1338 + seed,
                ..GenerateParams::default()
            };
            tiles.push(sd.start(&params, None)?.finish_image()?);
        }
        rows.push_str(&prompt);
        rows.push('\n');
    }
    crate::weights::write_atomically(&out.join("grid.png"), &crate::train::grid(&tiles, 4).to_png(&[("Description", rows.clone())])?)?;
    crate::weights::write_atomically(&out.join("grid.txt"), rows.as_bytes())?;
    Ok(())
}

/// How many labelled phantoms the default calibration learns from, and the seed it draws them
/// with (mixed with `--seed`, so they are never the phantoms being measured).
const PHANTOM_CALIBRATION_COUNT: usize = 160;
const PHANTOM_CALIBRATION_SEED: u64 = 0xCA11;

/// Levels learned from `count` labelled phantoms (both vendors) at `size`, prepared as `prepare`
/// would.
pub fn phantom_calibration(seed: u64, count: usize, size: usize) -> Calibration {
    use crate::data::phantom::{DatasetOptions, dataset_entry, render};
    let options = DatasetOptions { seed, cols: size, lesion_fraction: 0.0, vendors: Vendor::ALL.to_vec() };
    let mut groups: BTreeMap<String, Vec<Labelled>> = BTreeMap::new();
    for index in 0..count {
        let spec = dataset_entry(&options, index).spec;
        let prepared = render(&spec, size).prepared(size);
        groups.entry(spec.vendor.word().into()).or_default().push(Labelled { gray: prepared.gray, size, view: spec.view, density: Some(spec.density) });
    }
    calibrate_groups(groups)
}

fn calibrate_groups(groups: BTreeMap<String, Vec<Labelled>>) -> Calibration {
    Calibration { vendors: groups.into_iter().map(|(vendor, images)| (vendor, calibrate(&images))).collect() }
}

fn read_calibration(path: &Path) -> anyhow::Result<Calibration> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a calibration (write one with `mam-e eval calibrate`)", path.display()))
}

/// A line per vendor: its levels and how well they fit their labels.
fn calibration_text(calibration: &Calibration) -> String {
    let mut out = String::new();
    for (vendor, fit) in &calibration.vendors {
        out += &format!(
            "{vendor}: dense above {:.1}, muscle from {:.1} (on {} labelled images: view {:.1} %, density {:.1} %)\n",
            fit.levels.dense,
            fit.levels.muscle,
            fit.images,
            100.0 * fit.view_agreement,
            100.0 * fit.density_agreement
        );
    }
    for vendor in Vendor::ALL.iter().filter(|v| calibration.levels(v.word()).is_none()) {
        out += &format!("{}: not calibrated (density by each image's Otsu threshold, muscle from {UNCALIBRATED_MUSCLE:.1})\n", vendor.word());
    }
    out
}

fn calibrate_command(args: CalibrateArgs) -> anyhow::Result<()> {
    let healthy = if args.data.join("metadata.jsonl").exists() { args.data.clone() } else { args.data.join("healthy") };
    let metadata = healthy.join("metadata.jsonl");
    let text = std::fs::read_to_string(&metadata).with_context(|| format!("{} has no healthy/metadata.jsonl (a prepared set)", args.data.display()))?;
    let (mut groups, mut skipped): (BTreeMap<String, Vec<Labelled>>, Vec<String>) = Default::default();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let record: Record = serde_json::from_str(line).with_context(|| format!("{}:{}", metadata.display(), i + 1))?;
        match labelled(&healthy, &record) {
            Ok(image) => groups.entry(record.vendor.to_lowercase()).or_default().push(image),
            Err(reason) => skipped.push(format!("{}: {reason}", record.file_name)),
        }
    }
    for reason in &skipped {
        eprintln!("skipped {reason}");
    }
    if groups.is_empty() {
        bail!("{}: no usable labelled images", metadata.display());
    }
    let calibration = calibrate_groups(groups);
    print!("{}", calibration_text(&calibration));
    crate::weights::write_atomically(&args.out, serde_json::to_string_pretty(&calibration)?.as_bytes())?;
    println!("wrote {}", args.out.display());
    Ok(())
}

/// A prepared record's image and labels, or why it cannot be used.
fn labelled(folder: &Path, record: &Record) -> Result<Labelled, String> {
    let view =
        View::ALL.into_iter().find(|v| v.word().eq_ignore_ascii_case(&record.view)).ok_or_else(|| format!("view {:?} is neither CC nor MLO", record.view))?;
    let density = match record.density.as_deref() {
        None | Some("") => None,
        Some(letter) => Some(
            Density::ALL.into_iter().find(|d| letter.eq_ignore_ascii_case(&d.letter().to_string())).ok_or_else(|| format!("density {letter:?} is not A–D"))?,
        ),
    };
    let path = folder.join(&record.file_name);
    let bytes = std::fs::read(&path).map_err(|e| format!("{e}"))?;
    let image = RgbImage::from_png(&bytes).map_err(|e| e.to_string())?;
    if image.width != image.height {
        return Err(format!("{}×{} is not square (prepare makes square images)", image.width, image.height));
    }
    Ok(Labelled { gray: image.to_gray(), size: image.width, view, density })
}

/// An image encoded by the model's VAE (the posterior mean) and decoded again.
fn vae_round_trip(sd: &crate::pipeline::StableDiffusion, image: &RgbImage) -> anyhow::Result<RgbImage> {
    let x = preprocess(image, &sd.device);
    Ok(pollster::block_on(to_rgb8(denormalize(sd.vae.decode(sd.vae.encode(x)?.mean))))?)
}

fn inpainting(args: InpaintingArgs) -> anyhow::Result<()> {
    let lesions = if args.data.join("metadata.jsonl").exists() { args.data.clone() } else { args.data.join("lesions") };
    let text = std::fs::read_to_string(lesions.join("metadata.jsonl")).with_context(|| format!("{} has no metadata.jsonl", lesions.display()))?;
    let lines: Vec<serde_json::Value> = text.lines().take(args.count).map(serde_json::from_str).collect::<Result<_, _>>()?;
    if lines.is_empty() {
        bail!("no lesion images in {}", lesions.display());
    }
    let device = Backend::from(args.backend).device()?;
    let sd = load_model(&args.model, &device, Precision::F32)?;
    let (mut outside, mut inside, mut vae_outside, mut beyond_vae) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, line) in lines.iter().enumerate() {
        let read = |key: &str| -> anyhow::Result<RgbImage> {
            let path = lesions.join(line[key].as_str().context("metadata line without a file")?);
            Ok(RgbImage::from_png(&std::fs::read(&path)?)?)
        };
        let (image, mask) = (read("file_name")?, read("mask_file_name")?.to_gray());
        let params = GenerateParams {
            prompt: crate::prompt::LESION_PROMPT.into(),
            steps: args.steps,
            guidance: args.guidance,
            height: image.height,
            width: image.width,
            seed: 1337 + i as u64,
            ..GenerateParams::default()
        };
        let result = sd.start_inpaint(&params, &image, &mask, None)?.finish_image()?;
        // The VAE's own round trip: the floor under any change.
        let round_trip = vae_round_trip(&sd, &image)?;
        let original = image.to_gray();
        let change = |original: &[u8], other: &RgbImage| -> (f64, f64) {
            let (mut o, mut no, mut n, mut nn) = (0.0, 0usize, 0.0, 0usize);
            for (k, b) in other.to_gray().into_iter().enumerate() {
                let d = (original[k] as f64 - b as f64).abs();
                if mask[k] >= 128 {
                    n += d;
                    nn += 1;
                } else {
                    o += d;
                    no += 1;
                }
            }
            (o / no.max(1) as f64, n / nn.max(1) as f64)
        };
        let (o, n) = change(&original, &result);
        outside.push(o);
        inside.push(n);
        vae_outside.push(change(&original, &round_trip).0);
        // What the UNet itself changed: the result against the VAE's round trip of the input.
        beyond_vae.push(change(&round_trip.to_gray(), &result).0);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "{} lesion cases: mean absolute change outside the masks {:.2}/255 (target ≤ 2), inside {:.2}/255; the VAE's own round trip changes the outside by {:.2}/255, the UNet (result against that round trip) by {:.2}/255",
        lines.len(),
        mean(&outside),
        mean(&inside),
        mean(&vae_outside),
        mean(&beyond_vae)
    );
    Ok(())
}
