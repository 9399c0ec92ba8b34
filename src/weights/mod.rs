//! Loading weights: diffusers-layout safetensors into our modules, strictly.
//!
//! Strict means every parameter of the module must be in the file and every tensor of the file
//! must be used, except the known buffers listed in [`IGNORED_BUFFERS`]; anything else is an
//! error naming the keys, and the module is not handed back half-loaded.

use std::collections::{BTreeMap, HashSet};

use burn::module::Module;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter};
use burn::tensor::{Bytes, DType, FloatDType};

use crate::{Error, Result};
use on_device::{Placement, Placer, QuantizedWeight};

pub mod conv_layout;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod diffusers;
#[cfg(not(target_arch = "wasm32"))]
mod latents;
pub mod on_device;
pub mod safetensors;
#[cfg(not(target_arch = "wasm32"))]
pub use diffusers::load_diffusers;
#[cfg(not(target_arch = "wasm32"))]
pub use latents::{read_latents, write_latents};

pub type PackTensor = burn::store::burn_pack::Tensor;

#[cfg(not(target_arch = "wasm32"))]
/// [`crate::atomic::write`] with the crate's error: a killed process never leaves a half-written
/// file behind.
pub fn write_atomically(path: &std::path::Path, data: &[u8]) -> Result<()> {
    crate::atomic::write(path, data).map_err(|e| Error::Io { path: path.display().to_string(), reason: e.to_string() })
}

/// Tensors real hub files carry that are buffers, not weights, and are ignored on load.
/// - `text_model.embeddings.position_ids`: saved by older transformers (SD1.5's text encoder).
pub const IGNORED_BUFFERS: &[&str] = &["text_model.embeddings.position_ids"];

/// What every key of transformers' `CLIPTextModel` starts with in files written before
/// transformers 5 (and in ours).
const TEXT_MODEL_PREFIX: &str = "text_model.";

/// A key of `component`'s weights file as our field names spell it: old or alternative names
/// found in real files renamed.
/// - SD1.5's VAE (diffusers < 0.14 layout): mid-block attention `query`/`key`/`value`/`proj_attn`
///   → `to_q`/`to_k`/`to_v`/`to_out.0`.
/// - The text encoder as transformers ≥ 5 saves it: `CLIPTextModel`'s keys without their
///   `text_model.` prefix (`embeddings.…`, `encoder.…`, `final_layer_norm.…`), prefixed again.
pub fn canonical_key(component: &str, key: &str) -> String {
    if component == "text_encoder" && !key.starts_with(TEXT_MODEL_PREFIX) {
        return format!("{TEXT_MODEL_PREFIX}{key}");
    }
    let parts: Vec<&str> = key.split('.').collect();
    let renamed = parts.iter().enumerate().map(|(i, part)| {
        let in_attention = i >= 2 && parts[i - 2] == "attentions" && parts[i - 1].bytes().all(|b| b.is_ascii_digit());
        match (in_attention, *part) {
            (true, "query") => "to_q",
            (true, "key") => "to_k",
            (true, "value") => "to_v",
            (true, "proj_attn") => "to_out.0",
            (_, other) => other,
        }
    });
    renamed.collect::<Vec<_>>().join(".")
}

/// A tensor for [`ComponentLoad::apply`]: values under a diffusers key, held as `dtype` (f32,
/// or f16 for a component that computes in f16: see `model::precision`).
pub fn pack_tensor(name: String, shape: Vec<usize>, values: Vec<f32>, dtype: FloatDType) -> PackTensor {
    match dtype {
        FloatDType::F16 => {
            let halves: Vec<half::f16> = values.into_iter().map(half::f16::from_f32).collect();
            PackTensor::new(name, DType::F16, shape, None, Bytes::from_elems(halves))
        }
        _ => PackTensor::new(name, DType::F32, shape, None, Bytes::from_elems(values)),
    }
}

/// A plain (not block-quantized) tensor of a shard: diffusers key, PyTorch shape, f32 values.
pub type PlainWeight = (String, Vec<usize>, Vec<f32>);

/// Loading one component (text encoder, UNet, VAE) from tensors given in any number of batches,
/// so that a sharded package needs only one shard in memory at a time.
///
/// PyTorch layouts are converted on the way (linear weights transposed, norm `weight`/`bias` →
/// `gamma`/`beta`). [`ComponentLoad::finish`] fails, naming keys, on missing, unexpected or
/// mis-shaped tensors: the module is never handed back half-loaded.
pub struct ComponentLoad<M> {
    /// Always `Some` between calls (taken while weights are placed).
    module: Option<M>,
    placement: Placement,
    /// What plain weights are held as: f32, or f16 for a component computing in f16.
    dtype: FloatDType,
    component: String,
    applied: HashSet<String>,
    visited: HashSet<String>,
    unexpected: Vec<String>,
    errors: Vec<String>,
}

impl<M: Module + ModuleSnapshot> ComponentLoad<M> {
    pub fn new(module: M, component: &str) -> Self {
        ComponentLoad {
            module: Some(module),
            placement: Placement::Float,
            dtype: FloatDType::F32,
            component: component.to_string(),
            applied: HashSet::new(),
            visited: HashSet::new(),
            unexpected: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Where block-quantized weights go (see [`on_device`]); f32 as stored by default.
    pub fn with_placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// Holds plain weights applied from now on as `dtype` (f32 by default). Weights placed
    /// 8-bit stay so.
    pub fn set_dtype(&mut self, dtype: FloatDType) {
        self.dtype = dtype;
    }

    /// Applies `plain` tensors, and `quantized`, the weights the package stored block-quantized,
    /// placed as [`Self::with_placement`] says.
    pub fn apply_all(&mut self, plain: Vec<PlainWeight>, mut quantized: BTreeMap<String, QuantizedWeight>) {
        if self.placement == Placement::Packed && !quantized.is_empty() {
            let mut placer = Placer::new(&mut quantized);
            let module = self.module.take().expect("module present between calls").map(&mut placer);
            self.module = Some(module);
            self.visited.extend(placer.placed.iter().cloned());
            self.applied.extend(placer.placed);
            self.errors.extend(placer.errors);
        }
        let rest = quantized.into_iter().map(|(key, (shape, values))| (key, shape, values));
        let tensors: Vec<PackTensor> = plain.into_iter().chain(rest).map(|(key, shape, values)| pack_tensor(key, shape, values, self.dtype)).collect();
        if !tensors.is_empty() {
            self.apply(tensors);
        }
    }

    pub fn apply(&mut self, tensors: Vec<PackTensor>) {
        // `skip_enum_variants`: our enums (1×1-conv or linear projections, `ff.net` entries) are
        // invisible in the keys.
        let result = self.module.as_mut().expect("module present between calls").apply(tensors, None, Some(Box::new(PyTorchToBurnAdapter)), true);
        self.visited.extend(result.missing.into_iter().map(|(path, _)| path));
        self.visited.extend(result.applied.iter().cloned());
        self.applied.extend(result.applied);
        self.unexpected.extend(result.unused.into_iter().filter(|k| !IGNORED_BUFFERS.contains(&k.as_str())));
        self.errors.extend(result.errors.iter().map(ToString::to_string));
    }

    pub fn finish(self) -> Result<M> {
        let mut missing: Vec<&str> = self.visited.iter().filter(|p| !self.applied.contains(*p)).map(String::as_str).collect();
        missing.sort();
        let unexpected: Vec<&str> = self.unexpected.iter().map(String::as_str).collect();
        let mut problems = Vec::new();
        if self.visited.is_empty() {
            problems.push("no tensors were given".to_string());
        }
        if !missing.is_empty() {
            problems.push(format!("missing {} tensor(s): {}", missing.len(), preview(&missing)));
        }
        if !unexpected.is_empty() {
            problems.push(format!("unexpected {} tensor(s): {}", unexpected.len(), preview(&unexpected)));
        }
        problems.extend(self.errors);
        if problems.is_empty() { Ok(self.module.expect("module present between calls")) } else { Err(weights_error(&self.component, problems.join("; "))) }
    }
}

/// Loads a diffusers/transformers safetensors file (`bytes`) into `module`; f16/bf16 tensors are
/// widened to f32 and [old key names](canonical_key) renamed.
///
/// `component` names the part (`"text_encoder"`, `"unet"`, ...) in errors.
pub fn load_safetensors<M: Module + ModuleSnapshot>(module: M, bytes: Vec<u8>, component: &str) -> Result<M> {
    let file = safetensors::parse(&bytes).map_err(|reason| weights_error(component, reason))?;
    let mut tensors = Vec::with_capacity(file.tensors.len());
    for view in &file.tensors {
        let key = canonical_key(component, &view.name);
        // Buffers may be integer tensors (`position_ids` is I64): skip them before widening.
        if IGNORED_BUFFERS.contains(&key.as_str()) {
            continue;
        }
        let values = view.to_f32().map_err(|reason| weights_error(component, reason))?;
        tensors.push(pack_tensor(key, view.shape.clone(), values, FloatDType::F32));
    }
    drop(file);
    drop(bytes);
    let mut load = ComponentLoad::new(module, component);
    load.apply(tensors);
    load.finish()
}

fn preview(keys: &[&str]) -> String {
    const SHOWN: usize = 8;
    let mut text = keys.iter().take(SHOWN).copied().collect::<Vec<_>>().join(", ");
    if keys.len() > SHOWN {
        text.push_str(&format!(", … ({} more)", keys.len() - SHOWN));
    }
    text
}

fn weights_error(component: &str, reason: String) -> Error {
    Error::Weights { component: component.to_string(), reason }
}
