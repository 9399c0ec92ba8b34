//! The global scope the code runs in: the page's `Window`, or the pipeline worker's
//! `DedicatedWorkerGlobalScope` (see [`super::worker`]). Fetching, Cache Storage, the clock and
//! `navigator.gpu` exist in both, under the same names, so package loading runs in either.

use js_sys::Reflect;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{CacheStorage, DedicatedWorkerGlobalScope};

/// A thrown JS value as text: a string itself, an `Error`'s message, else its debug form.
pub fn js_text(e: &JsValue) -> String {
    e.as_string().or_else(|| Reflect::get(e, &"message".into()).ok().and_then(|m| m.as_string())).unwrap_or_else(|| format!("{e:?}"))
}

/// Whether this is the pipeline worker rather than the page.
pub fn is_worker() -> bool {
    js_sys::global().dyn_into::<DedicatedWorkerGlobalScope>().is_ok()
}

/// `self.navigator` (a `Navigator` or a `WorkerNavigator`), or `undefined`.
pub fn navigator() -> JsValue {
    Reflect::get(&js_sys::global(), &"navigator".into()).unwrap_or(JsValue::UNDEFINED)
}

/// `self.caches`, where Cache Storage is available (secure contexts).
pub fn caches() -> Option<CacheStorage> {
    let caches = Reflect::get(&js_sys::global(), &"caches".into()).ok()?;
    if caches.is_undefined() || caches.is_null() {
        return None;
    }
    Some(caches.unchecked_into())
}

/// `self.fetch(url)`.
pub fn fetch(url: &str) -> Result<js_sys::Promise, JsValue> {
    let global = js_sys::global();
    if let Some(window) = global.dyn_ref::<web_sys::Window>() {
        Ok(window.fetch_with_str(url))
    } else if let Some(worker) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        Ok(worker.fetch_with_str(url))
    } else {
        Err(JsValue::from_str("this scope cannot fetch"))
    }
}

/// Milliseconds from `performance.now()` (each scope has its own origin: compare only values
/// taken in the same scope).
pub fn now_ms() -> f64 {
    let performance = Reflect::get(&js_sys::global(), &"performance".into()).unwrap_or(JsValue::UNDEFINED);
    Reflect::get(&performance, &"now".into())
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .and_then(|now| now.call0(&performance).ok())
        .and_then(|t| t.as_f64())
        .unwrap_or(0.0)
}

/// Gives the event loop a turn (`setTimeout(0)`): between steps on the CPU path, where nothing
/// else awaits, so the worker still hears Cancel and answers the DevTools protocol.
pub async fn yield_now() {
    gloo_timers::future::TimeoutFuture::new(0).await;
}
