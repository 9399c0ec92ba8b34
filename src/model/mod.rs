//! The Stable Diffusion 1.5 modules, one file per diffusers module.

pub mod ops;
