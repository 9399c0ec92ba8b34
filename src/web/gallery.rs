//! The gallery: every result with its full parameters, PNG download (parameters embedded, as
//! the CLI writes them), copy parameters, "paint a lesion on this" and re-run.

use leptos::prelude::*;

use super::explain_view::ExplainView;
use crate::imaging::RgbImage;
use crate::package::ModelKind;
use crate::pipeline::text_to_image::GenerateParams;

/// One result.
#[derive(Debug, Clone, PartialEq)]
pub struct GalleryItem {
    pub id: usize,
    pub kind: ModelKind,
    pub params: GenerateParams,
    pub right_breast: bool,
    pub image: RgbImage,
    /// The image before inpainting, with the mask as painted.
    pub before: Option<(String, RgbImage, Vec<u8>)>,
    /// Inpainting: the original was pasted back outside the mask.
    pub keep_outside: bool,
    /// `blob:` URL of the PNG (with the parameters chunk).
    pub png_url: String,
    /// The `parameters` chunk: JSON.
    pub parameters: String,
    pub model_name: String,
    pub trained: bool,
    pub seconds: f64,
}

/// Lists `items`, newest first.
#[component]
pub fn Gallery(items: RwSignal<Vec<GalleryItem>>, on_paint: Callback<usize>, on_rerun: Callback<usize>) -> impl IntoView {
    let copy = |text: String| {
        if let Some(window) = web_sys::window() {
            let _ = window.navigator().clipboard().write_text(&text);
        }
    };
    view! {
        <section class="panel" id="gallery-panel">
            <h2>"Gallery"</h2>
            <Show when=move || !items.get().is_empty()
                fallback=|| view! { <p class="empty">"Generated images will appear here, each with its full parameters."</p> }>
                <ul class="gallery">
                    <For each=move || items.get().into_iter().rev() key=|item| item.id let:item>
                        {
                            let id = item.id;
                            let parameters = item.parameters.clone();
                            let file = format!("mam-e-{}-{}.png", if item.kind == ModelKind::Inpainting { "lesion" } else { "healthy" }, item.params.seed);
                            view! {
                                <li class="result" data-test="result" data-kind=item.kind.to_string()>
                                    {match item.before.as_ref() {
                                        // An inpainting: before, after and the CAD's heatmap.
                                        Some((before_url, _, mask)) => {
                                            // The CAD sees the result as the model painted it (left-facing).
                                            let image = if item.right_breast { item.image.mirrored() } else { item.image.clone() };
                                            view! {
                                                <ExplainView before_url=before_url.clone() after_url=item.png_url.clone() alt=item.params.prompt.clone()
                                                    image mask=mask.clone() right_breast=item.right_breast seed=item.params.seed />
                                            }.into_any()
                                        }
                                        None => view! {
                                            <div class="pair"><figure><img src=item.png_url.clone() alt=item.params.prompt.clone() /></figure></div>
                                        }.into_any(),
                                    }}
                                    <p class="caption">
                                        <strong>{item.params.prompt.clone()}</strong>
                                        <br />
                                        {format!("seed {} · {} steps · guidance {} · {} · {}×{} · {} · {:.1} s",
                                            item.params.seed, item.params.steps, item.params.guidance, item.params.scheduler.name(),
                                            item.params.width, item.params.height, if item.right_breast { "R" } else { "L" }, item.seconds)}
                                        <br />
                                        <span class=if item.trained { "model" } else { "model untrained" }>
                                            {format!("{}{}", item.model_name, if item.trained { "" } else { " — untrained random weights: not a real mammogram" })}
                                        </span>
                                    </p>
                                    <div class="row">
                                        <a class="button" data-test="download-png" href=item.png_url.clone() download=file>"Download PNG"</a>
                                        <button type="button" on:click=move |_| copy(parameters.clone())>"Copy parameters"</button>
                                        <button type="button" name="paint" on:click=move |_| on_paint.run(id)>"Paint a lesion on this"</button>
                                        <button type="button" on:click=move |_| on_rerun.run(id)>"Re-run"</button>
                                    </div>
                                </li>
                            }
                        }
                    </For>
                </ul>
            </Show>
        </section>
    }
}
