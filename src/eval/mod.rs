//! The paper's assessment: the reader study's ROC analysis (`roc`) and its plot (`plot`);
//! MS-SSIM (`ms_ssim`) and the weight-free fidelity figures of a synthetic set (`fidelity`).

pub mod fidelity;
pub mod ms_ssim;
pub mod plot;
pub mod roc;
