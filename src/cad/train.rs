//! Training the CAD: binary cross-entropy on the lesion logit (positives weighted by the
//! healthy/lesion ratio, PyTorch's `pos_weight`), AdamW, a seeded order each epoch, validation
//! AUROC after each epoch on a held-out share of the first set's training split. The run folder:
//!
//! - `model/`: the best epoch by validation AUROC (`config.json`, `model.safetensors`);
//! - `checkpoint/`: the last epoch with the optimizer and `state.json`: a run started again on the
//!   same folder continues from it, exactly as if it had not stopped;
//! - `log.jsonl` (one line per epoch) and `validation.png` (AUROC per epoch).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::data::{Example, Split, crop, grid_patches, id_hash, is_validation, load, patch_origin};
use super::model::{Cad, CadConfig};
use crate::eval::roc::{Rating, analyse};
use crate::rng::NoiseRng;
use crate::train::optim::{AdamW, NamedGrads, accumulate};

/// Everything that determines a run (kept in the checkpoint: a resumed run must match it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Training sets: the first one's training split (less the validation share), then every
    /// image of the others (e.g. synthetic sets).
    pub sets: Vec<PathBuf>,
    pub config: CadConfig,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub seed: u64,
    pub validation_fraction: f64,
    /// At most this many images from the sets after the first (chosen by id and seed).
    #[serde(default)]
    pub extra_limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    settings: Settings,
    epochs_done: usize,
    best_auroc: Option<f64>,
}

/// One line of `log.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub loss: f64,
    pub validation_auroc: Option<f64>,
    pub validation_ci95: Option<[f64; 2]>,
}

/// `count` planes of `side × side` values as a batch.
pub fn to_batch(values: Vec<f32>, count: usize, side: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, [count, 1, side, side]), device)
}

/// Image scores of `examples` (any device; no gradients kept): the largest logit of the image's
/// grid of patches (the logit of the whole image when the patch is the image).
pub fn logits(model: &Cad, examples: &[&Example], config: &CadConfig, device: &Device) -> Vec<f32> {
    let (side, patch) = (config.image_size, config.input_size);
    examples
        .iter()
        .map(|e| {
            let origins = grid_patches(&e.pixels, side, patch);
            let mut best = f32::NEG_INFINITY;
            for chunk in origins.chunks(32) {
                let values: Vec<f32> = chunk.iter().flat_map(|&(x, y)| crop(&e.pixels, side, x, y, patch)).collect();
                let scores = model.forward(to_batch(values, chunk.len(), patch, device)).into_data().try_into_vec::<f32>().expect("f32 logits");
                best = scores.into_iter().fold(best, f32::max);
            }
            best
        })
        .collect()
}

/// `scores` of `examples` as ROC ratings (positive: lesion).
pub fn ratings(examples: &[&Example], scores: &[f32]) -> Vec<Rating> {
    examples.iter().zip(scores).map(|(e, &s)| Rating { real: e.lesion, score: f64::from(s) }).collect()
}

/// AUROC with DeLong's interval of `scores` (positive: lesion).
pub fn auroc(examples: &[&Example], scores: &[f32]) -> Result<(f64, [f64; 2]), String> {
    analyse(&ratings(examples, scores)).map(|r| (r.auroc, r.ci95))
}

/// PyTorch's `BCEWithLogitsLoss(pos_weight)`, mean over the batch:
/// pos_weight · y · softplus(−l) + (1 − y) · softplus(l).
fn bce_with_logits(logits: Tensor<1>, labels: &[f32], pos_weight: f64, device: &Device) -> Tensor<1> {
    let y = Tensor::<1>::from_data(TensorData::new(labels.to_vec(), [labels.len()]), device);
    let softplus = |l: Tensor<1>| relu(l.clone()) + l.abs().neg().exp().log1p();
    let loss = softplus(logits.clone().neg()) * y.clone() * pos_weight + softplus(logits) * (y.neg() + 1.0);
    loss.mean()
}

/// The model folder: `config.json` and `model.safetensors`.
pub fn write_model(dir: &Path, model: &Cad, config: &CadConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::atomic::write(&dir.join("config.json"), &serde_json::to_vec_pretty(config)?)?;
    crate::atomic::write(&dir.join("model.safetensors"), &crate::weights::diffusers::module_safetensors(model)?)?;
    Ok(())
}

/// A model folder written by [`write_model`], on `device`.
pub fn read_model(dir: &Path, device: &Device) -> anyhow::Result<(Cad, CadConfig)> {
    let config_path = dir.join("config.json");
    let config = std::fs::read(&config_path).with_context(|| format!("{} is not a CAD model folder", dir.display()))?;
    let weights = dir.join("model.safetensors");
    let bytes = std::fs::read(&weights).with_context(|| format!("reading {}", weights.display()))?;
    CadConfig::load(&config, bytes, device).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))
}

fn read_checkpoint(out: &Path, settings: &Settings, device: &Device) -> anyhow::Result<Option<(Cad, AdamW, State)>> {
    let dir = out.join("checkpoint");
    let Ok(text) = std::fs::read(dir.join("state.json")) else { return Ok(None) };
    let state: State = serde_json::from_slice(&text).context("checkpoint/state.json")?;
    if state.settings_without_epochs(settings.epochs) != *settings {
        bail!("{} holds a run with other settings ({:?}): give another --out", out.display(), state.settings);
    }
    let (model, _) = read_model(&dir, device)?;
    let mut optimizer = AdamW::new(settings.weight_decay);
    optimizer.load_safetensors(&std::fs::read(dir.join("optimizer.safetensors"))?, device).map_err(anyhow::Error::msg)?;
    Ok(Some((model, optimizer, state)))
}

impl State {
    /// The settings with `epochs` replaced: a run may be extended by asking for more epochs.
    fn settings_without_epochs(&self, epochs: usize) -> Settings {
        Settings { epochs, ..self.settings.clone() }
    }
}

/// Writes the checkpoint folder beside its final place and renames it over the old one, so a
/// kill leaves the previous checkpoint whole.
fn write_checkpoint(out: &Path, model: &Cad, optimizer: &AdamW, state: &State) -> anyhow::Result<()> {
    let fresh = out.join("checkpoint.new");
    let _ = std::fs::remove_dir_all(&fresh);
    write_model(&fresh, model, &state.settings.config)?;
    std::fs::write(fresh.join("optimizer.safetensors"), optimizer.to_safetensors())?;
    std::fs::write(fresh.join("state.json"), serde_json::to_vec_pretty(state)?)?;
    let old = out.join("checkpoint.old");
    let _ = std::fs::remove_dir_all(&old);
    let current = out.join("checkpoint");
    if current.exists() {
        std::fs::rename(&current, &old)?;
    }
    std::fs::rename(&fresh, &current)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// The examples of a run: training, validation.
pub fn examples(settings: &Settings) -> anyhow::Result<(Vec<Example>, Vec<Example>)> {
    let side = settings.config.image_size;
    let (mut train, mut validation) = (Vec::new(), Vec::new());
    for (k, set) in settings.sets.iter().enumerate() {
        let (examples, skipped) = load(set, side, if k == 0 { Split::Training } else { Split::All })?;
        for s in skipped {
            eprintln!("skipped {s}");
        }
        if k == 0 {
            for e in examples {
                if is_validation(&e.id, settings.validation_fraction) { validation.push(e) } else { train.push(e) }
            }
        } else {
            let mut examples = examples;
            if let Some(limit) = settings.extra_limit {
                examples.sort_by_key(|e| id_hash(&e.id, settings.seed ^ 0x5EED));
                examples.truncate(limit);
            }
            train.extend(examples);
        }
    }
    Ok((train, validation))
}

/// Trains (or continues) the run in `out`; returns the per-epoch reports of this call.
pub fn train(settings: &Settings, out: &Path, quiet: bool) -> anyhow::Result<Vec<EpochReport>> {
    settings.config.check().map_err(anyhow::Error::msg)?;
    if settings.batch_size == 0 || settings.epochs == 0 {
        bail!("--batch-size and --epochs must be at least 1");
    }
    let (side, patch) = (settings.config.image_size, settings.config.input_size);
    let (train, validation) = examples(settings)?;
    let positives = train.iter().filter(|e| e.lesion).count();
    if positives == 0 || positives == train.len() {
        bail!("the training images are all of one class ({} of {} with a lesion)", positives, train.len());
    }
    let pos_weight = (train.len() - positives) as f64 / positives as f64;
    let plain = Device::flex();
    let device = plain.clone().autodiff();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (model, mut optimizer, mut state) = match read_checkpoint(out, settings, &plain)? {
        Some((model, optimizer, state)) => (model, optimizer, State { settings: settings.clone(), ..state }),
        None => {
            // The initial weights from the seed (burn's initialisers draw from its global generator).
            plain.seed(settings.seed);
            (settings.config.init(&plain), AdamW::new(settings.weight_decay), State { settings: settings.clone(), epochs_done: 0, best_auroc: None })
        }
    };
    let mut model = model.fork(&device).train();
    let steps_per_epoch = train.len().div_ceil(settings.batch_size);
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(((settings.epochs.saturating_sub(state.epochs_done)) * steps_per_epoch) as u64) };
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  {elapsed} (eta {eta})").context("template")?);
    let mut reports = Vec::new();
    for epoch in state.epochs_done..settings.epochs {
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut rng = NoiseRng::new(settings.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for i in (1..order.len()).rev() {
            order.swap(i, ((rng.uniform() * (i + 1) as f64) as usize).min(i));
        }
        let mut loss_sum = 0.0;
        for batch in order.chunks(settings.batch_size) {
            let examples: Vec<&Example> = batch.iter().map(|&i| &train[i]).collect();
            let labels: Vec<f32> = examples.iter().map(|e| f32::from(u8::from(e.lesion))).collect();
            let values: Vec<f32> = examples
                .iter()
                .flat_map(|e| {
                    let (x, y) = patch_origin(e, side, patch, &mut rng);
                    crop(&e.pixels, side, x, y, patch)
                })
                .collect();
            let loss = bce_with_logits(model.forward(to_batch(values, examples.len(), patch, &device)), &labels, pos_weight, &device);
            let value = f64::from(loss.clone().into_scalar::<f32>());
            let grads = loss.backward();
            let mut named = NamedGrads::new();
            accumulate(&model, &grads, &mut named);
            model = optimizer.step(model, &named, settings.learning_rate, 1.0);
            optimizer.finish_step();
            loss_sum += value * batch.len() as f64;
            bar.inc(1);
            bar.set_message(format!("epoch {} loss {value:.4}", epoch + 1));
        }
        let inference = model.valid();
        let validation_refs: Vec<&Example> = validation.iter().collect();
        let scored = auroc(&validation_refs, &logits(&inference, &validation_refs, &settings.config, &plain)).ok();
        let report =
            EpochReport { epoch: epoch + 1, loss: loss_sum / train.len() as f64, validation_auroc: scored.map(|s| s.0), validation_ci95: scored.map(|s| s.1) };
        state.epochs_done = epoch + 1;
        let better = match (report.validation_auroc, state.best_auroc) {
            (Some(a), Some(best)) => a > best,
            (Some(_), None) => true,
            (None, _) => state.epochs_done == settings.epochs,
        };
        if better || !out.join("model").exists() {
            state.best_auroc = report.validation_auroc.or(state.best_auroc);
            write_model(&out.join("model"), &inference, &settings.config)?;
        }
        write_checkpoint(out, &inference, &optimizer, &state)?;
        append_log(out, &report)?;
        bar.println(format!(
            "epoch {}: loss {:.4}, validation AUROC {}",
            report.epoch,
            report.loss,
            report.validation_auroc.map_or("— (one class only)".into(), |a| format!("{a:.4}"))
        ));
        reports.push(report);
    }
    bar.finish_and_clear();
    plot_validation(out)?;
    Ok(reports)
}

fn append_log(out: &Path, report: &EpochReport) -> anyhow::Result<()> {
    use std::io::Write;
    let path = out.join("log.jsonl");
    // A resumed run rewrites the lines of epochs it redoes.
    let kept: Vec<String> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter(|l| serde_json::from_str::<EpochReport>(l).is_ok_and(|r| r.epoch < report.epoch))
        .map(String::from)
        .collect();
    let mut file = std::fs::File::create(&path)?;
    for line in kept {
        writeln!(file, "{line}")?;
    }
    writeln!(file, "{}", serde_json::to_string(report)?)?;
    Ok(())
}

/// `validation.png`: validation AUROC per epoch.
fn plot_validation(out: &Path) -> anyhow::Result<()> {
    let points: Vec<(f64, f64)> = std::fs::read_to_string(out.join("log.jsonl"))?
        .lines()
        .filter_map(|l| serde_json::from_str::<EpochReport>(l).ok())
        .filter_map(|r| Some((r.epoch as f64, r.validation_auroc?)))
        .collect();
    if points.len() >= 2 {
        crate::atomic::write(&out.join("validation.png"), &crate::train::log::plot(&points, 480, 240).to_png(&[])?)?;
    }
    Ok(())
}
