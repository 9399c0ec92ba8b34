//! `scheduler/scheduler_config.json` as diffusers' `from_config` reads it, and the DDPM noise
//! schedule every scheduler shares.
//!
//! Keys absent from the file are `None` here and each scheduler fills in its own class default,
//! exactly as diffusers does when one scheduler is built from another's config (SD1.5 ships a
//! `PNDMScheduler` config without `timestep_spacing`: DDIM and PNDM then use "leading", Euler and
//! DPM-Solver "linspace").

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{Error, Result};

/// The scheduler keys of a diffusers `scheduler_config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SchedulerConfig {
    #[serde(default = "default_train_timesteps")]
    pub num_train_timesteps: usize,
    #[serde(default = "default_beta_start")]
    pub beta_start: f64,
    #[serde(default = "default_beta_end")]
    pub beta_end: f64,
    #[serde(default = "default_beta_schedule")]
    pub beta_schedule: String,
    #[serde(default)]
    pub trained_betas: Option<Vec<f64>>,
    #[serde(default)]
    pub prediction_type: Option<String>,
    #[serde(default)]
    pub timestep_spacing: Option<String>,
    #[serde(default)]
    pub steps_offset: usize,
    #[serde(default)]
    pub set_alpha_to_one: Option<bool>,
    #[serde(default)]
    pub clip_sample: Option<bool>,
    #[serde(default)]
    pub clip_sample_range: Option<f64>,
    #[serde(default)]
    pub skip_prk_steps: Option<bool>,
    // Keys whose non-default values we do not implement: read so they can be refused by name
    // (see `check_supported`) instead of silently ignored.
    #[serde(default)]
    pub thresholding: Option<bool>,
    #[serde(default)]
    pub rescale_betas_zero_snr: Option<bool>,
    #[serde(default)]
    pub use_karras_sigmas: Option<bool>,
    #[serde(default)]
    pub algorithm_type: Option<String>,
    #[serde(default)]
    pub solver_order: Option<u64>,
    #[serde(default)]
    pub solver_type: Option<String>,
    #[serde(default)]
    pub lower_order_final: Option<bool>,
    #[serde(default)]
    pub final_sigmas_type: Option<String>,
    /// Every other key of the file, checked against [`OTHER_KEYS`] and listed by [`Self::ignored_keys`].
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// The most training timesteps a config may have (SD1.5 and MAM-E: 1000).
pub const MAX_TRAIN_TIMESTEPS: usize = 100_000;

/// Keys diffusers' schedulers write that no field above reads: each with the value mam-e's
/// behaviour equals (`None`: any value, for bookkeeping keys and the parameters of features
/// refused above) and the schedulers whose diffusers class reads it. A different value is refused
/// for those schedulers; keys in neither list are ignored with a warning ([`SchedulerConfig::ignored_keys`]).
const OTHER_KEYS: &[(&str, Option<&str>, &[super::SchedulerKind])] = {
    use super::SchedulerKind::*;
    &[
        ("_class_name", None, &[]),
        ("_diffusers_version", None, &[]),
        ("_use_default_values", None, &[]),
        // Parameters of `thresholding` (refused when on).
        ("dynamic_thresholding_ratio", None, &[]),
        ("sample_max_value", None, &[]),
        // Parameters of flow matching / dynamic shifting (refused when on).
        ("flow_shift", None, &[]),
        ("time_shift_type", None, &[]),
        ("use_dynamic_shifting", Some("false"), &[Dpm]),
        ("use_flow_sigmas", Some("false"), &[Dpm]),
        ("use_exponential_sigmas", Some("false"), &[Dpm, Euler]),
        ("use_beta_sigmas", Some("false"), &[Dpm, Euler]),
        ("use_lu_lambdas", Some("false"), &[Dpm]),
        ("euler_at_final", Some("false"), &[Dpm]),
        ("lambda_min_clipped", Some("\"-Infinity\""), &[Dpm]),
        ("variance_type", Some("null"), &[Dpm]),
        ("interpolation_type", Some("\"linear\""), &[Euler]),
        ("timestep_type", Some("\"discrete\""), &[Euler]),
        ("sigma_min", Some("null"), &[Euler]),
        ("sigma_max", Some("null"), &[Euler]),
    ]
};

fn default_train_timesteps() -> usize {
    1000
}
fn default_beta_start() -> f64 {
    0.0001
}
fn default_beta_end() -> f64 {
    0.02
}
fn default_beta_schedule() -> String {
    "linear".into()
}

/// How inference timesteps are spread over the training timesteps (diffusers' `timestep_spacing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestepSpacing {
    Leading,
    Linspace,
    Trailing,
}

/// What the UNet predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictionType {
    Epsilon,
    VPrediction,
}

impl SchedulerConfig {
    /// SD1.5's `scheduler_config.json` (a `PNDMScheduler` config).
    pub fn sd15() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: "scaled_linear".into(),
            trained_betas: None,
            prediction_type: None,
            timestep_spacing: None,
            steps_offset: 1,
            set_alpha_to_one: Some(false),
            clip_sample: Some(false),
            skip_prk_steps: Some(true),
            ..serde_json::from_str("{}").expect("every key has a default")
        }
    }

    /// Refuses, naming the key and its value, a setting the scheduler `kind` would read in
    /// diffusers and we do not implement (keys of other scheduler classes are ignored there too).
    pub fn check_supported(&self, kind: super::SchedulerKind) -> Result<()> {
        use super::SchedulerKind::*;
        let flag = |key: &str, value: Option<bool>, applies: bool| match value {
            Some(true) if applies => Err(self.unsupported(key, "true")),
            _ => Ok(()),
        };
        flag("thresholding", self.thresholding, matches!(kind, Ddim | Dpm))?;
        flag("rescale_betas_zero_snr", self.rescale_betas_zero_snr, matches!(kind, Ddim | Euler | Dpm))?;
        flag("use_karras_sigmas", self.use_karras_sigmas, matches!(kind, Euler | Dpm))?;
        if kind == Dpm {
            let text = |key: &str, value: &Option<String>, ours: &str| match value.as_deref() {
                Some(v) if v != ours => Err(self.unsupported(key, v)),
                _ => Ok(()),
            };
            text("algorithm_type", &self.algorithm_type, "dpmsolver++")?;
            text("solver_type", &self.solver_type, "midpoint")?;
            text("final_sigmas_type", &self.final_sigmas_type, "zero")?;
            if let Some(order) = self.solver_order.filter(|&o| o != 2) {
                return Err(self.unsupported("solver_order", &order.to_string()));
            }
            if self.lower_order_final == Some(false) {
                return Err(self.unsupported("lower_order_final", "false"));
            }
        }
        for (key, value) in &self.other {
            let Some((_, Some(ours), applies)) = OTHER_KEYS.iter().find(|(k, ..)| k == key) else { continue };
            let text = value.to_string();
            if applies.contains(&kind) && text != *ours {
                return Err(self.unsupported(key, &text));
            }
        }
        Ok(())
    }

    /// Keys of the file mam-e neither reads nor knows to be harmless, with their values: the
    /// loaders warn about them once (diffusers' scheduler classes may read them).
    pub fn ignored_keys(&self) -> Vec<String> {
        self.other.iter().filter(|(key, _)| !OTHER_KEYS.iter().any(|(k, ..)| k == key)).map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// The warning for [`Self::ignored_keys`], if there are any.
    pub fn ignored_keys_warning(&self) -> Option<String> {
        let keys = self.ignored_keys();
        (!keys.is_empty()).then(|| format!("scheduler_config.json: ignoring settings mam-e does not know: {}", keys.join(", ")))
    }

    /// Parses `scheduler_config.json` text (as Python writes JSON: `-Infinity` is read) and
    /// checks the numbers every scheduler builds from.
    pub fn from_json(text: &str) -> Result<Self> {
        let error = |e: serde_json::Error| config_error(e.to_string());
        let config: Self = serde_json::from_value(crate::python_json::parse(text).map_err(error)?).map_err(error)?;
        config.validate()?;
        Ok(config)
    }

    /// Refuses, by key and value, numbers no DDPM schedule has (they would divide by zero,
    /// allocate by the billion, or produce NaN timesteps).
    fn validate(&self) -> Result<()> {
        let bad = |key: &str, value: String, why: &str| config_error(format!("{key} {value}: {why}"));
        let n = self.num_train_timesteps;
        if !(1..=MAX_TRAIN_TIMESTEPS).contains(&n) {
            return Err(bad("num_train_timesteps", n.to_string(), &format!("must be 1 to {MAX_TRAIN_TIMESTEPS} (SD1.5: 1000)")));
        }
        if self.steps_offset >= n {
            return Err(bad("steps_offset", self.steps_offset.to_string(), "must be below num_train_timesteps"));
        }
        let is_beta = |b: f64| b.is_finite() && (0.0..1.0).contains(&b);
        if !is_beta(self.beta_start) || !is_beta(self.beta_end) {
            return Err(bad("beta_start / beta_end", format!("{} / {}", self.beta_start, self.beta_end), "must lie in [0, 1)"));
        }
        if let Some(betas) = &self.trained_betas
            && (betas.len() != n || !betas.iter().all(|&b| is_beta(b)))
        {
            return Err(bad("trained_betas", format!("({} values)", betas.len()), "must be num_train_timesteps values in [0, 1)"));
        }
        if let Some(range) = self.clip_sample_range.filter(|r| !(r.is_finite() && *r > 0.0)) {
            return Err(bad("clip_sample_range", range.to_string(), "must be a positive number"));
        }
        Ok(())
    }

    /// `timestep_spacing`, or `default` (the scheduler class's own) when the file has none.
    pub fn spacing(&self, default: TimestepSpacing) -> Result<TimestepSpacing> {
        match self.timestep_spacing.as_deref() {
            None => Ok(default),
            Some("leading") => Ok(TimestepSpacing::Leading),
            Some("linspace") => Ok(TimestepSpacing::Linspace),
            Some("trailing") => Ok(TimestepSpacing::Trailing),
            Some(other) => Err(self.unsupported("timestep_spacing", other)),
        }
    }

    pub fn prediction(&self) -> Result<PredictionType> {
        match self.prediction_type.as_deref() {
            None | Some("epsilon") => Ok(PredictionType::Epsilon),
            Some("v_prediction") => Ok(PredictionType::VPrediction),
            Some(other) => Err(self.unsupported("prediction_type", other)),
        }
    }

    /// `alphas_cumprod` of the DDPM forward process, as diffusers computes it (betas in f32,
    /// cumulative product in f32), widened to f64.
    pub fn alphas_cumprod(&self) -> Result<Vec<f64>> {
        let n = self.num_train_timesteps;
        let betas: Vec<f32> = match (&self.trained_betas, self.beta_schedule.as_str()) {
            (Some(betas), _) => betas.iter().map(|b| *b as f32).collect(),
            (None, "linear") => linspace(self.beta_start, self.beta_end, n).map(|b| b as f32).collect(),
            (None, "scaled_linear") => linspace(self.beta_start.sqrt(), self.beta_end.sqrt(), n).map(|b| (b as f32) * (b as f32)).collect(),
            (None, "squaredcos_cap_v2") => (0..n)
                .map(|i| {
                    // betas_for_alpha_bar with the cosine schedule (Nichol & Dhariwal), max beta 0.999.
                    let alpha_bar = |t: f64| ((t + 0.008) / 1.008 * core::f64::consts::FRAC_PI_2).cos().powi(2);
                    let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
                    (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
                })
                .collect(),
            (None, other) => return Err(self.unsupported("beta_schedule", other)),
        };
        let mut product = 1.0f32;
        Ok(betas
            .iter()
            .map(|b| {
                product *= 1.0 - b;
                product as f64
            })
            .collect())
    }

    fn unsupported(&self, key: &str, value: &str) -> Error {
        config_error(format!("unsupported {key} {value:?} (mam-e implements diffusers' defaults for it)"))
    }
}

/// An error in `scheduler_config.json`.
pub(crate) fn config_error(reason: String) -> Error {
    Error::Config { file: "scheduler_config.json".into(), reason }
}

/// `n` evenly spaced values from `start` to `end` inclusive, as `torch.linspace`/`np.linspace`.
pub(crate) fn linspace(start: f64, end: f64, n: usize) -> impl DoubleEndedIterator<Item = f64> {
    let step = if n > 1 { (end - start) / (n - 1) as f64 } else { 0.0 };
    (0..n).map(move |i| if i + 1 == n && n > 1 { end } else { start + step * i as f64 })
}

/// `np.round`: half to even, like the reference.
pub(crate) fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 { 2.0 * (x / 2.0).round() } else { r }
}

/// Integer timesteps, descending, for `steps` inference steps (DDIM, PNDM and Euler's rule;
/// DPM-Solver has its own in its file).
pub(crate) fn spaced_timesteps(spacing: TimestepSpacing, train: usize, steps: usize, offset: usize) -> Vec<f64> {
    match spacing {
        TimestepSpacing::Linspace => linspace(0.0, (train - 1) as f64, steps).map(round_half_even).rev().collect(),
        TimestepSpacing::Leading => {
            let ratio = train / steps;
            (0..steps).rev().map(|i| (i * ratio + offset) as f64).collect()
        }
        TimestepSpacing::Trailing => {
            let ratio = train as f64 / steps as f64;
            (0..steps).map(|i| round_half_even(train as f64 - i as f64 * ratio) - 1.0).collect()
        }
    }
}

/// Piecewise-linear interpolation of `ys` (sampled at 0, 1, 2, ...) at `x`, as `np.interp`.
pub(crate) fn interp(x: f64, ys: &[f64]) -> f64 {
    if x <= 0.0 {
        return ys[0];
    }
    let last = ys.len() - 1;
    if x >= last as f64 {
        return ys[last];
    }
    let i = x.floor() as usize;
    let frac = x - i as f64;
    ys[i] + (ys[i + 1] - ys[i]) * frac
}
