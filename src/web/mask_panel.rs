//! Lesion painting: a source image (from the gallery or uploaded), a mask painted over it with a
//! brush, an eraser or rectangles (pointer and touch), undo/redo, clear, overlay opacity, and
//! Inpaint with the original lesion tool's defaults (prompt "a mammogram with a lesion",
//! guidance 3).

use leptos::html::Canvas;
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::canvas::draw;
use super::gallery::GalleryItem;
use super::prompt_panel::on_new_defaults;
use crate::imaging::RgbImage;
use crate::mask::{History, Mask};
use crate::package::Defaults;
use crate::prompt::LESION_PROMPT;
use crate::rng::NoiseSource;
use crate::schedulers::SchedulerKind;

/// The image to paint on, already at the inpainting model's size.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceImage {
    pub image: RgbImage,
    /// Where it came from and how it was fitted.
    pub note: String,
    /// A right breast, shown facing right: the model paints it mirrored (MAM-E's images face left).
    pub right_breast: bool,
}

impl SourceImage {
    /// A gallery image to paint on, fitted to the inpainting model's `(height, width)` when it
    /// differs.
    pub fn from_gallery(item: &GalleryItem, size: Option<(usize, usize)>) -> Self {
        let (image, note) = match size {
            Some((height, width)) if (height, width) != (item.image.height, item.image.width) => {
                let (fitted, how) = item.image.fit_to(width, height);
                (fitted, format!("gallery image (seed {}): {how}", item.params.seed))
            }
            _ => (item.image.clone(), format!("gallery image (seed {}), {}×{}", item.params.seed, item.image.width, item.image.height)),
        };
        SourceImage { image, note, right_breast: item.right_breast }
    }
}

/// What Inpaint asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct InpaintRequest {
    pub image: RgbImage,
    pub mask: Vec<u8>,
    pub prompt: String,
    pub negative_prompt: String,
    pub guidance: f64,
    pub steps: usize,
    pub seed: u64,
    pub scheduler: SchedulerKind,
    pub noise: NoiseSource,
    /// Paste the original back outside the mask (the model redraws the whole image otherwise).
    pub keep_outside: bool,
    /// `image` and `mask` show a right breast (facing right).
    pub right_breast: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Brush,
    Eraser,
    Rectangle,
}

/// A pointer drag in progress, in image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Drag {
    start: (f64, f64),
    last: (f64, f64),
}

/// The mask being painted on the source image: the laterality box, tools, brush size, overlay,
/// undo / redo / clear. A rectangle being dragged is shown before it is committed.
#[component]
fn MaskEditor(
    source: RwSignal<Option<SourceImage>>,
    mask: RwSignal<Mask>,
    history: RwSignal<History>,
    right_breast: RwSignal<bool>,
    message: RwSignal<Option<String>>,
) -> impl IntoView {
    let tool = RwSignal::new(Tool::Rectangle);
    let radius = RwSignal::new(4.0f64);
    let opacity = RwSignal::new(0.5f64);
    let drag = RwSignal::new(None::<Drag>);
    let canvas = NodeRef::<Canvas>::new();
    // Redraw on any change.
    Effect::new(move |_| {
        let (Some(canvas), Some(s)) = (canvas.get(), source.get()) else { return };
        let mut shown = mask.get();
        if let (Some(d), Tool::Rectangle) = (drag.get(), tool.get()) {
            shown.rectangle(d.start, d.last, 255);
        }
        draw(&canvas, &s.image, Some((&shown.data, opacity.get())));
    });

    let to_pixels = move |ev: &web_sys::PointerEvent| -> Option<(f64, f64)> {
        let canvas = canvas.get_untracked()?;
        let rect = canvas.get_bounding_client_rect();
        let m = mask.get_untracked();
        if rect.width() <= 0.0 || rect.height() <= 0.0 || m.width == 0 {
            return None;
        }
        Some(((ev.client_x() as f64 - rect.left()) / rect.width() * m.width as f64, (ev.client_y() as f64 - rect.top()) / rect.height() * m.height as f64))
    };
    let paint = move |from: (f64, f64), to: (f64, f64)| {
        let value = if tool.get_untracked() == Tool::Eraser { 0 } else { 255 };
        mask.update(|m| m.line(from, to, radius.get_untracked(), value));
    };
    let on_down = move |ev: web_sys::PointerEvent| {
        let Some(p) = to_pixels(&ev) else { return };
        ev.prevent_default();
        if let Some(target) = ev.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) {
            let _ = target.set_pointer_capture(ev.pointer_id());
        }
        history.update(|h| h.record(&mask.get_untracked()));
        drag.set(Some(Drag { start: p, last: p }));
        if tool.get_untracked() != Tool::Rectangle {
            paint(p, p);
        }
        message.set(None);
    };
    let on_move = move |ev: web_sys::PointerEvent| {
        let (Some(d), Some(p)) = (drag.get_untracked(), to_pixels(&ev)) else { return };
        if tool.get_untracked() != Tool::Rectangle {
            paint(d.last, p);
        }
        drag.set(Some(Drag { last: p, ..d }));
    };
    let on_up = move |ev: web_sys::PointerEvent| {
        let Some(d) = drag.get_untracked() else { return };
        let end = to_pixels(&ev).unwrap_or(d.last);
        if tool.get_untracked() == Tool::Rectangle {
            mask.update(|m| m.rectangle(d.start, end, 255));
        }
        drag.set(None);
    };

    view! {
                <p class="note" data-test="source-note">{move || source.get().map(|s| s.note).unwrap_or_default()}</p>
                <label class="check" title="The model paints left breasts (facing left): a right breast is mirrored for it, and the result back">
                    <input type="checkbox" name="source-right" prop:checked=move || right_breast.get()
                        on:change=move |ev| right_breast.set(event_target_checked(&ev)) />
                    " a right breast (R), facing right"
                </label>
                <ToolPicker tool=tool />
                <canvas node_ref=canvas class="mask-canvas" data-test="mask-canvas"
                    on:pointerdown=on_down on:pointermove=on_move on:pointerup=on_up on:pointercancel=on_up />
                <BrushControls radius=radius opacity=opacity />
                <MaskHistory mask=mask history=history />
    }
}

/// The mask tools: rectangle, brush and eraser.
#[component]
fn ToolPicker(tool: RwSignal<Tool>) -> impl IntoView {
    let button = move |t: Tool, label: &'static str| {
        view! {
            <button type="button" data-tool=label class:active=move || tool.get() == t on:click=move |_| tool.set(t)>{label}</button>
        }
    };
    view! {
        <div class="segmented" role="group" aria-label="Mask tool">
            {button(Tool::Rectangle, "rectangle")}
            {button(Tool::Brush, "brush")}
            {button(Tool::Eraser, "eraser")}
        </div>
    }
}

/// The brush radius and the mask overlay's opacity.
#[component]
fn BrushControls(radius: RwSignal<f64>, opacity: RwSignal<f64>) -> impl IntoView {
    view! {
        <div class="controls">
            <label class="field">
                <span>"Brush " {move || radius.get()} " px"</span>
                <input type="range" name="brush" min="1" max="32" prop:value=move || radius.get()
                    on:input=move |ev| if let Ok(v) = event_target_value(&ev).parse() { radius.set(v) } />
            </label>
            <label class="field">
                <span>"Overlay " {move || format!("{:.0} %", opacity.get() * 100.0)}</span>
                <input type="range" name="opacity" min="0" max="1" step="0.05" prop:value=move || opacity.get()
                    on:input=move |ev| if let Ok(v) = event_target_value(&ev).parse() { opacity.set(v) } />
            </label>
        </div>
    }
}

/// Undo, redo and clear of the mask.
#[component]
fn MaskHistory(mask: RwSignal<Mask>, history: RwSignal<History>) -> impl IntoView {
    view! {
        <div class="row">
            <button type="button" name="undo" prop:disabled=move || !history.get().can_undo()
                on:click=move |_| { let mut m = mask.get_untracked(); if history.try_update(|h| h.undo(&mut m)).unwrap_or(false) { mask.set(m) } }>"Undo"</button>
            <button type="button" name="redo" prop:disabled=move || !history.get().can_redo()
                on:click=move |_| { let mut m = mask.get_untracked(); if history.try_update(|h| h.redo(&mut m)).unwrap_or(false) { mask.set(m) } }>"Redo"</button>
            <button type="button" name="clear" on:click=move |_| {
                history.update(|h| h.record(&mask.get_untracked()));
                mask.update(|m| m.data.fill(0));
            }>"Clear"</button>
        </div>
    }
}

/// The lesion's prompt and sampling settings, and whether the original is kept outside the mask.
#[component]
fn LesionSettings(
    prompt: RwSignal<String>,
    guidance: RwSignal<f64>,
    steps: RwSignal<usize>,
    seed: RwSignal<u64>,
    keep_outside: RwSignal<bool>,
) -> impl IntoView {
    view! {
            <label class="field wide">
                <span>"Lesion prompt"</span>
                <textarea name="lesion-prompt" rows="1" prop:value=move || prompt.get() on:input=move |ev| prompt.set(event_target_value(&ev)) />
            </label>
            <div class="controls">
                <label class="field">
                    <span>"Guidance " {move || guidance.get()}</span>
                    <input type="range" name="lesion-guidance" min="0" max="20" step="0.5" prop:value=move || guidance.get()
                        on:input=move |ev| if let Ok(v) = event_target_value(&ev).parse() { guidance.set(v) } />
                </label>
                <label class="field">
                    <span>"Steps " {move || steps.get()}</span>
                    <input type="range" name="lesion-steps" min="10" max="50" prop:value=move || steps.get()
                        on:input=move |ev| if let Ok(v) = event_target_value(&ev).parse() { steps.set(v) } />
                </label>
                <label class="field">
                    <span>"Seed"</span>
                    <input type="number" name="lesion-seed" min="0" prop:value=move || seed.get()
                        on:input=move |ev| if let Ok(v) = event_target_value(&ev).parse() { seed.set(v) } />
                </label>
                <label class="field check" title="The model redraws the whole image; this pastes the original back outside the mask">
                    <input type="checkbox" name="keep-outside" prop:checked=move || keep_outside.get()
                        on:change=move |ev| keep_outside.set(event_target_checked(&ev)) />
                    <span>"keep the image outside the mask"</span>
                </label>
            </div>
    }
}

/// The upload field's handler: the chosen PNG/JPEG, fitted to the inpainting model's `size`,
/// becomes the source (or `message` says why not).
fn on_upload(size: Signal<Option<(usize, usize)>>, source: RwSignal<Option<SourceImage>>, message: RwSignal<Option<String>>) -> impl Fn(web_sys::Event) {
    move |ev: web_sys::Event| {
        let Some(input) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) else { return };
        let Some(file) = input.files().and_then(|f| f.get(0)) else { return };
        let Some((height, width)) = size.get_untracked() else {
            message.set(Some("Load an inpainting package first: the image is fitted to its size.".into()));
            return;
        };
        spawn_local(async move {
            let name = file.name();
            let decoded = async {
                let buffer = JsFuture::from(file.array_buffer()).await.map_err(|_| "the file could not be read".to_string())?;
                let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
                let image = image::load_from_memory(&bytes).map_err(|e| format!("not a PNG or JPEG image ({e})"))?.to_rgb8();
                Ok::<_, String>(RgbImage { width: image.width() as usize, height: image.height() as usize, pixels: image.into_raw() })
            };
            match decoded.await {
                Ok(image) => {
                    let (image, how) = image.fit_to(width, height);
                    source.set(Some(SourceImage { image, note: format!("{name}: {how}"), right_breast: false }));
                }
                Err(reason) => message.set(Some(format!("{name}: {reason}"))),
            }
        });
    }
}

/// `defaults`: the loaded inpainting package's settings (its size, prompt, steps, guidance,
/// seed), applied when a package with other defaults loads.
#[component]
pub fn MaskPanel(
    source: RwSignal<Option<SourceImage>>,
    #[prop(into)] defaults: Signal<Option<Defaults>>,
    #[prop(into)] busy: Signal<bool>,
    on_inpaint: Callback<InpaintRequest>,
) -> impl IntoView {
    let mask = RwSignal::new(Mask::new(0, 0));
    let history = RwSignal::new(History::default());
    let message = RwSignal::new(None::<String>);
    let prompt = RwSignal::new(LESION_PROMPT.to_string());
    let guidance = RwSignal::new(3.0f64);
    let seed = RwSignal::new(1338u64);
    let steps = RwSignal::new(24usize);
    let keep_outside = RwSignal::new(true);
    // The laterality of the image being painted: the source's, until the box is changed (which
    // must not clear the mask, as a new source does).
    let right_breast = RwSignal::new(false);
    let size = Signal::derive(move || defaults.get().map(|d| (d.height, d.width)));
    let scheduler = RwSignal::new(SchedulerKind::Dpm);
    let negative_prompt = RwSignal::new(String::new());
    on_new_defaults(defaults, move |d| {
        prompt.set(d.prompt.clone());
        negative_prompt.set(d.negative_prompt.clone());
        guidance.set(d.guidance);
        steps.set(d.steps);
        seed.set(d.seed);
        scheduler.set(d.scheduler.parse().unwrap_or_default());
    });

    // A new source image starts a new, empty mask.
    Effect::new(move |_| {
        if let Some(s) = source.get() {
            mask.set(Mask::new(s.image.width, s.image.height));
            history.set(History::default());
            message.set(None);
            right_breast.set(s.right_breast);
        }
    });
    let inpaint = move |_| {
        let Some(s) = source.get_untracked() else {
            message.set(Some("Choose an image first: “Paint a lesion on this” in the gallery, or upload one.".into()));
            return;
        };
        let m = mask.get_untracked();
        if m.is_empty() {
            message.set(Some("The mask is empty: paint where the lesion should go (a rectangle is enough).".into()));
            return;
        }
        on_inpaint.run(InpaintRequest {
            image: s.image,
            mask: m.data,
            prompt: prompt.get_untracked(),
            negative_prompt: negative_prompt.get_untracked(),
            guidance: guidance.get_untracked(),
            steps: steps.get_untracked(),
            seed: seed.get_untracked(),
            scheduler: scheduler.get_untracked(),
            noise: NoiseSource::default(),
            keep_outside: keep_outside.get_untracked(),
            right_breast: right_breast.get_untracked(),
        });
    };

    view! {
        <section class="panel" id="mask-panel">
            <h2>"Lesion painting"</h2>
            <div class="row">
                <label class="field">
                    <span>"Upload PNG/JPEG"</span>
                    <input type="file" name="upload" accept="image/png,image/jpeg" on:change=on_upload(size, source, message) />
                </label>
            </div>
            <Show when=move || source.get().is_some()
                fallback=|| view! { <p class="empty">"Choose “Paint a lesion on this” under a gallery image, or upload a mammogram."</p> }>
                <MaskEditor source mask history right_breast message />
            </Show>
            <LesionSettings prompt guidance steps seed keep_outside />
            {move || message.get().map(|m| view! { <p class="notice error" role="alert" data-test="mask-message">{m}</p> })}
            <button type="button" class="primary" name="inpaint"
                prop:disabled=move || size.get().is_none() || busy.get()
                title=move || if size.get().is_some() { "Inpaint a lesion under the mask" } else { "Needs a loaded inpainting package" }
                on:click=inpaint>"Inpaint"</button>
        </section>
    }
}
