//! mam-e: MAM-E mammography synthesis (Stable Diffusion 1.5) in Rust, for the browser and natively.
//!
//! The library is shared by both faces: the web app (`web`, wasm32 only) and the native
//! research CLI (`cli`, native only).

pub mod cad;
pub mod device;
pub mod error;
pub mod eval;
pub mod imaging;
pub mod mask;
pub mod model;
pub mod package;
pub mod pipeline;
pub mod prompt;
pub mod python_json;
pub mod rng;
pub mod schedulers;
pub mod selftest;
pub mod tokenizer;
pub mod torch_rng;
pub mod weights;

#[cfg(not(target_arch = "wasm32"))]
pub mod atomic;
#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
#[cfg(not(target_arch = "wasm32"))]
pub mod data;
#[cfg(not(target_arch = "wasm32"))]
pub mod synth;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
