//! `mam-e cad train | eval | explain`: the lesion classifier of the CAD study (MAM-E §3.3).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::module::Module;
use burn::tensor::Device;
use serde_json::json;

use crate::cad::data::{Example, Split, load, read_pixels};
use crate::cad::explain::{LesionAttention, check_occlusion, grad_cam, lesion_attention, logit, npy, occlusion, overlay, probability, saliency, smoothgrad};
use crate::cad::model::{CadConfig, breast_mask, lesion_mask};
use crate::cad::train::{Settings, auroc, logits, ratings, read_model, train};
use crate::eval::fidelity::mean_sd;
use crate::eval::plot::{AurocGroup, auroc_svg};
use crate::eval::roc::{Rating, delong_paired};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: CadCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CadCommand {
    /// Train the classifier (healthy vs lesion) on prepared sets; seeded, resumes exactly.
    Train(TrainArgs),
    /// AUROC (with DeLong's 95 % interval) of a trained classifier on a prepared set.
    Eval(EvalArgs),
    /// Heatmaps of where the classifier looks on one image: Grad-CAM, saliency, SmoothGrad, occlusion.
    Explain(ExplainArgs),
    /// The augmentation study: train on real, real + synthetic and synthetic images over seeds; AUROC on the real test split.
    Study(StudyArgs),
}

/// The architecture and optimisation flags shared by `train` and `study`.
#[derive(Debug, Clone, clap::Args)]
pub struct Recipe {
    /// Architecture: tiny, small or resnet18.
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// Images are resized to SIZE×SIZE.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// The classifier sees PATCH×PATCH windows (around lesions, anywhere in healthy breasts) and
    /// scores an image by its highest window; PATCH = SIZE classifies whole images.
    #[arg(long, default_value_t = 32)]
    patch: usize,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    /// Share of the first set's training split held out for validation (chosen by image id).
    #[arg(long, default_value_t = 0.15)]
    validation_fraction: f64,
}

impl Recipe {
    fn settings(&self, sets: Vec<PathBuf>, seed: u64, extra_limit: Option<usize>) -> anyhow::Result<Settings> {
        if !(0.0..1.0).contains(&self.validation_fraction) {
            bail!("--validation-fraction {} is not in [0, 1)", self.validation_fraction);
        }
        Ok(Settings {
            sets,
            config: CadConfig::preset(&self.preset, self.patch, self.size).map_err(anyhow::Error::msg)?,
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
            seed,
            validation_fraction: self.validation_fraction,
            extra_limit,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct StudyArgs {
    /// The real images: a prepared set (training split to train on, test split to evaluate on).
    #[arg(long)]
    real: PathBuf,
    /// The synthetic images: a prepared set (e.g. `mam-e synth`), every image usable.
    #[arg(long)]
    synthetic: PathBuf,
    /// Synthetic images added to the real ones, as a multiple of the real training images (k).
    #[arg(long, default_value_t = 1.0)]
    ratio: f64,
    /// Seeds per variant.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// The study folder: one run folder per variant and seed (a rerun continues), study.json.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    recipe: Recipe,
}

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// A prepared set: its training split, less a validation share.
    #[arg(long)]
    data: PathBuf,
    /// More training sets, every image of them (e.g. a `mam-e synth` output).
    #[arg(long)]
    extra: Vec<PathBuf>,
    /// The run folder (model/, checkpoint/, log.jsonl); an existing run there continues.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    recipe: Recipe,
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// A model folder (`cad train`'s out/model).
    #[arg(long)]
    model: PathBuf,
    /// A prepared set.
    #[arg(long)]
    data: PathBuf,
    #[arg(long, value_enum, default_value = "test")]
    split: Split,
    /// Write the result as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Method {
    GradCam,
    Saliency,
    Smoothgrad,
    Occlusion,
    All,
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The image (PNG).
    image: PathBuf,
    /// A model folder (`cad train`'s out/model).
    #[arg(long)]
    model: PathBuf,
    /// The lesion's mask (PNG, ≥ 128 inside): adds the lesion-attention figures.
    #[arg(long)]
    mask: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "all")]
    method: Method,
    /// Occlusion: the window's side in model pixels.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Occlusion: how far the window moves.
    #[arg(long, default_value_t = 8)]
    stride: usize,
    /// SmoothGrad: noisy copies.
    #[arg(long, default_value_t = 16)]
    samples: usize,
    /// SmoothGrad: the noise's standard deviation (input range [−1, 1]).
    #[arg(long, default_value_t = 0.3)]
    noise: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder: an overlay PNG and the raw map (.npy, float32) per method, explain.json.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        CadCommand::Train(a) => run_train(a),
        CadCommand::Eval(a) => run_eval(a),
        CadCommand::Explain(a) => run_explain(a),
        CadCommand::Study(a) => run_study(a),
    }
}

fn run_train(a: TrainArgs) -> anyhow::Result<()> {
    let settings = a.recipe.settings(std::iter::once(a.data).chain(a.extra).collect(), a.seed, None)?;
    train(&settings, &a.out, false)?;
    println!("model in {}", a.out.join("model").display());
    Ok(())
}

/// A model on a set's split.
pub struct Evaluation {
    pub examples: Vec<Example>,
    pub scores: Vec<f32>,
    pub auroc: f64,
    pub ci95: [f64; 2],
}

/// The model in `dir` on `data`'s `split`.
pub fn evaluate(dir: &Path, data: &Path, split: Split) -> anyhow::Result<Evaluation> {
    let device = Device::flex();
    let (model, config) = read_model(dir, &device)?;
    let (examples, skipped) = load(data, config.image_size, split)?;
    for s in skipped {
        eprintln!("skipped {s}");
    }
    let refs: Vec<&Example> = examples.iter().collect();
    let scores = logits(&model, &refs, &config, &device);
    let (auroc, ci95) = auroc(&refs, &scores).map_err(anyhow::Error::msg)?;
    Ok(Evaluation { examples, scores, auroc, ci95 })
}

fn run_eval(a: EvalArgs) -> anyhow::Result<()> {
    let Evaluation { examples, auroc: area, ci95: ci, .. } = evaluate(&a.model, &a.data, a.split)?;
    let lesions = examples.iter().filter(|e| e.lesion).count();
    println!("{} images ({lesions} with a lesion): AUROC {area:.4} (95 % CI {:.4}–{:.4}, DeLong)", examples.len(), ci[0], ci[1]);
    if let Some(path) = &a.json {
        let report =
            json!({ "images": examples.len(), "lesions": lesions, "auroc": area, "ci95": ci, "ci_method": "DeLong", "split": format!("{:?}", a.split) });
        crate::atomic::write(path, &serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

fn run_explain(a: ExplainArgs) -> anyhow::Result<()> {
    let plain = Device::flex();
    let device = plain.clone().autodiff();
    let (model, config) = read_model(&a.model, &plain)?;
    let model = model.fork(&device);
    let side = config.image_size;
    let pixels = read_pixels(&a.image, side)?;
    let mask = match &a.mask {
        Some(path) => Some(lesion_mask(&read_pixels(path, side)?)),
        None => {
            println!("no --mask: the heatmaps are written without the lesion-attention figures");
            None
        }
    };
    if a.method == Method::Occlusion || a.method == Method::All {
        check_occlusion(side, a.window, a.stride).map_err(anyhow::Error::msg)?;
    }
    let breast = breast_mask(&pixels);
    let l = logit(&model, &pixels, side, &device);
    let methods: Vec<Method> = match a.method {
        Method::All => vec![Method::GradCam, Method::Saliency, Method::Smoothgrad, Method::Occlusion],
        m => vec![m],
    };
    let mut maps = Vec::new();
    for method in methods {
        let (name, map) = match method {
            Method::GradCam => ("grad_cam", grad_cam(&model, &pixels, side, &device).2),
            Method::Saliency => ("saliency", saliency(&model, &pixels, side, &device)),
            Method::Smoothgrad => ("smoothgrad", smoothgrad(&model, &pixels, side, a.samples, a.noise, a.seed, &device)),
            Method::Occlusion => ("occlusion", occlusion(&model, &pixels, side, a.window, a.stride, &device).map_err(anyhow::Error::msg)?),
            Method::All => unreachable!("expanded above"),
        };
        let attention: Option<LesionAttention> = mask.as_ref().and_then(|m| lesion_attention(&map, m, &breast));
        maps.push((name, map, attention));
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut report = json!({ "image": a.image.display().to_string(), "logit": l, "probability": probability(l), "input_size": side });
    for (name, map, attention) in &maps {
        crate::atomic::write(&a.out.join(format!("{name}.png")), &overlay(&pixels, map, side, 0.5).to_png(&[])?)?;
        crate::atomic::write(&a.out.join(format!("{name}.npy")), &npy(map, side, side))?;
        report[*name] = json!({ "lesion_attention": attention });
        match attention {
            Some(at) => println!(
                "{name:<11} heatmap mass on the lesion {:.3} for {:.3} of the breast: {:.2}× its share",
                at.mass_in_lesion, at.lesion_share_of_breast, at.ratio
            ),
            None => println!("{name:<11} written"),
        }
    }
    crate::atomic::write(&a.out.join("explain.json"), &serde_json::to_vec_pretty(&report)?)?;
    println!("lesion probability {:.3}; heatmaps in {}", probability(l), a.out.display());
    Ok(())
}

/// One run of the study: seed, AUROC on the real test split, its 95 % interval, the test
/// images' ratings (for the paired comparison).
type StudyRun = (u64, f64, [f64; 2], Vec<Rating>);

fn run_study(a: StudyArgs) -> anyhow::Result<()> {
    if a.seeds == 0 || a.ratio.is_nan() || a.ratio <= 0.0 {
        bail!("--seeds must be at least 1 and --ratio above 0");
    }
    // The real training images (less validation) set how many synthetic ones are added.
    let probe = a.recipe.settings(vec![a.real.clone()], 0, None)?;
    let real_training = crate::cad::train::examples(&probe)?.0.len();
    let limit = ((real_training as f64) * a.ratio).round() as usize;
    let variants: [(&str, Vec<PathBuf>, Option<usize>); 3] = [
        ("real", vec![a.real.clone()], None),
        ("real+synthetic", vec![a.real.clone(), a.synthetic.clone()], Some(limit)),
        ("synthetic", vec![a.synthetic.clone()], None),
    ];
    let mut results: Vec<(String, Vec<StudyRun>)> = Vec::new();
    for (name, sets, extra_limit) in &variants {
        let mut runs = Vec::new();
        for seed in 0..a.seeds {
            let folder = a.out.join(format!("{}-seed{seed}", name.replace('+', "-plus-")));
            println!("{name}, seed {seed}: training in {}", folder.display());
            train(&a.recipe.settings(sets.clone(), seed, *extra_limit)?, &folder, false)?;
            let Evaluation { examples, scores, auroc: area, ci95: ci } = evaluate(&folder.join("model"), &a.real, Split::Test)?;
            println!("{name}, seed {seed}: AUROC {area:.4} (95 % CI {:.4}–{:.4}) on the real test split", ci[0], ci[1]);
            runs.push((seed, area, ci, ratings(&examples.iter().collect::<Vec<_>>(), &scores)));
        }
        results.push((name.to_string(), runs));
    }
    println!("\n{:<16} {:>8} {:>8}  per seed (AUROC on the real test split)", "trained on", "mean", "sd");
    let mut report = json!({ "real": a.real.display().to_string(), "synthetic": a.synthetic.display().to_string(), "ratio": a.ratio,
        "synthetic_added": limit, "real_training_images": real_training, "seeds": a.seeds, "variants": {} });
    for (name, runs) in &results {
        let areas: Vec<f64> = runs.iter().map(|r| r.1).collect();
        let (mean, sd) = mean_sd(&areas);
        println!("{name:<16} {mean:>8.4} {sd:>8.4}  {}", areas.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(" "));
        report["variants"][name] =
            json!({ "mean": mean, "sd": sd, "runs": runs.iter().map(|(s, a, ci, _)| json!({ "seed": s, "auroc": a, "ci95": ci })).collect::<Vec<_>>() });
    }
    let differences: Vec<f64> = results[1].1.iter().zip(&results[0].1).map(|(b, a)| b.1 - a.1).collect();
    let (mean, sd) = mean_sd(&differences);
    println!("real+synthetic − real: {mean:+.4} ± {sd:.4} (mean ± sd over {} paired seeds)", differences.len());
    // Per seed, both models scored the same real test images: DeLong's test for correlated curves.
    let mut paired = Vec::new();
    for (b, a) in results[1].1.iter().zip(&results[0].1) {
        let test = delong_paired(&b.3, &a.3).map_err(anyhow::Error::msg)?;
        println!(
            "  seed {}: {:+.4} (95 % CI {:+.4} to {:+.4}, DeLong's paired test p = {:.3})",
            b.0, test.difference, test.ci95[0], test.ci95[1], test.p_value
        );
        paired.push(json!({ "seed": b.0, "difference": test.difference, "ci95": test.ci95, "p_value": test.p_value }));
    }
    report["difference_real_plus_synthetic_minus_real"] = json!({ "mean": mean, "sd": sd, "per_seed": differences, "paired_delong": paired });
    crate::atomic::write(&a.out.join("study.json"), &serde_json::to_vec_pretty(&report)?)?;
    let groups: Vec<AurocGroup> = results.iter().map(|(name, runs)| AurocGroup { name, runs: runs.iter().map(|r| (r.1, r.2)).collect() }).collect();
    let title = format!("CAD trained on real, real + synthetic, synthetic images: {} seeds, 95 % DeLong intervals", a.seeds);
    crate::atomic::write(&a.out.join("study.svg"), auroc_svg(&groups, &title).as_bytes())?;
    println!("wrote {} and study.svg", a.out.join("study.json").display());
    Ok(())
}
