//! The page's side of the pipeline worker ([`super::worker`]): starts it on first use, sends it
//! [`Request`]s and routes each [`Reply`] to whoever asked. If the worker dies (a GPU lost or
//! out of memory takes the wasm in it down with a trap) or closes itself because its device
//! failed ([`Reply::DeviceLost`]), every pending request fails with a message saying so, a
//! fresh worker starts with the next request, and the page is told
//! ([`on_restart`]) so it can load its models again: no page reload needed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use futures::channel::oneshot;
use gloo_events::{EventListener, EventListenerOptions};
use js_sys::Array;
use wasm_bindgen::prelude::*;
use web_sys::{ErrorEvent, MessageEvent, Worker, WorkerOptions, WorkerType};

use super::cad::Explanation;
use super::protocol::{Message, Reply, Request};
use super::run::Job;
use super::scope::js_text;
use crate::device::ComputePreference;
use crate::imaging::RgbImage;
use crate::package::ModelKind;
use crate::pipeline::text_to_image::GenerateParams;
use crate::{Error, Result};

/// The worker's script, beside the app's files (see `index.html`).
const WORKER_SCRIPT: &str = "worker.js";

#[wasm_bindgen]
extern "C" {
    type ImportMeta;

    #[wasm_bindgen(method, getter)]
    fn url(this: &ImportMeta) -> String;

    /// `import.meta` of wasm-bindgen's generated module: its URL is the script the worker imports.
    #[wasm_bindgen(thread_local_v2, js_namespace = import, js_name = meta)]
    static IMPORT_META: ImportMeta;
}

type Handler = Rc<dyn Fn(Message<Reply>)>;

struct Engine {
    worker: Worker,
    /// Set once the worker has said [`Reply::Ready`]; until then messages wait in `queue`.
    ready: bool,
    queue: Vec<(JsValue, Array)>,
    next_id: u32,
    handlers: HashMap<u32, Handler>,
    _on_message: EventListener,
    _on_error: EventListener,
}

/// What runs after the worker died (see [`on_restart`]).
type RestartHandler = Rc<dyn Fn(String)>;

thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
    static ON_RESTART: RefCell<Option<RestartHandler>> = RefCell::new(None);
}

/// `f(reason)` runs after the worker died and was dropped (the next request starts a new one).
pub fn on_restart(f: impl Fn(String) + 'static) {
    ON_RESTART.with(|r| *r.borrow_mut() = Some(Rc::new(f)));
}

fn spawn() -> Result<Engine> {
    let glue = IMPORT_META.with(ImportMeta::url);
    let script = web_sys::Url::new_with_base(WORKER_SCRIPT, &glue).map_err(|e| Error::Worker(js_text(&e)))?;
    script.search_params().set("glue", &glue);
    let options = WorkerOptions::new();
    options.set_type(WorkerType::Module);
    let worker = Worker::new_with_options(&script.href(), &options).map_err(|e| Error::Worker(js_text(&e)))?;
    // The worker instantiates the module this page already compiled instead of fetching and
    // compiling the wasm a second time.
    worker.post_message(&wasm_bindgen::module()).map_err(|e| Error::Worker(js_text(&e)))?;

    let on_message = EventListener::new(&worker, "message", |event| {
        let Some(event) = event.dyn_ref::<MessageEvent>() else { return };
        let message = match Message::<Reply>::from_js(&event.data()) {
            Ok(message) => message,
            Err(reason) => return web_sys::console::error_1(&format!("mam-e: {reason}").into()),
        };
        if let (0, Reply::DeviceLost { reason }) = (message.id, &message.body) {
            return died(reason.clone());
        }
        if let (0, Reply::Ready) = (message.id, &message.body) {
            return ENGINE.with(|e| {
                if let Some(engine) = e.borrow_mut().as_mut() {
                    engine.ready = true;
                    for (data, transfer) in engine.queue.drain(..) {
                        let _ = engine.worker.post_message_with_transfer(&data, &transfer);
                    }
                }
            });
        }
        let last = matches!(message.body, Reply::Loaded { .. } | Reply::Finished { .. } | Reply::Explained { .. } | Reply::Cancelled | Reply::Failed { .. });
        let handler = ENGINE.with(|e| {
            let mut engine = e.borrow_mut();
            let handlers = &mut engine.as_mut()?.handlers;
            if last { handlers.remove(&message.id) } else { handlers.get(&message.id).cloned() }
        });
        match handler {
            Some(handler) => handler(message),
            None if message.id == 0 => web_sys::console::error_1(&format!("mam-e worker: {:?}", message.body).into()),
            None => {}
        }
    });
    // Not passive: the error is handled here, so the browser does not report it again.
    let on_error = EventListener::new_with_options(&worker, "error", EventListenerOptions::enable_prevent_default(), |event| {
        event.prevent_default();
        let message = event.dyn_ref::<ErrorEvent>().map(ErrorEvent::message).unwrap_or_default();
        died(if message.is_empty() { "it stopped without a message".to_string() } else { message });
    });
    Ok(Engine { worker, ready: false, queue: Vec::new(), next_id: 1, handlers: HashMap::new(), _on_message: on_message, _on_error: on_error })
}

/// Stops the worker on purpose (the compute backend changed): pending runs fail with `reason`,
/// and the page loads its models again into a new one.
pub fn restart(reason: &str) {
    died(reason.to_string());
}

/// The worker died: fail what was pending, drop it, and tell the page.
fn died(reason: String) {
    let Some(engine) = ENGINE.with(|e| e.borrow_mut().take()) else { return };
    engine.worker.terminate();
    let reason = format!("the pipeline worker stopped ({reason}); a new one starts with the next request");
    let Engine { handlers, _on_message, _on_error, .. } = engine;
    // This runs inside `_on_error` or `_on_message`: dropping them here would free the closure
    // while it runs.
    std::mem::forget((_on_message, _on_error));
    for (id, handler) in handlers {
        handler(Message::new(id, Reply::Failed { reason: reason.clone() }));
    }
    if let Some(f) = ON_RESTART.with(|r| r.borrow().clone()) {
        f(reason);
    }
}

/// Sends `body` (with `parts`); `handler` gets every reply to it.
fn send(body: Request, parts: Vec<Vec<u8>>, handler: Option<Handler>) -> Result<()> {
    ENGINE.with(|e| {
        let mut slot = e.borrow_mut();
        if slot.is_none() {
            *slot = Some(spawn()?);
        }
        let engine = slot.as_mut().expect("set above");
        let id = engine.next_id;
        engine.next_id += 1;
        if let Some(handler) = handler {
            engine.handlers.insert(id, handler);
        }
        let (data, transfer) = Message::with_parts(id, body, parts).to_js();
        if engine.ready {
            engine.worker.post_message_with_transfer(&data, &transfer).map_err(|e| Error::Worker(js_text(&e)))?;
        } else {
            engine.queue.push((data, transfer));
        }
        Ok(())
    })
}

/// Loads the package at `url` in the worker, on the backend `compute` chooses; `on_reply` sees
/// [`Reply::Opened`], progress, and [`Reply::Loaded`] or [`Reply::Failed`].
pub fn load(url: &str, compute: ComputePreference, on_reply: impl Fn(Reply) + 'static) {
    let on_reply = Rc::new(on_reply);
    let handler: Handler = {
        let on_reply = on_reply.clone();
        Rc::new(move |message: Message<Reply>| on_reply(message.body))
    };
    if let Err(e) = send(Request::Load { url: url.to_string(), compute }, Vec::new(), Some(handler)) {
        on_reply(Reply::Failed { reason: e.to_string() });
    }
}

/// Runs `job` with the loaded model of `kind`; `on_step(done, total, preview)` after every step.
/// `None` when cancelled.
pub async fn run(kind: ModelKind, params: &GenerateParams, job: Job, on_step: impl Fn(usize, usize, RgbImage) + 'static) -> Result<Option<RgbImage>> {
    let (done_tx, done_rx) = oneshot::channel::<Result<Option<RgbImage>>>();
    let done_tx = RefCell::new(Some(done_tx));
    let finish = move |result| {
        if let Some(tx) = done_tx.borrow_mut().take() {
            let _ = tx.send(result);
        }
    };
    let handler: Handler = Rc::new(move |message: Message<Reply>| {
        let image = |width, height| RgbImage { width, height, pixels: message.parts.first().cloned().unwrap_or_default() };
        match message.body {
            Reply::Step { done, total, width, height } => on_step(done, total, image(width, height)),
            Reply::Finished { width, height } => finish(Ok(Some(image(width, height)))),
            Reply::Cancelled => finish(Ok(None)),
            Reply::Failed { reason } => finish(Err(Error::Worker(reason))),
            other => finish(Err(Error::Worker(format!("unexpected reply {other:?}")))),
        }
    });
    let (inpaint, parts) = match job {
        Job::TextToImage => (None, Vec::new()),
        Job::Inpaint { image, mask } => (Some((image.width, image.height)), vec![image.pixels, mask]),
    };
    send(Request::Run { kind, params: params.clone(), inpaint }, parts, Some(handler))?;
    done_rx.await.map_err(|_| Error::Worker("the pipeline worker dropped the run".into()))?
}

/// The CAD's heatmaps of `image` (and its lesion `mask`, or none) from the worker: see
/// [`super::cad::explain`].
pub async fn explain(cad: &str, image: &RgbImage, mask: &[u8], occlusion: Option<(usize, usize)>) -> Result<Explanation> {
    let (done_tx, done_rx) = oneshot::channel::<Result<Explanation>>();
    let done_tx = RefCell::new(Some(done_tx));
    let handler: Handler = Rc::new(move |message: Message<Reply>| {
        let result = match message.body {
            Reply::Failed { reason } => Err(Error::Worker(reason)),
            reply => Explanation::from_reply(reply, &message.parts),
        };
        if let Some(tx) = done_tx.borrow_mut().take() {
            let _ = tx.send(result);
        }
    });
    let request = Request::Explain { cad: cad.to_string(), width: image.width, height: image.height, occlusion };
    send(request, vec![image.pixels.clone(), mask.to_vec()], Some(handler))?;
    done_rx.await.map_err(|_| Error::Worker("the pipeline worker dropped the request".into()))?
}

/// Asks the current run to stop after its step.
pub fn cancel() {
    let _ = ENGINE.with(|e| {
        e.borrow().as_ref().map(|engine| {
            let (data, transfer) = Message::new(0, Request::Cancel).to_js();
            engine.worker.post_message_with_transfer(&data, &transfer)
        })
    });
}
