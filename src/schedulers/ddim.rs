//! DDIMScheduler with eta = 0 (deterministic), as diffusers'
//! `schedulers/scheduling_ddim.py`, including `clip_sample` / `clip_sample_range`.

use burn::tensor::Tensor;

use super::Scheduler;
use super::config::{PredictionType, SchedulerConfig, TimestepSpacing, spaced_timesteps};
use crate::Result;

pub struct Ddim {
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    timesteps: Vec<f64>,
    step_ratio: usize,
    prediction: PredictionType,
    /// `clip_sample_range` when `clip_sample` (DDIMScheduler's default: true, range 1).
    clip: Option<f64>,
}

impl Ddim {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        let alphas_cumprod = config.alphas_cumprod()?;
        let final_alpha_cumprod = if config.set_alpha_to_one.unwrap_or(true) { 1.0 } else { alphas_cumprod[0] };
        let spacing = config.spacing(TimestepSpacing::Leading)?;
        let timesteps = spaced_timesteps(spacing, config.num_train_timesteps, steps, config.steps_offset);
        Ok(Self {
            alphas_cumprod,
            final_alpha_cumprod,
            timesteps,
            step_ratio: config.num_train_timesteps / steps,
            prediction: config.prediction()?,
            clip: config.clip_sample.unwrap_or(true).then(|| config.clip_sample_range.unwrap_or(1.0)),
        })
    }
}

impl Scheduler for Ddim {
    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, index: usize) -> Tensor<4> {
        super::add_noise_vp(&self.alphas_cumprod, self.timesteps[index], original, noise)
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(&mut self, model_output: Tensor<4>, index: usize, sample: Tensor<4>) -> Tensor<4> {
        let t = self.timesteps[index] as usize;
        // diffusers steps back by the leading ratio whatever the spacing.
        let prev = t as isize - self.step_ratio as isize;
        let alpha_t = self.alphas_cumprod[t];
        let alpha_prev = if prev >= 0 { self.alphas_cumprod[prev as usize] } else { self.final_alpha_cumprod };
        let beta_t = 1.0 - alpha_t;
        let (pred_x0, pred_eps) = match self.prediction {
            PredictionType::Epsilon => ((sample - model_output.clone() * beta_t.sqrt()) / alpha_t.sqrt(), model_output),
            PredictionType::VPrediction => {
                (sample.clone() * alpha_t.sqrt() - model_output.clone() * beta_t.sqrt(), model_output * alpha_t.sqrt() + sample * beta_t.sqrt())
            }
        };
        // diffusers clips the x0 prediction only; the noise prediction stays the model's.
        let pred_x0 = match self.clip {
            Some(range) => pred_x0.clamp(-range, range),
            None => pred_x0,
        };
        pred_x0 * alpha_prev.sqrt() + pred_eps * (1.0 - alpha_prev).sqrt()
    }
}
