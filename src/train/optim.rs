//! AdamW (PyTorch's `torch.optim.AdamW`: decoupled weight decay, bias-corrected moments), global
//! gradient-norm clipping (`clip_grad_norm_`), gradient accumulation and the learning-rate
//! schedules diffusers' training scripts offer — written here rather than taken from burn-optim
//! so that the whole optimizer state can be saved by parameter name and a resumed run continues
//! bit for bit.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};

use crate::weights::safetensors::{self, Owned};

/// Parameter names as dotted module paths (`down_blocks.0.resnets.1.conv1.weight`).
#[derive(Default)]
struct PathStack(Vec<String>);

impl PathStack {
    fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
    fn exit(&mut self) {
        self.0.pop();
    }
    fn name(&self) -> String {
        self.0.join(".")
    }
}

/// Gradients flattened to 1-D and keyed by parameter name, on the inner (non-autodiff) device.
pub type NamedGrads = BTreeMap<String, Tensor<1>>;

struct GradCollector<'a> {
    grads: &'a burn::tensor::Gradients,
    path: PathStack,
    out: &'a mut NamedGrads,
}

impl ModuleVisitor for GradCollector<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = param.val().grad(self.grads) {
            let n = grad.shape().num_elements();
            let grad: Tensor<1> = grad.reshape([n]);
            let name = self.path.name();
            let sum = match self.out.remove(&name) {
                Some(previous) => previous + grad,
                None => grad,
            };
            self.out.insert(name, sum);
        }
    }
}

/// Adds `module`'s gradients from `grads` into `into` (gradient accumulation).
pub fn accumulate<M: Module>(module: &M, grads: &burn::tensor::Gradients, into: &mut NamedGrads) {
    module.visit(&mut GradCollector { grads, path: PathStack::default(), out: into });
}

/// The global L2 norm of all gradients.
pub fn global_norm(grads: &NamedGrads) -> f64 {
    grads.values().map(|g| g.clone().powi_scalar(2).sum().into_scalar::<f32>() as f64).sum::<f64>().sqrt()
}

/// Learning-rate schedule (diffusers' `--lr_scheduler constant | cosine` with warm-up).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrSchedule {
    Constant { warmup: usize },
    Cosine { warmup: usize, total: usize },
}

impl LrSchedule {
    /// The factor on the base learning rate for update number `step` (0-based), as
    /// `get_constant_schedule_with_warmup` / `get_cosine_schedule_with_warmup`.
    pub fn factor(&self, step: usize) -> f64 {
        let warm = |warmup: usize| if step < warmup { step as f64 / warmup.max(1) as f64 } else { 1.0 };
        match *self {
            LrSchedule::Constant { warmup } => warm(warmup),
            LrSchedule::Cosine { warmup, total } => {
                if step < warmup {
                    return warm(warmup);
                }
                let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
                (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
            }
        }
    }
}

/// AdamW hyper-parameters and per-parameter moments.
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Updates done so far.
    pub steps: u64,
    moments: BTreeMap<String, (Tensor<1>, Tensor<1>)>,
}

struct Update<'a> {
    grads: &'a NamedGrads,
    optimizer: &'a mut AdamW,
    lr: f64,
    grad_scale: f64,
    path: PathStack,
}

impl ModuleMapper for Update<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.name();
        let Some(grad) = self.grads.get(&name) else { return param };
        let (id, tensor, mapper) = param.consume();
        let strategy = tensor.gradient_checkpointing_strategy();
        let dims = tensor.dims();
        let n = tensor.shape().num_elements();
        let p: Tensor<1> = tensor.inner().reshape([n]);
        let g = grad.clone() * self.grad_scale;
        let o = &mut *self.optimizer;
        let (m, v) = match o.moments.remove(&name) {
            Some(mv) => mv,
            None => (p.zeros_like(), p.zeros_like()),
        };
        let m = m * o.beta1 + g.clone() * (1.0 - o.beta1);
        let v = v * o.beta2 + g.powi_scalar(2) * (1.0 - o.beta2);
        let t = (o.steps + 1) as i32;
        let (bc1, bc2) = (1.0 - o.beta1.powi(t), 1.0 - o.beta2.powi(t));
        let p = p * (1.0 - self.lr * o.weight_decay);
        let denom = v.clone().sqrt() / bc2.sqrt() + o.eps;
        let p = p - m.clone() / denom * (self.lr / bc1);
        o.moments.insert(name, (m, v));
        let updated = super::autodiff_as(p.reshape(dims), strategy).require_grad();
        Param::from_mapped_value(id, updated, mapper)
    }
}

impl AdamW {
    pub fn new(weight_decay: f64) -> Self {
        AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay, steps: 0, moments: BTreeMap::new() }
    }

    /// One update of `module` with `grads` scaled by `grad_scale` (accumulation and clipping).
    pub fn step<M: Module>(&mut self, module: M, grads: &NamedGrads, lr: f64, grad_scale: f64) -> M {
        module.map(&mut Update { grads, optimizer: self, lr, grad_scale, path: PathStack::default() })
    }

    /// Call once after every module of a training step was updated.
    pub fn finish_step(&mut self) {
        self.steps += 1;
    }

    /// The moments as safetensors (`<prefix>.<name>.m` / `.v`, f32) with the step in the metadata.
    pub fn to_safetensors(&self) -> Vec<u8> {
        let mut tensors = Vec::new();
        for (name, (m, v)) in &self.moments {
            for (suffix, t) in [("m", m), ("v", v)] {
                let values = t.clone().into_data().try_to_vec::<f32>().expect("f32 moments");
                tensors.push(Owned::f32(format!("{name}.{suffix}"), vec![values.len()], &values));
            }
        }
        let metadata = BTreeMap::from([("steps".to_string(), self.steps.to_string())]);
        safetensors::serialize(&tensors, &metadata)
    }

    /// Restores moments and step count saved by [`AdamW::to_safetensors`] onto `device`.
    pub fn load_safetensors(&mut self, bytes: &[u8], device: &burn::tensor::Device) -> Result<(), String> {
        let file = safetensors::parse(bytes)?;
        self.steps = file.metadata.get("steps").and_then(|s| s.parse().ok()).ok_or("optimizer state without a step count")?;
        let mut halves: BTreeMap<String, (Option<Tensor<1>>, Option<Tensor<1>>)> = BTreeMap::new();
        for view in &file.tensors {
            let values = view.to_f32()?;
            let n = values.len();
            let t = Tensor::<1>::from_data(TensorData::new(values, [n]), device);
            let (name, which) = view.name.rsplit_once('.').ok_or("bad optimizer key")?;
            let entry = halves.entry(name.to_string()).or_default();
            match which {
                "m" => entry.0 = Some(t),
                "v" => entry.1 = Some(t),
                other => return Err(format!("unexpected optimizer key suffix {other}")),
            }
        }
        self.moments = halves
            .into_iter()
            .map(|(k, (m, v))| Ok((k.clone(), (m.ok_or(format!("{k}: no m"))?, v.ok_or(format!("{k}: no v"))?))))
            .collect::<Result<_, String>>()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_match_diffusers() {
        let constant = LrSchedule::Constant { warmup: 10 };
        assert_eq!(constant.factor(0), 0.0);
        assert_eq!(constant.factor(5), 0.5);
        assert_eq!(constant.factor(10), 1.0);
        let cosine = LrSchedule::Cosine { warmup: 10, total: 110 };
        assert_eq!(cosine.factor(10), 1.0);
        assert!((cosine.factor(60) - 0.5).abs() < 1e-12);
        assert!(cosine.factor(110).abs() < 1e-12);
    }
}
