//! The pipeline worker: the app's own wasm, started a second time in a dedicated Web Worker
//! (`static/worker.js`), holds the WebGPU device and the loaded models and runs every
//! generation, so the page's thread only draws the interface and stays responsive while the
//! GPU works. It answers [`Request`]s with [`Reply`]s (see [`super::engine`] for the page's side).

use std::cell::Cell;
use std::rc::Rc;

use gloo_events::EventListener;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use super::models::{self, SlotStatus};
use super::protocol::{Message, Reply, Request};
use super::run::{Job, run};
use crate::Error;
use crate::device::ComputePreference;
use crate::imaging::RgbImage;

/// Download progress is posted at most this often (a fetch reports every network chunk).
const PROGRESS_EVERY_MS: f64 = 100.0;

thread_local! {
    /// Set by [`Request::Cancel`], checked after every step of the current run.
    static CANCEL: Rc<Cell<bool>> = Rc::new(Cell::new(false));
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn post(message: Message<Reply>) {
    let (data, transfer) = message.to_js();
    if let Err(e) = scope().post_message_with_transfer(&data, &transfer) {
        web_sys::console::error_2(&"mam-e worker: could not post a reply".into(), &e);
    }
}

fn reply(id: u32, body: Reply) {
    post(Message::new(id, body));
}

/// Starts listening for requests and says so with [`Reply::Ready`].
pub fn start() {
    let on_message = EventListener::new(&scope(), "message", |event| {
        let Some(event) = event.dyn_ref::<MessageEvent>() else { return };
        match Message::<Request>::from_js(&event.data()) {
            Ok(message) => handle(message),
            Err(reason) => reply(0, Reply::Failed { reason }),
        }
    });
    // The worker lives as long as the page: so does its handler.
    on_message.forget();
    reply(0, Reply::Ready);
}

fn handle(message: Message<Request>) {
    let Message { id, body, parts } = message;
    match body {
        Request::Cancel => CANCEL.with(|c| c.set(true)),
        Request::Load { url, compute } => spawn_local(load(id, url, compute)),
        Request::Explain { cad, width, height, occlusion } => spawn_local(async move {
            let [pixels, mask] = <[Vec<u8>; 2]>::try_from(parts).unwrap_or_default();
            match super::cad::explain(&cad, &RgbImage { width, height, pixels }, &mask, occlusion).await {
                Ok(explanation) => {
                    let (body, parts) = explanation.to_reply();
                    post(Message::with_parts(id, body, parts));
                }
                Err(e) => fail(id, e),
            }
        }),
        Request::Run { kind, params, inpaint } => {
            CANCEL.with(|c| c.set(false));
            spawn_local(async move {
                let Some(sd) = models::model(kind) else {
                    return reply(id, Reply::Failed { reason: format!("no {kind} package is loaded") });
                };
                let job = match (inpaint, <[Vec<u8>; 2]>::try_from(parts)) {
                    (None, _) => Job::TextToImage,
                    (Some((width, height)), Ok([pixels, mask])) => Job::Inpaint { image: RgbImage { width, height, pixels }, mask },
                    (Some(_), Err(_)) => return reply(id, Reply::Failed { reason: "an inpainting request without its image and mask".into() }),
                };
                let on_step = |done, total, preview: RgbImage| {
                    post(Message::with_parts(id, Reply::Step { done, total, width: preview.width, height: preview.height }, vec![preview.pixels]));
                };
                match run(&sd, &job, &params, CANCEL.with(Rc::clone), on_step).await {
                    Ok(Some(image)) => post(Message::with_parts(id, Reply::Finished { width: image.width, height: image.height }, vec![image.pixels])),
                    Ok(None) => reply(id, Reply::Cancelled),
                    Err(e) => fail(id, e),
                }
            });
        }
    }
}

async fn load(id: u32, url: String, compute: ComputePreference) {
    let package = match models::open(&url).await {
        Ok(package) => package,
        Err(e) => return fail(id, e),
    };
    reply(id, Reply::Opened { info: package.info.clone() });
    let last = Cell::new(f64::NEG_INFINITY);
    let progress = move |status: SlotStatus| {
        if let SlotStatus::Loading { done, total, started_ms, now_ms, .. } = status
            && (now_ms - last.get() >= PROGRESS_EVERY_MS || done == total)
        {
            last.set(now_ms);
            reply(id, Reply::Loading { done, total, started_ms, now_ms });
        }
    };
    match models::load(package, compute, progress).await {
        Ok(info) => reply(id, Reply::Loaded { info }),
        Err(e) => fail(id, e),
    }
}

/// Answers request `id` with `error`. A failed read from the device means the device itself
/// failed (WebGPU reports a lost device this way, not by trapping): every later request would
/// fail too, so the worker says so and closes, and the page starts a new worker on a new device.
fn fail(id: u32, error: Error) {
    let device_failed = matches!(error, Error::TensorRead(_));
    let reason = if device_failed { format!("the GPU device failed: {error}; the models are being loaded again on a new device") } else { error.to_string() };
    reply(id, Reply::Failed { reason: reason.clone() });
    if device_failed {
        reply(0, Reply::DeviceLost { reason });
        scope().close();
    }
}
