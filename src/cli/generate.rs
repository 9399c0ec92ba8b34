//! `mam-e generate` (healthy mammograms from a prompt) and `mam-e inpaint` (a lesion painted
//! into an image under a mask), on a diffusers-layout model or a mam-e package. They share every
//! sampling flag.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::tensor::{Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};

use super::{BackendArg, PrecisionArg, SchedulerArg};
use crate::device::{Backend, GpuMemory, read_f32};
use crate::imaging::RgbImage;
use crate::pipeline::text_to_image::{Denoising, GenerateParams};
use crate::package::load_model;
use crate::pipeline::{StableDiffusion, to_rgb8};
use crate::weights::{read_latents, write_atomically, write_latents};

/// Flags common to `generate` and `inpaint`.
#[derive(Debug, clap::Args)]
pub struct SamplingArgs {
    /// A diffusers model folder (model_index.json, unet/, text_encoder/, vae/, tokenizer/, scheduler/)
    /// or a package made by `mam-e convert` (manifest.json and shards).
    #[arg(long)]
    model: PathBuf,
    /// What to steer away from (empty by default, as MAM-E).
    #[arg(long, default_value = "")]
    negative_prompt: String,
    /// Denoising steps (MAM-E: 24; its GUI allows 10–50).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=1000))]
    steps: u32,
    /// Classifier-free guidance scale; ≤ 1 disables guidance (MAM-E: 6 for healthy images, 3 for lesions).
    #[arg(long)]
    guidance: Option<f64>,
    /// Noise scheduler.
    #[arg(long, value_enum, default_value_t = SchedulerArg::Dpm)]
    scheduler: SchedulerArg,
    /// Image height in pixels, a multiple of 8 (generate: the model's, `unet.sample_size` × the
    /// VAE factor; inpaint: the input image's).
    #[arg(long)]
    height: Option<usize>,
    /// Image width in pixels, a multiple of 8 (generate: the model's, `unet.sample_size` × the
    /// VAE factor; inpaint: the input image's).
    #[arg(long)]
    width: Option<usize>,
    /// Seed of the initial noise (our platform-independent RNG: the web app gives the same image).
    #[arg(long, default_value_t = 1338)]
    seed: u64,
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
    /// What to generate, e.g. "a siemens mammogram in MLO view with high density and small area".
    #[arg(long)]
    prompt: String,
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
    /// The inpainting prompt (MAM-E's lesion tool: "a mammogram with a lesion").
    #[arg(long, default_value = crate::prompt::LESION_PROMPT)]
    prompt: String,
    /// Paste the original image back outside the mask (by default the whole decoded image is
    /// written, as diffusers returns it).
    #[arg(long)]
    keep_outside: bool,
    #[command(flatten)]
    sampling: SamplingArgs,
}

impl SamplingArgs {
    fn params(&self, prompt: &str, default_guidance: f64, size: [usize; 2]) -> anyhow::Result<GenerateParams> {
        let guidance = self.guidance.unwrap_or(default_guidance);
        if !guidance.is_finite() || !(0.0..=50.0).contains(&guidance) {
            bail!("--guidance {guidance} is outside 0–50");
        }
        Ok(GenerateParams {
            prompt: prompt.to_string(),
            negative_prompt: self.negative_prompt.clone(),
            steps: self.steps as usize,
            guidance,
            scheduler: self.scheduler.into(),
            height: self.height.unwrap_or(size[0]),
            width: self.width.unwrap_or(size[1]),
            seed: self.seed,
        })
    }

    fn load(&self) -> anyhow::Result<StableDiffusion> {
        let device = Backend::from(self.backend).device()?;
        let spinner = ProgressBar::new_spinner().with_message(format!("loading {}", self.model.display()));
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        let sd = load_model(&self.model, &device, self.precision.into())?;
        spinner.finish_and_clear();
        Ok(sd)
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

    /// Runs the denoising loop with a progress bar, then decodes and writes the outputs.
    /// `keep`: for inpainting with `--keep-outside`, the original image and mask to paste back.
    fn finish(&self, sd: &StableDiffusion, mut run: Denoising<'_>, mut parameters: serde_json::Value, keep: Option<(&RgbImage, &[u8])>) -> anyhow::Result<()> {
        if run.truncated_tokens > 0 {
            eprintln!("warning: the prompt is longer than 77 tokens; the last {} were dropped", run.truncated_tokens);
        }
        let bar = ProgressBar::new(run.progress().1 as u64).with_style(
            ProgressStyle::with_template("{spinner} denoising {bar:30} {pos}/{len} steps  {elapsed} (eta {eta})").context("progress template")?,
        );
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
        let mut image = pollster::block_on(to_rgb8(sd.decode(latents)))?;
        if let Some(memory) = memory.as_mut() {
            memory.sample(&sd.device);
            println!("GPU memory with decoding (burn's allocator): {memory}");
        }
        if let Some((original, mask)) = keep {
            image = image.keep_outside(original, mask);
        }
        if self.right {
            image = image.mirrored();
        }
        parameters["laterality"] = (if self.right { "R" } else { "L" }).into();
        parameters["model"] = self.model.display().to_string().into();
        parameters["init_noise"] = self.init_noise.as_ref().map(|p| p.display().to_string()).into();
        parameters["software"] = concat!("mam-e ", env!("CARGO_PKG_VERSION")).into();
        write_atomically(&self.output, &image.to_png(&[("parameters", parameters.to_string())])?)?;
        println!("wrote {} ({}×{})", self.output.display(), image.width, image.height);
        Ok(())
    }
}

fn read_png(path: &Path) -> anyhow::Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    RgbImage::from_png(&bytes).with_context(|| path.display().to_string())
}

pub fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let s = &args.sampling;
    // Checked before the (slow) load; the size follows the model, as diffusers' default does.
    s.params(&args.prompt, 6.0, [512, 512])?;
    let sd = s.load()?;
    let params = s.params(&args.prompt, 6.0, [sd.default_size(); 2])?;
    let run = sd.start(&params, s.init_noise(&sd)?)?;
    s.finish(&sd, run, params.describe(), None)
}

pub fn inpaint(args: InpaintArgs) -> anyhow::Result<()> {
    let s = &args.sampling;
    let image = read_png(&args.image)?;
    let mask = read_png(&args.mask)?;
    if (mask.width, mask.height) != (image.width, image.height) {
        bail!("the mask is {}×{} but the image is {}×{}", mask.width, mask.height, image.width, image.height);
    }
    let params = s.params(&args.prompt, 3.0, [image.height, image.width])?;
    let sd = s.load()?;
    let (image, mask) = image.to_model_orientation(&mask.to_gray(), s.right);
    let run = sd.start_inpaint(&params, &image, &mask, s.init_noise(&sd)?)?;
    let mut parameters = params.describe();
    parameters["image"] = args.image.display().to_string().into();
    parameters["mask"] = args.mask.display().to_string().into();
    parameters["keep_outside"] = args.keep_outside.into();
    s.finish(&sd, run, parameters, args.keep_outside.then_some((&image, mask.as_slice())))
}
