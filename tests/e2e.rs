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
fn page_loads_picks_the_cpu_on_swiftshader_without_errors_or_foreign_requests() {
    let server = StaticServer::start(&dist());
    let browser = Browser::start(true, &server.origin);
    browser.goto(&format!("{}/", server.origin));
    let adapter = browser.wait_for("const e = document.querySelector('[data-test=gpu-ready]'); return e && e.innerText", Duration::from_secs(60));
    assert!(adapter.as_str().unwrap().starts_with("WebGPU ready"), "{adapter}");
    // The adapter is SwiftShader, a software WebGPU: the page computes on the CPU and says why.
    let (backend, why) = compute_backend(&browser);
    assert_eq!(backend, "Cpu", "{why}");
    assert!(why.contains("software") && why.to_lowercase().contains("swiftshader"), "{why}");
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
    assert_no_foreign_requests(&browser, &server);
    let requests = server.requests.lock().unwrap().clone();
    assert!(requests.iter().any(|t| t.starts_with(&server.origin) && t.ends_with(".wasm")), "the wasm module was not fetched through the proxy: {requests:?}");
}

/// The built module runs its static constructors once (`device::run_static_constructors`), so the
/// wasm linker has not wrapped its exports in calls to them (functions named `*.command_export`,
/// kept by wasm-bindgen as `*_command_export`): with those wrappers every call into the module
/// re-ran cubecl's (pliron's) thousands of registrations, 97 % of the worker's time on WebGPU
/// (docs/performance.md). Before the fix the test build's module had 6,449 such functions, 63
/// after wasm-bindgen.
#[test]
fn the_page_module_runs_its_constructors_once() {
    let dist = dist();
    let wasm = std::fs::read_dir(&dist)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.to_string_lossy().ends_with("_bg.wasm"))
        .unwrap_or_else(|| panic!("no *_bg.wasm in {}", dist.display()));
    let bytes = std::fs::read(&wasm).unwrap();
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|window| window == needle);
    assert!(contains(b"__wasm_call_ctors"), "{} names no functions (a release build strips them): check the dev build of `trunk build`", wasm.display());
    assert!(
        !contains(b"command_export"),
        "{}: the linker wrapped the exports in constructor calls (is `run_static_constructors` still called?)",
        wasm.display()
    );
}

/// Nothing but `server`'s origin was requested: by the page (DevTools' log) or by anything in
/// the browser, the pipeline worker included (the server is the browser's proxy).
fn assert_no_foreign_requests(browser: &Browser, server: &StaticServer) {
    let own = |u: &String| u.starts_with(&server.origin) || u.starts_with("data:") || u.starts_with("blob:");
    let page: Vec<_> = browser.requested_urls().into_iter().filter(|u| !own(u)).collect();
    assert!(page.is_empty(), "the page requested outside {}: {page:?}", server.origin);
    let proxied = server.foreign_requests();
    assert!(proxied.is_empty(), "the browser requested outside {}: {proxied:?}", server.origin);
}

/// Waits for both embedded packages, then `[data-backend, text]` of the model panel's line
/// saying where they compute.
fn compute_backend(browser: &Browser) -> (String, String) {
    browser.wait_for("return document.querySelectorAll('[data-test=model-ready]').length == 2", Duration::from_secs(180));
    let line = browser.eval("const e = document.querySelector('[data-test=compute-backend]'); return e && [e.dataset.backend, e.innerText]");
    (line[0].as_str().unwrap_or_default().to_string(), line[1].as_str().unwrap_or_default().to_string())
}

#[test]
fn page_without_webgpu_generates_on_the_cpu() {
    let server = StaticServer::start(&dist());
    let browser = Browser::start(false, &server.origin);
    let started = std::time::Instant::now();
    browser.goto(&format!("{}/", server.origin));
    let text =
        browser.wait_for("const e = document.querySelector('[data-test=no-webgpu], [data-test=no-adapter]'); return e && e.innerText", Duration::from_secs(60));
    assert!(text.as_str().unwrap().contains("computes on the CPU"), "{text}");
    let (backend, why) = compute_backend(&browser);
    eprintln!("page open to both packages loaded on the CPU path: {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(backend, "Cpu", "{why}");
    assert!(why.contains("no WebGPU") || why.contains("no GPU adapter"), "{why}");
    // Generate with the page's defaults, as a newcomer would.
    let started = std::time::Instant::now();
    browser.click("button[name=generate]");
    browser.wait_for("return document.querySelectorAll('[data-test=result]').length == 1", Duration::from_secs(300));
    eprintln!("text-to-image with the page's defaults on the CPU path: {:.1} s", started.elapsed().as_secs_f64());
    let stats = browser.wait_for(IMAGE_STATS, Duration::from_secs(10));
    assert_eq!((stats[0].as_u64(), stats[1].as_u64()), (Some(128), Some(128)));
    assert!(stats[3].as_u64() > stats[2].as_u64(), "blank image: {stats}");
    browser.screenshot(&screenshots().join("no-webgpu.png"));
    let errors: Vec<_> = browser.log("browser").into_iter().filter(|e| e["level"] == "SEVERE").collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// Moves the range input `name` to `value`, as dragging its thumb would.
fn set_range(browser: &Browser, name: &str, value: u32) {
    browser.eval(&format!("const s = document.querySelector('input[name={name}]'); s.value = '{value}'; s.dispatchEvent(new Event('input')); return null"));
}

/// Waits until the current run has finished a step (on the CPU path a step takes ≈ 0.1 s, so
/// "step 1" may be gone before it is seen).
fn wait_for_step_1(browser: &Browser) {
    browser.wait_for("const e = document.querySelector('[data-test=run-progress]'); return e && / step [1-9]/.test(e.innerText)", Duration::from_secs(120));
}

/// Statistics of the newest gallery image (`figure:last-child img` of the first result):
/// `[width, height, min, max]` of its pixel values.
const IMAGE_STATS: &str = "
    const img = document.querySelector('[data-test=result] figure:last-child img');
    if (!img || !img.complete || !img.naturalWidth) return null;
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext('2d'); g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let lo = 255, hi = 0;
    for (let i = 0; i < d.length; i += 4) { for (let k = 0; k < 3; k++) { lo = Math.min(lo, d[i + k]); hi = Math.max(hi, d[i + k]); } }
    return [c.width, c.height, lo, hi];";

#[test]
fn generate_then_paint_a_lesion_like_a_person() {
    let server = StaticServer::start(&dist());
    let browser = Browser::start(true, &server.origin);
    let started = std::time::Instant::now();
    browser.goto(&format!("{}/", server.origin));
    // Both embedded packages load (fetched, SHA-256 checked, applied), on the CPU path: the
    // adapter is SwiftShader.
    let (backend, _) = compute_backend(&browser);
    eprintln!("page open to both packages loaded: {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(backend, "Cpu");
    let models = browser.eval("return [...document.querySelectorAll('[data-test=model-ready]')].map(e => e.innerText).join(' | ')");
    assert_eq!(models.as_str().unwrap().matches("computes in f32 on the CPU (WebAssembly)").count(), 2, "{models}");

    // A healthy image from the embedded demo model with the default settings but 10 steps.
    set_range(&browser, "steps", 10);
    // The page's own thread must stay free while the pipeline worker generates: a 20 ms timer
    // records the longest gap between its ticks (a step on the page's thread took seconds).
    browser.eval(
        "window.gaps = { longest: 0, last: performance.now() };
         window.gaps.timer = setInterval(() => { const t = performance.now(); gaps.longest = Math.max(gaps.longest, t - gaps.last); gaps.last = t; }, 20);
         return null",
    );
    let started = std::time::Instant::now();
    browser.click("button[name=generate]");
    browser.wait_for("return document.querySelectorAll('[data-test=result]').length == 1", Duration::from_secs(600));
    eprintln!("10-step 128×128 text-to-image (CFG) in the page: {:.1} s", started.elapsed().as_secs_f64());
    let longest = browser.eval("clearInterval(gaps.timer); return gaps.longest").as_f64().unwrap();
    eprintln!("longest pause of the page's thread while generating: {longest:.0} ms");
    assert!(longest < 1000.0, "the page's thread was blocked for {longest:.0} ms while generating");
    let stats = browser.wait_for(IMAGE_STATS, Duration::from_secs(10));
    eprintln!("generated image [width, height, min, max]: {stats}");
    assert_eq!((stats[0].as_u64(), stats[1].as_u64()), (Some(128), Some(128)));
    assert!(stats[3].as_u64() > stats[2].as_u64(), "blank image: {stats}");
    browser.screenshot(&screenshots().join("generated.png"));

    // Paint a rectangle on it and inpaint.
    browser.click("button[name=paint]");
    browser.wait_for("return !!document.querySelector('[data-test=mask-canvas]')", Duration::from_secs(10));
    browser.click("button[name=inpaint]");
    let refused = browser.wait_for("const e = document.querySelector('[data-test=mask-message]'); return e && e.innerText", Duration::from_secs(10));
    assert!(refused.as_str().unwrap().contains("mask is empty"), "{refused}");
    browser.drag("[data-test=mask-canvas]", (-40, -30), (30, 40), 5);
    set_range(&browser, "lesion-steps", 10);
    let started = std::time::Instant::now();
    browser.click("button[name=inpaint]");
    browser.wait_for("return document.querySelectorAll('[data-test=result]').length == 2", Duration::from_secs(600));
    eprintln!("10-step 128×128 inpainting (CFG) in the page: {:.1} s", started.elapsed().as_secs_f64());
    let newest = browser.eval("const r = document.querySelector('[data-test=result]'); return [r.dataset.kind, r.querySelectorAll('figure').length]");
    assert_eq!(newest, serde_json::json!(["inpainting", 3]), "the newest result is the inpainting, with before, after and Explain");
    let stats = browser.wait_for(IMAGE_STATS, Duration::from_secs(10));
    assert!(stats[3].as_u64() > stats[2].as_u64(), "blank inpainting: {stats}");
    browser.eval("document.getElementById('mask-panel').scrollIntoView(); return null");
    browser.screenshot(&screenshots().join("inpainted.png"));
    browser.eval("document.getElementById('gallery-panel').scrollIntoView(); return null");
    browser.screenshot(&screenshots().join("gallery.png"));

    // The download link holds a PNG with the parameters embedded.
    let png = browser.eval_async(
        "const done = arguments[arguments.length - 1];
         const a = document.querySelector('[data-test=result] [data-test=download-png]');
         fetch(a.href).then(r => r.arrayBuffer()).then(b => {
             const bytes = new Uint8Array(b);
             done([a.download, Array.from(bytes.slice(1, 4)).map(c => String.fromCharCode(c)).join(''), new TextDecoder('latin1').decode(bytes).includes('\"mode\":\"inpainting\"')]);
         }).catch(e => done(['error', String(e), false]));",
    );
    assert_eq!(png[1], "PNG", "{png}");
    assert!(png[0].as_str().unwrap().ends_with(".png") && png[2] == true, "{png}");

    // Explain: the embedded CAD's heatmaps of the inpainted result, as the library computes them
    // natively from the downloaded PNG (Grad-CAM and occlusion are checked against Captum in
    // tests/cad.rs).
    let started = std::time::Instant::now();
    browser.click("[data-test=result] button[name=explain]");
    browser.wait_for("return !!document.querySelector('[data-test=result] [data-test=explain-result]')", Duration::from_secs(120));
    eprintln!("Explain (the CAD's logit, Grad-CAM and occlusion) in the page: {:.1} s", started.elapsed().as_secs_f64());
    let attention = browser.eval("return document.querySelector('[data-test=explain-attention]').innerText");
    assert!(attention.as_str().unwrap().starts_with("Grad-CAM: ") && attention.as_str().unwrap().contains("its share"), "{attention}");
    browser.eval("document.getElementById('gallery-panel').scrollIntoView(); return null");
    browser.screenshot(&screenshots().join("explained.png"));
    let fetch_bytes = "const done = arguments[arguments.length - 1];
         fetch(document.querySelector(arguments[0]).href).then(r => r.arrayBuffer()).then(b => done(Array.from(new Uint8Array(b)))).catch(e => done(String(e)));";
    let bytes = |selector: &str| -> Vec<u8> {
        let got = browser.eval_async_with(fetch_bytes, &[selector.into()]);
        serde_json::from_value(got.clone()).unwrap_or_else(|_| panic!("fetching {selector}: {got}"))
    };
    let after = mam_e::imaging::RgbImage::from_png(&bytes("[data-test=result] [data-test=download-png]")).unwrap();
    let cad = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static/models/cad");
    let device = burn::tensor::Device::flex();
    let (model, config) =
        mam_e::cad::model::CadConfig::load(&std::fs::read(cad.join("config.json")).unwrap(), std::fs::read(cad.join("model.safetensors")).unwrap(), &device)
            .unwrap();
    let side = config.image_size;
    let input = mam_e::cad::model::to_input(&after, side);
    let page_logit: f32 = browser.eval("return document.querySelector('[data-test=explain-result]').dataset.logit").as_str().unwrap().parse().unwrap();
    let logit = mam_e::cad::explain::logit(&model, &input, side, &device);
    eprintln!("CAD logit: page {page_logit}, native {logit}");
    assert!((page_logit - logit).abs() < 1e-5 * logit.abs().max(1.0), "CAD logit in the page {page_logit}, natively {logit}");
    let npy_values = |bytes: Vec<u8>| -> Vec<f32> {
        let header = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        bytes[header..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    };
    let grad_cam = mam_e::cad::explain::grad_cam(&model, &input, side, &device).2;
    let error = support::fixtures::relative_error(&npy_values(bytes("[data-test=explain-heatmap]")), &grad_cam);
    eprintln!("page's Grad-CAM vs native: relative error {error:e}");
    assert!(error < 1e-5, "the page's Grad-CAM differs from the native one: {error:e}");
    browser.eval("const s = document.querySelector('select[name=explain-method]'); s.value = 'occlusion'; s.dispatchEvent(new Event('change')); return null");
    browser.wait_for("return document.querySelector('[data-test=explain-heatmap]').download.endsWith('occlusion.npy')", Duration::from_secs(10));
    let occlusion = mam_e::cad::explain::occlusion(&model, &input, side, side / 8, side / 16, &device).unwrap();
    let error = support::fixtures::relative_error(&npy_values(bytes("[data-test=explain-heatmap]")), &occlusion);
    eprintln!("page's occlusion vs native: relative error {error:e}");
    assert!(error < 5e-5, "the page's occlusion differs from the native one: {error:e}");

    // Cancel stops a run.
    set_range(&browser, "steps", 50);
    browser.click("button[name=generate]");
    browser.wait_for("return !!document.querySelector('[data-test=run-progress]')", Duration::from_secs(60));
    browser.click("button[name=cancel]");
    browser.wait_for("return !!document.querySelector('[data-test=run-cancelled]')", Duration::from_secs(120));
    assert_eq!(browser.eval("return document.querySelectorAll('[data-test=result]').length"), 2);

    // The pipeline worker dies in the middle of a run (its wasm traps: an out-of-memory panic,
    // or a device loss that wgpu turns into a panic), here by an uncaught exception in it, the
    // same "error" event: the run fails saying so, the models load again into a new worker, and
    // a run starts there — no reload.
    set_range(&browser, "steps", 50);
    browser.click("button[name=generate]");
    wait_for_step_1(&browser);
    browser.eval_in_worker("worker.js", "setTimeout(() => { throw new Error('simulated crash') }); 0");
    let failed = browser.wait_for("const e = document.querySelector('[data-test=run-error]'); return e && e.innerText", Duration::from_secs(60));
    assert!(failed.as_str().unwrap().contains("pipeline worker stopped"), "{failed}");
    browser.wait_for("return document.querySelectorAll('[data-test=model-ready]').length == 2", Duration::from_secs(180));
    browser.click("button[name=generate]");
    wait_for_step_1(&browser);
    browser.click("button[name=cancel]");
    browser.wait_for("return !!document.querySelector('[data-test=run-cancelled]')", Duration::from_secs(120));

    // Forced onto WebGPU in the model panel: the models load again there (SwiftShader has no f16
    // shaders: f32), and the panel says so.
    browser.eval("const s = document.querySelector('select[name=compute]'); s.value = 'gpu'; s.dispatchEvent(new Event('change')); return null");
    browser.wait_for("const e = document.querySelector('[data-test=compute-backend]'); return e && e.dataset.backend == 'WebGpu'", Duration::from_secs(180));
    let (_, why) = compute_backend(&browser);
    assert!(why.contains("chosen in the model panel"), "{why}");
    let models = browser.eval("return [...document.querySelectorAll('[data-test=model-ready]')].map(e => e.innerText).join(' | ')");
    assert_eq!(models.as_str().unwrap().matches("computes in f32 on the GPU (WebGPU)").count(), 2, "{models}");
    set_range(&browser, "steps", 50);
    browser.click("button[name=generate]");
    wait_for_step_1(&browser);

    // The GPU device is lost in the middle of that run, for real: the new worker's WebGPU device
    // is destroyed (`GPUDevice.destroy()`, caught at its next buffer allocation), which burn
    // reports as a failed read rather than a trap. The run fails naming the device, the worker
    // closes, the models load again on a new device, and the next run finishes — no reload.
    browser.eval_in_worker(
        "worker.js",
        "const p = GPUDevice.prototype, create = p.createBuffer;
         p.createBuffer = function (d) { p.createBuffer = create; setTimeout(() => this.destroy()); return create.call(this, d); }; 0",
    );
    let failed = browser.wait_for("const e = document.querySelector('[data-test=run-error]'); return e && e.innerText", Duration::from_secs(120));
    assert!(failed.as_str().unwrap().contains("GPU device failed"), "{failed}");
    browser.wait_for("return document.querySelectorAll('[data-test=model-ready]').length == 2", Duration::from_secs(180));
    set_range(&browser, "steps", 10);
    let started = std::time::Instant::now();
    browser.click("button[name=generate]");
    browser.wait_for("return document.querySelectorAll('[data-test=result]').length == 3", Duration::from_secs(600));
    eprintln!("10-step 128×128 text-to-image (CFG) in the page on WebGPU (SwiftShader): {:.1} s", started.elapsed().as_secs_f64());
    let stats = browser.wait_for(IMAGE_STATS, Duration::from_secs(10));
    assert!(stats[3].as_u64() > stats[2].as_u64(), "blank image after the device was lost: {stats}");

    let errors: Vec<_> = browser.log("browser").into_iter().filter(|e| e["level"] == "SEVERE").collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    // Every request, the pipeline worker's downloads included, went through the server.
    let requests = server.requests.lock().unwrap().clone();
    assert!(requests.iter().any(|t| t.ends_with("models/demo/model-00001.safetensors")), "the worker's downloads were not seen: {requests:?}");
    assert_no_foreign_requests(&browser, &server);
}

/// The reader study as a teacher runs it: real and synthetic files picked (one that is no image
/// skipped and named; the real set's metadata.jsonl gives two prompts, generated in the page), 20 images rated with the keyboard and the buttons, one rating changed
/// after going back, the page reloaded mid-study, the result shown, its CSV equal to what
/// `mam-e eval roc` computes from it, and the CSV shown again by importing it.
#[test]
fn reader_study_with_files_keys_and_a_reload() {
    let folder = support::cli::temp_dir("e2e", "reader-study");
    let write = |name: &str, level: u8| {
        let path = folder.join(name);
        let pixels: Vec<u8> = (0..64 * 48).flat_map(|i| [level.wrapping_add((i % 64) as u8); 3]).collect();
        let image = mam_e::imaging::RgbImage { width: 64, height: 48, pixels };
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(&path, image.to_png(&[]).unwrap()).unwrap();
        path
    };
    let mut real: Vec<PathBuf> = (0..10).map(|i| write(&format!("real{i}.png"), 100 + i as u8)).collect();
    let synthetic: Vec<PathBuf> = (0..10).map(|i| write(&format!("synthetic{i}.png"), 20 + i as u8)).collect();
    std::fs::write(folder.join("notes.png"), b"not an image").unwrap();
    real.push(folder.join("notes.png"));
    // The set's metadata.jsonl names two of the real images' prompts.
    let prompts = ["a siemens mammogram in CC view with high density and small area", "a hologic mammogram in MLO view with low density and big area"];
    let metadata = format!("{{\"file_name\":\"real3.png\",\"prompt\":\"{}\"}}\n{{\"file_name\":\"real7.png\",\"prompt\":\"{}\"}}\n", prompts[0], prompts[1]);
    std::fs::write(folder.join("metadata.jsonl"), metadata).unwrap();
    real.push(folder.join("metadata.jsonl"));

    let server = StaticServer::start(&dist());
    let browser = Browser::start(false, &server.origin);
    browser.goto(&format!("{}/", server.origin));
    browser.wait_for("return !!document.querySelector('input[name=study-real]')", Duration::from_secs(60));
    browser.upload("input[name=study-real]", &real);
    browser.wait_for("return document.querySelector('[data-test=study-real-count]').innerText == '10 real'", Duration::from_secs(20));
    let skipped = browser.eval("return document.querySelector('[data-test=study-message]').innerText");
    assert!(skipped.as_str().unwrap().contains("notes.png: not a PNG or JPEG image"), "{skipped}");
    // Synthetic images with the same prompts, generated by the embedded model into the gallery.
    browser.wait_for("return document.querySelectorAll('[data-test=model-ready]').length == 2", Duration::from_secs(300));
    let button = browser.wait_for("const b = document.querySelector('button[name=study-generate]'); return b && b.innerText", Duration::from_secs(10));
    assert_eq!(button, "Generate 2 synthetic images with the same prompts");
    browser.click("button[name=study-generate]");
    let captions = browser.wait_for(
        "const r = [...document.querySelectorAll('[data-test=result] strong')].map(e => e.innerText); return r.length == 2 && r",
        Duration::from_secs(600),
    );
    let mut captions: Vec<&str> = captions.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    captions.sort();
    let mut want = prompts.to_vec();
    want.sort();
    assert_eq!(captions, want, "one image per prompt of the metadata");
    // The study itself takes synthetic files (ten of them) rather than the gallery's two.
    browser.upload("input[name=study-synthetic]", &synthetic);
    browser.eval("const s = document.querySelector('input[name=study-size]'); s.value = '20'; s.dispatchEvent(new Event('change')); return null");
    browser.click("button[name=study-start]");
    let progress = "const p = document.querySelector('[data-test=study-progress]'); return p && document.querySelector('[data-test=study-image]') && [Number(p.dataset.position), Number(p.dataset.rated)]";
    browser.wait_for(progress, Duration::from_secs(20));

    // 20 scripted ratings, the first 7 by key; the 7th is then changed from 4 to 1.
    let script = [3u8, 1, 4, 0, 2, 2, 4, 0, 1, 3, 4, 4, 0, 2, 1, 3, 0, 4, 2, 1];
    for (k, rating) in script[..7].iter().enumerate() {
        browser.press(&rating.to_string());
        browser.wait_for(
            &format!("const p = document.querySelector('[data-test=study-progress]'); return p && p.dataset.rated == '{}'", k + 1),
            Duration::from_secs(10),
        );
    }
    browser.press("\u{E003}");
    browser.wait_for("return document.querySelector('[data-test=study-progress]').dataset.position == '6'", Duration::from_secs(10));
    browser.press("1");
    browser.wait_for("return document.querySelector('[data-test=study-progress]').dataset.position == '7'", Duration::from_secs(10));

    // A reload in the middle keeps the study where it was.
    browser.goto(&format!("{}/", server.origin));
    assert_eq!(browser.wait_for(progress, Duration::from_secs(60)), serde_json::json!([7, 7]), "the study resumes at image 8 with 7 rated");
    for (k, rating) in script[7..].iter().enumerate() {
        if k % 2 == 0 {
            browser.press(&rating.to_string());
        } else {
            browser.click(&format!("button[name=rate-{rating}]"));
        }
        if k + 8 < script.len() {
            browser.wait_for(
                &format!("const p = document.querySelector('[data-test=study-progress]'); return p && p.dataset.rated == '{}'", k + 8),
                Duration::from_secs(10),
            );
        }
    }
    let result = browser.wait_for(
        "const r = document.querySelector('[data-test=study-result]'); return r && [r.dataset.auroc, r.dataset.ciLow, r.dataset.ciHigh, !!r.querySelector('[data-test=roc-curve]'), r.querySelector('[data-test=verdict]').innerText]",
        Duration::from_secs(10),
    );
    assert_eq!(result[3], true, "the ROC curve is drawn: {result}");
    browser.eval("document.getElementById('reader-study-panel').scrollIntoView(); return null");
    browser.screenshot(&screenshots().join("reader-study.png"));

    // The exported ratings: the script in order (the change applied), every file once, and
    // `mam-e eval roc` on them gives the page's numbers.
    let csv = browser.eval_async(
        "const done = arguments[arguments.length - 1];
         fetch(document.querySelector('[data-test=study-csv]').href).then(r => r.text()).then(done).catch(e => done('error ' + e));",
    );
    let csv = csv.as_str().unwrap();
    let mut rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    let mut want = script;
    want[6] = 1;
    assert_eq!(rows.iter().map(|r| r[2].parse::<u8>().unwrap()).collect::<Vec<_>>(), want, "{csv}");
    assert_eq!(rows[6][3], "1", "the changed rating is counted: {csv}");
    rows.sort();
    let names: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    let mut expected: Vec<String> = (0..10).map(|i| format!("real{i}.png")).chain((0..10).map(|i| format!("synthetic{i}.png"))).collect();
    expected.sort();
    assert_eq!(names, expected);
    assert!(rows.iter().all(|r| (r[1] == "real") == r[0].starts_with("real")), "classes follow the files: {csv}");
    let saved = folder.join("ratings.csv");
    std::fs::write(&saved, csv).unwrap();
    let report = folder.join("roc.json");
    support::cli::ok(&["eval", "roc", saved.to_str().unwrap(), "--json", report.to_str().unwrap()]);
    let native: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let page: Vec<f64> = (0..3).map(|k| result[k].as_str().unwrap().parse().unwrap()).collect();
    // Equal to the last bits but one: serde_json's float parsing may round the JSON's shortest
    // decimal form one ulp off.
    let native_figures = [native["auroc"].as_f64().unwrap(), native["ci95"][0].as_f64().unwrap(), native["ci95"][1].as_f64().unwrap()];
    for (p, n) in page.iter().zip(native_figures) {
        assert!((p - n).abs() <= 2.0 * f64::EPSILON * n.abs(), "the page's {page:?} vs eval roc's {native_figures:?}");
    }
    assert_eq!(result[4], native["verdict"], "same verdict");

    // A past study, imported from its CSV, shows the same result.
    browser.click("button[name=study-new]");
    browser.wait_for("return !!document.querySelector('input[name=study-import]')", Duration::from_secs(10));
    browser.upload("input[name=study-import]", &[saved]);
    let imported = browser.wait_for(
        "const r = [...document.querySelectorAll('[data-test=study-result]')].find(e => e.querySelector('h3').innerText.startsWith('Imported')); return r && r.dataset.auroc",
        Duration::from_secs(10),
    );
    assert_eq!(imported.as_str().unwrap().parse::<f64>().unwrap(), page[0]);
    let errors: Vec<_> = browser.log("browser").into_iter().filter(|e| e["level"] == "SEVERE").collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    assert_no_foreign_requests(&browser, &server);
}
