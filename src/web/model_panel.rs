//! The model panel: the two loaded packages (text-to-image, inpainting) with download progress,
//! a package URL field that shows the size before downloading, and the stored copies.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::download::{delete_stored, stored_bytes};
use super::models::{ModelInfo, SlotStatus, open};
use crate::device::{ComputeBackend, ComputePreference};

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1u64 << 20) as f64)
}

fn describe(info: &ModelInfo) -> String {
    let mut text = format!("{} · {} · {} · {}", info.name, info.kind, info.dtype, mib(info.bytes as f64));
    if let Some(precision) = info.precision {
        text.push_str(&format!(" · computes in {}", precision.name()));
    }
    if let Some(compute) = &info.compute {
        text.push_str(&format!(" on {}", compute.backend));
    }
    text
}

/// Which backend the loaded models compute on and why, from the first loaded slot.
fn compute_line(slots: [SlotStatus; 2]) -> Option<(ComputeBackend, String)> {
    slots.into_iter().find_map(|slot| match slot {
        SlotStatus::Ready(ModelInfo { compute: Some(choice), .. }) => Some((choice.backend, format!("Computing on {}: {}.", choice.backend, choice.reason))),
        _ => None,
    })
}

/// "Compute: automatic / GPU / CPU", and which one runs and why.
#[component]
fn ComputeSelect(
    text_to_image: RwSignal<SlotStatus>,
    inpainting: RwSignal<SlotStatus>,
    compute: Signal<ComputePreference>,
    on_compute: Callback<ComputePreference>,
) -> impl IntoView {
    let label = |p: ComputePreference| match p {
        ComputePreference::Automatic => "automatic (GPU if it is a hardware one)",
        ComputePreference::Gpu => "GPU (WebGPU)",
        ComputePreference::Cpu => "CPU (WebAssembly)",
    };
    view! {
        <div class="row">
            <label class="field">
                <span>"Compute on"</span>
                <select name="compute" on:change=move |ev| {
                    if let Some(p) = ComputePreference::from_name(&event_target_value(&ev)) {
                        on_compute.run(p);
                    }
                }>
                    {ComputePreference::ALL.into_iter().map(|p| view! {
                        <option value=p.name() selected=move || compute.get() == p>{label(p)}</option>
                    }).collect_view()}
                </select>
            </label>
            {move || compute_line([text_to_image.get(), inpainting.get()]).map(|(backend, line)| view! {
                <span class="muted" data-test="compute-backend" data-backend=format!("{backend:?}")>{line}</span>
            })}
        </div>
    }
}

/// One slot's line: progress while loading, the package when ready, the error when failed.
#[component]
fn Slot(label: &'static str, status: RwSignal<SlotStatus>, on_retry: Callback<String>) -> impl IntoView {
    move || {
        let body = match status.get() {
            SlotStatus::Empty => view! { <span class="muted">"not loaded"</span> }.into_any(),
            SlotStatus::Loading { done, total, started_ms, now_ms, .. } => {
                let seconds = ((now_ms - started_ms) / 1000.0).max(1e-3);
                let percent = if total > 0 { done as f64 / total as f64 * 100.0 } else { 0.0 };
                view! {
                    <progress max=total.max(1) value=done></progress>
                    <span class="muted" data-test="download-progress">
                        {format!(" {} of {} ({percent:.0} %) · {}/s", mib(done as f64), mib(total as f64), mib(done as f64 / seconds))}
                    </span>
                }
                .into_any()
            }
            SlotStatus::Ready(info) => view! {
                <span data-test="model-ready">{describe(&info)}</span>
                {(!info.trained).then(|| view! { <span class="badge" title="Random weights: images are noise-like, not mammograms. The code path is the one trained packages use.">"untrained demo"</span> })}
            }
            .into_any(),
            SlotStatus::Failed(reason) => {
                let retry = reason.clone();
                view! {
                    <span class="error" role="alert" data-test="model-error">{reason}</span>
                    <button type="button" on:click=move |_| on_retry.run(retry.clone())>"Retry"</button>
                }
                .into_any()
            }
        };
        view! { <p class="slot"><strong>{label}</strong>" " {body}</p> }
    }
}

/// `on_load(url)` downloads and loads a package; `urls` are the slots' current URLs (for retry).
#[component]
pub fn ModelPanel(
    text_to_image: RwSignal<SlotStatus>,
    inpainting: RwSignal<SlotStatus>,
    text_to_image_url: RwSignal<String>,
    inpainting_url: RwSignal<String>,
    on_load: Callback<String>,
    #[prop(into)] compute: Signal<ComputePreference>,
    on_compute: Callback<ComputePreference>,
) -> impl IntoView {
    let url = RwSignal::new(String::new());
    let checked = RwSignal::new(None::<Result<ModelInfo, String>>);
    let stored = RwSignal::new(None::<String>);
    let check = move |_| {
        let target = url.get_untracked();
        checked.set(None);
        spawn_local(async move { checked.set(Some(open(&target).await.map(|p| p.info).map_err(|e| e.to_string()))) });
    };
    let show_stored = move || {
        spawn_local(async move {
            let (bytes, estimate) = stored_bytes().await;
            let usage = estimate.map(|(usage, quota)| format!("; this site uses {} of {} allowed", mib(usage), mib(quota))).unwrap_or_default();
            stored.set(Some(format!("Stored packages: {}{usage}", mib(bytes as f64))));
        })
    };
    let retry_t2i = Callback::new(move |_| on_load.run(text_to_image_url.get_untracked()));
    let retry_inp = Callback::new(move |_| on_load.run(inpainting_url.get_untracked()));
    view! {
        <section class="panel" id="model-panel">
            <h2>"Model"</h2>
            <Slot label="Healthy (text-to-image):" status=text_to_image on_retry=retry_t2i />
            <Slot label="Lesions (inpainting):" status=inpainting on_retry=retry_inp />
            <ComputeSelect text_to_image inpainting compute on_compute />
            <label class="field wide">
                <span>"Package URL (a folder with manifest.json, made by mam-e convert)"</span>
                <input type="url" name="package-url" placeholder="https://…/mam-e-q8/" prop:value=move || url.get()
                    on:input=move |ev| url.set(event_target_value(&ev)) />
            </label>
            <div class="row">
                <button type="button" name="check" prop:disabled=move || url.get().trim().is_empty() on:click=check>"Check size"</button>
                {move || match checked.get() {
                    None => ().into_any(),
                    Some(Err(reason)) => view! { <span class="error" role="alert">{reason}</span> }.into_any(),
                    Some(Ok(info)) => {
                        let target = info.url.clone();
                        view! {
                            <span>{describe(&info)}</span>
                            <button type="button" class="primary" on:click=move |_| on_load.run(target.clone())>
                                {format!("Download {}", mib(info.bytes as f64))}
                            </button>
                        }
                        .into_any()
                    }
                }}
            </div>
            <div class="row">
                <button type="button" on:click=move |_| show_stored()>"Stored models"</button>
                <button type="button" name="delete-stored" on:click=move |_| {
                    spawn_local(async move {
                        let result = delete_stored().await;
                        stored.set(Some(match result { Ok(()) => "Deleted the stored packages; loaded models stay usable until you reload.".into(), Err(e) => e.to_string() }));
                    })
                }>"Delete stored models"</button>
                <span class="muted">{move || stored.get()}</span>
            </div>
        </section>
    }
}
