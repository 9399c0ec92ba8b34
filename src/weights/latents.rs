//! Latents as a safetensors file with one f32 tensor `latents` — the exchange format of
//! `--init-noise` (diffusers' `latents=` argument) and `--save-latents`.

use std::collections::BTreeMap;
use std::path::Path;

use super::safetensors::{self, Dtype, Owned};
use crate::{Error, Result};

const NAME: &str = "latents";

/// Reads tensor `latents` (f32, rank 4): its shape and values.
pub fn read_latents(path: &Path) -> Result<([usize; 4], Vec<f32>)> {
    let shown = path.display().to_string();
    let bad = |reason: String| Error::Io { path: shown.clone(), reason };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let file = safetensors::parse(&bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let names: Vec<&str> = file.tensors.iter().map(|t| t.name.as_str()).collect();
    let view = file.tensors.iter().find(|t| t.name == NAME).ok_or_else(|| bad(format!("no tensor named {NAME:?} (found: {names:?})")))?;
    if view.dtype != Dtype::F32 {
        return Err(bad(format!("{NAME} is {:?}, expected F32", view.dtype)));
    }
    let shape: [usize; 4] = view.shape.clone().try_into().map_err(|_| bad(format!("{NAME} has shape {:?}, expected [1, 4, H/8, W/8]", view.shape)))?;
    Ok((shape, view.to_f32().map_err(bad)?))
}

/// Writes `values` of `shape` as tensor `latents`, atomically (temporary file, then rename).
pub fn write_latents(path: &Path, shape: [usize; 4], values: &[f32]) -> Result<()> {
    let data = safetensors::serialize(&[Owned::f32(NAME, shape.to_vec(), values)], &BTreeMap::new());
    crate::weights::write_atomically(path, &data)
}
