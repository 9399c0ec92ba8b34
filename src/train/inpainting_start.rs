//! A text-to-image model as the start of an inpainting fine-tune, the way
//! `stable-diffusion-inpainting` was made from Stable Diffusion: the UNet's `conv_in` gets five
//! more input channels (the mask and the masked-image latents), zero-initialised, so that the
//! 9-channel model begins by computing exactly what the 4-channel one did and learns to use the
//! new inputs from there.

use std::path::Path;

use anyhow::{Context, bail};

use crate::weights::diffusers::{read_text, weights_file};
use crate::weights::safetensors::{self, Owned};

/// Input channels of an inpainting UNet: latents, mask, masked-image latents.
const INPAINTING_CHANNELS: usize = 9;

fn unet_config(dir: &Path) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_str(&read_text(&dir.join("unet/config.json"))?)?)
}

fn in_channels(config: &serde_json::Value, dir: &Path) -> anyhow::Result<usize> {
    config["in_channels"].as_u64().map(|c| c as usize).with_context(|| format!("{}: unet/config.json has no in_channels", dir.display()))
}

/// The UNet's `in_channels` in the diffusers folder `dir`.
pub fn unet_in_channels(dir: &Path) -> anyhow::Result<usize> {
    in_channels(&unet_config(dir)?, dir)
}

/// `conv_in.weight` `[out, in, k, k]` (little-endian bytes of any float type) widened to
/// `[out, to, k, k]` with zero weights for the new input channels.
fn widen_conv_in(shape: &[usize], data: &[u8], to: usize) -> anyhow::Result<(Vec<usize>, Vec<u8>)> {
    let [out, from, kh, kw] = shape else { bail!("conv_in.weight has shape {shape:?}, expected 4 dimensions") };
    if to < *from {
        bail!("conv_in.weight already has {from} input channels");
    }
    let elements = out * from * kh * kw;
    if elements == 0 || !data.len().is_multiple_of(elements) {
        bail!("conv_in.weight: {} bytes do not fit its shape {shape:?}", data.len());
    }
    let element = data.len() / elements;
    let (row, pad) = (from * kh * kw * element, (to - from) * kh * kw * element);
    let mut widened = Vec::with_capacity(data.len() + out * pad);
    for chunk in data.chunks_exact(row) {
        widened.extend_from_slice(chunk);
        widened.resize(widened.len() + pad, 0);
    }
    Ok((vec![*out, to, *kh, *kw], widened))
}

/// Writes `dst`: the diffusers folder `src` (a text-to-image model, 4-channel UNet) with a
/// 9-channel UNet whose extra `conv_in` weights are zero, and `model_index.json` naming
/// `StableDiffusionInpaintPipeline`. Written as `.<name>.partial` and renamed into place.
pub fn write_inpainting_start(src: &Path, dst: &Path) -> anyhow::Result<()> {
    let mut config = unet_config(src)?;
    let from = in_channels(&config, src)?;
    if from != 4 {
        bail!("{}: the UNet has {from} input channels; an inpainting start is made from a 4-channel text-to-image UNet", src.display());
    }
    let name = dst.file_name().context("the inpainting start needs a folder name")?.to_string_lossy().into_owned();
    let tmp = dst.with_file_name(format!(".{name}.partial"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    // Everything but the UNet as it is; the UNet's folder gets only its new config and weights.
    std::fs::create_dir_all(tmp.join("unet")).with_context(|| format!("cannot create {}", tmp.display()))?;
    for entry in std::fs::read_dir(src).with_context(|| format!("cannot read {}", src.display()))?.flatten() {
        if entry.file_name() != "unet" {
            copy_tree(&entry.path(), &tmp.join(entry.file_name()))?;
        }
    }

    let bytes = weights_file(src, "unet", "diffusion_pytorch_model")?;
    let file = safetensors::parse(&bytes).map_err(anyhow::Error::msg).context("unet weights")?;
    let mut tensors = Vec::with_capacity(file.tensors.len());
    let mut widened = false;
    for t in &file.tensors {
        let (shape, data) = if t.name == "conv_in.weight" {
            widened = true;
            widen_conv_in(&t.shape, t.data, INPAINTING_CHANNELS)?
        } else {
            (t.shape.clone(), t.data.to_vec())
        };
        tensors.push(Owned { name: t.name.clone(), dtype: t.dtype, shape, data });
    }
    if !widened {
        bail!("{}: the UNet weights have no conv_in.weight", src.display());
    }
    std::fs::write(tmp.join("unet/diffusion_pytorch_model.safetensors"), safetensors::serialize(&tensors, &file.metadata))?;
    config["in_channels"] = INPAINTING_CHANNELS.into();
    std::fs::write(tmp.join("unet/config.json"), serde_json::to_string_pretty(&config)?)?;
    let index_path = src.join("model_index.json");
    if index_path.exists() {
        let mut index: serde_json::Value = serde_json::from_str(&read_text(&index_path)?)?;
        index["_class_name"] = "StableDiffusionInpaintPipeline".into();
        std::fs::write(tmp.join("model_index.json"), serde_json::to_string_pretty(&index)?)?;
    }
    if dst.exists() {
        std::fs::remove_dir_all(dst)?;
    }
    std::fs::rename(&tmp, dst).with_context(|| format!("cannot move the inpainting start to {}", dst.display()))?;
    Ok(())
}

/// Copies a file, or a folder with everything in it.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    if !from.is_dir() {
        std::fs::copy(from, to).with_context(|| format!("cannot copy {}", from.display()))?;
        return Ok(());
    }
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?.flatten() {
        copy_tree(&entry.path(), &to.join(entry.file_name()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_keeps_each_output_row_and_appends_zeros() {
        // [2, 1, 1, 2] f32: rows (1, 2) and (3, 4).
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let (shape, out) = widen_conv_in(&[2, 1, 1, 2], &data, 3).unwrap();
        assert_eq!(shape, vec![2, 3, 1, 2]);
        let values: Vec<f32> = out.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(values, vec![1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]);
        assert!(widen_conv_in(&[2, 3, 1, 1], &data, 2).is_err());
    }
}
