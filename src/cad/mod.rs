//! Does the synthetic data help? (MAM-E §3.3 and its stated next step.) A lesion classifier
//! (`model`: a small ResNet), its examples from prepared sets (`data`), heatmaps of where it
//! looks (`explain`: Grad-CAM, saliency, SmoothGrad, occlusion, as Captum computes them).

#[cfg(not(target_arch = "wasm32"))]
pub mod data;
pub mod explain;
pub mod model;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
