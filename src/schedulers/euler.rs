//! EulerDiscreteScheduler (no churn), as diffusers' `schedulers/scheduling_euler_discrete.py`.
//! Its timesteps are fractional with "linspace" spacing, its class default.

use burn::tensor::Tensor;

use super::config::{PredictionType, SchedulerConfig, TimestepSpacing, interp, linspace, spaced_timesteps};
use super::{Scheduler, train_sigmas};
use crate::Result;

pub struct EulerDiscrete {
    timesteps: Vec<f64>,
    /// One per timestep, then a final 0.
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
    prediction: PredictionType,
}

impl EulerDiscrete {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        let train = config.num_train_timesteps;
        let spacing = config.spacing(TimestepSpacing::Linspace)?;
        let timesteps: Vec<f64> = match spacing {
            // Unrounded: Euler keeps fractional timesteps here.
            TimestepSpacing::Linspace => linspace(0.0, (train - 1) as f64, steps).rev().map(|t| t as f32 as f64).collect(),
            other => spaced_timesteps(other, train, steps, config.steps_offset),
        };
        let all = train_sigmas(&config.alphas_cumprod()?);
        let mut sigmas: Vec<f64> = timesteps.iter().map(|t| interp(*t, &all) as f32 as f64).collect();
        let max = sigmas.iter().cloned().fold(0.0, f64::max);
        let init_noise_sigma = match spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
        };
        sigmas.push(0.0);
        Ok(Self { timesteps, sigmas, init_noise_sigma, prediction: config.prediction()? })
    }
}

impl Scheduler for EulerDiscrete {
    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, index: usize) -> Tensor<4> {
        original + noise * self.sigmas[index]
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        self.init_noise_sigma
    }

    fn scale_model_input(&self, sample: Tensor<4>, index: usize) -> Tensor<4> {
        let sigma = self.sigmas[index];
        sample / (sigma * sigma + 1.0).sqrt()
    }

    fn step(&mut self, model_output: Tensor<4>, index: usize, sample: Tensor<4>) -> Tensor<4> {
        let (sigma, sigma_next) = (self.sigmas[index], self.sigmas[index + 1]);
        let dt = sigma_next - sigma;
        match self.prediction {
            // derivative = (sample - x0) / sigma = ε
            PredictionType::Epsilon => sample + model_output * dt,
            PredictionType::VPrediction => {
                let c = sigma * sigma + 1.0;
                let pred_x0 = model_output * (-sigma / c.sqrt()) + sample.clone() / c;
                let derivative = (sample.clone() - pred_x0) / sigma;
                sample + derivative * dt
            }
        }
    }
}
