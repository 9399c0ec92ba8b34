//! Does this browser have WebGPU, and which adapter? Checked before any model work so a visitor
//! without it gets a clear explanation instead of a crash.

use js_sys::{Function, Promise, Reflect};
use leptos::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

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
    let Some(request) = Reflect::get(&gpu, &"requestAdapter".into()).ok().and_then(|f| f.dyn_into::<Function>().ok())
    else {
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
    let text: Vec<String> =
        ["vendor", "architecture", "description"].iter().map(|f| field(f)).filter(|s| !s.is_empty()).collect();
    if text.is_empty() { "WebGPU adapter".to_string() } else { text.join(" ") }
}

/// The banner that explains the GPU situation.
#[component]
pub fn GpuNotice(#[prop(into)] status: Signal<GpuStatus>) -> impl IntoView {
    move || match status.get() {
        GpuStatus::Checking => view! { <p class="notice">"Checking for WebGPU…"</p> }.into_any(),
        GpuStatus::Ready(adapter) => {
            view! { <p class="notice ok" data-test="gpu-ready">"WebGPU ready: " {adapter}</p> }.into_any()
        }
        GpuStatus::Unsupported => view! {
            <div class="notice error" data-test="no-webgpu" role="alert">
                <strong>"This browser has no WebGPU."</strong>
                " mam-e generates mammograms on your own GPU, so nothing leaves your device, and it needs "
                "WebGPU for that. Use a recent Chrome or Edge (113+), or Firefox / Safari with WebGPU enabled."
            </div>
        }
        .into_any(),
        GpuStatus::NoAdapter => view! {
            <div class="notice error" data-test="no-adapter" role="alert">
                <strong>"WebGPU is present but found no usable GPU."</strong>
                " Your graphics driver may be blocklisted or hardware acceleration switched off; "
                "check chrome://gpu, update the driver, or try another browser."
            </div>
        }
        .into_any(),
    }
}
