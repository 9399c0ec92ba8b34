//! The gallery's Explain view (MAM-E Fig. 6, live): after an inpainting, the embedded CAD's
//! heatmap over the result, beside before and after — Grad-CAM or occlusion, with an opacity
//! slider — its lesion probability, and how much of the heatmap falls on the painted lesion
//! against the lesion's share of the breast.

use std::sync::Arc;

use leptos::html::Canvas;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::cad::{DEFAULT_CAD, Explanation};
use super::canvas::{blob_url_memo, draw};
use super::engine;
use crate::cad::explain::{LesionAttention, npy, overlay};
use crate::imaging::RgbImage;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    GradCam,
    Occlusion,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::GradCam => "Grad-CAM",
            Method::Occlusion => "occlusion",
        }
    }

    fn map(self, e: &Explanation) -> &[f32] {
        match self {
            Method::GradCam => &e.grad_cam,
            Method::Occlusion => &e.occlusion,
        }
    }

    fn attention(self, e: &Explanation) -> Option<&LesionAttention> {
        e.attention[self as usize].as_ref()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Idle,
    Running,
    Done(Arc<Explanation>),
    Failed(String),
}

/// What the heatmap says about the lesion, in words.
fn attention_text(method: Method, attention: Option<&LesionAttention>) -> String {
    match attention {
        Some(a) => format!(
            "{}: {:.1} % of the heatmap on the lesion, which is {:.1} % of the breast — {:.2}× its share.",
            method.name(),
            100.0 * a.mass_in_lesion,
            100.0 * a.lesion_share_of_breast,
            a.ratio
        ),
        None => format!("{}: no positive heatmap in the breast, so no lesion figures.", method.name()),
    }
}

/// Before, after and (once asked) the CAD's heatmap of `image` (the inpainted result in the
/// model's orientation) with `mask` (the painted lesion), drawn mirrored back for a right
/// breast; the Explain button, then the heatmap's controls and figures, below them.
#[component]
pub fn ExplainView(before_url: String, after_url: String, alt: String, image: RgbImage, mask: Vec<u8>, right_breast: bool, seed: u64) -> impl IntoView {
    let state = RwSignal::new(State::Idle);
    let method = RwSignal::new(Method::GradCam);
    let opacity = RwSignal::new(0.5f32);
    let canvas = NodeRef::<Canvas>::new();
    Effect::new(move |_| {
        if let (Some(canvas), State::Done(e)) = (canvas.get(), state.get()) {
            let shown = overlay(&e.input, method.get().map(&e), e.side, opacity.get());
            draw(&canvas, &if right_breast { shown.mirrored() } else { shown }, None);
        }
    });
    let explain = move |_| {
        state.set(State::Running);
        let (image, mask) = (image.clone(), mask.clone());
        spawn_local(async move {
            state.set(match engine::explain(DEFAULT_CAD, &image, &mask, None).await {
                Ok(e) => State::Done(Arc::new(e)),
                Err(e) => State::Failed(e.to_string()),
            });
        });
    };
    let done = move || matches!(state.get(), State::Done(_));
    view! {
        <div class="pair">
            <figure><img src=before_url alt="before" /><figcaption>"before"</figcaption></figure>
            <figure><img src=after_url alt=alt /><figcaption>"after"</figcaption></figure>
            <figure class:hidden=move || !done()>
                <canvas node_ref=canvas class="heatmap" />
                <figcaption>{move || format!("{} (CAD)", method.get().name())}</figcaption>
            </figure>
        </div>
        <div class="explain" data-test="explain">
            {move || match state.get() {
                State::Idle => view! {
                    <button type="button" name="explain" on:click=explain.clone()
                        title="Run the embedded CAD on this image and show where it looks (MAM-E Fig. 6)">"Explain: where does a CAD look?"</button>
                }.into_any(),
                State::Running => view! { <span class="muted" data-test="explain-running">"The CAD looks…"</span> }.into_any(),
                State::Failed(reason) => view! { <span class="error" role="alert" data-test="explain-error">{reason}</span> }.into_any(),
                State::Done(e) => {
                    let for_map = e.clone();
                    let npy_url = blob_url_memo(move || npy(method.get().map(&for_map), for_map.side, for_map.side), "application/octet-stream");
                    let file = move || format!("mam-e-lesion-{seed}-{}.npy", if method.get() == Method::GradCam { "grad-cam" } else { "occlusion" });
                    let attention = {
                        let e = e.clone();
                        move || attention_text(method.get(), method.get().attention(&e))
                    };
                    view! {
                        <div class="explain-result" data-test="explain-result" data-logit=e.logit.to_string()>
                            <div class="row">
                                <select name="explain-method" on:change=move |ev| {
                                    method.set(if event_target_value(&ev) == "occlusion" { Method::Occlusion } else { Method::GradCam })
                                }>
                                    <option value="grad-cam" selected=true>"Grad-CAM"</option>
                                    <option value="occlusion">"occlusion"</option>
                                </select>
                                <label>
                                    "opacity "
                                    <input type="range" name="explain-opacity" min="0" max="100" prop:value=move || (opacity.get() * 100.0).round()
                                        on:input=move |ev| opacity.set(event_target_value(&ev).parse::<f32>().unwrap_or(50.0) / 100.0) />
                                </label>
                                <a class="button" data-test="explain-heatmap" href=npy_url download=file>"Heatmap (.npy)"</a>
                            </div>
                            <p class="caption">
                                {format!("Lesion probability {:.2}. ", e.probability())}
                                <span data-test="explain-attention">{attention}</span>
                                <br />
                                "The embedded CAD is a small classifier trained on phantoms: a teaching aid, not a diagnosis."
                            </p>
                        </div>
                    }.into_any()
                }
            }}
        </div>
    }
}
