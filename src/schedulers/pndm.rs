//! PNDMScheduler in PLMS mode (`skip_prk_steps`, as SD1.5 ships it), as diffusers'
//! `schedulers/scheduling_pndm.py`: a linear multistep method whose first step is taken twice
//! (the second time averaging the two model outputs), so there are `steps + 1` UNet calls.

use burn::tensor::Tensor;

use super::Scheduler;
use super::config::{PredictionType, SchedulerConfig, TimestepSpacing, linspace, round_half_even};
use crate::Result;

pub struct Pndm {
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    timesteps: Vec<f64>,
    step_ratio: usize,
    prediction: PredictionType,
    /// Past model outputs (at most 4), newest last.
    ets: Vec<Tensor<4>>,
    /// The sample before the repeated first step.
    cur_sample: Option<Tensor<4>>,
    counter: usize,
}

impl Pndm {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        if config.skip_prk_steps == Some(false) {
            return Err(super::config::config_error("PNDM with Runge-Kutta (PRK) warm-up steps is not implemented; set skip_prk_steps to true".into()));
        }
        let alphas_cumprod = config.alphas_cumprod()?;
        let final_alpha_cumprod = if config.set_alpha_to_one.unwrap_or(false) { 1.0 } else { alphas_cumprod[0] };
        let train = config.num_train_timesteps;
        let ascending: Vec<f64> = match config.spacing(TimestepSpacing::Leading)? {
            TimestepSpacing::Linspace => linspace(0.0, (train - 1) as f64, steps).map(round_half_even).collect(),
            TimestepSpacing::Leading => (0..steps).map(|i| (i * (train / steps) + config.steps_offset) as f64).collect(),
            TimestepSpacing::Trailing => {
                let ratio = train as f64 / steps as f64;
                let mut t: Vec<f64> = (0..steps).map(|i| round_half_even(train as f64 - i as f64 * ratio) - 1.0).collect();
                t.reverse();
                t
            }
        };
        // [t0, t1, ..., t_{n-2}, t_{n-2}, t_{n-1}] reversed: the first (largest) timestep repeats.
        let mut plms: Vec<f64> = ascending[..steps - 1].to_vec();
        if steps >= 2 {
            plms.push(ascending[steps - 2]);
        }
        plms.push(ascending[steps - 1]);
        plms.reverse();
        Ok(Self {
            alphas_cumprod,
            final_alpha_cumprod,
            timesteps: plms,
            step_ratio: train / steps,
            prediction: config.prediction()?,
            ets: Vec::new(),
            cur_sample: None,
            counter: 0,
        })
    }

    /// Formula (9) of the PNDM paper: the sample at `prev` from the sample at `t` and an ε estimate.
    fn prev_sample(&self, sample: Tensor<4>, t: isize, prev: isize, model_output: Tensor<4>) -> Tensor<4> {
        let alpha_t = self.alphas_cumprod[t as usize];
        let alpha_prev = if prev >= 0 { self.alphas_cumprod[prev as usize] } else { self.final_alpha_cumprod };
        let (beta_t, beta_prev) = (1.0 - alpha_t, 1.0 - alpha_prev);
        let model_output = match self.prediction {
            PredictionType::Epsilon => model_output,
            PredictionType::VPrediction => model_output * alpha_t.sqrt() + sample.clone() * beta_t.sqrt(),
        };
        let sample_coeff = (alpha_prev / alpha_t).sqrt();
        let denom = alpha_t * beta_prev.sqrt() + (alpha_t * beta_t * alpha_prev).sqrt();
        sample * sample_coeff - model_output * ((alpha_prev - alpha_t) / denom)
    }
}

impl Scheduler for Pndm {
    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, index: usize) -> Tensor<4> {
        super::add_noise_vp(&self.alphas_cumprod, self.timesteps[index], original, noise)
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(&mut self, model_output: Tensor<4>, index: usize, sample: Tensor<4>) -> Tensor<4> {
        let mut t = self.timesteps[index] as isize;
        let mut prev = t - self.step_ratio as isize;
        if self.counter != 1 {
            if self.ets.len() > 3 {
                self.ets.remove(0);
            }
            self.ets.push(model_output.clone());
        } else {
            prev = t;
            t += self.step_ratio as isize;
        }
        let e = &self.ets;
        let n = e.len();
        let (model_output, sample) = if n == 1 && self.counter == 0 {
            self.cur_sample = Some(sample.clone());
            (model_output, sample)
        } else if n == 1 && self.counter == 1 {
            let first = self.cur_sample.take().unwrap_or(sample);
            ((model_output + e[0].clone()) / 2.0, first)
        } else if n == 2 {
            ((e[1].clone() * 3.0 - e[0].clone()) / 2.0, sample)
        } else if n == 3 {
            ((e[2].clone() * 23.0 - e[1].clone() * 16.0 + e[0].clone() * 5.0) / 12.0, sample)
        } else {
            let combo = e[n - 1].clone() * 55.0 - e[n - 2].clone() * 59.0 + e[n - 3].clone() * 37.0 - e[n - 4].clone() * 9.0;
            (combo / 24.0, sample)
        };
        let out = self.prev_sample(sample, t, prev, model_output);
        self.counter += 1;
        out
    }
}
