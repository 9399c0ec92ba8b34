//! `mam-e generate` (healthy mammograms from a prompt) and `mam-e inpaint` (a lesion painted
//! into an image under a mask), on a diffusers-layout model or a mam-e package. They share every
//! sampling flag.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::tensor::{Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};

use super::{BackendArg, NoiseArg, PrecisionArg, SchedulerArg};
use crate::device::{Backend, GpuMemory, read_f32};
use crate::imaging::RgbImage;
use crate::package::{Defaults, MANIFEST, Manifest, ModelKind, load_model};
use crate::pipeline::StableDiffusion;
use crate::pipeline::image_processor::to_rgb8;
use crate::pipeline::output::{self, finish_image};
use crate::pipeline::text_to_image::{Denoising, GenerateParams};
use crate::weights::{read_latents, write_atomically, write_latents};

/// Flags common to `generate` and `inpaint`.
#[derive(Debug, clap::Args)]
pub struct SamplingArgs {
    /// A diffusers model folder (model_index.json, unet/, text_encoder/, vae/, tokenizer/, scheduler/)
    /// or a package made by `mam-e convert` (manifest.json and shards).
    #[arg(long)]
    model: PathBuf,
    /// What to steer away from (default: the package's, empty for MAM-E).
    #[arg(long)]
    negative_prompt: Option<String>,
    /// Denoising steps (default: the package's; MAM-E: 24, its GUI allows 10–50).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    steps: Option<u32>,
    /// Classifier-free guidance scale; ≤ 1 disables guidance (default: the package's; MAM-E: 6
    /// for healthy images, 3 for lesions).
    #[arg(long)]
    guidance: Option<f64>,
    /// Noise scheduler (default: the package's; MAM-E: dpm).
    #[arg(long, value_enum)]
    scheduler: Option<SchedulerArg>,
    /// Image height in pixels, a multiple of 8 (generate: the package's, or for a diffusers
    /// folder `unet.sample_size` × the VAE factor; inpaint: the input image's).
    #[arg(long)]
    height: Option<usize>,
    /// Image width in pixels, a multiple of 8 (as --height).
    #[arg(long)]
    width: Option<usize>,
    /// Seed of the initial noise (default: the package's; MAM-E: 1338).
    #[arg(long)]
    seed: Option<u64>,
    /// The generator that turns the seed into noise: `torch` draws exactly what diffusers draws
    /// with `torch.Generator("cpu").manual_seed(seed)` (so seeds match MAM-E's); `ours` is mam-e's
    /// earlier generator. Both give the web app's image for the same seed.
    #[arg(long, value_enum, default_value_t = NoiseArg::Torch)]
    noise: NoiseArg,
    /// Initial noise instead of the seed: a safetensors file with tensor `latents` [1,4,H/8,W/8]
    /// f32, before scaling by the scheduler's init_noise_sigma (diffusers' `latents=`).
    #[arg(long)]
    init_noise: Option<PathBuf>,
    /// Also write the final latents (before VAE decoding) as tensor `latents` to this file.
    #[arg(long)]
    save_latents: Option<PathBuf>,
    /// A right breast (MAM-E's model draws left-facing ones): generate mirrors its result;
    /// inpaint takes a right-facing image and mask, paints in the model's orientation, and
    /// mirrors the result back.
    #[arg(long)]
    right: bool,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    backend: BackendArg,
    /// Compute precision of the UNet and text encoder (f16 needs `--backend wgpu` on a GPU with f16 shaders).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    precision: PrecisionArg,
    /// Where to write the PNG (the parameters are embedded in it as text).
    #[arg(long)]
    output: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// What to generate, e.g. "a siemens mammogram in MLO view with high density and small area"
    /// (default: the package's prompt; MAM-E's GUI default for a diffusers folder).
    #[arg(long)]
    prompt: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
}

#[derive(Debug, clap::Args)]
pub struct InpaintArgs {
    /// The mammogram to paint into (PNG).
    #[arg(long)]
    image: PathBuf,
    /// Where to paint: a PNG of the same size, white (≥ 128) inside, black elsewhere.
    #[arg(long)]
    mask: PathBuf,
    /// The inpainting prompt (default: the package's; MAM-E's lesion tool: "a mammogram with a lesion").
    #[arg(long)]
    prompt: Option<String>,
    /// Paste the original image back outside the mask (by default the whole decoded image is
    /// written, as diffusers returns it).
    #[arg(long)]
    keep_outside: bool,
    #[command(flatten)]
    sampling: SamplingArgs,
}

impl SamplingArgs {
    /// Refuses flags that are wrong whatever the model, before the (slow) load.
    fn check(&self) -> anyhow::Result<()> {
        if let Some(guidance) = self.guidance
            && (!guidance.is_finite() || !(0.0..=50.0).contains(&guidance))
        {
            bail!("--guidance {guidance} is outside 0–50");
        }
        Ok(())
    }

    /// Flags over the model's defaults; `size` (inpainting: the image's) over the defaults' size.
    fn params(&self, prompt: Option<&str>, defaults: Defaults, size: Option<[usize; 2]>) -> anyhow::Result<GenerateParams> {
        let scheduler = match self.scheduler {
            Some(arg) => arg.into(),
            None => defaults.scheduler.parse()?,
        };
        let [height, width] = size.unwrap_or([defaults.height, defaults.width]);
        Ok(GenerateParams {
            prompt: prompt.map_or(defaults.prompt, str::to_string),
            negative_prompt: self.negative_prompt.clone().unwrap_or(defaults.negative_prompt),
            steps: self.steps.map_or(defaults.steps, |s| s as usize),
            guidance: self.guidance.unwrap_or(defaults.guidance),
            scheduler,
            height: self.height.unwrap_or(height),
            width: self.width.unwrap_or(width),
            seed: self.seed.unwrap_or(defaults.seed),
            noise: self.noise.into(),
        })
    }

    fn load(&self) -> anyhow::Result<StableDiffusion> {
        load_with_spinner(&self.model, self.backend, self.precision)
    }

    fn init_noise(&self, sd: &StableDiffusion) -> anyhow::Result<Option<Tensor<4>>> {
        Ok(match &self.init_noise {
            Some(path) => {
                let (shape, values) = read_latents(path)?;
                Some(Tensor::from_data(TensorData::new(values, shape), &sd.device))
            }
            None => None,
        })
    }

    /// The run's `parameters` record: see [`output::parameters`] (`keep_outside` for inpainting).
    fn parameters(&self, params: &GenerateParams, keep_outside: Option<bool>) -> serde_json::Value {
        output::parameters(params, keep_outside, self.right, &self.model.display().to_string(), concat!("mam-e ", env!("CARGO_PKG_VERSION")))
    }

    /// Runs the denoising loop with a progress bar, then decodes and writes the outputs.
    /// `keep`: for inpainting with `--keep-outside`, the original image and mask to paste back.
    fn finish(&self, sd: &StableDiffusion, mut run: Denoising<'_>, mut parameters: serde_json::Value, keep: Option<(&RgbImage, &[u8])>) -> anyhow::Result<()> {
        if run.truncated_tokens > 0 {
            eprintln!("warning: the prompt is longer than 77 tokens; the last {} were dropped", run.truncated_tokens);
        }
        let bar = ProgressBar::new(run.progress().1 as u64)
            .with_style(ProgressStyle::with_template("{spinner} denoising {bar:30} {pos}/{len} steps  {elapsed} (eta {eta})").context("progress template")?);
        let mut memory = GpuMemory::after_load(&sd.device);
        while run.step() {
            bar.inc(1);
            memory.iter_mut().for_each(|m| m.sample(&sd.device));
        }
        bar.finish_and_clear();
        if let Some(memory) = &memory {
            println!("GPU memory while denoising (burn's allocator): {memory}");
        }
        let latents = run.latents();
        if let Some(path) = &self.save_latents {
            let dims = latents.dims();
            write_latents(path, dims, &pollster::block_on(read_f32(latents.clone()))?)?;
        }
        let image = pollster::block_on(to_rgb8(sd.decode(latents)))?;
        if let Some(memory) = memory.as_mut() {
            memory.sample(&sd.device);
            println!("GPU memory with decoding (burn's allocator): {memory}");
        }
        let image = finish_image(image, keep, self.right);
        parameters["init_noise"] = self.init_noise.as_ref().map(|p| p.display().to_string()).into();
        write_atomically(&self.output, &image.to_png(&[("parameters", parameters.to_string())])?)?;
        println!("wrote {} ({}×{})", self.output.display(), image.width, image.height);
        Ok(())
    }
}

/// The settings a model starts from: a package's manifest `defaults`, or MAM-E's for a
/// diffusers folder (at the UNet's own size).
pub(super) fn model_defaults(model: &Path, sd: &StableDiffusion, kind: ModelKind) -> anyhow::Result<Defaults> {
    let manifest = model.join(MANIFEST);
    if !manifest.exists() {
        return Ok(Defaults::mam_e(kind, sd.default_size()));
    }
    let text = std::fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    Ok(Manifest::parse(&text)?.defaults)
}

/// Loads a model (package or diffusers folder) with a spinner, warning about scheduler keys it ignores.
pub(super) fn load_with_spinner(model: &Path, backend: BackendArg, precision: PrecisionArg) -> anyhow::Result<StableDiffusion> {
    let device = Backend::from(backend).device()?;
    let spinner = ProgressBar::new_spinner().with_message(format!("loading {}", model.display()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let sd = load_model(model, &device, precision.into())?;
    spinner.finish_and_clear();
    if let Some(warning) = sd.scheduler_config.ignored_keys_warning() {
        eprintln!("warning: {warning}");
    }
    Ok(sd)
}

fn read_png(path: &Path) -> anyhow::Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    RgbImage::from_png(&bytes).with_context(|| path.display().to_string())
}

pub fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let s = &args.sampling;
    s.check()?;
    let sd = s.load()?;
    let params = s.params(args.prompt.as_deref(), model_defaults(&s.model, &sd, ModelKind::TextToImage)?, None)?;
    let run = sd.start(&params, s.init_noise(&sd)?)?;
    s.finish(&sd, run, s.parameters(&params, None), None)
}

pub fn inpaint(args: InpaintArgs) -> anyhow::Result<()> {
    let s = &args.sampling;
    let image = read_png(&args.image)?;
    let mask = read_png(&args.mask)?;
    if (mask.width, mask.height) != (image.width, image.height) {
        bail!("the mask is {}×{} but the image is {}×{}", mask.width, mask.height, image.width, image.height);
    }
    s.check()?;
    let sd = s.load()?;
    let params = s.params(args.prompt.as_deref(), model_defaults(&s.model, &sd, ModelKind::Inpainting)?, Some([image.height, image.width]))?;
    let (image, mask) = image.to_model_orientation(&mask.to_gray(), s.right);
    let run = sd.start_inpaint(&params, &image, &mask, s.init_noise(&sd)?)?;
    let mut parameters = s.parameters(&params, Some(args.keep_outside));
    parameters["image"] = args.image.display().to_string().into();
    parameters["mask"] = args.mask.display().to_string().into();
    s.finish(&sd, run, parameters, args.keep_outside.then_some((&image, mask.as_slice())))
}
