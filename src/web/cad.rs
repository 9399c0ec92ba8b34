//! The CAD in the page (MAM-E Fig. 6, live): the embedded lesion classifier, loaded once into the
//! pipeline worker on flex (it is small: a CPU answers in well under a second), and the heatmaps
//! the gallery's Explain view shows over an inpainted lesion: Grad-CAM and occlusion, the two
//! methods that need no backward pass (see [`crate::cad::explain`]).

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::Device;

use super::download::fetch_bytes;
use super::protocol::Reply;
use crate::cad::explain::{LesionAttention, check_occlusion, grad_cam, lesion_attention, logit, occlusion, probability};
use crate::cad::model::{Cad, CadConfig, breast_mask, lesion_mask, to_input};
use crate::imaging::RgbImage;
use crate::{Error, Result};

/// The embedded CAD (a `cad train` model folder: `config.json`, `model.safetensors`).
pub const DEFAULT_CAD: &str = "models/cad/";
/// The largest CAD weights file the page downloads.
const MAX_WEIGHT_BYTES: u64 = 16 << 20;

type LoadedCad = Rc<(Cad, CadConfig)>;

thread_local! {
    /// The loaded CAD and the folder it came from.
    static LOADED: RefCell<Option<(String, LoadedCad)>> = const { RefCell::new(None) };
}

async fn model(folder: &str) -> Result<LoadedCad> {
    if let Some(loaded) = LOADED.with(|l| l.borrow().as_ref().filter(|(url, _)| url == folder).map(|(_, m)| m.clone())) {
        return Ok(loaded);
    }
    let config = fetch_bytes(&format!("{folder}config.json"), crate::package::MAX_MANIFEST_BYTES).await?;
    let weights = fetch_bytes(&format!("{folder}model.safetensors"), MAX_WEIGHT_BYTES).await?;
    let loaded = CadConfig::load(&config, weights, &Device::flex())
        .map_err(|reason| Error::InvalidInput { what: "CAD model", reason: format!("{folder}: {reason}") })?;
    let loaded = Rc::new(loaded);
    LOADED.with(|l| *l.borrow_mut() = Some((folder.to_string(), loaded.clone())));
    Ok(loaded)
}

/// Heatmaps of one image at the CAD's input side.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub side: usize,
    /// The image as the CAD saw it: gray, resized, in [−1, 1].
    pub input: Vec<f32>,
    pub logit: f32,
    pub grad_cam: Vec<f32>,
    pub occlusion: Vec<f32>,
    /// Lesion attention of Grad-CAM and of occlusion (none without a mask, or for a map with no
    /// positive mass in the breast).
    pub attention: [Option<LesionAttention>; 2],
}

fn to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

impl Explanation {
    pub fn probability(&self) -> f32 {
        probability(self.logit)
    }

    /// The worker's reply and its parts.
    pub fn to_reply(&self) -> (Reply, Vec<Vec<u8>>) {
        let [grad_cam, occlusion] = self.attention.clone();
        let reply = Reply::Explained { side: self.side, logit: self.logit, grad_cam, occlusion };
        (reply, vec![to_bytes(&self.input), to_bytes(&self.grad_cam), to_bytes(&self.occlusion)])
    }

    /// Back from [`Explanation::to_reply`]'s reply.
    pub fn from_reply(reply: Reply, parts: &[Vec<u8>]) -> Result<Self> {
        let Reply::Explained { side, logit, grad_cam, occlusion } = reply else { return Err(Error::Worker(format!("unexpected reply {reply:?}"))) };
        let [input, grad_cam_map, occlusion_map] = parts else { return Err(Error::Worker("an explanation without its three maps".into())) };
        let maps = [input, grad_cam_map, occlusion_map].map(|bytes| from_bytes(bytes));
        if maps.iter().any(|m| m.len() != side * side) {
            return Err(Error::Worker(format!("an explanation whose maps are not {side}×{side}")));
        }
        let [input, grad_cam_map, occlusion_map] = maps;
        Ok(Explanation { side, input, logit, grad_cam: grad_cam_map, occlusion: occlusion_map, attention: [grad_cam, occlusion] })
    }
}

/// The heatmaps of `image` (and, with a `mask` of one byte per pixel, ≥ 128 inside, the lesion
/// attention), with the CAD at `folder`; occlusion windows of `window` model pixels moved by
/// `stride` (by default an eighth of the side, moved by half a window: `cad explain`'s 16 and 8
/// at 128 pixels).
pub async fn explain(folder: &str, image: &RgbImage, mask: &[u8], occlusion_window: Option<(usize, usize)>) -> Result<Explanation> {
    let invalid = |reason: String| Error::InvalidInput { what: "explain request", reason };
    if image.pixels.len() != image.width * image.height * 3 || !(mask.is_empty() || mask.len() == image.width * image.height) {
        return Err(invalid(format!("an image of {} bytes and a mask of {} for {}×{} pixels", image.pixels.len(), mask.len(), image.width, image.height)));
    }
    let loaded = model(folder).await?;
    let (cad, config) = (&loaded.0, &loaded.1);
    let side = config.image_size;
    let (window, stride) = occlusion_window.unwrap_or(((side / 8).max(1), (side / 16).max(1)));
    check_occlusion(side, window, stride).map_err(invalid)?;
    let device = Device::flex();
    let input = to_input(image, side);
    // The mask as the image: resized the same way.
    let mask: Option<Vec<bool>> = (!mask.is_empty()).then(|| {
        let gray = RgbImage { width: image.width, height: image.height, pixels: mask.iter().flat_map(|&m| [m, m, m]).collect() };
        lesion_mask(&to_input(&gray, side))
    });
    let breast = breast_mask(&input);
    let logit = logit(cad, &input, side, &device);
    let grad_cam = grad_cam(cad, &input, side, &device).2;
    let occlusion = occlusion(cad, &input, side, window, stride, &device).map_err(invalid)?;
    let attention = [&grad_cam, &occlusion].map(|map| mask.as_ref().and_then(|m| lesion_attention(map, m, &breast)));
    Ok(Explanation { side, input, logit, grad_cam, occlusion, attention })
}
