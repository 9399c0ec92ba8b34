//! Fetching package files: streamed with byte progress, checked against the manifest's size and
//! SHA-256, and kept in Cache Storage so a reload or an offline visit does not download again.
//! Each verified file is stored on its own, so an interrupted download resumes at the next file.
//! Nothing is fetched but the page's own origin and the package folders the user chose
//! ([`allow_package`]): the worker's own check, narrower than any static CSP can be.

use std::cell::RefCell;

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, Response};

use crate::package::FileRef;
use crate::{Error, Result};

/// The Cache Storage bucket holding package files.
pub const CACHE_NAME: &str = "mam-e-packages";
/// Header recording a stored body's size, so listing the cache reads no bodies.
const SIZE_HEADER: &str = "x-mam-e-bytes";

fn js_error(url: &str, what: &str, e: JsValue) -> Error {
    Error::Io { path: url.to_string(), reason: format!("{what}: {}", super::scope::js_text(&e)) }
}

/// The Cache Storage bucket `name` (packages, or the reader study's images).
pub(crate) async fn open_cache(name: &str) -> Option<Cache> {
    let caches = super::scope::caches()?;
    JsFuture::from(caches.open(name)).await.ok()?.dyn_into().ok()
}

/// A body longer than `limit` bytes: refused as soon as it passes the limit.
fn too_long(url: &str, limit: u64) -> Error {
    Error::Corrupt { file: url.to_string(), reason: format!("the server sent more than the {limit} bytes expected; stopped downloading") }
}

/// The body of `response`, streamed; `on_bytes(n)` after each chunk of n bytes. Stops with an
/// error once more than `limit` bytes arrived.
async fn read_body(url: &str, response: Response, limit: u64, on_bytes: &mut dyn FnMut(u64)) -> Result<Vec<u8>> {
    let declared = response.headers().get("content-length").ok().flatten().and_then(|n| n.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_long(url, limit));
    }
    let Some(body) = response.body() else {
        let buffer = JsFuture::from(response.array_buffer().map_err(|e| js_error(url, "read", e))?).await.map_err(|e| js_error(url, "read", e))?;
        let bytes = Uint8Array::new(&buffer).to_vec();
        if bytes.len() as u64 > limit {
            return Err(too_long(url, limit));
        }
        on_bytes(bytes.len() as u64);
        return Ok(bytes);
    };
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut bytes = Vec::new();
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(|e| js_error(url, "network failure while downloading", e))?;
        if Reflect::get(&chunk, &"done".into()).ok().and_then(|d| d.as_bool()).unwrap_or(true) {
            return Ok(bytes);
        }
        let value: Uint8Array = Reflect::get(&chunk, &"value".into()).map_err(|e| js_error(url, "read", e))?.unchecked_into();
        let start = bytes.len();
        if (start + value.length() as usize) as u64 > limit {
            let _ = reader.cancel();
            return Err(too_long(url, limit));
        }
        bytes.resize(start + value.length() as usize, 0);
        value.copy_to(&mut bytes[start..]);
        on_bytes(value.length() as u64);
    }
}

thread_local! {
    /// Package folder URLs (absolute, ending in `/`) the user chose in this scope.
    static CHOSEN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// This scope's own URL (`location.href` of the page or the worker).
fn own_href() -> String {
    let location = Reflect::get(&js_sys::global(), &"location".into()).unwrap_or(JsValue::UNDEFINED);
    Reflect::get(&location, &"href".into()).ok().and_then(|h| h.as_string()).unwrap_or_default()
}

/// `url` resolved against this scope's URL and normalised (`..` removed), as `fetch` would.
fn absolute(url: &str) -> Option<web_sys::Url> {
    web_sys::Url::new_with_base(url, &own_href()).ok()
}

/// Allows fetching the files under `base`, a package folder URL the user chose.
pub fn allow_package(base: &str) {
    if let Some(url) = absolute(base) {
        CHOSEN.with(|chosen| {
            let mut chosen = chosen.borrow_mut();
            if !chosen.contains(&url.href()) {
                chosen.push(url.href());
            }
        });
    }
}

/// Refuses, before any request, a URL outside this scope's origin and the chosen package folders.
fn check_allowed(url: &str) -> Result<()> {
    let refused = || Error::InvalidInput {
        what: "URL",
        reason: format!("refusing to fetch {url}: the page contacts only its own origin and the package URLs you enter"),
    };
    let target = absolute(url).ok_or_else(refused)?;
    let own_origin = web_sys::Url::new(&own_href()).map(|u| u.origin()).unwrap_or_default();
    let href = target.href();
    if (target.origin() == own_origin && own_origin != "null") || CHOSEN.with(|c| c.borrow().iter().any(|base| href.starts_with(base.as_str()))) {
        Ok(())
    } else {
        Err(refused())
    }
}

async fn fetch(url: &str) -> Result<Response> {
    check_allowed(url)?;
    let request = super::scope::fetch(url).map_err(|e| js_error(url, "fetch", e))?;
    let response: Response =
        JsFuture::from(request).await.map_err(|e| js_error(url, "network failure (offline, or the server refused the request)", e))?.unchecked_into();
    if !response.ok() {
        return Err(Error::Io { path: url.into(), reason: format!("the server answered HTTP {} {}", response.status(), response.status_text()) });
    }
    Ok(response)
}

/// A text file (the manifest, at most [`crate::package::MAX_MANIFEST_BYTES`]), from the network when possible, else from the cache (offline).
pub async fn fetch_text(url: &str) -> Result<String> {
    let bytes = fetch_bytes(url, crate::package::MAX_MANIFEST_BYTES).await?;
    String::from_utf8(bytes).map_err(|e| Error::Io { path: url.into(), reason: e.to_string() })
}

/// A file of at most `limit` bytes without a manifest entry to verify it by (a manifest, the CAD
/// model): from the network when possible, kept in the cache, else from the cache (offline).
pub async fn fetch_bytes(url: &str, limit: u64) -> Result<Vec<u8>> {
    let cache = open_cache(CACHE_NAME).await;
    match fetch(url).await {
        Ok(response) => {
            let bytes = read_body(url, response, limit, &mut |_| {}).await?;
            if let Some(cache) = &cache {
                store(cache, url, &bytes).await;
            }
            Ok(bytes)
        }
        Err(network) => cached(cache.as_ref(), url).await.ok_or(network),
    }
}

pub(crate) async fn cached(cache: Option<&Cache>, url: &str) -> Option<Vec<u8>> {
    let found = JsFuture::from(cache?.match_with_str(url)).await.ok()?;
    let response: Response = found.dyn_into().ok()?;
    let buffer = JsFuture::from(response.array_buffer().ok()?).await.ok()?;
    Some(Uint8Array::new(&buffer).to_vec())
}

pub(crate) async fn store(cache: &Cache, url: &str, bytes: &[u8]) {
    let mut copy = bytes.to_vec();
    let init = web_sys::ResponseInit::new();
    if let Ok(headers) = web_sys::Headers::new() {
        let _ = headers.set(SIZE_HEADER, &bytes.len().to_string());
        init.set_headers(&headers);
    }
    if let Ok(response) = Response::new_with_opt_u8_array_and_init(Some(&mut copy), &init) {
        // A full quota only costs the offline copy; the download itself succeeded.
        let _ = JsFuture::from(cache.put_with_str(url, &response)).await;
    }
}

/// File `file` of the package at `base` (a folder URL ending in `/`): from the cache if a
/// verified copy is there, else downloaded, verified and cached. `on_bytes` sees the progress
/// (a cached file counts at once).
pub async fn fetch_verified(base: &str, file: &FileRef, on_bytes: &mut dyn FnMut(u64)) -> Result<Vec<u8>> {
    let url = format!("{base}{}", file.file);
    let cache = open_cache(CACHE_NAME).await;
    if let Some(bytes) = cached(cache.as_ref(), &url).await {
        if file.verify(&bytes).is_ok() {
            on_bytes(bytes.len() as u64);
            return Ok(bytes);
        }
        if let Some(cache) = &cache {
            let _ = JsFuture::from(cache.delete_with_str(&url)).await;
        }
    }
    let bytes = read_body(&url, fetch(&url).await?, file.bytes, on_bytes).await?;
    file.verify(&bytes)?;
    if let Some(cache) = &cache {
        store(cache, &url, &bytes).await;
    }
    Ok(bytes)
}

/// Bytes kept in the package cache (sum of stored bodies) and the origin's usage and quota.
pub async fn stored_bytes() -> (u64, Option<(f64, f64)>) {
    let mut total = 0;
    if let Some(cache) = open_cache(CACHE_NAME).await
        && let Ok(keys) = JsFuture::from(cache.keys()).await
    {
        for request in js_sys::Array::from(&keys).iter() {
            if let Ok(found) = JsFuture::from(cache.match_with_request(&request.unchecked_into())).await
                && let Ok(response) = found.dyn_into::<Response>()
            {
                total += response.headers().get(SIZE_HEADER).ok().flatten().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    let estimate = async {
        let storage = web_sys::window()?.navigator().storage();
        let estimate = JsFuture::from(storage.estimate().ok()?).await.ok()?;
        let number = |name: &str| Reflect::get(&estimate, &name.into()).ok()?.as_f64();
        Some((number("usage")?, number("quota")?))
    };
    (total, estimate.await)
}

/// Deletes every stored package file.
pub async fn delete_stored() -> Result<()> {
    let caches = super::scope::caches().ok_or_else(|| Error::Io { path: CACHE_NAME.into(), reason: "Cache Storage is not available".into() })?;
    JsFuture::from(caches.delete(CACHE_NAME)).await.map_err(|e| js_error(CACHE_NAME, "delete", e))?;
    Ok(())
}
