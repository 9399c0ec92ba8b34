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

/// Whether `device` is a GPU: natively, a cubecl runtime (wgpu), told by its memory-pool report,
/// which the CPU backend does not give; in the browser always (WebGPU is the only backend there,
/// and asking its allocator synchronously blocks the page: see [`GpuMemory`]).
pub fn is_gpu(device: &Device) -> bool {
    if cfg!(target_arch = "wasm32") {
        return true;
    }
    device.memory_pool_usage().is_some()
}

/// GPU memory as burn's allocator accounts it, from samples the caller takes (after loading,
/// after each step, after decoding): what is held live once the model is loaded, and the most
/// it reserved (its pools keep pages for reuse, so this is the footprint the GPU must have).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GpuMemory {
    pub loaded_bytes: u64,
    pub peak_reserved_bytes: u64,
}

impl GpuMemory {
    /// Samples right after loading: the live bytes are the model's.
    /// `None` on the CPU. Native only: in the browser burn's synchronous report blocked the page
    /// (the browser tests' driver gave up on it after 30 s), so the page does not show it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn after_load(device: &Device) -> Option<GpuMemory> {
        device.memory_pool_usage().map(|u| GpuMemory { loaded_bytes: u.bytes_in_use, peak_reserved_bytes: u.bytes_reserved })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn sample(&mut self, device: &Device) {
        if let Some(u) = device.memory_pool_usage() {
            self.peak_reserved_bytes = self.peak_reserved_bytes.max(u.bytes_reserved);
        }
    }
}

impl std::fmt::Display for GpuMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        write!(f, "model {:.0} MiB, peak reserved {:.0} MiB", mib(self.loaded_bytes), mib(self.peak_reserved_bytes))
    }
}

/// Reads a tensor back to the host as `f32`, on any backend and target.
pub async fn read_f32<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    let data = tensor.into_data_async().await.map_err(|e| Error::TensorRead(format!("{e:?}")))?;
    data.try_into_vec_as::<f32>().map_err(|e| Error::TensorRead(format!("{e:?}")))
}
