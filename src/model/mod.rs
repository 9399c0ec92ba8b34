//! The Stable Diffusion 1.5 modules, one file per diffusers module.

pub mod attention;
pub mod clip;
#[cfg(not(target_arch = "wasm32"))]
pub mod cpu_attention;
#[cfg(not(target_arch = "wasm32"))]
pub mod cpu_conv;
pub mod embeddings;
pub mod ops;
pub mod precision;
pub mod resnet;
pub mod unet;
pub mod vae;
