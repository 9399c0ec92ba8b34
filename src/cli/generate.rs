//! `mam-e generate`: healthy mammograms from a prompt, on a diffusers-layout model.

use std::path::PathBuf;

use anyhow::{Context, bail};
use burn::tensor::{Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};

use super::{BackendArg, SchedulerArg};
use crate::device::{Backend, read_f32};
use crate::pipeline::text_to_image::GenerateParams;
use crate::pipeline::to_rgb8;
use crate::weights::{load_diffusers, read_latents, write_atomically, write_latents};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A diffusers model folder (model_index.json, unet/, text_encoder/, vae/, tokenizer/, scheduler/).
    #[arg(long)]
    model: PathBuf,
    /// What to generate, e.g. "a siemens mammogram in MLO view with high density and small area".
    #[arg(long)]
    prompt: String,
    /// What to steer away from (empty by default, as MAM-E).
    #[arg(long, default_value = "")]
    negative_prompt: String,
    /// Denoising steps (MAM-E: 24; its GUI allows 10–50).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=1000))]
    steps: u32,
    /// Classifier-free guidance scale; ≤ 1 disables guidance (MAM-E fusion model: 6).
    #[arg(long, default_value_t = 6.0)]
    guidance: f64,
    /// Noise scheduler.
    #[arg(long, value_enum, default_value_t = SchedulerArg::Dpm)]
    scheduler: SchedulerArg,
    /// Image height in pixels, a multiple of 8.
    #[arg(long, default_value_t = 512)]
    height: usize,
    /// Image width in pixels, a multiple of 8.
    #[arg(long, default_value_t = 512)]
    width: usize,
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
    /// Mirror the result to show a right breast (MAM-E's images all face left).
    #[arg(long)]
    right: bool,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    backend: BackendArg,
    /// Where to write the PNG (the parameters are embedded in it as text).
    #[arg(long)]
    output: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.guidance.is_finite() || !(0.0..=50.0).contains(&args.guidance) {
        bail!("--guidance {} is outside 0–50", args.guidance);
    }
    let device = Backend::from(args.backend).device()?;
    let spinner = ProgressBar::new_spinner().with_message(format!("loading {}", args.model.display()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let sd = load_diffusers(&args.model, &device)?;
    spinner.finish_and_clear();

    let params = GenerateParams {
        prompt: args.prompt.clone(),
        negative_prompt: args.negative_prompt.clone(),
        steps: args.steps as usize,
        guidance: args.guidance,
        scheduler: args.scheduler.into(),
        height: args.height,
        width: args.width,
        seed: args.seed,
    };
    let init_noise = match &args.init_noise {
        Some(path) => {
            let (shape, values) = read_latents(path)?;
            Some(Tensor::from_data(TensorData::new(values, shape), &device))
        }
        None => None,
    };
    let mut run = sd.start(&params, init_noise)?;
    if run.truncated_tokens > 0 {
        eprintln!("warning: the prompt is longer than 77 tokens; the last {} were dropped", run.truncated_tokens);
    }
    let bar = ProgressBar::new(run.progress().1 as u64).with_style(
        ProgressStyle::with_template("{spinner} denoising {bar:30} {pos}/{len} steps  {elapsed} (eta {eta})")
            .context("progress template")?,
    );
    while run.step() {
        bar.inc(1);
    }
    bar.inc(1);
    bar.finish_and_clear();

    let latents = run.latents();
    if let Some(path) = &args.save_latents {
        let dims = latents.dims();
        let values = pollster::block_on(read_f32(latents.clone()))?;
        write_latents(path, dims, &values)?;
    }
    let mut image = pollster::block_on(to_rgb8(sd.decode(latents)))?;
    if args.right {
        image = image.mirrored();
    }
    let parameters = serde_json::json!({
        "prompt": params.prompt, "negative_prompt": params.negative_prompt, "steps": params.steps,
        "guidance": params.guidance, "scheduler": params.scheduler.name(), "height": params.height,
        "width": params.width, "seed": params.seed, "laterality": if args.right { "R" } else { "L" },
        "init_noise": args.init_noise.as_ref().map(|p| p.display().to_string()),
        "model": args.model.display().to_string(), "software": concat!("mam-e ", env!("CARGO_PKG_VERSION")),
    });
    write_atomically(&args.output, &image.to_png(&[("parameters", parameters.to_string())])?)?;
    println!("wrote {} ({}×{})", args.output.display(), image.width, image.height);
    Ok(())
}
