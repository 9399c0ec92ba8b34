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

/// Runs the wasm module's static constructors, once. cubecl's kernel compiler (through pliron)
/// registers its IR with `inventory`, whose registrations are such constructors. Without a call
/// like this one the linker runs them all at the top of *every* exported function (its
/// "command-style" guess), and the browser calls exports constantly: wasm-bindgen's glue
/// allocates a table slot through one for each JavaScript object handed to the wasm, a WebGPU
/// bind group for each kernel launch among them. V8's profiler put 97 % of the page's worker
/// time there on WebGPU. Called when the page (or its worker) starts and before a WebGPU device
/// is made.
#[cfg(target_arch = "wasm32")]
pub fn run_static_constructors() {
    unsafe extern "C" {
        fn __wasm_call_ctors();
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: the linker's own constructor list, run once per instance as it expects.
    ONCE.call_once(|| unsafe { __wasm_call_ctors() });
}

/// Initialises WebGPU in the browser. Call once; clone the device afterwards.
#[cfg(target_arch = "wasm32")]
pub async fn webgpu_device() -> Result<Device> {
    run_static_constructors();
    Device::wgpu_options().init_async().await.map_err(|e| Error::NoGpu(e.to_string()))
}

/// Whether `device` is a GPU: natively, a cubecl runtime (wgpu), told by its memory-pool report,
/// which the CPU backend does not give; in the browser, whether it is not flex (asking WebGPU's
/// allocator synchronously blocks the page: see [`GpuMemory`]).
pub fn is_gpu(device: &Device) -> bool {
    #[cfg(target_arch = "wasm32")]
    return !matches!(device.as_dispatch(), burn::backend::DispatchDevice::Flex(_));
    #[cfg(not(target_arch = "wasm32"))]
    return device.memory_pool_usage().is_some();
}

/// What the page computes on: WebGPU, or burn's flex backend compiled to WebAssembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ComputeBackend {
    WebGpu,
    Cpu,
}

impl std::fmt::Display for ComputeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ComputeBackend::WebGpu => "the GPU (WebGPU)",
            ComputeBackend::Cpu => "the CPU (WebAssembly)",
        })
    }
}

/// What the user asked for in the model panel (or with `?compute=` in the page's URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum ComputePreference {
    /// WebGPU on a hardware adapter, else the CPU.
    #[default]
    Automatic,
    Gpu,
    Cpu,
}

impl ComputePreference {
    pub const ALL: [ComputePreference; 3] = [ComputePreference::Automatic, ComputePreference::Gpu, ComputePreference::Cpu];

    /// The name in the page's URL and its select: `auto`, `gpu`, `cpu`.
    pub fn name(self) -> &'static str {
        match self {
            ComputePreference::Automatic => "auto",
            ComputePreference::Gpu => "gpu",
            ComputePreference::Cpu => "cpu",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// What the browser's WebGPU offers, as far as choosing a backend goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adapter {
    /// `navigator.gpu` is missing.
    NoWebGpu,
    /// `requestAdapter()` found none.
    None,
    /// `GPUAdapter.info` as `vendor architecture description`, and `isFallbackAdapter`.
    Found { description: String, fallback: bool },
}

/// Software implementations of WebGPU/Vulkan: a CPU emulating a GPU, far slower than flex on
/// the same CPU (100 s against seconds for the demo model on a 2-core machine).
const SOFTWARE_ADAPTERS: [&str; 4] = ["swiftshader", "llvmpipe", "lavapipe", "software"];

/// The backend to compute on, and why (shown in the model panel).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ComputeChoice {
    pub backend: ComputeBackend,
    pub reason: String,
}

impl ComputeChoice {
    /// Automatic: WebGPU on a hardware adapter; the CPU without WebGPU, without an adapter, or
    /// on a fallback/software adapter. A forced GPU without an adapter is an error.
    pub fn choose(preference: ComputePreference, adapter: &Adapter) -> Result<ComputeChoice> {
        let cpu = |reason: String| Ok(ComputeChoice { backend: ComputeBackend::Cpu, reason });
        let gpu = |reason: String| Ok(ComputeChoice { backend: ComputeBackend::WebGpu, reason });
        match (preference, adapter) {
            (ComputePreference::Cpu, _) => cpu("chosen in the model panel (or the page's URL)".into()),
            (ComputePreference::Gpu, Adapter::Found { description, .. }) => {
                gpu(format!("chosen in the model panel (or the page's URL); adapter: {description}"))
            }
            (ComputePreference::Gpu, Adapter::NoWebGpu) => Err(Error::NoGpu("this browser has no WebGPU: choose CPU or automatic".into())),
            (ComputePreference::Gpu, Adapter::None) => Err(Error::NoGpu("WebGPU found no adapter: choose CPU or automatic".into())),
            (ComputePreference::Automatic, Adapter::NoWebGpu) => cpu("this browser has no WebGPU".into()),
            (ComputePreference::Automatic, Adapter::None) => cpu("WebGPU found no GPU adapter".into()),
            (ComputePreference::Automatic, Adapter::Found { description, fallback }) => {
                let lower = description.to_lowercase();
                match SOFTWARE_ADAPTERS.iter().find(|s| lower.contains(*s)) {
                    Some(_) => cpu(format!("the WebGPU adapter is a software one ({description}), slower than the CPU path")),
                    None if *fallback => cpu(format!("the WebGPU adapter is a fallback adapter ({description}), slower than the CPU path")),
                    None => gpu(format!("adapter: {description}")),
                }
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn found(description: &str, fallback: bool) -> Adapter {
        Adapter::Found { description: description.into(), fallback }
    }

    #[test]
    fn automatic_takes_the_gpu_only_on_hardware() {
        let auto = |adapter: &Adapter| ComputeChoice::choose(ComputePreference::Automatic, adapter).unwrap().backend;
        assert_eq!(auto(&found("nvidia ampere NVIDIA GeForce RTX 3060", false)), ComputeBackend::WebGpu);
        assert_eq!(auto(&found("google swiftshader", true)), ComputeBackend::Cpu);
        // Chromium reports SwiftShader this way even when it does not flag it as a fallback.
        assert_eq!(auto(&found("google swiftshader Subzero", false)), ComputeBackend::Cpu);
        assert_eq!(auto(&found("mesa llvmpipe (LLVM 15.0.6, 256 bits)", false)), ComputeBackend::Cpu);
        assert_eq!(auto(&found("intel gen-12lp", true)), ComputeBackend::Cpu);
        assert_eq!(auto(&Adapter::NoWebGpu), ComputeBackend::Cpu);
        assert_eq!(auto(&Adapter::None), ComputeBackend::Cpu);
    }

    #[test]
    fn a_forced_choice_is_kept_or_refused_clearly() {
        let swiftshader = found("google swiftshader", true);
        assert_eq!(ComputeChoice::choose(ComputePreference::Gpu, &swiftshader).unwrap().backend, ComputeBackend::WebGpu);
        assert_eq!(ComputeChoice::choose(ComputePreference::Cpu, &found("apple m2", false)).unwrap().backend, ComputeBackend::Cpu);
        let error = ComputeChoice::choose(ComputePreference::Gpu, &Adapter::NoWebGpu).unwrap_err().to_string();
        assert!(error.contains("no WebGPU") && error.contains("choose CPU"), "{error}");
        assert!(ComputeChoice::choose(ComputePreference::Gpu, &Adapter::None).is_err());
    }

    #[test]
    fn preference_names_round_trip() {
        for p in ComputePreference::ALL {
            assert_eq!(ComputePreference::from_name(p.name()), Some(p));
        }
        assert_eq!(ComputePreference::from_name("tpu"), None);
    }
}
