//! Components mounted in a real browser: click, tick, assert on the DOM; mask painting with the
//! pointer.
#![cfg(target_arch = "wasm32")]

// Only the mask test's input image: the rest of the scene is for the pipeline tests.
#[allow(dead_code)]
#[path = "support/scene.rs"]
mod scene;

use leptos::prelude::*;
use mam_e::package::{Defaults, ModelKind};
use mam_e::prompt::Template;
use mam_e::web::gpu::{GpuNotice, GpuStatus, probe};
use mam_e::web::mask_panel::{InpaintRequest, MaskPanel, SourceImage};
use mam_e::web::prompt_panel::PromptPanel;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::{HtmlElement, HtmlSelectElement, HtmlTextAreaElement};

wasm_bindgen_test_configure!(run_in_browser);

fn fresh_root() -> HtmlElement {
    let document = web_sys::window().unwrap().document().unwrap();
    let root = document.create_element("div").unwrap().unchecked_into::<HtmlElement>();
    document.body().unwrap().append_child(&root).unwrap();
    root
}

fn query<T: JsCast>(root: &HtmlElement, selector: &str) -> T {
    root.query_selector(selector).unwrap().unwrap_or_else(|| panic!("no {selector}")).unchecked_into()
}

#[wasm_bindgen_test]
async fn prompt_follows_controls_and_priority_buttons() {
    let root = fresh_root();
    let _mounted = leptos::mount::mount_to(root.clone(), || view! { <PromptPanel /> });
    let prompt = || query::<HtmlTextAreaElement>(&root, "textarea[name=prompt]").value();
    leptos::task::tick().await;
    assert_eq!(prompt(), "a siemens mammogram in MLO view with high density and small area");

    let view = query::<HtmlSelectElement>(&root, "select[name=view]");
    view.set_value("0"); // CC
    view.dispatch_event(&web_sys::Event::new("change").unwrap()).unwrap();
    leptos::task::tick().await;
    assert_eq!(prompt(), "a siemens mammogram in CC view with high density and small area");

    query::<HtmlElement>(&root, "button[data-priority='only area']").click();
    leptos::task::tick().await;
    assert_eq!(prompt(), "a siemens mammogram in CC view with small area");
    let active = query::<HtmlElement>(&root, "button[data-priority='only area']");
    assert!(active.class_list().contains("active"));
}

/// A loaded package's manifest `defaults` become the panel's settings (prompt, steps, guidance,
/// scheduler, seed, and the MAM-E model template when the package says it); the noise select
/// offers PyTorch's generator first.
#[wasm_bindgen_test]
async fn the_prompt_panel_takes_the_packages_defaults() {
    let root = fresh_root();
    let defaults = RwSignal::new(None::<Defaults>);
    let _mounted = leptos::mount::mount_to(root.clone(), move || view! { <PromptPanel defaults=defaults /> });
    leptos::task::tick().await;
    let value = |selector: &str| query::<web_sys::HtmlInputElement>(&root, selector).value();
    assert_eq!((value("input[name=steps]"), value("input[name=seed]")), ("24".to_string(), "1338".to_string()));
    defaults.set(Some(Defaults {
        prompt: "a hologic mammogram in CC view".into(),
        steps: 40,
        guidance: 4.5,
        scheduler: "ddim".into(),
        seed: 99,
        ..Defaults::mam_e(ModelKind::TextToImage, 128)
    }));
    // One turn runs the panel's effect, the next the views it updates.
    leptos::task::tick().await;
    leptos::task::tick().await;
    assert_eq!(query::<HtmlTextAreaElement>(&root, "textarea[name=prompt]").value(), "a hologic mammogram in CC view");
    assert_eq!((value("input[name=steps]"), value("input[name=guidance]"), value("input[name=seed]")), ("40".to_string(), "4.5".to_string(), "99".to_string()));
    let scheduler = query::<HtmlSelectElement>(&root, "select[name=scheduler]");
    assert_eq!(scheduler.selected_index(), 1, "DDIM is the second scheduler");
    let noise = query::<HtmlSelectElement>(&root, "select[name=noise]");
    assert_eq!((noise.selected_index(), noise.length()), (0, 2));
    // A package that says it is the OMI-H model: its prompt, no vendor or density to choose.
    defaults.set(Some(Defaults { template: Some(Template::OmiH), prompt: String::new(), ..Defaults::mam_e(ModelKind::TextToImage, 128) }));
    leptos::task::tick().await;
    leptos::task::tick().await;
    assert_eq!(query::<HtmlTextAreaElement>(&root, "textarea[name=prompt]").value(), "a mammogram in MLO view with small area");
    assert_eq!(query::<HtmlSelectElement>(&root, "select[name=template]").selected_index(), 1);
    let disabled = |name: &str| query::<HtmlSelectElement>(&root, &format!("select[name={name}]")).disabled();
    assert_eq!((disabled("vendor"), disabled("density"), disabled("area"), disabled("view")), (true, true, false, false));
    // Choosing VinDr by hand: view + density.
    let template = query::<HtmlSelectElement>(&root, "select[name=template]");
    template.set_value("2");
    template.dispatch_event(&web_sys::Event::new("change").unwrap()).unwrap();
    leptos::task::tick().await;
    assert_eq!(query::<HtmlTextAreaElement>(&root, "textarea[name=prompt]").value(), "a mammogram in MLO view with high density");
    assert_eq!((disabled("density"), disabled("area")), (false, true));
}

#[wasm_bindgen_test]
async fn browser_without_webgpu_gets_an_explanation() {
    // A navigator with no `gpu` property, as in browsers without WebGPU.
    let status = probe(&js_sys::Object::new().into()).await;
    assert_eq!(status, GpuStatus::Unsupported);
    let root = fresh_root();
    let _mounted = leptos::mount::mount_to(root.clone(), move || view! { <GpuNotice status=Signal::stored(status.clone()) /> });
    let text = query::<HtmlElement>(&root, "[data-test=no-webgpu]").text_content().unwrap();
    assert!(text.contains("no WebGPU") && text.contains("computes on the CPU"), "{text}");
}

#[wasm_bindgen_test]
async fn webgpu_adapter_is_found_here() {
    // Chromium runs with --enable-unsafe-webgpu (webdriver.json): the real probe finds SwiftShader.
    let navigator = web_sys::window().unwrap().navigator();
    match probe(&navigator.into()).await {
        GpuStatus::Ready(description) => assert!(!description.is_empty()),
        other => panic!("expected an adapter, got {other:?}"),
    }
    // It is SwiftShader, a software adapter: the automatic choice is the CPU path.
    let adapter = mam_e::web::gpu::adapter().await;
    let choice = mam_e::device::ComputeChoice::choose(mam_e::device::ComputePreference::Automatic, &adapter).unwrap();
    assert_eq!(choice.backend, mam_e::device::ComputeBackend::Cpu, "{adapter:?}: {}", choice.reason);
}

/// Lets the page run for `ms` milliseconds (file reads and decoding are async).
async fn sleep(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        web_sys::window().unwrap().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms).unwrap();
    });
    wasm_bindgen_futures::JsFuture::from(promise).await.unwrap();
}

/// Puts a file with `bytes` into the upload input, as choosing it in the file dialog would.
fn choose_file(root: &HtmlElement, name: &str, bytes: &[u8]) {
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let file = web_sys::File::new_with_u8_array_sequence(&parts, name).unwrap();
    let constructor = js_sys::Reflect::get(&js_sys::global(), &"DataTransfer".into()).unwrap();
    let transfer = js_sys::Reflect::construct(constructor.unchecked_ref::<js_sys::Function>(), &js_sys::Array::new()).unwrap();
    let items = js_sys::Reflect::get(&transfer, &"items".into()).unwrap();
    let add: js_sys::Function = js_sys::Reflect::get(&items, &"add".into()).unwrap().unchecked_into();
    add.call1(&items, &file).unwrap();
    let input = query::<web_sys::HtmlInputElement>(root, "input[name=upload]");
    input.set_files(Some(&js_sys::Reflect::get(&transfer, &"files".into()).unwrap().unchecked_into()));
    input.dispatch_event(&web_sys::Event::new("change").unwrap()).unwrap();
}

#[wasm_bindgen_test]
async fn uploads_are_fitted_to_the_model_and_non_images_refused() {
    use mam_e::web::mask_panel::{MaskPanel, SourceImage};
    let root = fresh_root();
    let source = RwSignal::new(None::<SourceImage>);
    let _mounted = leptos::mount::mount_to(root.clone(), move || {
        view! { <MaskPanel source defaults=Signal::stored(Some(Defaults::mam_e(ModelKind::Inpainting, 64))) busy=Signal::stored(false) on_inpaint=Callback::new(|_| {}) /> }
    });
    leptos::task::tick().await;

    choose_file(&root, "notes.txt", b"not an image");
    let mut message = None;
    for _ in 0..100 {
        sleep(20).await;
        message = root.query_selector("[data-test=mask-message]").unwrap().and_then(|e| e.text_content());
        if message.is_some() {
            break;
        }
    }
    let message = message.expect("no message for a file that is not an image");
    assert!(message.contains("notes.txt") && message.contains("not a PNG or JPEG"), "{message}");
    assert!(source.get_untracked().is_none(), "a bad file replaced the image");

    let wide = mam_e::imaging::RgbImage { width: 100, height: 50, pixels: vec![90; 100 * 50 * 3] };
    choose_file(&root, "wide.png", &wide.to_png(&[]).unwrap());
    for _ in 0..100 {
        sleep(20).await;
        if source.get_untracked().is_some() {
            break;
        }
    }
    let fitted = source.get_untracked().expect("the PNG was not loaded");
    assert_eq!((fitted.image.width, fitted.image.height), (64, 64));
    assert_eq!(fitted.note, "wide.png: centre-cropped from 100×50 to 50×50, resized to 64×64");
}

fn pointer(kind: &str, x: f64, y: f64) -> web_sys::PointerEvent {
    let init = web_sys::PointerEventInit::new();
    init.set_client_x(x as i32);
    init.set_client_y(y as i32);
    init.set_bubbles(true);
    init.set_pointer_id(1);
    web_sys::PointerEvent::new_with_event_init_dict(kind, &init).unwrap()
}

#[wasm_bindgen_test]
async fn a_dragged_rectangle_becomes_the_mask() {
    let root = fresh_root();
    let (image, _) = scene::inpaint_input();
    let source = RwSignal::new(Some(SourceImage { image, note: "test".into(), right_breast: false }));
    let requested = RwSignal::new(None::<InpaintRequest>);
    // The inpainting package's own defaults, which the panel takes when it loads.
    let defaults = Defaults { steps: 30, guidance: 2.5, seed: 5, scheduler: "euler".into(), ..Defaults::mam_e(ModelKind::Inpainting, 64) };
    let _mounted = leptos::mount::mount_to(root.clone(), move || {
        view! { <MaskPanel source defaults=Signal::stored(Some(defaults.clone())) busy=Signal::stored(false) on_inpaint=Callback::new(move |r| requested.set(Some(r))) /> }
    });
    leptos::task::tick().await;
    let canvas = query::<HtmlElement>(&root, "[data-test=mask-canvas]");
    canvas.style().set_property("width", "128px").unwrap();
    canvas.style().set_property("height", "128px").unwrap();
    let rect = canvas.get_bounding_client_rect();
    // Image pixels (10, 20) to (30, 50) at 2 CSS pixels per image pixel.
    let at = |x: f64, y: f64| (rect.left() + 2.0 * x, rect.top() + 2.0 * y);
    let (x0, y0) = at(10.0, 20.0);
    let (x1, y1) = at(30.0, 50.0);
    canvas.dispatch_event(&pointer("pointerdown", x0, y0)).unwrap();
    canvas.dispatch_event(&pointer("pointermove", (x0 + x1) / 2.0, (y0 + y1) / 2.0)).unwrap();
    canvas.dispatch_event(&pointer("pointerup", x1, y1)).unwrap();
    leptos::task::tick().await;
    query::<HtmlElement>(&root, "button[name=inpaint]").click();
    leptos::task::tick().await;
    let request = requested.get_untracked().expect("Inpaint sent no request");
    let mut expected = mam_e::mask::Mask::new(64, 64);
    let scale = |v: f64, origin: f64| (v.trunc() - origin) / 2.0;
    expected.rectangle((scale(x0, rect.left()), scale(y0, rect.top())), (scale(x1, rect.left()), scale(y1, rect.top())), 255);
    assert_eq!(request.mask, expected.data);
    assert_eq!(request.mask.iter().filter(|&&v| v == 255).count(), 20 * 30);
    assert_eq!((request.prompt.as_str(), request.guidance, request.steps, request.seed), ("a mammogram with a lesion", 2.5, 30, 5));
    assert_eq!((request.scheduler, request.noise), (mam_e::schedulers::SchedulerKind::Euler, mam_e::rng::NoiseSource::Torch));
    assert!(!request.right_breast);
    // Ticking "a right breast" marks the request so the page paints it mirrored for the model.
    let right = query::<web_sys::HtmlInputElement>(&root, "input[name=source-right]");
    right.click();
    leptos::task::tick().await;
    query::<HtmlElement>(&root, "button[name=inpaint]").click();
    leptos::task::tick().await;
    let request = requested.get_untracked().unwrap();
    assert!(request.right_breast, "the request lost the laterality");
    assert_eq!(request.mask, expected.data, "ticking the box changed the mask");
}
