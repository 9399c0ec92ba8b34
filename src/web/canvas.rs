//! Pixels to the screen: an [`RgbImage`] (optionally with a mask overlay) drawn into a canvas,
//! and PNG bytes as a blob URL for `<img>` and downloads.

use std::sync::{Arc, Mutex};

use leptos::prelude::{Memo, on_cleanup};
use wasm_bindgen::{Clamped, JsCast};
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, ImageData};

use crate::imaging::RgbImage;

/// Overlay colour of the mask.
const MASK_RGB: [f32; 3] = [255.0, 64.0, 64.0];

/// Draws `image` into `canvas` (resized to the image), tinting pixels under `mask` by `opacity`.
pub fn draw(canvas: &HtmlCanvasElement, image: &RgbImage, mask: Option<(&[u8], f64)>) {
    canvas.set_width(image.width as u32);
    canvas.set_height(image.height as u32);
    let Some(context) = canvas.get_context("2d").ok().flatten().and_then(|c| c.dyn_into::<CanvasRenderingContext2d>().ok()) else { return };
    let mut rgba = Vec::with_capacity(image.width * image.height * 4);
    for (i, px) in image.pixels.chunks_exact(3).enumerate() {
        let alpha = mask.map(|(m, opacity)| m.get(i).copied().unwrap_or(0) as f32 / 255.0 * opacity as f32).unwrap_or(0.0);
        for c in 0..3 {
            rgba.push((px[c] as f32 * (1.0 - alpha) + MASK_RGB[c] * alpha) as u8);
        }
        rgba.push(255);
    }
    if let Ok(data) = ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), image.width as u32, image.height as u32) {
        let _ = context.put_image_data(&data, 0.0, 0.0);
    }
}

/// A `blob:` URL for PNG bytes (free it with [`revoke`] when dropped from view).
pub fn png_url(png: &[u8]) -> String {
    blob_url(png, "image/png")
}

/// A `blob:` URL for `bytes`, revoked when the view that made it goes (its reactive owner is
/// cleaned up).
pub fn scoped_blob_url(bytes: &[u8], mime: &str) -> String {
    let url = blob_url(bytes, mime);
    let made = url.clone();
    on_cleanup(move || revoke(&made));
    url
}

/// A `blob:` URL of `bytes()` that follows them: a new URL when they change with the previous one
/// revoked, and the last one revoked when the view that made it goes.
pub fn blob_url_memo(bytes: impl Fn() -> Vec<u8> + Send + Sync + 'static, mime: &'static str) -> Memo<String> {
    let last = Arc::new(Mutex::new(String::new()));
    let current = last.clone();
    on_cleanup(move || revoke(&last.lock().unwrap_or_else(|e| e.into_inner())));
    Memo::new(move |_| {
        let url = blob_url(&bytes(), mime);
        revoke(&std::mem::replace(&mut *current.lock().unwrap_or_else(|e| e.into_inner()), url.clone()));
        url
    })
}

/// Frees a `blob:` URL's bytes (an empty URL: nothing to do).
pub fn revoke(url: &str) {
    if !url.is_empty() {
        let _ = web_sys::Url::revoke_object_url(url);
    }
}

/// A `blob:` URL for bytes of `mime` type (empty: let the browser sniff it).
pub fn blob_url(bytes: &[u8], mime: &str) -> String {
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options)
        .and_then(|blob| web_sys::Url::create_object_url_with_blob(&blob))
        .unwrap_or_default()
}
