//! Choosing a burn device: `flex` on the native CPU, wgpu on a native GPU or on WebGPU in the browser.
//!
//! burn 0.22 has no backend type parameter: the backend is whichever `Device` a tensor lives on.
//! In the browser the wgpu runtime must be initialised asynchronously and read back
//! asynchronously (synchronous readback panics there), so [`read_f32`] is async on every target.

use burn::tensor::{Device, Tensor};

use crate::{Error, Result};

/// A native compute backend, as chosen with `--backend`.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// burn `flex`: pure-Rust CPU, the fastest CPU backend that builds offline.
    #[default]
    Cpu,
    /// burn-wgpu: Vulkan, Metal or DX12, whichever the platform has.
    Wgpu,
}

#[cfg(not(target_arch = "wasm32"))]
impl Backend {
    /// Creates (or reuses) the device for this backend.
    pub fn device(self) -> Result<Device> {
        match self {
            Backend::Cpu => Ok(Device::flex()),
            Backend::Wgpu => wgpu_device(),
        }
    }
}

/// The default wgpu device, initialised on first use and shared afterwards.
#[cfg(not(target_arch = "wasm32"))]
fn wgpu_device() -> Result<Device> {
    use std::sync::OnceLock;
    static DEVICE: OnceLock<std::result::Result<Device, String>> = OnceLock::new();
    DEVICE
        .get_or_init(|| Device::wgpu_options().init().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| Error::NoGpu(format!("{e} (install a Vulkan driver, e.g. mesa-vulkan-drivers, or use --backend cpu)")))
}

/// Initialises WebGPU in the browser. Call once; clone the device afterwards.
#[cfg(target_arch = "wasm32")]
pub async fn webgpu_device() -> Result<Device> {
    Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| Error::NoGpu(e.to_string()))
}

/// Reads a tensor back to the host as `f32`, on any backend and target.
pub async fn read_f32<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    let data = tensor.into_data_async().await.map_err(|e| Error::TensorRead(format!("{e:?}")))?;
    data.try_into_vec_as::<f32>().map_err(|e| Error::TensorRead(format!("{e:?}")))
}
