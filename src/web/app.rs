//! The page: header, GPU notice, and the panels (model, prompt, mask painting, gallery, reader
//! study), wired to the model slots ([`Slots`]) and the run queue ([`Queue`]).

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::engine;
use super::gallery::Gallery;
use super::gpu::{GpuNotice, GpuStatus, probe};
use super::mask_panel::{InpaintRequest, MaskPanel, SourceImage};
use super::model_panel::ModelPanel;
use super::models::{DEFAULT_INPAINTING, DEFAULT_TEXT_TO_IMAGE, SlotStatus};
use super::prompt_panel::{GenerateRequest, PromptPanel};
use super::queue::{Queue, RunStatus, RunView, Task};
use super::reader_study::ReaderStudy;
use super::slots::Slots;
use crate::device::ComputePreference;
use crate::package::ModelKind;
use crate::pipeline::text_to_image::GenerateParams;

/// `?compute=auto|gpu|cpu` in the page's URL, else automatic.
fn compute_from_url() -> ComputePreference {
    let search = window().location().search().unwrap_or_default();
    web_sys::UrlSearchParams::new_with_str(&search).ok().and_then(|p| p.get("compute")).and_then(|name| ComputePreference::from_name(&name)).unwrap_or_default()
}

fn random_seed() -> u64 {
    (js_sys::Math::random() * 4_294_967_296.0) as u64
}

/// The whole page.
#[component]
pub fn App() -> impl IntoView {
    let gpu = RwSignal::new(GpuStatus::Checking);
    let slots = Slots::new(compute_from_url());
    let Slots { text_to_image, inpainting, text_to_image_url, inpainting_url, compute } = slots;
    let queue = Queue::new(slots);
    let Queue { status, preview, gallery, .. } = queue;
    let source = RwSignal::new(None::<SourceImage>);

    // Without WebGPU (or on a software adapter) the models compute on the CPU: load them anyway.
    spawn_local(async move { gpu.set(probe(&super::scope::navigator()).await) });
    slots.load(DEFAULT_TEXT_TO_IMAGE.to_string());
    slots.load(DEFAULT_INPAINTING.to_string());
    // A new backend needs a new device, hence a new worker: restarting it loads the models again.
    let on_compute = Callback::new(move |preference: ComputePreference| {
        if preference != compute.get_untracked() {
            compute.set(preference);
            engine::restart(&format!("computing on {} now", preference.name()));
        }
    });
    // A worker that died (GPU lost, out of memory) took its models with it: load them again
    // into a new one.
    engine::on_restart(move |reason| {
        web_sys::console::warn_1(&format!("mam-e: {reason}").into());
        slots.reload();
    });

    let busy = Signal::derive(move || matches!(status.get(), RunStatus::Running { .. }));
    let ready = Signal::derive(move || matches!(text_to_image.get(), SlotStatus::Ready(_)));
    let (text_to_image_defaults, inpaint_defaults) = (slots.defaults(ModelKind::TextToImage), slots.defaults(ModelKind::Inpainting));
    let inpaint_size = Signal::derive(move || inpaint_defaults.get().map(|d| (d.height, d.width)));

    let on_generate = Callback::new(move |request: GenerateRequest| {
        if let SlotStatus::Ready(info) = text_to_image.get_untracked() {
            let right_breast = request.settings.right_breast;
            queue.start((0..request.count as u64).map(|k| Task::text_to_image(request.params(k, &info.defaults, random_seed), right_breast)).collect());
        }
    });
    // The reader study's synthetic images with the real images' prompts: the package's defaults,
    // a random seed each.
    let on_study_generate = Callback::new(move |prompts: Vec<String>| {
        let SlotStatus::Ready(info) = text_to_image.get_untracked() else {
            return status.set(RunStatus::Failed("load a text-to-image package first".into()));
        };
        let tasks =
            prompts.into_iter().map(|prompt| Task::text_to_image(GenerateParams { prompt, seed: random_seed(), ..info.defaults.params() }, false)).collect();
        queue.start(tasks);
    });
    let on_inpaint = Callback::new(move |r: InpaintRequest| queue.start(vec![Task::inpaint(r)]));
    let on_paint = Callback::new(move |id: usize| {
        let Some(item) = gallery.get_untracked().into_iter().find(|i| i.id == id) else { return };
        source.set(Some(SourceImage::from_gallery(&item, inpaint_size.get_untracked())));
        if let Some(panel) = document().get_element_by_id("mask-panel") {
            panel.scroll_into_view();
        }
    });
    let on_rerun = Callback::new(move |id: usize| {
        if let Some(item) = gallery.get_untracked().into_iter().find(|i| i.id == id) {
            queue.start(vec![Task::again(item)]);
        }
    });

    view! {
        <header>
            <h1>"mam-e"</h1>
            <p class="tagline">
                "Synthetic mammograms with Stable Diffusion (MAM-E), generated privately on your own device: its GPU (WebGPU) or its CPU."
            </p>
        </header>
        <GpuNotice status=gpu />
        <main class="panels">
            <ModelPanel text_to_image inpainting text_to_image_url inpainting_url on_load=Callback::new(move |url| slots.load(url)) compute on_compute />
            <PromptPanel ready busy defaults=text_to_image_defaults on_generate>
                <RunView status preview />
            </PromptPanel>
            <MaskPanel source defaults=inpaint_defaults busy on_inpaint />
            <Gallery items=gallery on_paint on_rerun />
            <ReaderStudy gallery on_generate=on_study_generate />
        </main>
        <footer>"Everything runs in this tab; the page contacts no server but the one it came from and a package URL you enter."</footer>
    }
}
