//! Messages between the page and the pipeline worker: JSON for the request or reply, and byte
//! arrays (pixels, masks) beside it, transferred rather than copied.

use js_sys::{Array, Reflect, Uint8Array};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wasm_bindgen::{JsCast, JsValue};

use super::models::ModelInfo;
use crate::cad::explain::LesionAttention;
use crate::device::ComputePreference;
use crate::package::ModelKind;
use crate::pipeline::text_to_image::GenerateParams;

/// What the page asks the worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Download (or take from Cache Storage) the package at `url` and load it into its slot, on
    /// the backend `compute` chooses.
    Load { url: String, compute: ComputePreference },
    /// One text-to-image or inpainting run. Inpainting carries `[image pixels, mask]` as parts;
    /// `inpaint` is that image's (width, height).
    Run { kind: ModelKind, params: GenerateParams, inpaint: Option<(usize, usize)> },
    /// Where the CAD looks on an image (MAM-E Fig. 6): the CAD model at `cad` (a folder URL
    /// holding `config.json` and `model.safetensors`) on the image `[pixels, mask]` of
    /// `width × height` (the mask may be empty: no lesion-attention figures then); occlusion with
    /// windows of `(window, stride)` model pixels, by default an eighth of the side and half that.
    Explain { cad: String, width: usize, height: usize, occlusion: Option<(usize, usize)> },
    /// Stop the current run after its current step.
    Cancel,
}

/// What the worker answers, tagged with the id of the request it answers (0: none).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Reply {
    /// The worker is listening.
    Ready,
    /// The package's manifest was read (its kind says which slot it goes to).
    Opened {
        info: ModelInfo,
    },
    /// Download progress, with the worker's clock.
    Loading {
        done: u64,
        total: u64,
        started_ms: f64,
        now_ms: f64,
    },
    Loaded {
        info: ModelInfo,
    },
    /// A denoising step finished; parts: the latent preview's RGB pixels.
    Step {
        done: usize,
        total: usize,
        width: usize,
        height: usize,
    },
    /// The run's image; parts: its RGB pixels.
    Finished {
        width: usize,
        height: usize,
    },
    Cancelled,
    /// The heatmaps of [`Request::Explain`] at the CAD's input side; parts: the model input,
    /// Grad-CAM and occlusion, each `side²` little-endian f32.
    Explained {
        side: usize,
        logit: f32,
        grad_cam: Option<LesionAttention>,
        occlusion: Option<LesionAttention>,
    },
    Failed {
        reason: String,
    },
    /// The GPU device failed under the worker (lost, reset, out of memory) and the worker is
    /// closing itself: the page starts a new one and loads its models again.
    DeviceLost {
        reason: String,
    },
}

/// A request or reply with its id and byte parts.
#[derive(Debug, Clone)]
pub struct Message<T> {
    pub id: u32,
    pub body: T,
    pub parts: Vec<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct Head<T> {
    id: u32,
    body: T,
}

impl<T: Serialize + DeserializeOwned> Message<T> {
    pub fn new(id: u32, body: T) -> Self {
        Message { id, body, parts: Vec::new() }
    }

    pub fn with_parts(id: u32, body: T, parts: Vec<Vec<u8>>) -> Self {
        Message { id, body, parts }
    }

    /// `{ json, parts }` and the list of buffers to transfer with it.
    pub fn to_js(&self) -> (JsValue, Array) {
        let json = serde_json::to_string(&Head { id: self.id, body: &self.body }).unwrap_or_default();
        let parts = Array::new();
        let transfer = Array::new();
        for part in &self.parts {
            let array = Uint8Array::from(part.as_slice());
            transfer.push(&array.buffer());
            parts.push(&array);
        }
        let object = js_sys::Object::new();
        let _ = Reflect::set(&object, &"json".into(), &json.into());
        let _ = Reflect::set(&object, &"parts".into(), &parts);
        (object.into(), transfer)
    }

    /// The message in `data` (a `MessageEvent`'s), or what is wrong with it.
    pub fn from_js(data: &JsValue) -> Result<Self, String> {
        let json = Reflect::get(data, &"json".into()).ok().and_then(|j| j.as_string()).ok_or("a message without JSON")?;
        let head: Head<T> = serde_json::from_str(&json).map_err(|e| format!("an unreadable message ({e}): {json}"))?;
        let parts = Reflect::get(data, &"parts".into())
            .ok()
            .and_then(|p| p.dyn_into::<Array>().ok())
            .map(|parts| parts.iter().map(|p| p.unchecked_into::<Uint8Array>().to_vec()).collect())
            .unwrap_or_default();
        Ok(Message { id: head.id, body: head.body, parts })
    }
}
