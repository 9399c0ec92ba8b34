//! Does this browser have WebGPU, and which adapter? Checked before any model work so a visitor
//! without it gets a clear explanation instead of a crash.

use js_sys::{Function, Promise, Reflect};
use leptos::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::device::Adapter;

/// What the browser offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuStatus {
    /// Not checked yet.
    Checking,
    /// `navigator.gpu` is missing: the browser has no WebGPU (or it is disabled).
    Unsupported,
    /// WebGPU exists but `requestAdapter()` found no GPU (blocklisted driver, no hardware, ...).
    NoAdapter,
    /// An adapter was found; its description as the browser reports it.
    Ready(String),
}

/// What `navigator.gpu.requestAdapter()` gives: `Err(status)` when there is no WebGPU or no adapter.
async fn request_adapter(navigator: &JsValue) -> Result<JsValue, GpuStatus> {
    let gpu = Reflect::get(navigator, &"gpu".into()).unwrap_or(JsValue::UNDEFINED);
    if gpu.is_undefined() || gpu.is_null() {
        return Err(GpuStatus::Unsupported);
    }
    let Some(request) = Reflect::get(&gpu, &"requestAdapter".into()).ok().and_then(|f| f.dyn_into::<Function>().ok()) else {
        return Err(GpuStatus::Unsupported);
    };
    let Ok(promise) = request.call0(&gpu).map(Promise::from) else {
        return Err(GpuStatus::NoAdapter);
    };
    match JsFuture::from(promise).await {
        Ok(adapter) if !adapter.is_null() && !adapter.is_undefined() => Ok(adapter),
        _ => Err(GpuStatus::NoAdapter),
    }
}

/// Asks `navigator` (passed in so tests can hand it a fake) for a WebGPU adapter.
pub async fn probe(navigator: &JsValue) -> GpuStatus {
    match request_adapter(navigator).await {
        Ok(adapter) => GpuStatus::Ready(describe(&adapter)),
        Err(status) => status,
    }
}

/// The adapter, as [`crate::device::ComputeChoice::choose`] needs it: its description and whether
/// the browser calls it a fallback (`GPUAdapter.info.isFallbackAdapter`, or the older
/// `GPUAdapter.isFallbackAdapter`).
pub async fn adapter() -> Adapter {
    match request_adapter(&super::scope::navigator()).await {
        Ok(adapter) => {
            let info = Reflect::get(&adapter, &"info".into()).unwrap_or(JsValue::UNDEFINED);
            let flag = |object: &JsValue| Reflect::get(object, &"isFallbackAdapter".into()).ok().and_then(|v| v.as_bool()).unwrap_or(false);
            Adapter::Found { description: describe(&adapter), fallback: flag(&info) || flag(&adapter) }
        }
        Err(GpuStatus::Unsupported) => Adapter::NoWebGpu,
        Err(_) => Adapter::None,
    }
}

/// The adapter's `maxStorageBufferBindingSize` (the largest tensor a kernel can read; burn-wgpu
/// asks for the adapter's limits), or `None` without an adapter.
pub async fn storage_binding_limit() -> Option<u64> {
    let adapter = request_adapter(&super::scope::navigator()).await.ok()?;
    let limits = Reflect::get(&adapter, &"limits".into()).ok()?;
    Reflect::get(&limits, &"maxStorageBufferBindingSize".into()).ok()?.as_f64().map(|v| v as u64)
}

/// `vendor architecture (description)` from `GPUAdapter.info`, skipping empty fields.
fn describe(adapter: &JsValue) -> String {
    let info = Reflect::get(adapter, &"info".into()).unwrap_or(JsValue::UNDEFINED);
    let field = |name: &str| Reflect::get(&info, &name.into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
    let text: Vec<String> = ["vendor", "architecture", "description"].iter().map(|f| field(f)).filter(|s| !s.is_empty()).collect();
    if text.is_empty() { "WebGPU adapter".to_string() } else { text.join(" ") }
}

/// The banner that explains the GPU situation.
#[component]
pub fn GpuNotice(#[prop(into)] status: Signal<GpuStatus>) -> impl IntoView {
    move || match status.get() {
        GpuStatus::Checking => view! { <p class="notice">"Checking for WebGPU…"</p> }.into_any(),
        GpuStatus::Ready(adapter) => view! { <p class="notice ok" data-test="gpu-ready">"WebGPU ready: " {adapter}</p> }.into_any(),
        GpuStatus::Unsupported => view! {
            <div class="notice" data-test="no-webgpu" role="status">
                <strong>"This browser has no WebGPU: mam-e computes on the CPU (WebAssembly) instead."</strong>
                " The demo models take seconds there; large models (SD1.5) need a GPU with WebGPU: a recent "
                "Chrome or Edge (113+), or Firefox / Safari with WebGPU enabled."
            </div>
        }
        .into_any(),
        GpuStatus::NoAdapter => view! {
            <div class="notice" data-test="no-adapter" role="status">
                <strong>"WebGPU found no usable GPU: mam-e computes on the CPU (WebAssembly) instead."</strong>
                " For large models your graphics driver may be blocklisted or hardware acceleration switched "
                "off; check chrome://gpu, update the driver, or try another browser."
            </div>
        }
        .into_any(),
    }
}
