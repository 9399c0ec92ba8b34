//! The page: header, GPU notice, and the four panels (model, prompt, mask painting, gallery).

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::gpu::{GpuNotice, GpuStatus, probe};
use super::prompt_panel::PromptPanel;

/// The whole page.
#[component]
pub fn App() -> impl IntoView {
    let gpu = RwSignal::new(GpuStatus::Checking);
    spawn_local(async move {
        let navigator = web_sys::window().map(|w| w.navigator().into()).unwrap_or(wasm_bindgen::JsValue::UNDEFINED);
        gpu.set(probe(&navigator).await);
    });
    view! {
        <header>
            <h1>"mam-e"</h1>
            <p class="tagline">
                "Synthetic mammograms with Stable Diffusion (MAM-E), generated privately on your own GPU."
            </p>
        </header>
        <GpuNotice status=gpu />
        <main class="panels">
            <section class="panel" id="model-panel">
                <h2>"Model"</h2>
                <p class="empty">"No model package is loaded yet: the in-browser pipeline is still being built."</p>
            </section>
            <PromptPanel />
            <section class="panel" id="mask-panel">
                <h2>"Lesion painting"</h2>
                <p class="empty">"Paint a mask on a generated or uploaded mammogram to inpaint a synthetic lesion."</p>
            </section>
            <section class="panel" id="gallery-panel">
                <h2>"Gallery"</h2>
                <p class="empty">"Generated images will appear here, each with its full parameters."</p>
            </section>
        </main>
        <footer>"Everything runs in this tab; the page contacts no server but the one it came from."</footer>
    }
}
