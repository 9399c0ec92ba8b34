//! `mam-e bench`: median wall time of the UNet CFG step (batch 2), the text encoder and the VAE
//! decoder, after a warm-up, on random weights of the chosen size or on a model folder.

use std::time::Instant;

use anyhow::Context;
use burn::tensor::{Device, Distribution, Tensor};

use super::{BackendArg, PrecisionArg};
use crate::device::{Backend, read_f32};
use crate::model::clip::ClipTextConfig;
use crate::model::precision::{Precision, cast_weights};
use crate::model::unet::UNet2DConditionConfig;
use crate::model::vae::AutoencoderKlConfig;
use crate::package::load_model;
use crate::pipeline::StableDiffusion;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Component {
    Unet,
    TextEncoder,
    Vae,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Size {
    /// The test fixtures' size.
    Tiny,
    /// Stable Diffusion 1.5 (random weights), 512×512 images, 64×64 latents.
    Sd15,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Components to time; all when omitted.
    #[arg(long, value_enum)]
    component: Vec<Component>,
    /// Architecture size for random weights (ignored with --model).
    #[arg(long, value_enum, default_value_t = Size::Sd15)]
    size: Size,
    /// Time a diffusers model folder or a package instead of random weights, at the model's own
    /// size (`unet.sample_size` latents).
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// Timed runs after the warm-up (the median is reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    backend: BackendArg,
    /// Compute precision of the UNet and text encoder, as `generate --precision` (f16 needs
    /// `--backend wgpu` on a GPU with f16 shaders).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    precision: PrecisionArg,
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`), if known.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Median seconds of `runs` calls of `f` after one warm-up call; `f` must read its result back.
fn time(runs: u32, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The loaded model's component, else one built (random weights) at the chosen size and kept in `own`.
fn loaded_or_built<'a, T>(loaded: Option<&'a T>, own: &'a mut Option<T>, build: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<&'a T> {
    match loaded {
        Some(component) => Ok(component),
        None => Ok(own.insert(build()?)),
    }
}

fn sync<const D: usize>(t: Tensor<D>) -> anyhow::Result<()> {
    pollster::block_on(read_f32(t)).map(|_| ()).context("reading the result back")
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let device: Device = Backend::from(args.backend).device()?;
    let precision = Precision::from(args.precision);
    precision.check(&device)?;
    let components = if args.component.is_empty() { vec![Component::Unet, Component::TextEncoder, Component::Vae] } else { args.component.clone() };
    let loaded: Option<StableDiffusion> = args.model.as_ref().map(|dir| load_model(dir, &device, precision)).transpose()?;
    let size_name = match (&args.model, args.size) {
        (Some(dir), _) => dir.display().to_string(),
        (None, Size::Tiny) => "tiny".into(),
        (None, Size::Sd15) => "sd15".into(),
    };
    let (latent, image_scale) = match (&loaded, args.size) {
        // A model is timed at its own size, as diffusers renders it by default.
        (Some(sd), _) => (sd.default_size() / sd.vae_scale_factor, sd.vae_scale_factor),
        (None, Size::Tiny) => (32, 2),
        (None, Size::Sd15) => (64, 8),
    };
    let backend = format!("{:?}", args.backend).to_lowercase();
    for component in components {
        let (label, median) = match component {
            Component::Unet => {
                let mut own = None;
                let unet = loaded_or_built(loaded.as_ref().map(|sd| &sd.unet), &mut own, || {
                    let config = match args.size {
                        Size::Tiny => UNet2DConditionConfig::tiny(),
                        Size::Sd15 => UNet2DConditionConfig::sd15(),
                    };
                    Ok(cast_weights(config.init(&device), precision.dtype()))
                })?;
                let cross = unet.mid_block.attentions[0].transformer_blocks[0].attn2.to_k.weight.dims()[0];
                let sample = Tensor::<4>::random([2, unet.in_channels(), latent, latent], Distribution::Normal(0.0, 1.0), &device);
                let context = Tensor::<3>::random([2, 77, cross], Distribution::Normal(0.0, 1.0), &device);
                let median = time(args.runs, || sync(unet.forward(sample.clone(), &[500.0, 500.0], context.clone())))?;
                (format!("unet cfg-step batch=2 latent={latent}x{latent}"), median)
            }
            Component::TextEncoder => {
                let mut own = None;
                let encoder = loaded_or_built(loaded.as_ref().map(|sd| &sd.text_encoder), &mut own, || {
                    let config = match args.size {
                        Size::Tiny => ClipTextConfig::tiny(),
                        Size::Sd15 => ClipTextConfig::sd15(),
                    };
                    Ok(cast_weights(config.init(&device)?, precision.dtype()))
                })?;
                let ids = vec![vec![49406u32; 1].into_iter().chain(std::iter::repeat_n(320, 76)).collect::<Vec<_>>(); 2];
                let median = time(args.runs, || sync(encoder.forward_ids(&ids, &device)))?;
                ("text-encoder batch=2 tokens=77".to_string(), median)
            }
            Component::Vae => {
                let mut own = None;
                let vae = loaded_or_built(loaded.as_ref().map(|sd| &sd.vae), &mut own, || {
                    Ok(match args.size {
                        Size::Tiny => AutoencoderKlConfig::tiny(),
                        Size::Sd15 => AutoencoderKlConfig::sd15(),
                    }
                    .init(&device))
                })?;
                let latents = Tensor::<4>::random([1, 4, latent, latent], Distribution::Normal(0.0, 1.0), &device);
                let median = time(args.runs, || sync(vae.decode(latents.clone())))?;
                (format!("vae-decode batch=1 image={}x{}", latent * image_scale, latent * image_scale), median)
            }
        };
        let peak = peak_rss_mib().map(|m| format!(" peak_rss_mib={m:.0}")).unwrap_or_default();
        println!("{label} size={size_name} backend={backend} precision={}{peak} median_s={median:.4}", precision.name());
    }
    Ok(())
}
