//! `mam-e synth`: labelled synthetic datasets in bulk. Healthy mammograms by text-to-image,
//! lesion cases by inpainting a box placed inside the breast of a healthy one, written in the
//! layout `prepare` writes; work split by an index an engine hands out (a Slurm array task, a
//! Kubernetes completion index), parts joined by [`output::merge`].
//!
//! Everything about image *i* is a function of `(seed, i)` and the settings: its labels and box
//! ([`labels::LabelSource::draw`]), its noise (seed `seed + i`, the healthy image and the
//! inpainting each from PyTorch's generator as diffusers would draw it). Batching, sharding and
//! restarts change only which process computes it.

pub mod labels;
pub mod lesion_box;
pub mod output;

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::Laterality;
use crate::data::prepare::PixelBox;
use crate::imaging::RgbImage;
use crate::pipeline::StableDiffusion;
use crate::pipeline::text_to_image::GenerateParams;
use crate::prompt::{Template, caption};
use crate::rng::NoiseRng;
use labels::{BoxSize, ImageLabels, LabelSource};
use lesion_box::{box_mask, breast_region, place_box};

/// A disjoint part of the work: images `i` with `i % count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// `K/N` with `0 ≤ K < N`.
    pub fn parse(spec: &str) -> Result<Shard, String> {
        let (k, n) = spec.split_once('/').ok_or_else(|| format!("--shard {spec:?}: expected K/N, e.g. 0/8"))?;
        let number = |s: &str| s.trim().parse::<usize>().map_err(|_| format!("--shard {spec:?}: {s:?} is not a whole number"));
        Shard::new(number(k)?, number(n)?).map_err(|e| format!("--shard {spec:?}: {e}"))
    }

    pub fn new(index: usize, count: usize) -> Result<Shard, String> {
        if count == 0 || index >= count {
            return Err(format!("shard {index} of {count}: need 0 ≤ K < N"));
        }
        Ok(Shard { index, count })
    }

    /// The shard an engine hands this process through its environment: Slurm's array task
    /// (`SLURM_ARRAY_TASK_ID` of `SLURM_ARRAY_TASK_COUNT`, or of MIN..=MAX), or Kubernetes'
    /// Indexed Job (`JOB_COMPLETION_INDEX` of `shards`). `None` when neither is set.
    pub fn from_env(var: impl Fn(&str) -> Option<String>, shards: Option<usize>) -> Result<Option<Shard>, String> {
        let number = |name: &str| -> Result<Option<usize>, String> {
            var(name).map(|v| v.trim().parse::<usize>().map_err(|_| format!("{name}={v:?} is not a whole number"))).transpose()
        };
        if let Some(task) = number("SLURM_ARRAY_TASK_ID")? {
            let (min, max) = (number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0), number("SLURM_ARRAY_TASK_MAX")?);
            let count = match (number("SLURM_ARRAY_TASK_COUNT")?, max) {
                (Some(count), _) => count,
                (None, Some(max)) if max >= min => max - min + 1,
                _ => return Err("SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX".into()),
            };
            let index = task.checked_sub(min).ok_or_else(|| format!("SLURM_ARRAY_TASK_ID {task} is below SLURM_ARRAY_TASK_MIN {min}"))?;
            if let Some(shards) = shards.filter(|&s| s != count) {
                return Err(format!("--shards {shards} but the Slurm array has {count} tasks"));
            }
            return Shard::new(index, count).map(Some).map_err(|e| format!("from Slurm's environment: {e} (use --array=0-{})", count.saturating_sub(1)));
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = shards.ok_or("JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job): give --shards N, the Job's completions")?;
            return Shard::new(index, count).map(Some).map_err(|e| format!("from JOB_COMPLETION_INDEX: {e}"));
        }
        Ok(shards
            .map(|_| Err("--shards needs JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID in the environment; or give --shard K/N".to_string()))
            .transpose()?
            .flatten())
    }

    /// This shard's image indices among `count`.
    pub fn indices(self, count: usize) -> impl Iterator<Item = usize> {
        (self.index..count).step_by(self.count)
    }

    /// The folder name of this shard's part: `part-0003-of-0010`.
    pub fn folder(self) -> String {
        format!("part-{:04}-of-{:04}", self.index, self.count)
    }
}

/// A model as the dataset records it: its folder name and a SHA-256 that pins its weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    pub name: String,
    pub sha256: String,
}

impl ModelRef {
    /// A package's manifest (which lists every shard's SHA-256) or, for a diffusers folder,
    /// every file's path and bytes, in path order.
    pub fn of(dir: &Path) -> std::io::Result<ModelRef> {
        let name = std::fs::canonicalize(dir)?.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let manifest = dir.join(crate::package::MANIFEST);
        let sha256 = if manifest.is_file() {
            crate::package::sha256_hex(&std::fs::read(manifest)?)
        } else {
            let mut files = Vec::new();
            list_files(dir, dir, &mut files)?;
            files.sort();
            let mut hasher = Sha256::new();
            for rel in files {
                hasher.update(rel.as_bytes());
                hasher.update([0]);
                let mut file = std::fs::File::open(dir.join(&rel))?;
                std::io::copy(&mut file, &mut hasher)?;
            }
            crate::package::hex(&hasher.finalize())
        };
        Ok(ModelRef { name, sha256 })
    }
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            list_files(root, &path, out)?;
        } else if path.is_file() {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// The sampling settings of one model's images (all but prompt and seed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub model: ModelRef,
    pub prompt: Option<String>,
    pub negative_prompt: String,
    pub steps: usize,
    pub guidance: f64,
    pub scheduler: String,
    pub noise: String,
    pub height: usize,
    pub width: usize,
}

/// Image file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Png,
    Dicom,
}

/// Everything that decides the dataset's bytes (`synth.json`): every part of one dataset must
/// have the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub count: usize,
    pub seed: u64,
    pub template: Template,
    pub labels: String,
    pub box_size: String,
    pub format: Format,
    /// Backend and precision (`cpu f32`, `wgpu f16`, …): images from another differ in their
    /// last bits, so parts made on different ones are not one dataset.
    pub compute: String,
    pub healthy: Sampling,
    pub lesion: Option<Sampling>,
    pub software: String,
}

/// One image's plan: what `(seed, index)` decides before any model runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePlan {
    pub index: usize,
    /// `synth-000042`.
    pub id: String,
    pub labels: ImageLabels,
    pub prompt: String,
    /// The noise seed of both its healthy image and its inpainting.
    pub seed: u64,
}

/// A finished image, before it is written: in stored orientation (right breasts facing right).
pub struct Synthesized {
    pub plan: ImagePlan,
    pub image: RgbImage,
    /// Lesion cases: the healthy original, the mask and the box.
    pub lesion: Option<(RgbImage, Vec<u8>, PixelBox)>,
    /// Whether the lesion box lies wholly inside the breast.
    pub box_inside: bool,
}

/// The models and settings of a run.
pub struct Synthesizer<'a> {
    pub settings: Settings,
    pub labels: LabelSource,
    pub boxes: BoxSize,
    pub healthy: &'a StableDiffusion,
    pub healthy_params: GenerateParams,
    /// The inpainting model and its parameters (all but seed), when there are lesion cases.
    pub lesion: Option<(&'a StableDiffusion, GenerateParams)>,
}

/// The id of image `index`.
pub fn image_id(index: usize) -> String {
    format!("synth-{index:06}")
}

impl Synthesizer<'_> {
    /// Image `index`'s labels, prompt and seed.
    pub fn plan(&self, index: usize) -> ImagePlan {
        let labels = self.labels.draw(self.settings.seed, index as u64, &self.boxes);
        let prompt = caption(self.settings.template, labels.vendor.word(), labels.view, Some(labels.density), labels.area);
        ImagePlan { index, id: image_id(index), labels, prompt, seed: GenerateParams::batch_seed(self.settings.seed, index as u64) }
    }

    /// Makes the images of `plans` (at most a batch: one UNet batch per model).
    pub fn run_batch(&self, plans: &[ImagePlan]) -> crate::Result<Vec<Synthesized>> {
        let params: Vec<GenerateParams> =
            plans.iter().map(|p| GenerateParams { prompt: p.prompt.clone(), seed: p.seed, ..self.healthy_params.clone() }).collect();
        let healthy = self.healthy.start_batch(&params, None)?.finish_images()?;
        let (width, height) = (self.healthy_params.width, self.healthy_params.height);
        let mut lesions: Vec<Option<(Vec<u8>, PixelBox, bool)>> = Vec::new();
        for (plan, image) in plans.iter().zip(&healthy) {
            lesions.push(plan.labels.box_size.map(|size| {
                let region = breast_region(&image.to_gray(), width, height);
                let mut rng = NoiseRng::new(labels::image_key(self.settings.seed, plan.index as u64) ^ BOX_STREAM);
                let (b, inside) = place_box(&region, width, height, size, &mut rng);
                (box_mask(&b, width, height), b, inside)
            }));
        }
        let painted = self.inpaint_lesions(plans, &healthy, &lesions)?;
        let mut out = Vec::new();
        let mut painted = painted.into_iter();
        for ((plan, image), lesion) in plans.iter().zip(healthy).zip(lesions) {
            let right = plan.labels.laterality == Laterality::R;
            let orient = |image: RgbImage| if right { image.mirrored() } else { image };
            let Some((mask, b, inside)) = lesion else {
                out.push(Synthesized { plan: plan.clone(), image: orient(image), lesion: None, box_inside: false });
                continue;
            };
            let result = painted.next().expect("one inpainting per lesion case").keep_outside(&image, &mask);
            // The same mirror takes the result and its mask to the stored orientation.
            let (result, mask) = result.to_model_orientation(&mask, right);
            let b = if right { mirror_box(&b, width) } else { b };
            out.push(Synthesized { plan: plan.clone(), image: result, lesion: Some((orient(image), mask, b)), box_inside: inside });
        }
        Ok(out)
    }

    /// Inpaints the lesion cases of a batch in one UNet batch (model orientation).
    fn inpaint_lesions(&self, plans: &[ImagePlan], healthy: &[RgbImage], lesions: &[Option<(Vec<u8>, PixelBox, bool)>]) -> crate::Result<Vec<RgbImage>> {
        if lesions.iter().all(Option::is_none) {
            return Ok(Vec::new());
        }
        let (inpaint, base) = self.lesion.as_ref().expect("lesion cases need an inpainting model");
        let mut params = Vec::new();
        let mut items: Vec<(&RgbImage, &[u8])> = Vec::new();
        for ((plan, image), lesion) in plans.iter().zip(healthy).zip(lesions) {
            if let Some((mask, _, _)) = lesion {
                params.push(GenerateParams { seed: plan.seed, ..base.clone() });
                items.push((image, mask));
            }
        }
        inpaint.start_inpaint_batch(&params, &items, None)?.finish_images()
    }
}

/// Separates the box placement's random stream from the labels'.
const BOX_STREAM: u64 = 0xB0C5_1E51_0E5A_11CE;

fn mirror_box(b: &PixelBox, width: usize) -> PixelBox {
    PixelBox { x0: width - b.x1, x1: width - b.x0, ..*b }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn shards_from_flags_and_engines() {
        assert_eq!(Shard::parse("2/5"), Ok(Shard { index: 2, count: 5 }));
        assert!(Shard::parse("5/5").is_err() && Shard::parse("1/0").is_err() && Shard::parse("1-5").is_err());
        assert_eq!(Shard::from_env(env(&[]), None), Ok(None));
        let slurm = [("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_COUNT", "4")];
        assert_eq!(Shard::from_env(env(&slurm), None), Ok(Some(Shard { index: 3, count: 4 })));
        // --array=1-4 without a count: MIN and MAX.
        let slurm = [("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_MAX", "4")];
        assert_eq!(Shard::from_env(env(&slurm), None), Ok(Some(Shard { index: 0, count: 4 })));
        // --array=0-10:5 (tasks 0, 5, 10): the ids are not 0..N-1.
        let stepped = [("SLURM_ARRAY_TASK_ID", "5"), ("SLURM_ARRAY_TASK_COUNT", "3"), ("SLURM_ARRAY_TASK_MIN", "0")];
        assert!(Shard::from_env(env(&stepped), None).unwrap_err().contains("--array=0-2"));
        assert!(Shard::from_env(env(&[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_COUNT", "4")]), Some(3)).unwrap_err().contains("4 tasks"));
        assert_eq!(Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "2")]), Some(3)), Ok(Some(Shard { index: 2, count: 3 })));
        assert!(Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "2")]), None).unwrap_err().contains("--shards"));
        assert!(Shard::from_env(env(&[]), Some(3)).unwrap_err().contains("JOB_COMPLETION_INDEX"));
        assert!(Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "x")]), Some(3)).unwrap_err().contains("not a whole number"));
    }

    #[test]
    fn shards_cover_every_index_once() {
        let count = 103;
        let mut seen = vec![0; count];
        for k in 0..7 {
            Shard::new(k, 7).unwrap().indices(count).for_each(|i| seen[i] += 1);
        }
        assert!(seen.iter().all(|&n| n == 1));
        assert_eq!(Shard::new(3, 4).unwrap().folder(), "part-0003-of-0004");
    }
}
