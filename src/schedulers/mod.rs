//! Noise schedulers, one file each, behind one small trait — the diffusers scheduler API.
//!
//! Timesteps are `f64` because Euler's are fractional; the others hold integers in them.
//! Coefficients are plain numbers; only latents and saved model outputs are tensors.

pub mod config;
pub mod ddim;
pub mod dpm_solver;
pub mod euler;
pub mod pndm;

use burn::tensor::Tensor;

pub use config::{PredictionType, SchedulerConfig, TimestepSpacing};

use crate::{Error, Result};

/// A diffusers-style scheduler set up for a fixed number of inference steps.
pub trait Scheduler {
    /// The timesteps handed to the UNet, one per `step` call, in order.
    fn timesteps(&self) -> &[f64];
    /// Multiplier of the initial unit Gaussian noise (1 unless the scheduler works in sigma space).
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }
    /// Scales the latents before the UNet sees them at step `index` (identity unless the
    /// scheduler works in sigma space).
    fn scale_model_input(&self, sample: Tensor<4>, _index: usize) -> Tensor<4> {
        sample
    }
    /// `original` noised to the timestep of step `index` (diffusers' `add_noise`, which the
    /// inpainting pipeline calls with the next step's timestep to blend a 4-channel model's
    /// latents with the image outside the mask).
    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, index: usize) -> Tensor<4>;
    /// One denoising step from `sample` at step `index`, given the UNet output for it.
    fn step(&mut self, model_output: Tensor<4>, index: usize, sample: Tensor<4>) -> Tensor<4>;
}

/// `√ᾱ_t · original + √(1 − ᾱ_t) · noise`: `add_noise` of the schedulers that work in ᾱ.
fn add_noise_vp(alphas_cumprod: &[f64], t: f64, original: Tensor<4>, noise: Tensor<4>) -> Tensor<4> {
    let alpha = alphas_cumprod[t as usize];
    original * alpha.sqrt() + noise * (1.0 - alpha).sqrt()
}

/// The schedulers we offer, by their CLI and UI names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum SchedulerKind {
    /// DPMSolverMultistepScheduler (dpmsolver++, order 2): MAM-E's default.
    #[default]
    Dpm,
    /// DDIMScheduler with eta 0.
    Ddim,
    /// PNDMScheduler (PLMS, skipping PRK steps): SD1.5's shipped scheduler.
    Pndm,
    /// EulerDiscreteScheduler.
    Euler,
}

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 4] = [SchedulerKind::Dpm, SchedulerKind::Ddim, SchedulerKind::Pndm, SchedulerKind::Euler];

    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Dpm => "dpm",
            SchedulerKind::Ddim => "ddim",
            SchedulerKind::Pndm => "pndm",
            SchedulerKind::Euler => "euler",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SchedulerKind::Dpm => "DPM-Solver++ (2M)",
            SchedulerKind::Ddim => "DDIM",
            SchedulerKind::Pndm => "PNDM (PLMS)",
            SchedulerKind::Euler => "Euler",
        }
    }

    /// Builds this scheduler from a diffusers config for `steps` inference steps.
    pub fn build(self, config: &SchedulerConfig, steps: usize) -> Result<Box<dyn Scheduler>> {
        if steps == 0 || steps > config.num_train_timesteps {
            return Err(Error::InvalidInput { what: "steps", reason: format!("{steps} is outside 1..={}", config.num_train_timesteps) });
        }
        config.check_supported(self)?;
        Ok(match self {
            SchedulerKind::Dpm => Box::new(dpm_solver::DpmSolverMultistep::new(config, steps)?),
            SchedulerKind::Ddim => Box::new(ddim::Ddim::new(config, steps)?),
            SchedulerKind::Pndm => Box::new(pndm::Pndm::new(config, steps)?),
            SchedulerKind::Euler => Box::new(euler::EulerDiscrete::new(config, steps)?),
        })
    }
}

impl std::str::FromStr for SchedulerKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        SchedulerKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| Error::InvalidInput { what: "scheduler", reason: format!("{s:?} is not one of dpm, ddim, pndm, euler") })
    }
}

/// `sqrt((1 - ᾱ) / ᾱ)` for every training timestep: the noise level of the VE view.
pub(crate) fn train_sigmas(alphas_cumprod: &[f64]) -> Vec<f64> {
    alphas_cumprod.iter().map(|a| (((1.0 - a) / a) as f32).sqrt() as f64).collect()
}
