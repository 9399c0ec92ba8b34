//! The page's two model slots (text-to-image and inpainting): what each shows (empty, loading
//! with progress, ready, failed), its package URL, and loading a package into the slot of its
//! kind through the pipeline worker.

use std::cell::Cell;
use std::rc::Rc;

use leptos::prelude::*;

use super::engine;
use super::models::{DEFAULT_INPAINTING, DEFAULT_TEXT_TO_IMAGE, SlotStatus};
use super::protocol::Reply;
use super::scope::now_ms;
use crate::device::ComputePreference;
use crate::package::{Defaults, ModelKind};

/// The slots, their URLs and the compute backend they load on (signals: `Copy`).
#[derive(Clone, Copy)]
pub struct Slots {
    pub text_to_image: RwSignal<SlotStatus>,
    pub inpainting: RwSignal<SlotStatus>,
    pub text_to_image_url: RwSignal<String>,
    pub inpainting_url: RwSignal<String>,
    pub compute: RwSignal<ComputePreference>,
}

impl Slots {
    /// Empty slots with the embedded packages' URLs.
    pub fn new(compute: ComputePreference) -> Self {
        Slots {
            text_to_image: RwSignal::new(SlotStatus::Empty),
            inpainting: RwSignal::new(SlotStatus::Empty),
            text_to_image_url: RwSignal::new(DEFAULT_TEXT_TO_IMAGE.to_string()),
            inpainting_url: RwSignal::new(DEFAULT_INPAINTING.to_string()),
            compute: RwSignal::new(compute),
        }
    }

    pub fn slot(self, kind: ModelKind) -> RwSignal<SlotStatus> {
        match kind {
            ModelKind::TextToImage => self.text_to_image,
            ModelKind::Inpainting => self.inpainting,
        }
    }

    fn url(self, kind: ModelKind) -> RwSignal<String> {
        match kind {
            ModelKind::TextToImage => self.text_to_image_url,
            ModelKind::Inpainting => self.inpainting_url,
        }
    }

    /// The loaded package's defaults in the slot of `kind`, once ready.
    pub fn defaults(self, kind: ModelKind) -> Signal<Option<Defaults>> {
        let slot = self.slot(kind);
        Signal::derive(move || match slot.get() {
            SlotStatus::Ready(info) => Some(info.defaults),
            _ => None,
        })
    }

    /// Loads a package, in the pipeline worker, into the slot of its kind. The kind is known once
    /// the worker has read the manifest; until then the slot whose URL it is shows the progress
    /// (the inpainting slot's, else the text-to-image slot), and gets back what it showed if the
    /// package turns out to be of the other kind.
    pub fn load(self, url: String) {
        let guess = if url == self.inpainting_url.get_untracked() { ModelKind::Inpainting } else { ModelKind::TextToImage };
        let kind = Rc::new(Cell::new(guess));
        let previous = self.slot(guess).get_untracked();
        let now = now_ms();
        self.slot(guess).set(SlotStatus::Loading { url: url.clone(), done: 0, total: 0, started_ms: now, now_ms: now });
        let loading = url.clone();
        let target = {
            let kind = kind.clone();
            move || self.slot(kind.get())
        };
        engine::load(&url, self.compute.get_untracked(), move |reply| match reply {
            Reply::Opened { info } => {
                if info.kind != guess {
                    self.slot(guess).set(previous.clone());
                    kind.set(info.kind);
                }
                self.url(info.kind).set(info.url.clone());
            }
            Reply::Loading { done, total, started_ms, now_ms } => target().set(SlotStatus::Loading { url: loading.clone(), done, total, started_ms, now_ms }),
            Reply::Loaded { info } => target().set(SlotStatus::Ready(info)),
            Reply::Failed { reason } => target().set(SlotStatus::Failed(reason)),
            _ => {}
        });
    }

    /// Loads again what was loaded or loading (a new worker after the last one died, or a new
    /// backend): from Cache Storage, so without downloading.
    pub fn reload(self) {
        for kind in [ModelKind::TextToImage, ModelKind::Inpainting] {
            if matches!(self.slot(kind).get_untracked(), SlotStatus::Ready(_) | SlotStatus::Loading { .. }) {
                self.load(self.url(kind).get_untracked());
            }
        }
    }
}
