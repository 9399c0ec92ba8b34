//! `mam-e train`: fine-tuning (the paper's method), training from a config, inpainting and VAE
//! training; checkpoints in the diffusers layout, exact resume, validation grids, a CSV log and
//! its loss-curve plot (`--plot`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::BackendArg;
use crate::device::Backend;
use crate::train::{Component, TrainOptions, Trainer, log};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ComponentArg {
    /// UNet (+ CLIP text encoder), VAE frozen: DreamBooth-style, as MAM-E.
    Unet,
    /// The VAE as a KL autoencoder (for small models trained from scratch).
    Vae,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A prepared folder (mam-e prepare / mam-e phantom --format prepared).
    #[arg(long, required_unless_present = "plot")]
    data: Option<PathBuf>,
    /// A diffusers folder: its weights are the starting point (fine-tuning) unless --from-scratch;
    /// its configs, tokenizer and scheduler config are always used.
    #[arg(long, required_unless_present = "plot")]
    model: Option<PathBuf>,
    /// Initialise the trained components from their configs instead of the model's weights.
    #[arg(long)]
    from_scratch: bool,
    /// Output folder: checkpoint-NNNNNN/ (diffusers layout), model/, validation/, log.csv.
    #[arg(long, required_unless_present = "plot")]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "unet")]
    component: ComponentArg,
    /// Inpainting training (9-channel UNet, lesion masks from the prepared lesions/ set). A
    /// text-to-image --model (4-channel UNet) is widened to 9 channels first, the 5 new input
    /// channels zero-initialised, as stable-diffusion-inpainting was made from SD.
    #[arg(long)]
    inpainting: bool,
    /// Training resolution (images are resized, then randomly cropped).
    #[arg(long, default_value_t = 512)]
    resolution: usize,
    /// Random crop side after the resize (default: the resolution). A VAE can train on patches.
    #[arg(long)]
    crop: Option<usize>,
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    #[arg(long, default_value_t = 1)]
    gradient_accumulation: usize,
    #[arg(long, default_value_t = 1000)]
    max_steps: u64,
    /// MAM-E used 1e-6 for fine-tuning SD1.5; small models from scratch want ~1e-4..1e-3.
    #[arg(long, default_value_t = 1e-6)]
    learning_rate: f64,
    #[arg(long, default_value_t = 0)]
    lr_warmup: usize,
    /// Cosine decay after the warm-up (default: constant).
    #[arg(long)]
    cosine: bool,
    #[arg(long, default_value_t = 1e-2)]
    weight_decay: f64,
    /// Clip the global gradient norm (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Keep the text encoder frozen (MAM-E trains it).
    #[arg(long)]
    freeze_text_encoder: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 200)]
    checkpoint_every: u64,
    #[arg(long, default_value_t = 2)]
    keep_checkpoints: usize,
    /// Render validation images every N steps (0: never).
    #[arg(long, default_value_t = 200)]
    validate_every: u64,
    /// Validation prompts (4 by default, MAM-E's vocabulary).
    #[arg(long)]
    validation_prompt: Vec<String>,
    #[arg(long, default_value_t = 25)]
    validation_steps: usize,
    #[arg(long, default_value_t = 4.0)]
    validation_guidance: f64,
    /// KL weight for --component vae.
    #[arg(long, default_value_t = 1e-6)]
    kl_weight: f64,
    /// --component vae: train the decoder only, the encoder frozen, so latents (and a diffusion
    /// model trained on them) stay valid: a sharper decoder for an existing model.
    #[arg(long)]
    decoder_only: bool,
    /// Probability of training on the empty prompt instead of the caption (classifier-free
    /// guidance needs it for models trained from scratch; 0 when fine-tuning SD1.5, as MAM-E).
    #[arg(long, default_value_t = 0.0)]
    caption_dropout: f64,
    /// Recompute memory-bound activations in the backward pass instead of keeping them (burn's
    /// gradient checkpointing): less memory, the same gradients, a little more time.
    #[arg(long)]
    gradient_checkpointing: bool,
    /// Continue the run in --out from its newest checkpoint.
    #[arg(long)]
    resume: bool,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendArg,
    /// Instead of training: draw a log.csv as a loss-curve PNG next to it.
    #[arg(long)]
    plot: Option<PathBuf>,
}

const DEFAULT_PROMPTS: [&str; 4] = [
    "a siemens mammogram in CC view with very low density and small area",
    "a siemens mammogram in MLO view with high density and medium area",
    "a hologic mammogram in CC view with low density and big area",
    "a hologic mammogram in MLO view with very high density and medium area",
];

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(log_path) = &args.plot {
        let points = log::read_losses(log_path).map_err(anyhow::Error::msg)?;
        let png = log_path.with_extension("png");
        crate::weights::write_atomically(&png, &log::plot(&points, 800, 400).to_png(&[("Description", format!("loss curve of {}", log_path.display()))])?)?;
        println!("{} ({} steps, last loss {:.5})", png.display(), points.len(), points.last().map_or(0.0, |p| p.1));
        return Ok(());
    }
    let (Some(data), Some(model), Some(out)) = (args.data, args.model, args.out) else { bail!("--data, --model and --out are required") };
    if args.decoder_only && args.component != ComponentArg::Vae {
        bail!("--decoder-only is for --component vae");
    }
    if args.decoder_only && args.from_scratch {
        bail!("--decoder-only keeps the encoder of --model: it cannot start --from-scratch");
    }
    let prompts = if args.validation_prompt.is_empty() {
        if args.inpainting { vec![crate::prompt::LESION_PROMPT.to_string(); 4] } else { DEFAULT_PROMPTS.map(String::from).to_vec() }
    } else {
        args.validation_prompt
    };
    let options = TrainOptions {
        data,
        model,
        from_scratch: args.from_scratch,
        out,
        component: match args.component {
            ComponentArg::Unet => Component::Diffusion,
            ComponentArg::Vae => Component::Vae,
        },
        inpainting: args.inpainting,
        resolution: args.resolution,
        crop: args.crop.unwrap_or(args.resolution),
        batch_size: args.batch_size,
        gradient_accumulation: args.gradient_accumulation,
        max_steps: args.max_steps,
        learning_rate: args.learning_rate,
        lr_warmup: args.lr_warmup,
        cosine: args.cosine,
        weight_decay: args.weight_decay,
        max_grad_norm: args.max_grad_norm,
        train_text_encoder: !args.freeze_text_encoder,
        seed: args.seed,
        checkpoint_every: args.checkpoint_every.max(1),
        keep_checkpoints: args.keep_checkpoints,
        validate_every: args.validate_every,
        validation_prompts: prompts,
        validation_steps: args.validation_steps,
        validation_guidance: args.validation_guidance,
        kl_weight: args.kl_weight,
        vae_decoder_only: args.decoder_only,
        caption_dropout: args.caption_dropout,
        gradient_checkpointing: args.gradient_checkpointing,
    };
    let device = Backend::from(args.backend).device()?;
    let mut trainer = Trainer::new(options, device, args.resume)?;
    let o = trainer.options.clone();
    if trainer.step >= o.max_steps {
        println!("already at step {} of {}: nothing to do", trainer.step, o.max_steps);
        return Ok(());
    }
    if trainer.step > 0 {
        println!("resuming at step {}", trainer.step);
    }
    let bar =
        ProgressBar::new(o.max_steps).with_style(ProgressStyle::with_template("train [{bar:30}] {pos}/{len} {msg} eta {eta}").context("progress template")?);
    bar.set_position(trainer.step);
    while trainer.step < o.max_steps {
        let report = trainer.train_step()?;
        bar.set_position(report.step);
        bar.set_message(format!("loss {:.4} lr {:.1e} {:.2}s/step", report.loss, report.lr, report.seconds));
        if report.step % o.checkpoint_every == 0 || report.step == o.max_steps {
            let dir = trainer.save_checkpoint()?;
            bar.println(format!("step {}: checkpoint {}", report.step, dir.display()));
        }
        if o.validate_every > 0 && (report.step % o.validate_every == 0 || report.step == o.max_steps) {
            let path = trainer.validate()?;
            bar.println(format!("step {}: validation {}", report.step, path.display()));
        }
    }
    bar.finish_and_clear();
    let model = o.out.join("model");
    trainer.write_model(&model, Vec::new())?;
    println!("trained {} steps → {} (diffusers layout; log {})", o.max_steps, model.display(), o.out.join("log.csv").display());
    Ok(())
}
