//! DPMSolverMultistepScheduler with MAM-E's settings — `algorithm_type="dpmsolver++"`,
//! `solver_order=2`, `solver_type="midpoint"`, `lower_order_final=True`, final sigma 0 — as
//! diffusers' `schedulers/scheduling_dpmsolver_multistep.py`.

use burn::tensor::Tensor;

use super::config::{PredictionType, SchedulerConfig, TimestepSpacing, interp, linspace, round_half_even};
use super::{Scheduler, train_sigmas};
use crate::Result;

pub struct DpmSolverMultistep {
    timesteps: Vec<f64>,
    /// One per timestep, then a final 0.
    sigmas: Vec<f64>,
    prediction: PredictionType,
    /// The previous step's x0 prediction.
    previous_x0: Option<Tensor<4>>,
    lower_order_nums: usize,
}

/// `(alpha_t, sigma_t)` of the VP process at VE noise level `sigma`.
fn alpha_sigma(sigma: f64) -> (f64, f64) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

/// `λ = log(α) - log(σ)`, +∞ at σ = 0.
fn lambda(sigma: f64) -> f64 {
    let (alpha, sigma) = alpha_sigma(sigma);
    alpha.ln() - sigma.ln()
}

impl DpmSolverMultistep {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        let train = config.num_train_timesteps;
        let timesteps: Vec<f64> = match config.spacing(TimestepSpacing::Linspace)? {
            TimestepSpacing::Linspace => {
                let mut t: Vec<f64> = linspace(0.0, (train - 1) as f64, steps + 1).map(round_half_even).collect();
                t.reverse();
                t.truncate(steps);
                t
            }
            TimestepSpacing::Leading => {
                let ratio = train / (steps + 1);
                (1..=steps).rev().map(|i| (i * ratio + config.steps_offset) as f64).collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = train as f64 / steps as f64;
                (0..steps).map(|i| round_half_even(train as f64 - i as f64 * ratio) - 1.0).collect()
            }
        };
        let all = train_sigmas(&config.alphas_cumprod()?);
        let mut sigmas: Vec<f64> = timesteps.iter().map(|t| interp(*t, &all) as f32 as f64).collect();
        sigmas.push(0.0);
        Ok(Self { timesteps, sigmas, prediction: config.prediction()?, previous_x0: None, lower_order_nums: 0 })
    }

    /// The data prediction x0 from the model output (dpmsolver++ works on x0).
    fn x0(&self, model_output: Tensor<4>, index: usize, sample: Tensor<4>) -> Tensor<4> {
        let (alpha, sigma) = alpha_sigma(self.sigmas[index]);
        match self.prediction {
            PredictionType::Epsilon => (sample - model_output * sigma) / alpha,
            PredictionType::VPrediction => sample * alpha - model_output * sigma,
        }
    }
}

impl Scheduler for DpmSolverMultistep {
    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, index: usize) -> Tensor<4> {
        // α_t = 1/√(σ² + 1), σ_t = σ · α_t, at the step's sigma.
        let sigma = self.sigmas[index];
        let alpha_t = 1.0 / (sigma * sigma + 1.0).sqrt();
        original * alpha_t + noise * (sigma * alpha_t)
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(&mut self, model_output: Tensor<4>, index: usize, sample: Tensor<4>) -> Tensor<4> {
        let n = self.timesteps.len();
        // With a final sigma of 0 the last step is always first order.
        let lower_order_final = index == n - 1;
        let m0 = self.x0(model_output, index, sample.clone());
        let (sigma_t, sigma_s0) = (self.sigmas[index + 1], self.sigmas[index]);
        let (alpha_t, _) = alpha_sigma(sigma_t);
        let (lambda_t, lambda_s0) = (lambda(sigma_t), lambda(sigma_s0));
        let h = lambda_t - lambda_s0;
        let ratio = alpha_sigma(sigma_t).1 / alpha_sigma(sigma_s0).1;
        let coeff = alpha_t * ((-h).exp() - 1.0);
        let prev = match (&self.previous_x0, self.lower_order_nums >= 1 && !lower_order_final) {
            (Some(m1), true) => {
                let h0 = lambda_s0 - lambda(self.sigmas[index - 1]);
                let d1 = (m0.clone() - m1.clone()) * (h / h0);
                sample * ratio - m0.clone() * coeff - d1 * (0.5 * coeff)
            }
            _ => sample * ratio - m0.clone() * coeff,
        };
        self.previous_x0 = Some(m0);
        if self.lower_order_nums < 2 {
            self.lower_order_nums += 1;
        }
        prev
    }
}
