//! `mam-e synth`: a labelled synthetic dataset of N images (healthy, and lesion cases inpainted
//! into them), one shard of it, or `mam-e synth merge` of the shards' parts. See `crate::synth`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};

use super::generate::{load_with_spinner, model_defaults};
use super::phantom::TemplateArg;
use super::{BackendArg, NoiseArg, PrecisionArg, SchedulerArg};
use crate::imaging::RgbImage;
use crate::package::{Defaults, ModelKind};
use crate::pipeline::StableDiffusion;
use crate::pipeline::inpaint::INPAINT_CHANNELS;
use crate::pipeline::text_to_image::GenerateParams;
use crate::prompt::{Template, Vendor};
use crate::schedulers::SchedulerKind;
use crate::synth::labels::{BoxSize, LabelSource, Proportions};
use crate::synth::output::{Output, SynthRecord, merge};
use crate::synth::{Format, ModelRef, Sampling, Settings, Shard, Synthesizer};
use crate::train::grid;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    merge: Option<MergeCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Subcommand)]
enum MergeCommand {
    /// Join the parts of a sharded run into one dataset (checks every image is there once).
    Merge {
        /// The parts' folders (`OUT/part-*`).
        #[arg(required = true)]
        parts: Vec<PathBuf>,
        /// The merged dataset's folder (new or empty).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The text-to-image model (package or diffusers folder) that makes the healthy images.
    #[arg(long, required = true)]
    model: Option<PathBuf>,
    /// The inpainting model that paints the lesions (needed when there are lesion cases).
    #[arg(long)]
    inpaint_model: Option<PathBuf>,
    /// How many images in the whole dataset (over all shards).
    #[arg(long, required = true)]
    count: Option<usize>,
    /// The dataset's folder; a shard writes its part into OUT/part-K-of-N.
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// Decides every image: image i's labels, box and noise (seed + i) come from (seed, i).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Which captions the model was trained on (default: the package's, else fusion).
    #[arg(long, value_enum)]
    template: Option<TemplateArg>,
    /// Vendor shares, e.g. siemens=0.5,hologic=0.5 (default: even for fusion; the OMI-H model's
    /// hologic, the VinDr model's siemens).
    #[arg(long, conflicts_with = "like")]
    vendor: Option<String>,
    /// View shares, e.g. cc=0.5,mlo=0.5 (default: even).
    #[arg(long, conflicts_with = "like")]
    view: Option<String>,
    /// BI-RADS density shares, e.g. a=0.1,b=0.4,c=0.4,d=0.1 (default: even).
    #[arg(long, conflicts_with = "like")]
    density: Option<String>,
    /// Breast area shares, e.g. small=0.3,medium=0.4,big=0.3 (default: even).
    #[arg(long, conflicts_with = "like")]
    area: Option<String>,
    /// Laterality shares, e.g. l=0.5,r=0.5 (default: even).
    #[arg(long, conflicts_with = "like")]
    laterality: Option<String>,
    /// Share of lesion cases (0–1).
    #[arg(long, default_value_t = 0.0, conflicts_with = "like")]
    lesion_fraction: f64,
    /// A prepared set (`mam-e prepare` or `synth` output) whose joint label distribution, lesion
    /// share and box sizes (25th–75th percentile) to copy.
    #[arg(long)]
    like: Option<PathBuf>,
    /// Lesion box sides in pixels, MIN-MAX (default: from --like, else 10–20 % of the image side).
    #[arg(long)]
    box_size: Option<String>,
    /// Image files: PNG (with their parameters) or DICOM MG marked synthetic (+ labels.csv for `prepare --csv`).
    #[arg(long, value_enum, default_value_t = FormatArg::Png)]
    format: FormatArg,
    /// Images denoised together in one UNet batch (the same images whatever the batch size).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    batch_size: u32,
    /// This process's share: shard K of N (images i with i mod N = K). Default: from Slurm's
    /// SLURM_ARRAY_TASK_ID / _COUNT, or Kubernetes' JOB_COMPLETION_INDEX with --shards.
    #[arg(long, conflicts_with = "shards")]
    shard: Option<String>,
    /// The number of shards, for a Kubernetes Indexed Job (its completions).
    #[arg(long)]
    shards: Option<usize>,
    /// Healthy images' denoising steps (default: the model's).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    steps: Option<u32>,
    /// Healthy images' guidance scale (default: the model's).
    #[arg(long)]
    guidance: Option<f64>,
    /// Healthy images' scheduler (default: the model's).
    #[arg(long, value_enum)]
    scheduler: Option<SchedulerArg>,
    /// Lesion inpainting steps (default: the inpainting model's).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    lesion_steps: Option<u32>,
    /// Lesion inpainting guidance (default: the inpainting model's).
    #[arg(long)]
    lesion_guidance: Option<f64>,
    #[arg(long, value_enum, default_value_t = NoiseArg::Torch)]
    noise: NoiseArg,
    /// Also write a contact sheet PNG (PNG format only): lesion cases as healthy original |
    /// with the lesion | its mask | its box in red, two per row; then healthy images, eight per row.
    #[arg(long)]
    contact_sheet: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    backend: BackendArg,
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    precision: PrecisionArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Png,
    Dicom,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.merge {
        Some(MergeCommand::Merge { parts, out }) => {
            let merged = merge(&parts, &out).map_err(anyhow::Error::msg)?;
            print!("{}", merged.summary.table());
            println!("merged {} parts: {} images in {}", merged.parts, merged.images, out.display());
            Ok(())
        }
        None => synthesize(args.run),
    }
}

/// A guidance flag's value, checked.
fn guidance(value: Option<f64>, flag: &str) -> anyhow::Result<Option<f64>> {
    match value {
        Some(g) if !g.is_finite() || !(0.0..=50.0).contains(&g) => bail!("{flag} {g} is outside 0–50"),
        other => Ok(other),
    }
}

impl RunArgs {
    fn proportions(&self, template: Template) -> Result<LabelSource, String> {
        fn parse<T: crate::synth::labels::LabelValue>(flag: &Option<String>) -> Result<Proportions<T>, String> {
            flag.as_deref().map_or(Ok(Proportions::uniform()), Proportions::parse)
        }
        let vendor = match (&self.vendor, template) {
            (None, Template::OmiH) => Proportions::only(&[Vendor::Hologic]),
            (None, Template::Vindr) => Proportions::only(&[Vendor::Siemens]),
            _ => parse(&self.vendor)?,
        };
        if !(0.0..=1.0).contains(&self.lesion_fraction) {
            return Err(format!("--lesion-fraction {} is outside 0–1", self.lesion_fraction));
        }
        Ok(LabelSource::Proportions {
            vendor,
            view: parse(&self.view)?,
            density: parse(&self.density)?,
            area: parse(&self.area)?,
            laterality: parse(&self.laterality)?,
            lesion_fraction: self.lesion_fraction,
        })
    }

    fn shard(&self) -> anyhow::Result<Option<Shard>> {
        if let Some(spec) = &self.shard {
            return Ok(Some(Shard::parse(spec).map_err(anyhow::Error::msg)?));
        }
        Shard::from_env(|name| std::env::var(name).ok(), self.shards).map_err(anyhow::Error::msg)
    }
}

fn sampling(model: &Path, params: &GenerateParams, prompt: Option<String>) -> anyhow::Result<Sampling> {
    Ok(Sampling {
        model: ModelRef::of(model).with_context(|| format!("hashing {}", model.display()))?,
        prompt,
        negative_prompt: params.negative_prompt.clone(),
        steps: params.steps,
        guidance: params.guidance,
        scheduler: params.scheduler.name().into(),
        noise: params.noise.name().into(),
        height: params.height,
        width: params.width,
    })
}

fn params_from(
    defaults: &Defaults,
    steps: Option<u32>,
    guidance: Option<f64>,
    scheduler: Option<SchedulerArg>,
    noise: NoiseArg,
) -> anyhow::Result<GenerateParams> {
    let base = defaults.params();
    Ok(GenerateParams {
        steps: steps.map_or(base.steps, |s| s as usize),
        guidance: guidance.unwrap_or(base.guidance),
        scheduler: match scheduler {
            Some(arg) => arg.into(),
            None => defaults.scheduler.parse::<SchedulerKind>()?,
        },
        seed: 0,
        noise: noise.into(),
        ..base
    })
}

fn synthesize(args: RunArgs) -> anyhow::Result<()> {
    let (Some(model), Some(count), Some(out)) = (&args.model, args.count, &args.out) else { bail!("give --model, --count and --out") };
    if count == 0 {
        bail!("--count must be at least 1");
    }
    let (guidance_healthy, guidance_lesion) = (guidance(args.guidance, "--guidance")?, guidance(args.lesion_guidance, "--lesion-guidance")?);
    let shard = args.shard()?;
    if args.contact_sheet.is_some() && args.format != FormatArg::Png {
        bail!("--contact-sheet needs --format png");
    }
    let healthy = load_with_spinner(model, args.backend, args.precision)?;
    if healthy.unet.in_channels() != healthy.unet.out_channels() {
        bail!("--model {} is an inpainting model: give a text-to-image model (and this one as --inpaint-model)", model.display());
    }
    let defaults = model_defaults(model, &healthy, ModelKind::TextToImage)?;
    let template = args.template.map(Template::from).or(defaults.template).unwrap_or_default();
    let healthy_params = params_from(&defaults, args.steps, guidance_healthy, args.scheduler, args.noise)?;
    let size = healthy_params.width.min(healthy_params.height);
    let (labels, like_boxes) = match &args.like {
        Some(root) => LabelSource::like(root, size).map_err(anyhow::Error::msg)?,
        None => (args.proportions(template).map_err(anyhow::Error::msg)?, None),
    };
    let boxes = match &args.box_size {
        Some(spec) => BoxSize::parse(spec).map_err(anyhow::Error::msg)?,
        None => like_boxes.unwrap_or(BoxSize::default_for(size)),
    };
    boxes.check(size).map_err(anyhow::Error::msg)?;
    let inpaint = load_inpaint_model(&args, &labels)?;
    let lesion_params = match &inpaint {
        Some((path, sd)) => {
            let defaults = model_defaults(path, sd, ModelKind::Inpainting)?;
            let params = params_from(&defaults, args.lesion_steps, guidance_lesion, None, args.noise)?;
            Some((path, sd, GenerateParams { height: healthy_params.height, width: healthy_params.width, ..params }))
        }
        None => None,
    };
    let settings = Settings {
        count,
        seed: args.seed,
        template,
        labels: labels.describe(),
        box_size: format!("width {}–{} px, height {}–{} px", boxes.width.0, boxes.width.1, boxes.height.0, boxes.height.1),
        format: match args.format {
            FormatArg::Png => Format::Png,
            FormatArg::Dicom => Format::Dicom,
        },
        compute: format!("{:?} {:?}", args.backend, args.precision).to_lowercase(),
        healthy: sampling(model, &healthy_params, None)?,
        lesion: match &lesion_params {
            Some((path, _, params)) => Some(sampling(path, params, Some(params.prompt.clone()))?),
            None => None,
        },
        software: concat!("mam-e ", env!("CARGO_PKG_VERSION")).into(),
    };
    let root = match shard {
        Some(shard) => out.join(shard.folder()),
        None => out.clone(),
    };
    let output = Output::create(&root, &settings).map_err(anyhow::Error::msg)?;
    let lesion = lesion_params.map(|(_, sd, params)| (sd, params));
    let synthesizer = Synthesizer { settings, labels, boxes, healthy: &healthy, healthy_params, lesion };
    let indices: Vec<usize> = shard.unwrap_or(Shard { index: 0, count: 1 }).indices(count).collect();
    let records = make_images(&synthesizer, &output, &indices, args.batch_size as usize, shard)?;
    if let Some(path) = &args.contact_sheet {
        contact_sheet(&output.root, &records, path)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Up to 4 lesion cases (original | with the lesion | its mask | its box in red), two per row,
/// then up to 16 healthy images, eight per row, from the files written.
fn contact_sheet(root: &Path, records: &[SynthRecord], path: &Path) -> anyhow::Result<()> {
    let read = |folder: &str, name: &str| -> anyhow::Result<RgbImage> {
        let file = root.join(folder).join(name);
        RgbImage::from_png(&std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?).with_context(|| file.display().to_string())
    };
    let mut sorted: Vec<&SynthRecord> = records.iter().collect();
    sorted.sort_by_key(|r| r.index);
    let mut tiles = Vec::new();
    for r in sorted.iter().filter(|r| r.record.is_lesion()).take(4) {
        let lesion = read("lesions", &r.record.file_name)?;
        let mut outlined = lesion.clone();
        for b in &r.record.boxes {
            for y in b.y0..b.y1 {
                for x in b.x0..b.x1 {
                    if y == b.y0 || y + 1 == b.y1 || x == b.x0 || x + 1 == b.x1 {
                        outlined.pixels[(y * lesion.width + x) * 3..][..3].copy_from_slice(&[230, 40, 40]);
                    }
                }
            }
        }
        let mask = read("lesions", r.record.mask_file_name.as_deref().unwrap_or_default())?;
        tiles.extend([read("lesions", r.original_file_name.as_deref().unwrap_or_default())?, lesion, mask, outlined]);
    }
    let blank = |like: &RgbImage| RgbImage { width: like.width, height: like.height, pixels: vec![30; like.pixels.len()] };
    while tiles.len() % 8 != 0 {
        tiles.push(blank(&tiles[0]));
    }
    for r in sorted.iter().filter(|r| !r.record.is_lesion()).take(16) {
        tiles.push(read("healthy", &r.record.file_name)?);
    }
    if tiles.is_empty() {
        bail!("no images for the contact sheet");
    }
    let legend =
        "MAM-E synthetic dataset (mam-e synth): lesion cases as healthy original | with the inpainted lesion | its mask | its box; then healthy images";
    crate::atomic::write(path, &grid(&tiles, 8).to_png(&[("Description", legend.to_string())])?)?;
    Ok(())
}

/// The inpainting model, when lesion cases need one; refuses a text-to-image model there.
fn load_inpaint_model(args: &RunArgs, labels: &LabelSource) -> anyhow::Result<Option<(PathBuf, StableDiffusion)>> {
    match (&args.inpaint_model, labels.has_lesions()) {
        (None, true) => bail!("lesion cases need --inpaint-model (an inpainting package such as static/models/demo-inpaint)"),
        (None, false) => Ok(None),
        (Some(path), _) => {
            let sd = load_with_spinner(path, args.backend, args.precision)?;
            if sd.unet.in_channels() != INPAINT_CHANNELS {
                bail!(
                    "--inpaint-model {} is a text-to-image model (its UNet takes {} channels, an inpainting UNet {INPAINT_CHANNELS}): give an inpainting package",
                    path.display(),
                    sd.unet.in_channels()
                );
            }
            Ok(Some((path.clone(), sd)))
        }
    }
}

/// Makes the images of `indices` not finished yet, `batch` at a time, then the metadata; returns
/// the records of all of them.
fn make_images(synthesizer: &Synthesizer, output: &Output, indices: &[usize], batch: usize, shard: Option<Shard>) -> anyhow::Result<Vec<SynthRecord>> {
    let plans: Vec<_> = indices.iter().map(|&i| synthesizer.plan(i)).collect();
    let mut records = Vec::new();
    let mut pending = Vec::new();
    for plan in plans {
        match output.finished(&plan.id) {
            Some(record) => records.push(record),
            None => pending.push(plan),
        }
    }
    let resumed = records.len();
    let bar = ProgressBar::new(indices.len() as u64)
        .with_style(ProgressStyle::with_template("synth [{bar:30}] {pos}/{len} images  {elapsed} (eta {eta})").context("progress template")?);
    bar.set_position(resumed as u64);
    let started = Instant::now();
    for chunk in pending.chunks(batch) {
        for image in synthesizer.run_batch(chunk)? {
            let record = output.write(&image).map_err(|e| anyhow!("cannot write {} into {}: {e}", image.plan.id, output.root.display()))?;
            records.push(record);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let made = pending.len();
    let summary = output.finish(&records, shard).with_context(|| format!("writing the metadata of {}", output.root.display()))?;
    print!("{}", summary.table());
    let seconds = started.elapsed().as_secs_f64();
    let rate = if made > 0 { format!(" ({:.1} images/minute)", made as f64 * 60.0 / seconds) } else { String::new() };
    let part = shard.map(|s| format!(", shard {}/{}", s.index, s.count)).unwrap_or_default();
    println!("{made} images made in {seconds:.1} s{rate}, {resumed} already there{part}: {}", output.root.display());
    Ok(records)
}
