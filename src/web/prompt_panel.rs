//! The prompt panel: MAM-E's structured prompt controls (model template, vendor, view, density, area, priority),
//! the composed prompt as editable text, and the sampling settings with the original GUI's defaults.

use leptos::prelude::*;

use crate::package::Defaults;
use crate::pipeline::text_to_image::GenerateParams;
use crate::prompt::{Area, Density, Priority, PromptSpec, Template, Vendor, View};
use crate::rng::NoiseSource;
use crate::schedulers::SchedulerKind;

/// Sampling settings, with MAM-E's defaults for the fusion model.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingSettings {
    pub negative_prompt: String,
    /// 10–50, default 24.
    pub steps: u32,
    /// 0–20, default 6.
    pub guidance: f32,
    /// DPM-Solver++ by default, as MAM-E.
    pub scheduler: SchedulerKind,
    /// Default 1338, as the original GUI.
    pub seed: u64,
    /// The generator that turns the seed into noise: PyTorch's by default (diffusers' seeds).
    pub noise: NoiseSource,
    /// Draw a fresh seed for every image instead of `seed`.
    pub random_seed: bool,
    /// Mirror the result to show a right breast (training images all face left).
    pub right_breast: bool,
}

impl Default for SamplingSettings {
    fn default() -> Self {
        Self {
            negative_prompt: String::new(),
            steps: 24,
            guidance: 6.0,
            scheduler: SchedulerKind::Dpm,
            seed: 1338,
            noise: NoiseSource::Torch,
            random_seed: false,
            right_breast: false,
        }
    }
}

/// Runs `apply` with a loaded package's `defaults` whenever they become other defaults than the
/// last ones applied (a worker restart reloads the same package: the user's settings stay).
pub(super) fn on_new_defaults(defaults: Signal<Option<Defaults>>, apply: impl Fn(&Defaults) + 'static) {
    let applied = StoredValue::new(None::<Defaults>);
    Effect::new(move |_| {
        let Some(d) = defaults.get() else { return };
        if applied.get_value().as_ref() != Some(&d) {
            apply(&d);
            applied.set_value(Some(d));
        }
    });
}

/// A labelled `<select>` over `options` showing `selected`; reports the picked index. `disabled`:
/// the choice says nothing in the current prompt template.
#[component]
fn Choice(
    label: &'static str,
    name: &'static str,
    options: Vec<&'static str>,
    #[prop(into)] selected: Signal<usize>,
    #[prop(into, default = Signal::stored(false))] disabled: Signal<bool>,
    on_pick: Callback<usize>,
) -> impl IntoView {
    view! {
        <label class="field">
            <span>{label}</span>
            <select
                name=name
                prop:disabled=move || disabled.get()
                on:change=move |ev| {
                    if let Ok(i) = event_target_value(&ev).parse::<usize>() {
                        on_pick.run(i);
                    }
                }
            >
                {options
                    .into_iter()
                    .enumerate()
                    .map(|(i, text)| view! { <option value=i.to_string() prop:selected=move || i == selected.get()>{text}</option> })
                    .collect_view()}
            </select>
        </label>
    }
}

/// What the Generate button asks for: the prompt text and the settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    pub prompt: String,
    pub settings: SamplingSettings,
    /// How many images, one after another (seeds `seed`, `seed + 1`, … unless random).
    pub count: u32,
}

impl GenerateRequest {
    /// The `k`-th image's parameters at the model's size (`defaults`): seed `seed + k`, or
    /// `random_seed()` when asked.
    pub fn params(&self, k: u64, defaults: &Defaults, random_seed: fn() -> u64) -> GenerateParams {
        let s = &self.settings;
        GenerateParams {
            prompt: self.prompt.clone(),
            negative_prompt: s.negative_prompt.clone(),
            steps: s.steps as usize,
            guidance: s.guidance as f64,
            scheduler: s.scheduler,
            height: defaults.height,
            width: defaults.width,
            seed: if s.random_seed { random_seed() } else { GenerateParams::batch_seed(s.seed, k) },
            noise: s.noise,
        }
    }
}

/// The prompt's parts (MAM-E's template, vendor, view, density, area; laterality) and its
/// priority: a change rewrites the prompt text at once; hand edits of the text stay until then.
#[component]
fn PromptControls(spec: RwSignal<PromptSpec>, prompt: RwSignal<String>, settings: RwSignal<SamplingSettings>) -> impl IntoView {
    let edit = move |change: fn(&mut PromptSpec, usize)| {
        Callback::new(move |i: usize| {
            spec.update(|s| change(s, i));
            prompt.set(spec.get_untracked().to_string());
        })
    };
    let initial = spec.get_untracked();
    let index_of = |all: &[&str], word: &str| all.iter().position(|w| *w == word).unwrap_or(0);
    let vendors: Vec<&str> = Vendor::ALL.iter().map(|v| v.word()).collect();
    let views: Vec<&str> = View::ALL.iter().map(|v| v.word()).collect();
    let densities: Vec<&str> = Density::ALL.iter().map(|d| d.word()).collect();
    let areas: Vec<&str> = Area::ALL.iter().map(|a| a.word()).collect();
    let template = move || spec.get().template;

    view! {
            <div class="controls">
                <Choice label="Model" name="template"
                    selected=Signal::derive(move || Template::ALL.iter().position(|t| *t == template()).unwrap_or(0))
                    options=Template::ALL.iter().map(|t| t.label()).collect()
                    on_pick=edit(|s, i| s.template = Template::ALL[i]) />
                <Choice label="Vendor" name="vendor" selected=index_of(&vendors, initial.vendor.word()) options=vendors
                    disabled=Signal::derive(move || template() != Template::Fusion)
                    on_pick=edit(|s, i| s.vendor = Vendor::ALL[i]) />
                <Choice label="View" name="view" selected=index_of(&views, initial.view.word()) options=views
                    on_pick=edit(|s, i| s.view = View::ALL[i]) />
                <Choice label="Density" name="density" selected=index_of(&densities, initial.density.word()) options=densities
                    disabled=Signal::derive(move || template() == Template::OmiH)
                    on_pick=edit(|s, i| s.density = Density::ALL[i]) />
                <Choice label="Area" name="area" selected=index_of(&areas, initial.area.word()) options=areas
                    disabled=Signal::derive(move || template() == Template::Vindr)
                    on_pick=edit(|s, i| s.area = Area::ALL[i]) />
                <Choice label="Laterality" name="laterality" selected=0 options=vec!["L", "R (mirrored)"]
                    on_pick=Callback::new(move |i: usize| settings.update(|s| s.right_breast = i == 1)) />
            </div>
            <div class="segmented" role="group" aria-label="Prompt priority">
                {Priority::ALL
                    .into_iter()
                    .map(|p| {
                        view! {
                            <button
                                type="button"
                                data-priority=p.label()
                                class:active=move || spec.get().priority == p
                                prop:disabled=move || template() != Template::Fusion
                                on:click=move |_| {
                                    spec.update(|s| s.priority = p);
                                    prompt.set(spec.get_untracked().to_string());
                                }
                            >
                                {p.label()}
                            </button>
                        }
                    })
                    .collect_view()}
            </div>
    }
}

/// Negative prompt, steps, guidance, scheduler, seed and noise source.
#[component]
fn SamplingControls(settings: RwSignal<SamplingSettings>) -> impl IntoView {
    view! {
            <label class="field wide">
                <span>"Negative prompt"</span>
                <textarea name="negative-prompt" rows="1" prop:value=move || settings.get().negative_prompt
                    on:input=move |ev| settings.update(|s| s.negative_prompt = event_target_value(&ev)) />
            </label>
            <div class="controls">
                <label class="field">
                    <span>"Steps " {move || settings.get().steps}</span>
                    <input type="range" name="steps" min="10" max="50" prop:value=move || settings.get().steps
                        on:input=move |ev| {
                            if let Ok(v) = event_target_value(&ev).parse() { settings.update(|s| s.steps = v) }
                        } />
                </label>
                <label class="field">
                    <span>"Guidance " {move || settings.get().guidance}</span>
                    <input type="range" name="guidance" min="0" max="20" step="0.5" prop:value=move || settings.get().guidance
                        on:input=move |ev| {
                            if let Ok(v) = event_target_value(&ev).parse() { settings.update(|s| s.guidance = v) }
                        } />
                </label>
                <Choice label="Scheduler" name="scheduler"
                    selected=Signal::derive(move || SchedulerKind::ALL.iter().position(|k| *k == settings.get().scheduler).unwrap_or(0))
                    options=SchedulerKind::ALL.iter().map(|k| k.label()).collect()
                    on_pick=Callback::new(move |i: usize| settings.update(|s| s.scheduler = SchedulerKind::ALL[i])) />
                <label class="field">
                    <span>"Seed"</span>
                    <input type="number" name="seed" min="0" prop:value=move || settings.get().seed
                        prop:disabled=move || settings.get().random_seed
                        on:input=move |ev| {
                            if let Ok(v) = event_target_value(&ev).parse() { settings.update(|s| s.seed = v) }
                        } />
                </label>
                <Choice label="Noise" name="noise"
                    selected=Signal::derive(move || NoiseSource::ALL.iter().position(|k| *k == settings.get().noise).unwrap_or(0))
                    options=NoiseSource::ALL.iter().map(|k| k.label()).collect()
                    on_pick=Callback::new(move |i: usize| settings.update(|s| s.noise = NoiseSource::ALL[i])) />
                <label class="field check">
                    <input type="checkbox" name="random-seed" prop:checked=move || settings.get().random_seed
                        on:change=move |ev| settings.update(|s| s.random_seed = event_target_checked(&ev)) />
                    <span>"random seed"</span>
                </label>
            </div>
    }
}

/// Prompt controls and sampling settings. Generate is enabled when `ready` (a model is loaded)
/// and not `busy`.
#[component]
pub fn PromptPanel(
    #[prop(into, default = Signal::stored(false))] ready: Signal<bool>,
    #[prop(into, default = Signal::stored(false))] busy: Signal<bool>,
    /// The loaded package's settings: applied when a package with other defaults loads.
    #[prop(into, optional)]
    defaults: Option<Signal<Option<Defaults>>>,
    #[prop(optional)] on_generate: Option<Callback<GenerateRequest>>,
    #[prop(optional)] children: Option<Children>,
) -> impl IntoView {
    let count = RwSignal::new(1u32);
    let spec = RwSignal::new(PromptSpec::default());
    let prompt = RwSignal::new(spec.get_untracked().to_string());
    let settings = RwSignal::new(SamplingSettings::default());
    if let Some(defaults) = defaults {
        on_new_defaults(defaults, move |d| {
            if let Some(template) = d.template {
                spec.update(|s| s.template = template);
                prompt.set(spec.get_untracked().to_string());
            }
            if !d.prompt.is_empty() {
                prompt.set(d.prompt.clone());
            }
            settings.update(|s| {
                s.negative_prompt = d.negative_prompt.clone();
                s.steps = d.steps as u32;
                s.guidance = d.guidance as f32;
                s.scheduler = d.scheduler.parse().unwrap_or_default();
                s.seed = d.seed;
            });
        });
    }
    view! {
        <section class="panel" id="prompt-panel">
            <h2>"Prompt"</h2>
            <PromptControls spec prompt settings />
            <label class="field wide">
                <span>"Prompt (edit freely)"</span>
                <textarea name="prompt" rows="2" prop:value=move || prompt.get()
                    on:input=move |ev| prompt.set(event_target_value(&ev)) />
            </label>
            <SamplingControls settings />
            <div class="actions">
                <label class="field">
                    <span>"Images"</span>
                    <input type="number" name="count" min="1" max="16" prop:value=move || count.get()
                        on:input=move |ev| {
                            if let Ok(v) = event_target_value(&ev).parse::<u32>() { count.set(v.clamp(1, 16)) }
                        } />
                </label>
                <button type="button" class="primary" name="generate"
                    prop:disabled=move || !ready.get() || busy.get()
                    title=move || if ready.get() { "Generate on this device's GPU" } else { "Needs a loaded text-to-image package" }
                    on:click=move |_| {
                        if let Some(on_generate) = on_generate {
                            on_generate.run(GenerateRequest { prompt: prompt.get_untracked(), settings: settings.get_untracked(), count: count.get_untracked() });
                        }
                    }>
                    "Generate"
                </button>
            </div>
            {children.map(|c| c())}
        </section>
    }
}
