//! The reader study panel (MAM-E §3.3, live): real images picked from the reader's own files
//! (never uploaded; with the set's `metadata.jsonl`, synthetic images with the same prompts can be
//! generated), synthetic ones from the gallery (generated here by the loaded model) or from
//! files; a blinded 50/50 sequence rated 0–4 with the keyboard or buttons; then the ROC curve,
//! the AUROC with DeLong's 95 % interval, the ratings per class and the verdict, with the
//! ratings as CSV (what `mam-e eval roc` reads) and the result as JSON. A study in progress
//! survives a reload: its state is in `localStorage`, its images in Cache Storage.

use gloo_storage::{LocalStorage, Storage};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::canvas::{blob_url, revoke, scoped_blob_url};
use super::download::{cached, open_cache, store};
use super::gallery::GalleryItem;
use crate::eval::plot::roc_svg;
use crate::eval::reader_study::{SCALE, Study};
use crate::eval::roc::{Rating, analyse, histogram, read_ratings_csv};
use crate::package::ModelKind;

const STATE_KEY: &str = "mam-e-reader-study";
const IMAGE_CACHE: &str = "mam-e-reader-study";

/// The cache key of the study's `k`-th image (a same-origin URL that is never fetched).
fn image_key(k: usize) -> String {
    format!("reader-study/{k}")
}

fn save(study: &Study) {
    let _ = LocalStorage::set(STATE_KEY, study);
}

fn saved() -> Option<Study> {
    LocalStorage::get(STATE_KEY).ok()
}

async fn forget() {
    LocalStorage::delete(STATE_KEY);
    if let Some(caches) = super::scope::caches() {
        let _ = JsFuture::from(caches.delete(IMAGE_CACHE)).await;
    }
}

/// What a file input held: (name, bytes) of each image that decodes as PNG or JPEG, the prompts
/// of a `metadata.jsonl` among them (by file name), and the files skipped with their reasons.
#[derive(Default)]
struct Picked {
    images: Vec<(String, Vec<u8>)>,
    prompts: std::collections::BTreeMap<String, String>,
    skipped: Vec<String>,
}

async fn read_files(input: web_sys::HtmlInputElement) -> Picked {
    let mut picked = Picked::default();
    let Some(files) = input.files() else { return picked };
    for k in 0..files.length() {
        let Some(file) = files.get(k) else { continue };
        let name = file.name();
        let Ok(buffer) = JsFuture::from(file.array_buffer()).await else {
            picked.skipped.push(format!("{name}: could not be read"));
            continue;
        };
        let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
        if name.ends_with(".jsonl") {
            for line in String::from_utf8_lossy(&bytes).lines() {
                let record: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
                if let (Some(file), Some(prompt)) = (record["file_name"].as_str(), record["prompt"].as_str()) {
                    let base = file.rsplit('/').next().unwrap_or(file);
                    picked.prompts.insert(base.to_string(), prompt.to_string());
                }
            }
            continue;
        }
        match image::ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()
            .map_err(|e| e.to_string())
            .and_then(|r| r.into_dimensions().map_err(|e| e.to_string()))
        {
            Ok(_) => picked.images.push((name, bytes)),
            Err(e) => picked.skipped.push(format!("{name}: not a PNG or JPEG image ({e})")),
        }
    }
    picked
}

/// A finished study's (or an imported file's) figures.
#[component]
fn StudyResult(ratings: Vec<Rating>, csv: String, title: String) -> impl IntoView {
    let result = match analyse(&ratings) {
        Ok(result) => result,
        Err(e) => return view! { <p class="error" data-test="study-error">{format!("{title}: {e}")}</p> }.into_any(),
    };
    let counts = histogram(&ratings);
    let mut report = serde_json::to_value(&result).unwrap_or_default();
    report["histogram"] = serde_json::json!({ "real": counts[1], "synthetic": counts[0] });
    report["ci_method"] = "DeLong (normal approximation)".into();
    let json_url = scoped_blob_url(report.to_string().as_bytes(), "application/json");
    let csv_url = scoped_blob_url(csv.as_bytes(), "text/csv");
    let row = |class: &'static str, counts: [usize; 5]| {
        view! { <tr><th>{class}</th>{counts.iter().map(|n| view! { <td>{*n}</td> }).collect_view()}</tr> }
    };
    view! {
        <div class="study-result" data-test="study-result" data-auroc=result.auroc.to_string()
            data-ci-low=result.ci95[0].to_string() data-ci-high=result.ci95[1].to_string()>
            <h3>{title}</h3>
            <div class="row">
                <div inner_html=roc_svg(&result.curve, 280) />
                <div>
                    <p class="auroc">
                        <strong>{format!("AUROC {:.3}", result.auroc)}</strong>
                        {format!(" (95 % CI {:.3}–{:.3}, DeLong) · {} real, {} synthetic", result.ci95[0], result.ci95[1], result.real, result.synthetic)}
                    </p>
                    <p data-test="verdict">{result.verdict.clone()}</p>
                    <table class="histogram">
                        <tr><th>"rating"</th>{(0..5).map(|r| view! { <th title=SCALE[r]>{r}</th> }).collect_view()}</tr>
                        {row("real", counts[1])}
                        {row("synthetic", counts[0])}
                    </table>
                    <div class="row">
                        <a class="button" data-test="study-csv" href=csv_url download="reader-study-ratings.csv">"Ratings (CSV)"</a>
                        <a class="button" href=json_url download="reader-study-result.json">"Result (JSON)"</a>
                    </div>
                </div>
            </div>
        </div>
    }
    .into_any()
}

type Files = RwSignal<Vec<(String, Vec<u8>)>>;
type StudySignal = RwSignal<Option<Study>>;

/// Rates the current image `rating` (0–4) and keeps the study.
fn rate(study: StudySignal, rating: u8) {
    study.update(|s| {
        if let Some(s) = s.as_mut().filter(|s| !s.finished())
            && s.rate(rating).is_ok()
        {
            save(s);
        }
    })
}

/// Back to the previous image (its rating can change).
fn back(study: StudySignal) {
    study.update(|s| {
        if let Some(s) = s.as_mut() {
            s.back();
            save(s);
        }
    })
}

/// Deletes the study (state and images) and returns to the setup.
fn reset(study: StudySignal) {
    spawn_local(async move {
        forget().await;
        study.set(None)
    })
}

/// A file field's handler: the picked images into `target` (and the prompts of a metadata.jsonl
/// picked with them into `prompts`); skipped files named in `message`.
fn on_pick(target: Files, prompts: Option<RwSignal<Vec<String>>>, message: RwSignal<Option<String>>) -> impl Fn(web_sys::Event) {
    move |ev: web_sys::Event| {
        let Some(input) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) else { return };
        spawn_local(async move {
            let picked = read_files(input).await;
            message.set((!picked.skipped.is_empty()).then(|| format!("skipped {}", picked.skipped.join("; "))));
            if let Some(prompts) = prompts {
                prompts.set(picked.images.iter().filter_map(|(name, _)| picked.prompts.get(name).cloned()).collect());
            }
            target.set(picked.images);
        });
    }
}

/// The CSV field's handler: a past study's ratings shown as `imported`, or what is wrong with it.
fn on_import(message: RwSignal<Option<String>>, imported: RwSignal<Option<(Vec<Rating>, String, String)>>) -> impl Fn(web_sys::Event) {
    move |ev: web_sys::Event| {
        let Some(input) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) else { return };
        let Some(file) = input.files().and_then(|f| f.get(0)) else { return };
        spawn_local(async move {
            let name = file.name();
            let text = JsFuture::from(file.text()).await.ok().and_then(|t| t.as_string()).unwrap_or_default();
            match read_ratings_csv(&text) {
                Ok(ratings) => {
                    message.set(None);
                    imported.set(Some((ratings, text, name)));
                }
                Err(e) => message.set(Some(format!("{name}: {e}"))),
            }
        });
    }
}

/// The gallery's generated (not inpainted) images: the synthetic set when no files are picked.
fn generated(gallery: &[GalleryItem]) -> impl Iterator<Item = &GalleryItem> {
    gallery.iter().filter(|i| i.kind == ModelKind::TextToImage && i.before.is_none())
}

/// A new study of `size` images from the real and synthetic sets: its blinded order drawn, its
/// images stored in Cache Storage, its state in localStorage.
fn start_study(study: StudySignal, real: Vec<(String, Vec<u8>)>, synthetic: Vec<(String, Vec<u8>)>, size: usize, message: RwSignal<Option<String>>) {
    let names = |set: &[(String, Vec<u8>)]| set.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let seed = (js_sys::Math::random() * 4_294_967_296.0) as u64;
    let (new_study, order) = match Study::new(&names(&real), &names(&synthetic), size, seed) {
        Ok(s) => s,
        Err(e) => return message.set(Some(e)),
    };
    message.set(None);
    spawn_local(async move {
        forget().await;
        let Some(cache) = open_cache(IMAGE_CACHE).await else {
            return message.set(Some("this browser offers no Cache Storage to keep the study's images: the study cannot run here".into()));
        };
        for (k, &(is_real, i)) in order.iter().enumerate() {
            let bytes = if is_real { &real[i].1 } else { &synthetic[i].1 };
            store(&cache, &image_key(k), bytes).await;
        }
        save(&new_study);
        study.set(Some(new_study));
    });
}

/// What the setup has picked, kept while studies come and go.
#[derive(Clone, Copy)]
struct Picks {
    real: Files,
    synthetic_files: Files,
    /// The prompts of the picked real images, from a metadata.jsonl picked with them.
    real_prompts: RwSignal<Vec<String>>,
    size: RwSignal<usize>,
}

/// Choosing the images and starting; importing a past study's CSV.
#[component]
fn StudySetup(
    study: StudySignal,
    picks: Picks,
    gallery: RwSignal<Vec<GalleryItem>>,
    on_generate: Callback<Vec<String>>,
    message: RwSignal<Option<String>>,
    imported: RwSignal<Option<(Vec<Rating>, String, String)>>,
) -> impl IntoView {
    let Picks { real, synthetic_files, real_prompts, size } = picks;
    let gallery_images = move || gallery.with(|g| generated(g).count());
    let start = move |_| {
        let synthetic = if synthetic_files.with_untracked(Vec::is_empty) {
            gallery.with_untracked(|g| generated(g).filter_map(|i| Some((format!("gallery seed {}", i.params.seed), i.image.to_png(&[]).ok()?))).collect())
        } else {
            synthetic_files.get_untracked()
        };
        start_study(study, real.get_untracked(), synthetic, size.get_untracked(), message);
    };
    view! {
        <p>
            "Pick real mammograms from this computer (PNG or JPEG, with the set's metadata.jsonl to generate synthetic images of the same prompts; "
            "they stay in this tab) and synthetic ones: the gallery's generated images, or files. Each is shown once, full size, without its name, in a random order, "
            "and rated from 0 (definitely synthetic) to 4 (definitely real) — keys 0–4, Backspace to go back."
        </p>
        <div class="row">
            <label>"Real images " <input type="file" name="study-real" multiple accept="image/png,image/jpeg,.jsonl" on:change=on_pick(real, Some(real_prompts), message) /></label>
            <span data-test="study-real-count">{move || format!("{} real", real.with(Vec::len))}</span>
        </div>
        <Show when=move || !real_prompts.with(Vec::is_empty)>
            <div class="row">
                <span>{move || format!("{} of them have prompts (metadata.jsonl): ", real_prompts.with(Vec::len))}</span>
                <button type="button" name="study-generate" on:click=move |_| on_generate.run(real_prompts.get_untracked())>
                    {move || format!("Generate {} synthetic images with the same prompts", real_prompts.with(Vec::len))}
                </button>
            </div>
        </Show>
        <div class="row">
            <label>"Synthetic images " <input type="file" name="study-synthetic" multiple accept="image/png,image/jpeg" on:change=on_pick(synthetic_files, None, message) /></label>
            <span>{move || match synthetic_files.with(Vec::len) {
                0 => format!("none picked: the gallery's {} generated images are used", gallery_images()),
                n => format!("{n} synthetic"),
            }}</span>
        </div>
        <div class="row">
            <label>"Images to rate " <input type="number" name="study-size" min="2" max="1000" prop:value=move || size.get().to_string()
                on:change=move |ev| size.set(event_target_value(&ev).parse().unwrap_or(50)) /></label>
            <button type="button" name="study-start" on:click=start>"Start the study"</button>
            <label>"Show a past study (CSV) " <input type="file" name="study-import" accept=".csv,text/csv" on:change=on_import(message, imported) /></label>
        </div>
    }
}

/// The image being rated (from Cache Storage), the 0–4 buttons, Back and Abandon.
/// The position of the image to rate: none without a study or once it is finished.
fn position_to_rate(study: &Option<Study>) -> Option<usize> {
    study.as_ref().filter(|s| !s.finished()).map(|s| s.position)
}

#[component]
fn StudyRating(study: StudySignal, message: RwSignal<Option<String>>) -> impl IntoView {
    let shown = RwSignal::new(None::<String>);
    on_cleanup(move || shown.try_get_untracked().flatten().iter().for_each(|url| revoke(url)));
    // Shows the current image: its bytes from Cache Storage as a blob URL.
    Effect::new(move |_| {
        let position = study.with(position_to_rate);
        let Some(position) = position else { return };
        spawn_local(async move {
            let cache = open_cache(IMAGE_CACHE).await;
            let bytes = cached(cache.as_ref(), &image_key(position)).await;
            // While the image was read the reader may have rated it (keys are quick) or finished
            // or abandoned the study, which disposes this view: show it only if it is still the
            // one to rate (an older read finishing late must not replace a newer image).
            let current = study.try_with_untracked(position_to_rate).flatten();
            if current != Some(position) {
                return;
            }
            match bytes {
                Some(bytes) => {
                    let Some(old) = shown.try_get_untracked() else { return };
                    if let Some(old) = old {
                        revoke(&old);
                    }
                    shown.set(Some(blob_url(&bytes, "")));
                }
                None => _ = message.try_set(Some("this study's images are no longer stored in the browser: start a new study".into())),
            }
        });
    });
    move || {
        let (position, total, rated) = study.with(|s| s.as_ref().map(|s| (s.position, s.trials.len(), s.rated())).unwrap_or_default());
        view! {
            <p class="study-progress" data-test="study-progress" data-position=position data-rated=rated>
                {format!("Image {} of {total} · {rated} rated", position + 1)}
            </p>
            <div class="study-image">{move || shown.get().map(|url| view! { <img data-test="study-image" src=url alt="the image to rate" /> })}</div>
            <div class="row scale">
                {(0..5u8).map(|r| view! {
                    <button type="button" name=format!("rate-{r}") on:click=move |_| rate(study, r)>{format!("{r} · {}", SCALE[r as usize])}</button>
                }).collect_view()}
            </div>
            <div class="row">
                <button type="button" name="study-back" disabled=position == 0 on:click=move |_| back(study)>"Back"</button>
                <button type="button" name="study-abandon" on:click=move |_| reset(study)>"Abandon the study"</button>
            </div>
        }
    }
}

/// The reader study panel. Synthetic images can come from `gallery` (its text-to-image results);
/// `on_generate` generates one image per prompt into it.
#[component]
pub fn ReaderStudy(gallery: RwSignal<Vec<GalleryItem>>, on_generate: Callback<Vec<String>>) -> impl IntoView {
    let study = RwSignal::new(saved());
    let picks =
        Picks { real: RwSignal::new(Vec::new()), synthetic_files: RwSignal::new(Vec::new()), real_prompts: RwSignal::new(Vec::new()), size: RwSignal::new(50) };
    let message = RwSignal::new(None::<String>);
    let imported = RwSignal::new(None::<(Vec<Rating>, String, String)>);
    // Setup (no study), rating (unfinished) or the result (finished): the view changes with it.
    let phase = Memo::new(move |_| study.with(|s| s.as_ref().map(Study::finished)));
    let rating_now = move || phase.get() == Some(false);
    let _keys = window_event_listener(leptos::ev::keydown, move |ev: web_sys::KeyboardEvent| {
        let typing = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlElement>().ok())
            .is_some_and(|e| matches!(e.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT"));
        if !rating_now() || typing || ev.ctrl_key() || ev.meta_key() || ev.alt_key() {
            return;
        }
        match ev.key().as_str() {
            k @ ("0" | "1" | "2" | "3" | "4") => rate(study, k.parse().unwrap_or_default()),
            "Backspace" | "ArrowLeft" => back(study),
            _ => return,
        }
        ev.prevent_default();
    });

    view! {
        <section class="panel" id="reader-study-panel">
            <h2>"Reader study"</h2>
            {move || match phase.get() {
                None => view! { <StudySetup study picks gallery on_generate message imported /> }.into_any(),
                Some(false) => view! { <StudyRating study message /> }.into_any(),
                Some(true) => {
                    let s = study.get_untracked().expect("a finished study");
                    view! {
                        <StudyResult ratings=s.ratings() csv=s.to_csv() title="This study".to_string() />
                        <button type="button" name="study-new" on:click=move |_| reset(study)>"New study"</button>
                    }.into_any()
                }
            }}
            {move || imported.get().map(|(ratings, csv, name)| view! { <StudyResult ratings csv title=format!("Imported: {name}") /> })}
            {move || message.get().map(|m| view! { <p class="error" role="alert" data-test="study-message">{m}</p> })}
        </section>
    }
}
