//! The page: header, GPU notice, and the four panels (model, prompt, mask painting, gallery),
//! wired to the models and to one run at a time.

use std::cell::Cell;
use std::rc::Rc;

use leptos::html::Canvas;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::canvas::{draw, png_url};
use super::engine;
use super::gallery::{Gallery, GalleryItem};
use super::gpu::{GpuNotice, GpuStatus, probe};
use super::mask_panel::{InpaintRequest, MaskPanel, SourceImage};
use super::model_panel::ModelPanel;
use super::models::{DEFAULT_INPAINTING, DEFAULT_TEXT_TO_IMAGE, SlotStatus};
use super::prompt_panel::{GenerateRequest, PromptPanel};
use super::protocol::Reply;
use super::reader_study::ReaderStudy;
use super::run::Job;
use super::scope::now_ms;
use crate::device::ComputePreference;
use crate::imaging::RgbImage;
use crate::package::ModelKind;
use crate::pipeline::output::{self, finish_image};
use crate::pipeline::text_to_image::GenerateParams;

/// Where the current run stands.
#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    Idle,
    Running { label: String, done: usize, total: usize, started_ms: f64, now_ms: f64 },
    Cancelled,
    Failed(String),
}

/// One queued image: what to run and how to label it.
#[derive(Clone)]
struct Task {
    kind: ModelKind,
    params: GenerateParams,
    right_breast: bool,
    /// For inpainting: the image and mask.
    before: Option<(RgbImage, Vec<u8>)>,
    /// For inpainting: paste the original back outside the mask.
    keep_outside: bool,
}

/// Progress, live preview and Cancel of the current run.
#[component]
fn RunView(status: RwSignal<RunStatus>, preview: RwSignal<Option<RgbImage>>) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    Effect::new(move |_| {
        if let (Some(canvas), Some(image)) = (canvas.get(), preview.get()) {
            draw(&canvas, &image, None);
        }
    });
    view! {
        <div class="run" data-test="run">
            {move || match status.get() {
                RunStatus::Idle => ().into_any(),
                RunStatus::Running { label, done, total, started_ms, now_ms } => view! {
                    <progress max=total value=done></progress>
                    <span data-test="run-progress">{format!(" {label}: step {done} / {total} · {:.1} s", (now_ms - started_ms) / 1000.0)}</span>
                    <button type="button" name="cancel" on:click=move |_| engine::cancel()>"Cancel"</button>
                }
                .into_any(),
                RunStatus::Cancelled => view! { <span class="muted" data-test="run-cancelled">"Cancelled."</span> }.into_any(),
                RunStatus::Failed(reason) => view! { <span class="error" role="alert" data-test="run-error">{reason}</span> }.into_any(),
            }}
            <canvas node_ref=canvas class="preview" title="Live preview (latents, approximate colours)"
                class:hidden=move || !matches!(status.get(), RunStatus::Running { .. }) />
        </div>
    }
}

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
    let compute = RwSignal::new(compute_from_url());
    let text_to_image = RwSignal::new(SlotStatus::Empty);
    let inpainting = RwSignal::new(SlotStatus::Empty);
    let text_to_image_url = RwSignal::new(DEFAULT_TEXT_TO_IMAGE.to_string());
    let inpainting_url = RwSignal::new(DEFAULT_INPAINTING.to_string());
    let status = RwSignal::new(RunStatus::Idle);
    let preview = RwSignal::new(None::<RgbImage>);
    let gallery = RwSignal::new(Vec::<GalleryItem>::new());
    let source = RwSignal::new(None::<SourceImage>);
    let next_id = StoredValue::new(0usize);

    let slot = move |kind: ModelKind| match kind {
        ModelKind::TextToImage => text_to_image,
        ModelKind::Inpainting => inpainting,
    };
    // Loads a package, in the pipeline worker, into the slot of its kind. The kind is known once
    // the worker has read the manifest; until then the slot whose URL it is shows the progress
    // (the inpainting slot's, else the text-to-image slot), and gets back what it showed if the
    // package turns out to be of the other kind.
    let load = move |url: String| {
        let guess = if url == inpainting_url.get_untracked() { ModelKind::Inpainting } else { ModelKind::TextToImage };
        let kind = Rc::new(Cell::new(guess));
        let previous = slot(guess).get_untracked();
        let now = now_ms();
        slot(guess).set(SlotStatus::Loading { url: url.clone(), done: 0, total: 0, started_ms: now, now_ms: now });
        let loading = url.clone();
        let target = {
            let kind = kind.clone();
            move || slot(kind.get())
        };
        engine::load(&url, compute.get_untracked(), move |reply| match reply {
            Reply::Opened { info } => {
                if info.kind != guess {
                    slot(guess).set(previous.clone());
                    kind.set(info.kind);
                }
                match info.kind {
                    ModelKind::TextToImage => text_to_image_url.set(info.url.clone()),
                    ModelKind::Inpainting => inpainting_url.set(info.url.clone()),
                }
            }
            Reply::Loading { done, total, started_ms, now_ms } => target().set(SlotStatus::Loading { url: loading.clone(), done, total, started_ms, now_ms }),
            Reply::Loaded { info } => target().set(SlotStatus::Ready(info)),
            Reply::Failed { reason } => target().set(SlotStatus::Failed(reason)),
            _ => {}
        });
    };
    // Without WebGPU (or on a software adapter) the models compute on the CPU: load them anyway.
    spawn_local(async move { gpu.set(probe(&super::scope::navigator()).await) });
    load(DEFAULT_TEXT_TO_IMAGE.to_string());
    load(DEFAULT_INPAINTING.to_string());
    // A new backend needs a new device, hence a new worker: restarting it loads the models again.
    let on_compute = Callback::new(move |preference: ComputePreference| {
        if preference != compute.get_untracked() {
            compute.set(preference);
            engine::restart(&format!("computing on {} now", preference.name()));
        }
    });
    // A worker that died (GPU lost, out of memory) took its models with it: load them again
    // into a new one (from Cache Storage, so without downloading).
    engine::on_restart(move |reason| {
        web_sys::console::warn_1(&format!("mam-e: {reason}").into());
        for (status, url) in [(text_to_image, text_to_image_url), (inpainting, inpainting_url)] {
            if matches!(status.get_untracked(), SlotStatus::Ready(_) | SlotStatus::Loading { .. }) {
                load(url.get_untracked());
            }
        }
    });

    let busy = Signal::derive(move || matches!(status.get(), RunStatus::Running { .. }));
    let ready = Signal::derive(move || matches!(text_to_image.get(), SlotStatus::Ready(_)));
    let defaults_of = move |slot: RwSignal<SlotStatus>| {
        Signal::derive(move || match slot.get() {
            SlotStatus::Ready(info) => Some(info.defaults),
            _ => None,
        })
    };
    let (text_to_image_defaults, inpaint_defaults) = (defaults_of(text_to_image), defaults_of(inpainting));
    let inpaint_size = Signal::derive(move || inpaint_defaults.get().map(|d| (d.height, d.width)));

    // Runs tasks one after another; each result goes to the gallery.
    let start = move |tasks: Vec<Task>| {
        spawn_local(async move {
            let total = tasks.len();
            for (n, task) in tasks.into_iter().enumerate() {
                let SlotStatus::Ready(info) = slot(task.kind).get_untracked() else {
                    status.set(RunStatus::Failed(format!("no {} package is loaded", task.kind)));
                    return;
                };
                let label = match (task.kind, total) {
                    (ModelKind::Inpainting, _) => "inpainting".to_string(),
                    (_, 1) => "generating".to_string(),
                    _ => format!("image {} of {total}", n + 1),
                };
                let started_ms = now_ms();
                status.set(RunStatus::Running { label: label.clone(), done: 0, total: task.params.steps, started_ms, now_ms: started_ms });
                let job = match &task.before {
                    Some((image, mask)) => Job::Inpaint { image: image.clone(), mask: mask.clone() },
                    None => Job::TextToImage,
                };
                let running = label.clone();
                let on_step = move |done, total, image| {
                    status.set(RunStatus::Running { label: running.clone(), done, total, started_ms, now_ms: now_ms() });
                    preview.set(Some(image));
                };
                let image = match engine::run(task.kind, &task.params, job, on_step).await {
                    Ok(Some(image)) => image,
                    Ok(None) => return status.set(RunStatus::Cancelled),
                    Err(e) => return status.set(RunStatus::Failed(e.to_string())),
                };
                let keep = task.before.as_ref().filter(|_| task.keep_outside).map(|(original, mask)| (original, mask.as_slice()));
                let image = finish_image(image, keep, task.right_breast);
                let keep_outside = task.before.is_some().then_some(task.keep_outside);
                let software = concat!("mam-e ", env!("CARGO_PKG_VERSION"), " (web)");
                let parameters = output::parameters(&task.params, keep_outside, task.right_breast, &info.name, software).to_string();
                let png = match image.to_png(&[("parameters", parameters.clone())]) {
                    Ok(png) => png,
                    Err(e) => return status.set(RunStatus::Failed(e.to_string())),
                };
                let before = task.before.as_ref().map(|(image, mask)| {
                    let shown = if task.right_breast { image.mirrored() } else { image.clone() };
                    let shown = shown.to_png(&[]).map(|png| png_url(&png)).unwrap_or_default();
                    (shown, image.clone(), mask.clone())
                });
                let id = next_id.get_value();
                next_id.set_value(id + 1);
                gallery.update(|g| {
                    g.push(GalleryItem {
                        id,
                        kind: task.kind,
                        params: task.params.clone(),
                        right_breast: task.right_breast,
                        image,
                        before,
                        keep_outside: task.keep_outside,
                        png_url: png_url(&png),
                        parameters,
                        model_name: info.name.clone(),
                        trained: info.trained,
                        seconds: (now_ms() - started_ms) / 1000.0,
                    })
                });
            }
            status.set(RunStatus::Idle);
        });
    };

    let on_generate = Callback::new(move |request: GenerateRequest| {
        let SlotStatus::Ready(info) = text_to_image.get_untracked() else { return };
        let s = request.settings;
        let tasks = (0..request.count as u64)
            .map(|k| Task {
                kind: ModelKind::TextToImage,
                params: GenerateParams {
                    prompt: request.prompt.clone(),
                    negative_prompt: s.negative_prompt.clone(),
                    steps: s.steps as usize,
                    guidance: s.guidance as f64,
                    scheduler: s.scheduler,
                    height: info.defaults.height,
                    width: info.defaults.width,
                    seed: if s.random_seed { random_seed() } else { GenerateParams::batch_seed(s.seed, k) },
                    noise: s.noise,
                },
                right_breast: s.right_breast,
                before: None,
                keep_outside: false,
            })
            .collect();
        start(tasks);
    });
    // The reader study's synthetic images with the real images' prompts: the package's defaults,
    // a random seed each.
    let on_study_generate = Callback::new(move |prompts: Vec<String>| {
        let SlotStatus::Ready(info) = text_to_image.get_untracked() else {
            return status.set(RunStatus::Failed("load a text-to-image package first".into()));
        };
        let tasks = prompts
            .into_iter()
            .map(|prompt| Task {
                kind: ModelKind::TextToImage,
                params: GenerateParams { prompt, seed: random_seed(), ..info.defaults.params() },
                right_breast: false,
                before: None,
                keep_outside: false,
            })
            .collect();
        start(tasks);
    });
    let on_inpaint = Callback::new(move |r: InpaintRequest| {
        // The model paints in its own (left-facing) orientation; the result is mirrored back.
        let (image, mask) = r.image.to_model_orientation(&r.mask, r.right_breast);
        let params = GenerateParams {
            prompt: r.prompt,
            negative_prompt: r.negative_prompt,
            steps: r.steps,
            guidance: r.guidance,
            scheduler: r.scheduler,
            height: image.height,
            width: image.width,
            seed: r.seed,
            noise: r.noise,
        };
        start(vec![Task { kind: ModelKind::Inpainting, params, right_breast: r.right_breast, before: Some((image, mask)), keep_outside: r.keep_outside }]);
    });
    let on_paint = Callback::new(move |id: usize| {
        let Some(item) = gallery.get_untracked().into_iter().find(|i| i.id == id) else { return };
        let (image, note) = match inpaint_size.get_untracked() {
            Some((height, width)) if (height, width) != (item.image.height, item.image.width) => {
                let (fitted, how) = item.image.fit_to(width, height);
                (fitted, format!("gallery image (seed {}): {how}", item.params.seed))
            }
            _ => (item.image.clone(), format!("gallery image (seed {}), {}×{}", item.params.seed, item.image.width, item.image.height)),
        };
        source.set(Some(SourceImage { image, note, right_breast: item.right_breast }));
        if let Some(panel) = document().get_element_by_id("mask-panel") {
            panel.scroll_into_view();
        }
    });
    let on_rerun = Callback::new(move |id: usize| {
        let Some(item) = gallery.get_untracked().into_iter().find(|i| i.id == id) else { return };
        let before = item.before.map(|(_, image, mask)| (image, mask));
        start(vec![Task { kind: item.kind, params: item.params, right_breast: item.right_breast, before, keep_outside: item.keep_outside }]);
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
            <ModelPanel text_to_image inpainting text_to_image_url inpainting_url on_load=Callback::new(load) compute on_compute />
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
