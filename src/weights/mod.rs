//! Loading weights: diffusers-layout safetensors into our modules, strictly.
//!
//! Strict means every parameter of the module must be in the file and every tensor of the file
//! must be used, except the known buffers listed in [`IGNORED_BUFFERS`]; anything else is an
//! error naming the keys, and the module is not handed back half-loaded.

use burn::module::Module;
use burn::store::{FloatCastAdapter, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::DType;

use crate::{Error, Result};

mod diffusers;
mod latents;
pub use diffusers::load_diffusers;
pub use latents::{read_latents, write_latents};

/// Writes `data` to `path` via a temporary file in the same folder and a rename, so a killed
/// process never leaves a half-written file behind.
pub fn write_atomically(path: &std::path::Path, data: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| Error::Io { path: path.display().to_string(), reason: e.to_string() };
    let name = path.file_name().ok_or_else(|| Error::Io { path: path.display().to_string(), reason: "not a file path".into() })?;
    let tmp = path.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    std::fs::write(&tmp, data).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Tensors real hub files carry that are buffers, not weights, and are ignored on load.
/// - `text_model.embeddings.position_ids`: saved by older transformers (SD1.5's text encoder).
pub const IGNORED_BUFFERS: &[&str] = &["text_model.embeddings.position_ids"];

/// Old diffusers key names still found in real hub files, renamed to the current ones (which are
/// our field names). (regex on the stored key, replacement)
/// - SD1.5's VAE (diffusers < 0.14 layout): mid-block attention `query`/`key`/`value`/`proj_attn`.
pub const KEY_RENAMES: &[(&str, &str)] = &[
    (r"\.attentions\.(\d+)\.query\.", ".attentions.$1.to_q."),
    (r"\.attentions\.(\d+)\.key\.", ".attentions.$1.to_k."),
    (r"\.attentions\.(\d+)\.value\.", ".attentions.$1.to_v."),
    (r"\.attentions\.(\d+)\.proj_attn\.", ".attentions.$1.to_out.0."),
];

/// Loads a diffusers/transformers safetensors file (`bytes`) into `module`.
///
/// `component` names the part (`"text_encoder"`, `"unet"`, ...) in errors. PyTorch layouts are
/// converted on the way (linear weights transposed, norm `weight`/`bias` → `gamma`/`beta`), and
/// f16/bf16 tensors are widened to f32.
pub fn load_safetensors<M: Module + ModuleSnapshot>(mut module: M, bytes: Vec<u8>, component: &str) -> Result<M> {
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .with_from_adapter(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32)))
        .allow_partial(true)
        // Our enums (1×1-conv or linear projections, `ff.net` entries) are invisible in the keys.
        .skip_enum_variants(true);
    for (from, to) in KEY_RENAMES {
        store = store.with_key_remapping(from, *to);
    }
    let result = module.load_from(&mut store).map_err(|e| weights_error(component, e.to_string()))?;
    let missing: Vec<&str> = result.missing.iter().map(|(path, _)| path.as_str()).collect();
    let unused: Vec<&str> = result.unused.iter().map(String::as_str).filter(|k| !IGNORED_BUFFERS.contains(k)).collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("missing {} tensor(s): {}", missing.len(), preview(&missing)));
    }
    if !unused.is_empty() {
        problems.push(format!("unexpected {} tensor(s): {}", unused.len(), preview(&unused)));
    }
    for error in &result.errors {
        problems.push(error.to_string());
    }
    if problems.is_empty() { Ok(module) } else { Err(weights_error(component, problems.join("; "))) }
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
