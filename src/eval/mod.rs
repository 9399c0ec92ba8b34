//! The paper's assessment: the reader study's ROC analysis (`roc`) and its plot (`plot`);
//! MS-SSIM (`ms_ssim`) and the weight-free fidelity figures of a synthetic set (`fidelity`,
//! native: it measures with `data`). `roc`, `plot` and `ms_ssim` also build for the page.

#[cfg(not(target_arch = "wasm32"))]
pub mod fidelity;
pub mod ms_ssim;
pub mod plot;
pub mod roc;
