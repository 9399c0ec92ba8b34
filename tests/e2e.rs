//! End to end: the built app (`dist/`, from `trunk build`) served on 127.0.0.1 and driven in
//! headless Chromium through WebDriver, as a person would use it.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::server::StaticServer;
use support::webdriver::Browser;

fn dist() -> PathBuf {
    let dist = std::env::var_os("MAM_E_DIST").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dist"));
    assert!(dist.join("index.html").exists(), "{} has no built app: run `trunk build` first (scripts/test does)", dist.display());
    dist
}

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/e2e")
}

#[test]
fn page_loads_on_webgpu_without_errors_or_foreign_requests() {
    let server = StaticServer::start(&dist());
    let browser = Browser::start(true);
    browser.goto(&format!("{}/", server.origin));
    let adapter = browser.wait_for("const e = document.querySelector('[data-test=gpu-ready]'); return e && e.innerText", Duration::from_secs(60));
    assert!(adapter.as_str().unwrap().starts_with("WebGPU ready"), "{adapter}");
    for panel in ["model-panel", "prompt-panel", "mask-panel", "gallery-panel"] {
        assert_eq!(browser.eval(&format!("return !!document.getElementById('{panel}')")), true, "missing {panel}");
    }

    // Choose options like a person: the CC view, then the "only density" template.
    browser.eval("const s = document.querySelector('select[name=view]'); s.value = '0'; s.dispatchEvent(new Event('change')); return null");
    browser.eval("document.querySelector(\"button[data-priority='only density']\").click(); return null");
    let prompt = browser.wait_for("const v = document.querySelector('textarea[name=prompt]').value; return v.includes('CC view') && v", Duration::from_secs(5));
    assert_eq!(prompt, "a siemens mammogram in CC view with high density");
    browser.screenshot(&screenshots().join("home.png"));

    let errors: Vec<_> = browser.log("browser").into_iter().filter(|e| e["level"] == "SEVERE").collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    let urls = browser.requested_urls();
    assert!(!urls.is_empty(), "the performance log recorded no requests");
    let foreign: Vec<_> = urls.iter().filter(|u| !u.starts_with(&server.origin) && !u.starts_with("data:") && !u.starts_with("blob:")).collect();
    assert!(foreign.is_empty(), "requests outside {}: {foreign:?}", server.origin);
    assert!(server.requests.lock().unwrap().iter().any(|p| p.ends_with(".wasm")), "the wasm module was not fetched");
}

#[test]
fn page_without_webgpu_explains_what_to_do() {
    let server = StaticServer::start(&dist());
    let browser = Browser::start(false);
    browser.goto(&format!("{}/", server.origin));
    let text = browser.wait_for(
        "const e = document.querySelector('[data-test=no-webgpu], [data-test=no-adapter]'); return e && e.innerText",
        Duration::from_secs(60),
    );
    assert!(text.as_str().unwrap().contains("WebGPU"), "{text}");
    browser.screenshot(&screenshots().join("no-webgpu.png"));
}
