//! The run queue: images generated one after another in the pipeline worker, the current
//! run's progress, live preview and Cancel ([`RunView`]), and each result into the gallery with
//! its parameters.

use leptos::html::Canvas;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::canvas::{draw, png_url};
use super::engine;
use super::gallery::GalleryItem;
use super::mask_panel::InpaintRequest;
use super::models::{ModelInfo, SlotStatus};
use super::run::Job;
use super::scope::now_ms;
use super::slots::Slots;
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
pub struct Task {
    pub kind: ModelKind,
    pub params: GenerateParams,
    pub right_breast: bool,
    /// For inpainting: the image and mask.
    pub before: Option<(RgbImage, Vec<u8>)>,
    /// For inpainting: paste the original back outside the mask.
    pub keep_outside: bool,
}

impl Task {
    pub fn text_to_image(params: GenerateParams, right_breast: bool) -> Self {
        Task { kind: ModelKind::TextToImage, params, right_breast, before: None, keep_outside: false }
    }

    /// An inpainting as the mask panel asks for it: painted in the model's own (left-facing)
    /// orientation, the result mirrored back for a right breast.
    pub fn inpaint(r: InpaintRequest) -> Self {
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
        Task { kind: ModelKind::Inpainting, params, right_breast: r.right_breast, before: Some((image, mask)), keep_outside: r.keep_outside }
    }

    /// A gallery item's run again.
    pub fn again(item: GalleryItem) -> Self {
        let before = item.before.map(|(_, image, mask)| (image, mask));
        Task { kind: item.kind, params: item.params, right_breast: item.right_breast, before, keep_outside: item.keep_outside }
    }
}

/// The queue's state (signals: `Copy`).
#[derive(Clone, Copy)]
pub struct Queue {
    pub status: RwSignal<RunStatus>,
    pub preview: RwSignal<Option<RgbImage>>,
    pub gallery: RwSignal<Vec<GalleryItem>>,
    next_id: StoredValue<usize>,
    slots: Slots,
}

impl Queue {
    pub fn new(slots: Slots) -> Self {
        Queue { status: RwSignal::new(RunStatus::Idle), preview: RwSignal::new(None), gallery: RwSignal::new(Vec::new()), next_id: StoredValue::new(0), slots }
    }

    /// Runs `tasks` one after another; each result goes to the gallery. The first failure or a
    /// cancel stops the rest.
    pub fn start(self, tasks: Vec<Task>) {
        spawn_local(async move {
            let total = tasks.len();
            for (n, task) in tasks.into_iter().enumerate() {
                let SlotStatus::Ready(info) = self.slots.slot(task.kind).get_untracked() else {
                    return self.status.set(RunStatus::Failed(format!("no {} package is loaded", task.kind)));
                };
                let label = match (task.kind, total) {
                    (ModelKind::Inpainting, _) => "inpainting".to_string(),
                    (_, 1) => "generating".to_string(),
                    _ => format!("image {} of {total}", n + 1),
                };
                match self.run(&task, label, &info).await {
                    Ok(Some(item)) => self.gallery.update(|g| g.push(item)),
                    Ok(None) => return self.status.set(RunStatus::Cancelled),
                    Err(reason) => return self.status.set(RunStatus::Failed(reason)),
                }
            }
            self.status.set(RunStatus::Idle);
        });
    }

    /// One task in the worker, with progress and preview: its gallery item (`None`: cancelled).
    async fn run(self, task: &Task, label: String, info: &ModelInfo) -> Result<Option<GalleryItem>, String> {
        let Queue { status, preview, .. } = self;
        let started_ms = now_ms();
        status.set(RunStatus::Running { label: label.clone(), done: 0, total: task.params.steps, started_ms, now_ms: started_ms });
        let job = match &task.before {
            Some((image, mask)) => Job::Inpaint { image: image.clone(), mask: mask.clone() },
            None => Job::TextToImage,
        };
        let on_step = move |done, total, image| {
            status.set(RunStatus::Running { label: label.clone(), done, total, started_ms, now_ms: now_ms() });
            preview.set(Some(image));
        };
        let Some(image) = engine::run(task.kind, &task.params, job, on_step).await.map_err(|e| e.to_string())? else { return Ok(None) };
        let keep = task.before.as_ref().filter(|_| task.keep_outside).map(|(original, mask)| (original, mask.as_slice()));
        let image = finish_image(image, keep, task.right_breast);
        let keep_outside = task.before.is_some().then_some(task.keep_outside);
        let software = concat!("mam-e ", env!("CARGO_PKG_VERSION"), " (web)");
        let parameters = output::parameters(&task.params, keep_outside, task.right_breast, &info.name, software).to_string();
        let png = image.to_png(&[("parameters", parameters.clone())]).map_err(|e| e.to_string())?;
        let before = task.before.as_ref().map(|(image, mask)| {
            let shown = if task.right_breast { image.mirrored() } else { image.clone() };
            let shown = shown.to_png(&[]).map(|png| png_url(&png)).unwrap_or_default();
            (shown, image.clone(), mask.clone())
        });
        let id = self.next_id.get_value();
        self.next_id.set_value(id + 1);
        Ok(Some(GalleryItem {
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
        }))
    }
}

/// Progress, live preview and Cancel of the current run.
#[component]
pub fn RunView(status: RwSignal<RunStatus>, preview: RwSignal<Option<RgbImage>>) -> impl IntoView {
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
