//! Components mounted in a real browser: click, tick, assert on the DOM.
#![cfg(target_arch = "wasm32")]

use leptos::prelude::*;
use mam_e::web::gpu::{GpuNotice, GpuStatus, probe};
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

#[wasm_bindgen_test]
async fn browser_without_webgpu_gets_an_explanation() {
    // A navigator with no `gpu` property, as in browsers without WebGPU.
    let status = probe(&js_sys::Object::new().into()).await;
    assert_eq!(status, GpuStatus::Unsupported);
    let root = fresh_root();
    let _mounted = leptos::mount::mount_to(root.clone(), move || view! { <GpuNotice status=Signal::stored(status.clone()) /> });
    let text = query::<HtmlElement>(&root, "[data-test=no-webgpu]").text_content().unwrap();
    assert!(text.contains("no WebGPU"), "{text}");
}

#[wasm_bindgen_test]
async fn webgpu_adapter_is_found_here() {
    // Chromium runs with --enable-unsafe-webgpu (webdriver.json): the real probe finds SwiftShader.
    let navigator = web_sys::window().unwrap().navigator();
    match probe(&navigator.into()).await {
        GpuStatus::Ready(description) => assert!(!description.is_empty()),
        other => panic!("expected an adapter, got {other:?}"),
    }
}
