//! `mam-e train`: MAM-E's DreamBooth-style fine-tuning (UNet and CLIP text encoder trained, VAE
//! frozen, ε-prediction MSE on the DDPM noise schedule of the model's scheduler config),
//! inpainting training (9-channel UNet input `[noisy latents, mask, masked-image latents]`),
//! training from a config (small models from scratch), and a KL autoencoder trainer for the VAE
//! such small models need.
//!
//! Everything random is a function of `(seed, step)`: the batch order and crops
//! ([`data::TrainingData`]), the VAE posterior samples, the timesteps and the noise. A checkpoint
//! therefore only needs the weights, the optimizer moments and the step for a resumed run to
//! continue exactly as the uninterrupted one would have.

pub mod checkpoint;
pub mod data;
pub mod inpainting_start;
pub mod log;
pub mod optim;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, GradientCheckpointingStrategy, Tensor, TensorData};
use rayon::prelude::*;

use crate::imaging::RgbImage;
use crate::model::clip::{ClipTextConfig, ClipTextModel};
use crate::model::ops::mean_all;
use crate::model::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use crate::model::vae::{AutoencoderKl, AutoencoderKlConfig};
use crate::pipeline::StableDiffusion;
use crate::pipeline::image_processor::{denormalize, planes_to_rgb8, to_rgb8};
use crate::pipeline::text_to_image::GenerateParams;
use crate::rng::NoiseRng;
use crate::schedulers::{PredictionType, SchedulerConfig, SchedulerKind};
use crate::tokenizer::ClipTokenizer;
use crate::weights::diffusers::{load_tokenizer, read_text, weights_file};
use crate::weights::load_safetensors;
use data::{Example, TrainingData};
use optim::{AdamW, LrSchedule, NamedGrads};

/// What is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Component {
    /// The UNet (and the text encoder unless frozen), VAE frozen.
    Diffusion,
    /// The VAE alone, as a KL autoencoder.
    Vae,
}

/// Everything a run depends on (saved with each checkpoint).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainOptions {
    pub data: PathBuf,
    /// A diffusers folder: its weights are the starting point unless `from_scratch`, its configs,
    /// tokenizer and scheduler are always used.
    pub model: PathBuf,
    pub from_scratch: bool,
    pub out: PathBuf,
    pub component: Component,
    pub inpainting: bool,
    pub resolution: usize,
    /// Random crop side (defaults to the resolution; smaller for patch training of the VAE).
    pub crop: usize,
    pub batch_size: usize,
    pub gradient_accumulation: usize,
    pub max_steps: u64,
    pub learning_rate: f64,
    pub lr_warmup: usize,
    pub cosine: bool,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    pub train_text_encoder: bool,
    pub seed: u64,
    pub checkpoint_every: u64,
    pub keep_checkpoints: usize,
    pub validate_every: u64,
    pub validation_prompts: Vec<String>,
    pub validation_steps: usize,
    pub validation_guidance: f64,
    pub kl_weight: f64,
    /// VAE training with the encoder frozen (its latents unchanged, no KL term): the decoder
    /// alone learns, as Stability's fine-tuned SD decoders were made.
    #[serde(default)]
    pub vae_decoder_only: bool,
    /// Probability that an example's caption is replaced by the empty prompt. A model trained
    /// from scratch needs it so that its unconditional branch — what classifier-free guidance
    /// subtracts — is learned (SD1.5 learned it in pre-training, so fine-tuning as MAM-E did uses 0).
    pub caption_dropout: f64,
    /// burn's gradient checkpointing (memory-bound activations are recomputed in the backward
    /// pass instead of kept): less memory, same gradients, some extra compute.
    pub gradient_checkpointing: bool,
}

/// What the caller sees after each step.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub seconds: f64,
}

fn mix(a: u64, b: u64) -> u64 {
    a.wrapping_mul(0xA24B_AED4_963E_E407) ^ b.wrapping_add(0x9FB2_1C65_1E98_DF25).rotate_left(29)
}

/// Which of micro-batch `micro`'s `n` captions are replaced by the empty prompt, each with
/// probability `p`, from its own stream so that `p = 0` leaves every other draw unchanged.
fn dropped_captions(seed: u64, micro: u64, n: usize, p: f64) -> Vec<bool> {
    if p <= 0.0 {
        return vec![false; n];
    }
    let mut rng = NoiseRng::new(mix(seed ^ 0xD120, micro));
    (0..n).map(|_| rng.uniform() < p).collect()
}

/// `tensor` (on the plain device) on the autodiff device with `strategy`, the gradient
/// checkpointing of the run: operands of one operation must share it, and burn's `from_inner`
/// alone gives the default one.
pub(crate) fn autodiff_as<const D: usize>(tensor: Tensor<D>, strategy: Option<GradientCheckpointingStrategy>) -> Tensor<D> {
    let tensor = Tensor::from_inner(tensor);
    match strategy {
        Some(strategy) => tensor.with_gradient_checkpointing_strategy(strategy),
        None => tensor,
    }
}

/// Gives every parameter of a module (after `train()`) the run's checkpointing strategy.
struct CheckpointingStrategy(GradientCheckpointingStrategy);

impl ModuleMapper for CheckpointingStrategy {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let strategy = self.0;
        param.map(move |tensor| tensor.with_gradient_checkpointing_strategy(strategy))
    }
}

/// `module` made trainable on `device` (the autodiff device, maybe with gradient checkpointing).
fn trainable<M: Module>(module: M, device: &Device) -> M {
    let module = module.fork(device).train();
    match device.gradient_checkpointing_strategy() {
        Some(strategy) => module.map(&mut CheckpointingStrategy(strategy)),
        None => module,
    }
}

fn to_tensor(values: Vec<f32>, shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// The models being trained, on the autodiff device (the frozen VAE on the plain one).
struct Models {
    unet: Option<UNet2DConditionModel>,
    text_encoder: Option<ClipTextModel>,
    vae: AutoencoderKl,
    /// The VAE's `scaling_factor` and pixels per latent (`2^(levels − 1)`), from its config.
    vae_scaling_factor: f64,
    vae_scale_factor: usize,
}

impl Models {
    fn new(unet: Option<UNet2DConditionModel>, text_encoder: Option<ClipTextModel>, vae: AutoencoderKl, vae_config: &AutoencoderKlConfig) -> Models {
        let vae_scale_factor = 1 << (vae_config.block_out_channels.len() - 1);
        Models { unet, text_encoder, vae, vae_scaling_factor: vae_config.scaling_factor, vae_scale_factor }
    }
}

/// Loads one component: random init from its config when `scratch`, else its weights, then
/// forked onto `device` (the autodiff device for trained components).
fn load_unet(dir: &Path, scratch: bool, plain: &Device, device: &Device) -> crate::Result<UNet2DConditionModel> {
    let config = UNet2DConditionConfig::from_json(&read_text(&dir.join("unet/config.json"))?)?;
    if scratch {
        return Ok(config.init(device));
    }
    Ok(trainable(load_safetensors(config.init(plain), weights_file(dir, "unet", "diffusion_pytorch_model")?, "unet")?, device))
}

fn load_text_encoder(dir: &Path, scratch: bool, plain: &Device, device: &Device) -> crate::Result<ClipTextModel> {
    let config = ClipTextConfig::from_json(&read_text(&dir.join("text_encoder/config.json"))?)?;
    if scratch {
        return config.init(device);
    }
    Ok(trainable(load_safetensors(config.init(plain)?, weights_file(dir, "text_encoder", "model")?, "text_encoder")?, device))
}

fn load_vae(dir: &Path, scratch: bool, plain: &Device, device: &Device) -> crate::Result<(AutoencoderKl, AutoencoderKlConfig)> {
    let config = AutoencoderKlConfig::from_json(&read_text(&dir.join("vae/config.json"))?)?;
    if scratch {
        return Ok((config.init(device), config));
    }
    let vae = load_safetensors(config.init(plain), weights_file(dir, "vae", "diffusion_pytorch_model")?, "vae")?;
    Ok((trainable(vae, device), config))
}

/// The checkpoint file of the main optimizer's moments (UNet, or VAE).
fn main_optimizer_file(component: Component) -> &'static str {
    match component {
        Component::Diffusion => "optimizer_unet.safetensors",
        Component::Vae => "optimizer_vae.safetensors",
    }
}

/// The folder in a run's output holding the 9-channel start made from a text-to-image model.
const INPAINTING_START: &str = "inpainting-start";

const TEXT_OPTIMIZER_FILE: &str = "optimizer_text_encoder.safetensors";

/// Training state saved next to each checkpoint.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct State {
    step: u64,
    options: TrainOptions,
}

/// A training run, ready to step.
pub struct Trainer {
    pub options: TrainOptions,
    data: TrainingData,
    tokenizer: ClipTokenizer,
    scheduler: SchedulerConfig,
    alphas_cumprod: Vec<f64>,
    prediction: PredictionType,
    models: Models,
    /// The optimizer of the UNet, or of the VAE when training the VAE.
    main_opt: AdamW,
    text_opt: AdamW,
    plain: Device,
    device: Device,
    /// Steps done.
    pub step: u64,
    log: log::TrainLog,
}

impl Trainer {
    /// Sets up a run in `options.out`, resuming from its newest checkpoint when `resume`.
    pub fn new(mut options: TrainOptions, plain: Device, resume: bool) -> anyhow::Result<Trainer> {
        use anyhow::{Context, bail};
        if options.batch_size == 0 || options.gradient_accumulation == 0 || options.resolution == 0 || !options.crop.is_multiple_of(8) || options.crop == 0 {
            bail!("batch size and accumulation must be ≥ 1 and the crop (default: the resolution) a positive multiple of 8");
        }
        if !(0.0..1.0).contains(&options.caption_dropout) {
            bail!("--caption-dropout {} must be in [0, 1)", options.caption_dropout);
        }
        let device = if options.gradient_checkpointing { plain.clone().autodiff().gradient_checkpointing() } else { plain.clone().autodiff() };
        plain.seed(options.seed);
        device.seed(options.seed);
        std::fs::create_dir_all(&options.out).with_context(|| format!("cannot create {}", options.out.display()))?;
        let resumed = if resume { checkpoint::checkpoints(&options.out).pop() } else { None };
        if resume && resumed.is_none() {
            bail!("--resume: no checkpoint in {} (nothing to resume; start without --resume)", options.out.display());
        }
        if !resume && !checkpoint::checkpoints(&options.out).is_empty() {
            bail!("{} already has checkpoints: pass --resume to continue that run, or choose another --out", options.out.display());
        }
        let data = TrainingData::open(&options.data, options.inpainting, options.resolution, options.crop).map_err(anyhow::Error::msg)?;
        if options.inpainting && !options.from_scratch && options.component == Component::Diffusion && inpainting_start::unet_in_channels(&options.model)? == 4
        {
            // A text-to-image model fine-tuned into an inpainting one: its 9-channel copy (extra
            // conv_in weights zero) is the run's base, made once and reused on --resume.
            let start = options.out.join(INPAINTING_START);
            if !start.join("unet/config.json").exists() {
                println!(
                    "{}: 4-channel UNet; starting inpainting from it with 5 zero-initialised input channels ({})",
                    options.model.display(),
                    start.display()
                );
                inpainting_start::write_inpainting_start(&options.model, &start)?;
            }
            options.model = start;
        }
        let base = &options.model;
        let tokenizer = load_tokenizer(base)?;
        let scheduler = SchedulerConfig::from_json(&read_text(&base.join("scheduler/scheduler_config.json"))?)?;
        let (weights_dir, scratch) = match &resumed {
            Some((_, dir)) => (dir.clone(), false),
            None => (base.clone(), options.from_scratch),
        };
        let models = match options.component {
            Component::Vae => {
                let (vae, config) = load_vae(&weights_dir, scratch, &plain, &device)?;
                Models::new(None, None, vae, &config)
            }
            Component::Diffusion => {
                let (vae, vae_config) =
                    load_vae(&weights_dir, false, &plain, &plain).context("the frozen VAE needs weights (train one first with --component vae)")?;
                let unet = load_unet(&weights_dir, scratch, &plain, &device)?;
                let text_device = if options.train_text_encoder { &device } else { &plain };
                let text_encoder = load_text_encoder(&weights_dir, scratch, &plain, text_device)?;
                let want = if options.inpainting { 9 } else { 4 };
                if unet.in_channels() != want {
                    bail!(
                        "the UNet has {} input channels; {} training needs {want}",
                        unet.in_channels(),
                        if options.inpainting { "inpainting" } else { "text-to-image" }
                    );
                }
                Models::new(Some(unet), Some(text_encoder), vae, &vae_config)
            }
        };
        let mut main_opt = AdamW::new(options.weight_decay);
        let mut text_opt = AdamW::new(options.weight_decay);
        let mut step = 0;
        if let Some((s, dir)) = &resumed {
            step = *s;
            let load = |opt: &mut AdamW, file: &str| -> anyhow::Result<()> {
                let path = dir.join(file);
                if path.exists() {
                    opt.load_safetensors(&std::fs::read(&path)?, &plain).map_err(anyhow::Error::msg).with_context(|| path.display().to_string())?;
                }
                Ok(())
            };
            load(&mut main_opt, main_optimizer_file(options.component))?;
            load(&mut text_opt, TEXT_OPTIMIZER_FILE)?;
        }
        let alphas_cumprod = scheduler.alphas_cumprod()?;
        let prediction = scheduler.prediction()?;
        let log = log::TrainLog::open(&options.out.join("log.csv"), step).context("opening log.csv")?;
        Ok(Trainer { options, data, tokenizer, scheduler, alphas_cumprod, prediction, models, main_opt, text_opt, plain, device, step, log })
    }

    /// Examples `k0..k0 + n`, decoded in parallel.
    fn batch(&self, k0: u64, n: usize) -> anyhow::Result<Vec<Example>> {
        (0..n as u64).into_par_iter().map(|j| self.data.load(self.options.seed, k0 + j).map_err(anyhow::Error::msg)).collect()
    }

    fn images(&self, examples: &[Example], device: &Device) -> Tensor<4> {
        let s = self.options.crop;
        to_tensor(examples.iter().flat_map(|e| e.pixels.iter().copied()).collect(), [examples.len(), 3, s, s], device)
    }

    /// The loss of one micro-batch (tracked on the autodiff device).
    fn loss(&self, examples: &[Example], micro: u64) -> anyhow::Result<Tensor<1>> {
        let mut rng = NoiseRng::new(mix(self.options.seed ^ 0x5EED, micro));
        let b = examples.len();
        match self.options.component {
            Component::Vae => {
                let vae = &self.models.vae;
                if self.options.vae_decoder_only {
                    // The frozen encoder runs untracked: a tracked graph that no backward pass
                    // consumes would stay in memory.
                    let x = self.images(examples, &self.plain);
                    let dist = vae.valid().encode(x.clone())?;
                    let [_, c, h, w] = dist.mean.dims();
                    let z = dist.sample(to_tensor(rng.randn(b * c * h * w), [b, c, h, w], &self.plain));
                    let strategy = self.device.gradient_checkpointing_strategy();
                    return Ok(mean_all((vae.decode(autodiff_as(z, strategy)) - autodiff_as(x, strategy)).powi_scalar(2)));
                }
                let x = self.images(examples, &self.device);
                let dist = vae.encode(x.clone())?;
                let [_, c, h, w] = dist.mean.dims();
                let z = dist.sample(to_tensor(rng.randn(b * c * h * w), [b, c, h, w], &self.device));
                let recon = vae.decode(z);
                let rec = mean_all((recon - x).powi_scalar(2));
                let kl = mean_all(dist.mean.clone().powi_scalar(2) + dist.logvar.clone().exp() - dist.logvar - 1.0) * 0.5;
                Ok(rec + kl * self.options.kl_weight)
            }
            Component::Diffusion => {
                let (unet, text) = (self.models.unet.as_ref().expect("unet"), self.models.text_encoder.as_ref().expect("text encoder"));
                let sf = self.models.vae_scaling_factor;
                let images = self.images(examples, &self.plain);
                let encode = |x: Tensor<4>, rng: &mut NoiseRng| -> anyhow::Result<Tensor<4>> {
                    let dist = self.models.vae.encode(x)?;
                    let [_, c, h, w] = dist.mean.dims();
                    Ok(dist.sample(to_tensor(rng.randn(b * c * h * w), [b, c, h, w], &self.plain)) * sf)
                };
                let latents = encode(images.clone(), &mut rng)?;
                let [_, c, h, w] = latents.dims();
                let t: Vec<usize> = (0..b).map(|_| (rng.next_u64() % self.alphas_cumprod.len() as u64) as usize).collect();
                let noise = to_tensor(rng.randn(b * c * h * w), [b, c, h, w], &self.plain);
                let coef = |f: &dyn Fn(f64) -> f64| to_tensor(t.iter().map(|&t| f(self.alphas_cumprod[t]) as f32).collect(), [b, 1, 1, 1], &self.plain);
                let (a, s) = (coef(&|ac| ac.sqrt()), coef(&|ac| (1.0 - ac).sqrt()));
                let noisy = latents.clone() * a.clone() + noise.clone() * s.clone();
                let target = match self.prediction {
                    PredictionType::Epsilon => noise,
                    PredictionType::VPrediction => noise * a - latents * s,
                };
                let input = if self.options.inpainting {
                    let s_px = self.options.crop;
                    let masks: Vec<f32> = examples.iter().flat_map(|e| e.mask.clone().expect("inpainting examples have masks")).collect();
                    let mask = to_tensor(masks.clone(), [b, 1, s_px, s_px], &self.plain);
                    let masked = images * (mask.ones_like() - mask);
                    let masked_latents = encode(masked, &mut rng)?;
                    let mask_latent = to_tensor(nearest_downsample(&masks, b, s_px, h, w), [b, 1, h, w], &self.plain);
                    Tensor::cat(vec![noisy, mask_latent, masked_latents], 1)
                } else {
                    noisy
                };
                let dropped = dropped_captions(self.options.seed, micro, b, self.options.caption_dropout);
                let ids: Vec<Vec<u32>> = examples
                    .iter()
                    .zip(dropped)
                    .map(|(e, dropped)| self.tokenizer.encode(if dropped { "" } else { &e.prompt }).map(|enc| enc.ids))
                    .collect::<crate::Result<_>>()?;
                let context = text.forward_ids(&ids, &if self.options.train_text_encoder { self.device.clone() } else { self.plain.clone() });
                let strategy = self.device.gradient_checkpointing_strategy();
                let context = if self.options.train_text_encoder { context } else { autodiff_as(context, strategy) };
                let timesteps: Vec<f64> = t.iter().map(|&t| t as f64).collect();
                let prediction = unet.forward(autodiff_as(input, strategy), &timesteps, context);
                Ok(mean_all((prediction - autodiff_as(target, strategy)).powi_scalar(2)))
            }
        }
    }

    /// One optimizer update (gradient accumulation over micro-batches, clipping, AdamW).
    pub fn train_step(&mut self) -> anyhow::Result<StepReport> {
        let started = Instant::now();
        let o = &self.options;
        let schedule =
            if o.cosine { LrSchedule::Cosine { warmup: o.lr_warmup, total: o.max_steps as usize } } else { LrSchedule::Constant { warmup: o.lr_warmup } };
        let lr = o.learning_rate * schedule.factor(self.step as usize);
        let (accum, batch) = (o.gradient_accumulation as u64, o.batch_size);
        let (mut unet_grads, mut text_grads, mut vae_grads) = (NamedGrads::new(), NamedGrads::new(), NamedGrads::new());
        let mut loss_sum = 0.0;
        for micro in 0..accum {
            let number = self.step * accum + micro;
            let examples = self.batch(number * batch as u64, batch)?;
            let loss = self.loss(&examples, number)?;
            loss_sum += loss.clone().into_scalar::<f32>() as f64;
            let grads = loss.backward();
            match self.options.component {
                Component::Vae => optim::accumulate(&self.models.vae, &grads, &mut vae_grads),
                Component::Diffusion => {
                    optim::accumulate(self.models.unet.as_ref().expect("unet"), &grads, &mut unet_grads);
                    if self.options.train_text_encoder {
                        optim::accumulate(self.models.text_encoder.as_ref().expect("text encoder"), &grads, &mut text_grads);
                    }
                }
            }
        }
        let inv = 1.0 / accum as f64;
        let norm = (optim::global_norm(&unet_grads).powi(2) + optim::global_norm(&text_grads).powi(2) + optim::global_norm(&vae_grads).powi(2)).sqrt() * inv;
        let clip = if self.options.max_grad_norm > 0.0 { (self.options.max_grad_norm / (norm + 1e-6)).min(1.0) } else { 1.0 };
        let scale = inv * clip;
        match self.options.component {
            Component::Vae => {
                self.models.vae = self.main_opt.step(self.models.vae.clone(), &vae_grads, lr, scale);
            }
            Component::Diffusion => {
                let unet = self.models.unet.take().expect("unet");
                self.models.unet = Some(self.main_opt.step(unet, &unet_grads, lr, scale));
                if self.options.train_text_encoder {
                    let text = self.models.text_encoder.take().expect("text encoder");
                    self.models.text_encoder = Some(self.text_opt.step(text, &text_grads, lr, scale));
                    self.text_opt.finish_step();
                }
            }
        }
        self.main_opt.finish_step();
        self.step += 1;
        let report = StepReport { step: self.step, loss: loss_sum * inv, lr, grad_norm: norm, seconds: started.elapsed().as_secs_f64() };
        self.log.append(&report)?;
        Ok(report)
    }

    /// Writes `checkpoint-<step>` (diffusers layout + optimizer moments + state) and prunes old ones.
    pub fn save_checkpoint(&self) -> anyhow::Result<PathBuf> {
        let dir = self.options.out.join(format!("checkpoint-{:06}", self.step));
        let mut extra: checkpoint::Extra =
            vec![("training_state.json".into(), serde_json::to_vec_pretty(&State { step: self.step, options: self.options.clone() })?)];
        extra.push((main_optimizer_file(self.options.component).into(), self.main_opt.to_safetensors()));
        if self.options.component == Component::Diffusion && self.options.train_text_encoder {
            extra.push((TEXT_OPTIMIZER_FILE.into(), self.text_opt.to_safetensors()));
        }
        self.write_model(&dir, extra)?;
        checkpoint::prune(&self.options.out, self.options.keep_checkpoints.max(1));
        Ok(dir)
    }

    /// Writes the current model as a diffusers folder at `dir`.
    pub fn write_model(&self, dir: &Path, extra: checkpoint::Extra) -> anyhow::Result<()> {
        let m = &self.models;
        let base = &self.options.model;
        let mut weights = vec![("vae", "diffusion_pytorch_model", crate::weights::diffusers::module_safetensors(&m.vae)?)];
        for (component, stem) in [("unet", "diffusion_pytorch_model"), ("text_encoder", "model")] {
            let bytes = match (component, &m.unet, &m.text_encoder) {
                ("unet", Some(unet), _) => crate::weights::diffusers::module_safetensors(unet)?,
                ("text_encoder", _, Some(text)) => crate::weights::diffusers::module_safetensors(text)?,
                // VAE training: keep whatever the base folder has (possibly nothing yet).
                _ => match weights_file(base, component, stem) {
                    Ok(bytes) => bytes,
                    Err(_) => continue,
                },
            };
            weights.push((component, stem, bytes));
        }
        checkpoint::write_folder(dir, base, &weights, &extra).map_err(anyhow::Error::msg)?;
        if self.options.component == Component::Vae && !self.options.vae_decoder_only {
            self.write_scaling_factor(dir)?;
        }
        Ok(())
    }

    /// A VAE trained here gets `scaling_factor = 1 / std` of its latents (over up to 64 training
    /// examples), so the diffusion model sees unit-variance latents, as SD's 0.18215 was chosen.
    fn write_scaling_factor(&self, dir: &Path) -> anyhow::Result<()> {
        let vae = self.models.vae.valid();
        let n = self.data.len().min(64);
        let mut values = Vec::new();
        for chunk in (0..n as u64).collect::<Vec<_>>().chunks(8) {
            let examples = self.batch(chunk[0], chunk.len())?;
            let mean = vae.encode(self.images(&examples, &self.plain))?.mean;
            values.extend(mean.into_data().try_to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?);
        }
        let count = values.len() as f64;
        let mu = values.iter().map(|&v| v as f64).sum::<f64>() / count;
        let std = (values.iter().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>() / count).sqrt();
        let path = dir.join("vae/config.json");
        let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        config["scaling_factor"] = (1.0 / std.max(1e-6)).into();
        crate::weights::write_atomically(&path, serde_json::to_string_pretty(&config)?.as_bytes())?;
        Ok(())
    }

    /// Validation images: for diffusion, one per prompt from fixed noise (DPM-Solver++,
    /// `validation_steps`, guidance `validation_guidance`); for the VAE, example / reconstruction
    /// pairs. Saved as a grid PNG under `validation/`.
    pub fn validate(&self) -> anyhow::Result<PathBuf> {
        let s = self.options.crop;
        let mut tiles = Vec::new();
        match self.options.component {
            Component::Vae => {
                let examples = self.batch(0, 4)?;
                let vae = self.models.vae.valid();
                let x = self.images(&examples, &self.plain);
                let recon = vae.decode(vae.encode(x.clone())?.mean);
                for image in [x, recon] {
                    let [n, ..] = image.dims();
                    for i in 0..n {
                        let one = image.clone().narrow(0, i, 1);
                        tiles.push(pollster::block_on(to_rgb8(denormalize(one)))?);
                    }
                }
            }
            Component::Diffusion => {
                let sd = self.pipeline();
                for (i, prompt) in self.options.validation_prompts.iter().enumerate() {
                    let params = GenerateParams {
                        prompt: prompt.clone(),
                        steps: self.options.validation_steps,
                        guidance: self.options.validation_guidance,
                        scheduler: SchedulerKind::Dpm,
                        height: s,
                        width: s,
                        seed: 1338 + i as u64,
                        ..GenerateParams::default()
                    };
                    let tile = if self.options.inpainting {
                        let example = self.data.load(self.options.seed, i as u64).map_err(anyhow::Error::msg)?;
                        let image = example_rgb(&example, s);
                        let mask: Vec<u8> = example.mask.as_ref().expect("mask").iter().map(|&m| if m > 0.5 { 255 } else { 0 }).collect();
                        sd.start_inpaint(&params, &image, &mask, None)?.finish_image()?
                    } else {
                        sd.start(&params, None)?.finish_image()?
                    };
                    tiles.push(tile);
                }
            }
        }
        let dir = self.options.out.join("validation");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("step-{:06}.png", self.step));
        let grid = grid(&tiles, 4);
        crate::weights::write_atomically(&path, &grid.to_png(&[("Description", format!("validation at step {}", self.step))])?)?;
        Ok(path)
    }

    /// The current weights as an inference pipeline on the plain device.
    fn pipeline(&self) -> StableDiffusion {
        let m = &self.models;
        StableDiffusion {
            tokenizer: self.tokenizer.clone(),
            text_encoder: m.text_encoder.as_ref().expect("text encoder").valid(),
            unet: m.unet.as_ref().expect("unet").valid(),
            vae: m.vae.valid(),
            scheduler_config: self.scheduler.clone(),
            vae_scaling_factor: m.vae_scaling_factor,
            vae_scale_factor: m.vae_scale_factor,
            device: self.plain.clone(),
        }
    }
}

/// Nearest-neighbour downsampling of `[b, s, s]` masks to `[b, h, w]` (torch's
/// `F.interpolate(mode="nearest")`: source index `floor(i · s / h)`).
fn nearest_downsample(masks: &[f32], b: usize, s: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(b * h * w);
    for n in 0..b {
        for y in 0..h {
            for x in 0..w {
                out.push(masks[n * s * s + (y * s / h) * s + x * s / w]);
            }
        }
    }
    out
}

/// An example's pixels as 8-bit RGB.
fn example_rgb(example: &Example, s: usize) -> RgbImage {
    planes_to_rgb8(&example.pixels, s, s)
}

/// Tiles side by side, `columns` per row, 4-pixel dark gaps.
pub fn grid(tiles: &[RgbImage], columns: usize) -> RgbImage {
    let (tw, th) = (tiles[0].width, tiles[0].height);
    let rows = tiles.len().div_ceil(columns);
    let (width, height) = (columns * (tw + 4) + 4, rows * (th + 4) + 4);
    let mut pixels = vec![30u8; width * height * 3];
    for (i, tile) in tiles.iter().enumerate() {
        let (x0, y0) = (4 + (i % columns) * (tw + 4), 4 + (i / columns) * (th + 4));
        for y in 0..th {
            let row = &tile.pixels[y * tw * 3..(y + 1) * tw * 3];
            let at = ((y0 + y) * width + x0) * 3;
            pixels[at..at + tw * 3].copy_from_slice(row);
        }
    }
    RgbImage { width, height, pixels }
}
