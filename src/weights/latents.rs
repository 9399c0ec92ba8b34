//! Latents as a safetensors file with one f32 tensor `latents` — the exchange format of
//! `--init-noise` (diffusers' `latents=` argument) and `--save-latents`.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::{Error, Result};

const NAME: &str = "latents";

/// Reads tensor `latents` (f32, rank 4): its shape and values.
pub fn read_latents(path: &Path) -> Result<([usize; 4], Vec<f32>)> {
    let shown = path.display().to_string();
    let bad = |reason: String| Error::Io { path: shown.clone(), reason };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let view = file.tensor(NAME).map_err(|_| bad(format!("no tensor named {NAME:?} (found: {:?})", file.names())))?;
    if view.dtype() != Dtype::F32 {
        return Err(bad(format!("{NAME} is {:?}, expected F32", view.dtype())));
    }
    let shape: [usize; 4] = view.shape().try_into().map_err(|_| bad(format!("{NAME} has shape {:?}, expected [1, 4, H/8, W/8]", view.shape())))?;
    let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok((shape, values))
}

/// Writes `values` of `shape` as tensor `latents`, atomically (temporary file, then rename).
pub fn write_latents(path: &Path, shape: [usize; 4], values: &[f32]) -> Result<()> {
    let shown = path.display().to_string();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, shape.to_vec(), &bytes).map_err(|e| Error::Io { path: shown.clone(), reason: e.to_string() })?;
    let data = safetensors::serialize(HashMap::from([(NAME, view)]), None).map_err(|e| Error::Io { path: shown.clone(), reason: e.to_string() })?;
    crate::weights::write_atomically(path, &data)
}
