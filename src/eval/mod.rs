//! The paper's assessment: the reader study (`reader_study`), its ROC analysis (`roc`) and plot
//! (`plot`); MS-SSIM (`ms_ssim`), the weight-free fidelity figures of a synthetic set
//! (`fidelity`), and FID (`fid`) and KID (`kid`) on the FID Inception's features (`inception`;
//! `eigen` for FID's matrix square root). `reader_study`, `roc`, `plot` and `ms_ssim` also build
//! for the page; the rest is native.

#[cfg(not(target_arch = "wasm32"))]
pub mod eigen;
#[cfg(not(target_arch = "wasm32"))]
pub mod fid;
#[cfg(not(target_arch = "wasm32"))]
pub mod fidelity;
#[cfg(not(target_arch = "wasm32"))]
pub mod inception;
#[cfg(not(target_arch = "wasm32"))]
pub mod kid;
pub mod ms_ssim;
pub mod plot;
pub mod reader_study;
pub mod roc;
