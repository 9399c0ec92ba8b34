//! The loaded models (one text-to-image and one inpainting package) and how a package gets from
//! a URL onto the GPU: manifest, tokenizer, then shards fetched a few at a time, each verified
//! and applied as it arrives.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use burn::tensor::Device;
use futures::StreamExt;

use super::download::{fetch_text, fetch_verified};
use super::scope::now_ms;
use crate::Result;
use crate::device::{Adapter, ComputeBackend, ComputeChoice, ComputePreference, webgpu_device};
use crate::model::ops::GpuKernels;
use crate::model::precision::Precision;
use crate::package::{Defaults, MANIFEST, Manifest, ModelKind, PackageLoader, StorageDtype};
use crate::pipeline::StableDiffusion;

/// Shards downloading at once.
const PARALLEL_SHARDS: usize = 3;

/// The packages that ship with the app (served from `static/models/`).
pub const DEFAULT_TEXT_TO_IMAGE: &str = "models/demo/manifest.json";
pub const DEFAULT_INPAINTING: &str = "models/demo-inpaint/manifest.json";

/// A loaded package, as the UI shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    pub url: String,
    pub name: String,
    pub description: String,
    pub kind: ModelKind,
    pub trained: bool,
    pub dtype: StorageDtype,
    pub bytes: u64,
    pub defaults: Defaults,
    /// What the UNet and text encoder compute in, once loaded: f16 on GPUs with f16 shaders.
    pub precision: Option<Precision>,
    /// Where it computes, and why, once loaded.
    pub compute: Option<ComputeChoice>,
}

impl ModelInfo {
    fn of(url: &str, manifest: &Manifest) -> Self {
        ModelInfo {
            url: url.to_string(),
            name: manifest.name.clone(),
            description: manifest.description.clone(),
            kind: manifest.kind,
            trained: manifest.trained,
            dtype: manifest.dtype,
            bytes: manifest.total_bytes(),
            defaults: manifest.defaults.clone(),
            precision: None,
            compute: None,
        }
    }
}

/// Where a slot stands.
#[derive(Debug, Clone, PartialEq)]
pub enum SlotStatus {
    Empty,
    Loading { url: String, done: u64, total: u64, started_ms: f64, now_ms: f64 },
    Ready(ModelInfo),
    Failed(String),
}

#[derive(Default)]
struct Loaded {
    text_to_image: Option<Rc<StableDiffusion>>,
    inpainting: Option<Rc<StableDiffusion>>,
}

thread_local! {
    static LOADED: RefCell<Loaded> = RefCell::default();
    /// The device with the preference it was chosen for, behind an async lock: two packages
    /// loading at once must not both create it.
    static DEVICE: Rc<futures::lock::Mutex<Option<(ComputePreference, Device, ComputeChoice)>>> = Rc::default();
}

/// The loaded model of `kind`, if any.
pub fn model(kind: ModelKind) -> Option<Rc<StableDiffusion>> {
    LOADED.with(|l| {
        let l = l.borrow();
        match kind {
            ModelKind::TextToImage => l.text_to_image.clone(),
            ModelKind::Inpainting => l.inpainting.clone(),
        }
    })
}

/// The device for `preference` (WebGPU or flex, see [`ComputeChoice::choose`]) and why it was
/// chosen, created on first use and shared by every model loaded with the same preference.
pub async fn device(preference: ComputePreference) -> Result<(Device, ComputeChoice)> {
    let cell = DEVICE.with(Rc::clone);
    let mut slot = cell.lock().await;
    if let Some((chosen_for, device, choice)) = slot.as_ref()
        && *chosen_for == preference
    {
        return Ok((device.clone(), choice.clone()));
    }
    let adapter = super::gpu::adapter().await;
    let choice = ComputeChoice::choose(preference, &adapter)?;
    let device = match choice.backend {
        ComputeBackend::WebGpu => {
            if let Adapter::Found { description, .. } = &adapter {
                GpuKernels::for_adapter(description).select();
            }
            webgpu_device().await?
        }
        ComputeBackend::Cpu => Device::flex(),
    };
    *slot = Some((preference, device.clone(), choice.clone()));
    Ok((device, choice))
}

/// `url` of a manifest, or of a package folder, to (manifest URL, folder URL ending in `/`).
pub fn manifest_url(url: &str) -> (String, String) {
    let url = url.trim();
    if let Some(base) = url.strip_suffix(MANIFEST) {
        (url.to_string(), base.to_string())
    } else {
        let base = if url.ends_with('/') { url.to_string() } else { format!("{url}/") };
        (format!("{base}{MANIFEST}"), base)
    }
}

/// A package whose manifest has been read: enough to show its size and kind before downloading.
#[derive(Debug, Clone)]
pub struct Opened {
    pub info: ModelInfo,
    manifest: Manifest,
    /// Folder URL ending in `/`.
    base: String,
}

/// Reads the manifest of the package at `url`.
pub async fn open(url: &str) -> Result<Opened> {
    let (manifest_url, base) = manifest_url(url);
    super::download::allow_package(&base);
    let manifest = Manifest::parse(&fetch_text(&manifest_url).await?)?;
    Ok(Opened { info: ModelInfo::of(url, &manifest), manifest, base })
}

/// Downloads (or takes from the cache) and loads an opened package into the slot of its kind,
/// on the device `preference` chooses; `progress` sees every byte. A package the device cannot
/// hold is refused before anything is downloaded.
pub async fn load(package: Opened, preference: ComputePreference, progress: impl Fn(SlotStatus) + 'static) -> Result<ModelInfo> {
    let Opened { info, manifest, base } = package;
    let total = info.bytes;
    let (device, choice) = device(preference).await?;
    if choice.backend == ComputeBackend::Cpu {
        manifest.check_fits_the_cpu_path()?;
    }
    let needed = manifest.largest_tensor_bytes()?;
    let limit = match choice.backend {
        ComputeBackend::WebGpu => super::gpu::storage_binding_limit().await,
        ComputeBackend::Cpu => None,
    };
    if let Some(limit) = limit.filter(|&limit| limit < needed) {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        return Err(crate::Error::NoGpu(format!(
            "this GPU's WebGPU limits are too small for {}: it needs storage buffers of at least {:.0} MiB and the adapter allows {:.0} MiB (try a smaller package, another browser or GPU)",
            info.name,
            mib(needed),
            mib(limit)
        )));
    }
    let tokenizer = manifest.tokenizer.clone();
    let shards = manifest.shards.clone();
    let mut loader = PackageLoader::new(manifest, &device)?.with_precision(Precision::best(&device))?;
    let info = ModelInfo { precision: Some(loader.precision()), compute: Some(choice), ..info };

    let started_ms = now_ms();
    let done = Rc::new(Cell::new(0u64));
    let progress = Rc::new(progress);
    let report = {
        let (done, progress, url) = (done.clone(), progress.clone(), info.url.clone());
        Rc::new(move |n: u64| {
            done.set(done.get() + n);
            progress(SlotStatus::Loading { url: url.clone(), done: done.get(), total, started_ms, now_ms: now_ms() });
        })
    };
    report(0);
    for (i, file) in tokenizer.iter().enumerate() {
        let bytes = fetch_verified(&base, file, &mut |n| report(n)).await?;
        loader.add_tokenizer_file(i, bytes)?;
    }
    let mut fetches = futures::stream::iter(shards.iter().enumerate())
        .map(|(i, file)| {
            let (base, report) = (base.clone(), report.clone());
            async move { (i, fetch_verified(&base, file, &mut |n| report(n)).await) }
        })
        .buffer_unordered(PARALLEL_SHARDS);
    while let Some((i, bytes)) = fetches.next().await {
        loader.add_shard(i, &bytes?)?;
    }
    drop(fetches);
    let kind = loader.manifest().kind;
    let model = Rc::new(loader.finish()?);
    if let Some(warning) = model.scheduler_config.ignored_keys_warning() {
        web_sys::console::warn_1(&format!("mam-e: {}: {warning}", info.name).into());
    }
    LOADED.with(|l| {
        let mut l = l.borrow_mut();
        match kind {
            ModelKind::TextToImage => l.text_to_image = Some(model),
            ModelKind::Inpainting => l.inpainting = Some(model),
        }
    });
    Ok(info)
}
