//! The native research CLI, `mam-e`: one subcommand per job, each in its own file.

mod bench;
mod cad;
mod convert;
mod doctor;
mod eval;
mod fidelity;
mod generate;
mod phantom;
mod prepare;
mod roc;
mod synth;
mod train;

use clap::{Parser, Subcommand, ValueEnum};

use crate::device::Backend;
use crate::rng::NoiseSource;
use crate::schedulers::SchedulerKind;

/// MAM-E mammography synthesis: research tools (the web app is built with Trunk).
#[derive(Debug, Parser)]
#[command(name = "mam-e", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a healthy mammogram from a prompt (text-to-image).
    Generate(generate::GenerateArgs),
    /// Paint a synthetic lesion into a mammogram under a mask (needs an inpainting model).
    Inpaint(generate::InpaintArgs),
    /// Turn a diffusers folder into a sharded, checksummed, optionally quantized package for the web app.
    Convert(convert::Args),
    /// Time the UNet CFG step, the text encoder and the VAE decoder (median after a warm-up).
    Bench(bench::Args),
    /// Procedural mammograms with exact labels: a VinDr-Mammo folder (DICOM + CSVs) or a prepared training set.
    Phantom(phantom::Args),
    /// DICOM mammograms (VinDr-Mammo folder or a CSV) → MAM-E's training set (PNG + metadata.jsonl + masks).
    Prepare(prepare::Args),
    /// Fine-tune or train a model (UNet + text encoder, inpainting, or the VAE); exact resume.
    Train(train::Args),
    /// A labelled synthetic dataset in bulk (healthy + inpainted lesions, PNG or DICOM), shardable over a Slurm array; `synth merge` joins the parts.
    Synth(synth::Args),
    /// Measure a model (prompt adherence, inpainting locality) or a reader study (ROC, AUROC).
    Eval(eval::Args),
    /// The lesion classifier (CAD): train, evaluate, explain with heatmaps.
    Cad(cad::Args),
    /// Check the compute backends: run the ops SD is built from and compare with f64 references.
    Doctor(doctor::Args),
}

/// `--backend` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// burn flex on the CPU.
    Cpu,
    /// burn-wgpu on the GPU (Vulkan, Metal or DX12).
    Wgpu,
}

impl From<BackendArg> for Backend {
    fn from(arg: BackendArg) -> Self {
        match arg {
            BackendArg::Cpu => Backend::Cpu,
            BackendArg::Wgpu => Backend::Wgpu,
        }
    }
}

/// `--precision` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    /// f32 everywhere (diffusers' default, the CPU's only choice).
    F32,
    /// UNet and text encoder in f16 (GPUs with f16 shaders; norms, attention and the VAE stay f32).
    F16,
}

impl From<PrecisionArg> for crate::model::precision::Precision {
    fn from(arg: PrecisionArg) -> Self {
        match arg {
            PrecisionArg::F32 => Self::F32,
            PrecisionArg::F16 => Self::F16,
        }
    }
}

/// `--scheduler` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchedulerArg {
    /// DPM-Solver++ (2M), MAM-E's default.
    Dpm,
    /// DDIM (eta 0).
    Ddim,
    /// PNDM / PLMS, SD1.5's shipped scheduler.
    Pndm,
    /// Euler (discrete).
    Euler,
}

impl From<SchedulerArg> for SchedulerKind {
    fn from(arg: SchedulerArg) -> Self {
        match arg {
            SchedulerArg::Dpm => SchedulerKind::Dpm,
            SchedulerArg::Ddim => SchedulerKind::Ddim,
            SchedulerArg::Pndm => SchedulerKind::Pndm,
            SchedulerArg::Euler => SchedulerKind::Euler,
        }
    }
}

/// `--noise` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NoiseArg {
    /// PyTorch's CPU generator, as diffusers draws it: MAM-E's seeds.
    Torch,
    /// mam-e's own generator (what it drew before it reproduced PyTorch).
    Ours,
}

impl From<NoiseArg> for NoiseSource {
    fn from(arg: NoiseArg) -> Self {
        match arg {
            NoiseArg::Torch => NoiseSource::Torch,
            NoiseArg::Ours => NoiseSource::Ours,
        }
    }
}

/// Parses the process arguments and runs the subcommand.
pub fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Generate(args) => generate::generate(args),
        Command::Inpaint(args) => generate::inpaint(args),
        Command::Convert(args) => convert::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Phantom(args) => phantom::run(args),
        Command::Prepare(args) => prepare::run(args),
        Command::Train(args) => train::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Cad(args) => cad::run(args),
    }
}
