//! The gallery: every result with its full parameters, PNG download (parameters embedded, as
//! the CLI writes them), copy parameters, "paint a lesion on this" and re-run.

use leptos::prelude::*;

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
                                    <div class="pair">
                                        {item.before.as_ref().map(|(url, _, _)| view! { <figure><img src=url.clone() alt="before" /><figcaption>"before"</figcaption></figure> })}
                                        <figure>
                                            <img src=item.png_url.clone() alt=item.params.prompt.clone() />
                                            <figcaption>{if item.before.is_some() { "after" } else { "" }}</figcaption>
                                        </figure>
                                    </div>
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
                                        <a class="button" href=item.png_url.clone() download=file>"Download PNG"</a>
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
