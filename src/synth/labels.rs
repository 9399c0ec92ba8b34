//! What each synthetic image shows: its labels drawn from given proportions (`--vendor
//! siemens=0.5,hologic=0.5`, …) or from a prepared set's joint distribution (`--like`), and the
//! size of its lesion box.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::data::Laterality;
use crate::data::training_set::Record;
use crate::prompt::{Area, Density, Vendor, View};
use crate::rng::NoiseRng;

/// How far the proportions may sum away from 1 (they are typed by people: 0.33,0.33,0.34).
const SUM_TOLERANCE: f64 = 1e-6;

/// Shares of the values of one label, e.g. `siemens=0.5,hologic=0.5`.
#[derive(Debug, Clone, PartialEq)]
pub struct Proportions<T> {
    pub shares: Vec<(T, f64)>,
}

/// A label with a fixed set of values, named as on the command line.
pub trait LabelValue: Copy + PartialEq + 'static {
    /// What the label is called in messages (`vendor`, `view`, …).
    const LABEL: &'static str;
    const ALL: &'static [Self];
    /// The value's name on the command line (lowercase).
    fn name(self) -> String;
}

impl LabelValue for Vendor {
    const LABEL: &'static str = "vendor";
    const ALL: &'static [Self] = &Vendor::ALL;
    fn name(self) -> String {
        self.word().into()
    }
}

impl LabelValue for View {
    const LABEL: &'static str = "view";
    const ALL: &'static [Self] = &View::ALL;
    fn name(self) -> String {
        self.word().to_ascii_lowercase()
    }
}

impl LabelValue for Density {
    const LABEL: &'static str = "density";
    const ALL: &'static [Self] = &Density::ALL;
    fn name(self) -> String {
        self.letter().to_ascii_lowercase().to_string()
    }
}

impl LabelValue for Area {
    const LABEL: &'static str = "area";
    const ALL: &'static [Self] = &Area::ALL;
    fn name(self) -> String {
        self.word().into()
    }
}

impl LabelValue for Laterality {
    const LABEL: &'static str = "laterality";
    const ALL: &'static [Self] = &[Laterality::L, Laterality::R];
    fn name(self) -> String {
        self.letter().to_ascii_lowercase()
    }
}

impl<T: LabelValue> Proportions<T> {
    /// Every value with the same share.
    pub fn uniform() -> Self {
        Self::only(T::ALL)
    }

    /// `values` with equal shares.
    pub fn only(values: &[T]) -> Self {
        Proportions { shares: values.iter().map(|&v| (v, 1.0 / values.len() as f64)).collect() }
    }

    /// Parses `name=share,name=share,…` (names case-insensitive); the shares must sum to 1.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let names = || T::ALL.iter().map(|v| v.name()).collect::<Vec<_>>().join(", ");
        let mut shares: Vec<(T, f64)> = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, share) = part.split_once('=').ok_or_else(|| format!("--{} {spec:?}: {part:?} is not NAME=SHARE", T::LABEL))?;
            let name = name.trim().to_ascii_lowercase();
            let value =
                T::ALL.iter().copied().find(|v| v.name() == name).ok_or_else(|| format!("--{}: unknown value {name:?} (known: {})", T::LABEL, names()))?;
            let share: f64 = share.trim().parse().map_err(|_| format!("--{}: share {share:?} of {name} is not a number", T::LABEL))?;
            if !share.is_finite() || share < 0.0 {
                return Err(format!("--{}: share {share} of {name} must be a number ≥ 0", T::LABEL));
            }
            if shares.iter().any(|(v, _)| *v == value) {
                return Err(format!("--{}: {name} is given twice", T::LABEL));
            }
            shares.push((value, share));
        }
        let sum: f64 = shares.iter().map(|(_, s)| s).sum();
        if shares.is_empty() || (sum - 1.0).abs() > SUM_TOLERANCE {
            return Err(format!("--{} {spec:?}: the shares sum to {sum}, not 1", T::LABEL));
        }
        Ok(Proportions { shares })
    }

    /// The value a uniform number `u` in [0, 1) falls on.
    pub fn draw(&self, u: f64) -> T {
        let mut cumulative = 0.0;
        for &(value, share) in &self.shares {
            cumulative += share;
            if u < cumulative {
                return value;
            }
        }
        self.shares.iter().rev().find(|(_, s)| *s > 0.0).unwrap_or(&self.shares[0]).0
    }

    /// `name=share,…`, as parsed.
    pub fn describe(&self) -> String {
        self.shares.iter().map(|(v, s)| format!("{}={s}", v.name())).collect::<Vec<_>>().join(",")
    }
}

/// One synthetic image's labels.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageLabels {
    pub vendor: Vendor,
    pub view: View,
    pub density: Density,
    pub area: Area,
    pub laterality: Laterality,
    pub lesion: bool,
    /// Lesion box width and height in pixels (lesion cases).
    pub box_size: Option<(usize, usize)>,
}

/// Lesion box sides in pixels: each drawn uniformly in `min..=max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxSize {
    pub width: (usize, usize),
    pub height: (usize, usize),
}

impl BoxSize {
    /// `MIN-MAX` (or one number) in pixels, for both sides.
    pub fn parse(spec: &str) -> Result<BoxSize, String> {
        let number = |s: &str| s.trim().parse::<usize>().map_err(|_| format!("--box-size {spec:?}: {s:?} is not a whole number of pixels"));
        let (min, max) = match spec.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(spec)?, number(spec)?),
        };
        if min == 0 || min > max {
            return Err(format!("--box-size {spec:?}: need 0 < MIN ≤ MAX"));
        }
        Ok(BoxSize { width: (min, max), height: (min, max) })
    }

    /// The default for a `size`-pixel image: sides from 10 % to 20 % of it.
    pub fn default_for(size: usize) -> BoxSize {
        let side = ((size / 10).max(2), (size / 5).max(2));
        BoxSize { width: side, height: side }
    }

    /// Checks the box fits in an image of `size` pixels.
    pub fn check(&self, size: usize) -> Result<(), String> {
        if self.width.1 >= size || self.height.1 >= size {
            return Err(format!("lesion boxes up to {}×{} pixels do not fit in {size}×{size} images", self.width.1, self.height.1));
        }
        Ok(())
    }

    fn draw(&self, rng: &mut NoiseRng) -> (usize, usize) {
        let side = |(min, max): (usize, usize), u: f64| (min + (u * (max - min + 1) as f64) as usize).min(max);
        (side(self.width, rng.uniform()), side(self.height, rng.uniform()))
    }
}

/// Where the labels come from.
#[derive(Debug, Clone)]
pub enum LabelSource {
    /// Independent proportions per label, and the share of lesion cases.
    Proportions {
        vendor: Proportions<Vendor>,
        view: Proportions<View>,
        density: Proportions<Density>,
        area: Proportions<Area>,
        laterality: Proportions<Laterality>,
        lesion_fraction: f64,
    },
    /// A prepared set's images: each synthetic image copies the labels of one drawn uniformly,
    /// so the joint distribution is the set's.
    Like {
        images: Vec<ImageLabels>,
        /// SHA-256 of the set's metadata files, so parts made like different sets do not merge.
        sha256: String,
    },
}

impl LabelSource {
    /// Reads `healthy/metadata.jsonl` and `lesions/metadata.jsonl` of a prepared set (either may
    /// be missing, not both). Lesion box sizes come from the set's boxes, scaled to `size`.
    pub fn like(root: &Path, size: usize) -> Result<(LabelSource, Option<BoxSize>), String> {
        let mut images = Vec::new();
        let mut widths = Vec::new();
        let mut heights = Vec::new();
        let mut found = false;
        let mut hasher = Sha256::new();
        for folder in ["healthy", "lesions"] {
            let path = root.join(folder).join("metadata.jsonl");
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            found = true;
            hasher.update(folder.as_bytes());
            hasher.update(text.as_bytes());
            for (line, text) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let at = || format!("{}:{}", path.display(), line + 1);
                let record: Record = serde_json::from_str(text).map_err(|e| format!("{}: {e}", at()))?;
                let labels = labels_of(&record).map_err(|e| format!("{}: {e}", at()))?;
                if record.is_lesion() {
                    let scale = size as f64 / image_side(&root.join(folder).join(&record.file_name)).map_err(|e| format!("{}: {e}", at()))? as f64;
                    for b in &record.boxes {
                        widths.push(((b.x1 - b.x0) as f64 * scale).round().max(1.0) as usize);
                        heights.push(((b.y1 - b.y0) as f64 * scale).round().max(1.0) as usize);
                    }
                }
                images.push(labels);
            }
        }
        if !found {
            return Err(format!(
                "--like {}: no healthy/metadata.jsonl or lesions/metadata.jsonl (a folder made by `mam-e prepare` or `mam-e synth`)",
                root.display()
            ));
        }
        if images.is_empty() {
            return Err(format!("--like {}: its metadata.jsonl files list no images", root.display()));
        }
        let quartiles = |v: &mut Vec<usize>| {
            v.sort_unstable();
            (v[(v.len() - 1) / 4], v[(3 * (v.len() - 1)).div_ceil(4)])
        };
        let boxes = (!widths.is_empty()).then(|| BoxSize { width: quartiles(&mut widths), height: quartiles(&mut heights) });
        let sha256 = crate::package::hex(&hasher.finalize());
        Ok((LabelSource::Like { images, sha256 }, boxes))
    }

    /// Whether any image will be a lesion case.
    pub fn has_lesions(&self) -> bool {
        match self {
            LabelSource::Proportions { lesion_fraction, .. } => *lesion_fraction > 0.0,
            LabelSource::Like { images, .. } => images.iter().any(|i| i.lesion),
        }
    }

    /// The labels of image `index`, a function of `(seed, index)` only.
    pub fn draw(&self, seed: u64, index: u64, boxes: &BoxSize) -> ImageLabels {
        let mut rng = NoiseRng::new(image_key(seed, index));
        let mut labels = match self {
            LabelSource::Proportions { vendor, view, density, area, laterality, lesion_fraction } => ImageLabels {
                lesion: rng.uniform() < *lesion_fraction,
                vendor: vendor.draw(rng.uniform()),
                view: view.draw(rng.uniform()),
                density: density.draw(rng.uniform()),
                area: area.draw(rng.uniform()),
                laterality: laterality.draw(rng.uniform()),
                box_size: None,
            },
            LabelSource::Like { images, .. } => images[((rng.uniform() * images.len() as f64) as usize).min(images.len() - 1)].clone(),
        };
        labels.box_size = labels.lesion.then(|| boxes.draw(&mut rng));
        labels
    }

    /// A one-line account for `synth.json` (parts must agree on it).
    pub fn describe(&self) -> String {
        match self {
            LabelSource::Proportions { vendor, view, density, area, laterality, lesion_fraction } => format!(
                "vendor {}; view {}; density {}; area {}; laterality {}; lesion fraction {lesion_fraction}",
                vendor.describe(),
                view.describe(),
                density.describe(),
                area.describe(),
                laterality.describe()
            ),
            LabelSource::Like { images, sha256 } => {
                let lesions = images.iter().filter(|i| i.lesion).count();
                format!("like a prepared set of {} images ({lesions} with lesions; metadata sha256 {sha256})", images.len())
            }
        }
    }
}

/// The seed of image `index`'s own random stream (labels, box).
pub fn image_key(seed: u64, index: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (index.wrapping_add(1)).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// The value named `name` (case-insensitive).
fn value_named<T: LabelValue>(name: &str) -> Result<T, String> {
    T::ALL.iter().copied().find(|v| v.name().eq_ignore_ascii_case(name)).ok_or_else(|| format!("unknown {} {name:?}", T::LABEL))
}

/// A prepared record's labels; a density-less record (an OMI-H set) counts as density B, since
/// the prompts of such a model do not carry it.
fn labels_of(record: &Record) -> Result<ImageLabels, String> {
    Ok(ImageLabels {
        vendor: value_named(&record.vendor)?,
        view: value_named(&record.view)?,
        density: record.density.as_deref().map_or(Ok(Density::B), value_named)?,
        area: value_named(&record.area)?,
        laterality: value_named(&record.laterality)?,
        lesion: record.is_lesion(),
        box_size: None,
    })
}

/// The width of a PNG, from its header.
fn image_side(path: &Path) -> Result<usize, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(reader.info().width as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportions_parse_and_refuse() {
        let p = Proportions::<Vendor>::parse("Siemens=0.25, hologic=0.75").unwrap();
        assert_eq!(p.shares, vec![(Vendor::Siemens, 0.25), (Vendor::Hologic, 0.75)]);
        assert_eq!(p.draw(0.0), Vendor::Siemens);
        assert_eq!(p.draw(0.2499), Vendor::Siemens);
        assert_eq!(p.draw(0.25), Vendor::Hologic);
        assert_eq!(p.draw(0.9999999), Vendor::Hologic);
        assert!(Proportions::<Vendor>::parse("ge=1").unwrap_err().contains("unknown value \"ge\""));
        assert!(Proportions::<View>::parse("cc=0.5,mlo=0.4").unwrap_err().contains("sum to 0.9"));
        assert!(Proportions::<Density>::parse("a=0.5,a=0.5").unwrap_err().contains("twice"));
        assert!(Proportions::<Area>::parse("small").unwrap_err().contains("NAME=SHARE"));
        assert!(Proportions::<Area>::parse("small=-1,big=2").unwrap_err().contains("≥ 0"));
        assert_eq!(Proportions::<Laterality>::parse("r=1").unwrap().draw(0.3), Laterality::R);
        assert_eq!(Proportions::<Density>::parse("a=0.33,b=0.33,c=0.34").unwrap().describe(), "a=0.33,b=0.33,c=0.34");
    }

    #[test]
    fn box_sizes_parse() {
        assert_eq!(BoxSize::parse("12-20").unwrap(), BoxSize { width: (12, 20), height: (12, 20) });
        assert_eq!(BoxSize::parse("16").unwrap().width, (16, 16));
        assert!(BoxSize::parse("20-12").is_err());
        assert!(BoxSize::parse("0-4").is_err());
        assert!(BoxSize::parse("big").is_err());
        assert!(BoxSize::parse("100-200").unwrap().check(128).is_err());
    }

    /// Over many images each label's share is its proportion (binomial 4.5 σ bounds).
    #[test]
    fn drawn_labels_follow_the_proportions() {
        let source = LabelSource::Proportions {
            vendor: Proportions::parse("siemens=0.2,hologic=0.8").unwrap(),
            view: Proportions::uniform(),
            density: Proportions::parse("a=0.1,b=0.2,c=0.3,d=0.4").unwrap(),
            area: Proportions::only(&[Area::Big]),
            laterality: Proportions::uniform(),
            lesion_fraction: 0.25,
        };
        let n = 20_000;
        let boxes = BoxSize::parse("10-19").unwrap();
        let drawn: Vec<ImageLabels> = (0..n).map(|i| source.draw(7, i, &boxes)).collect();
        let share = |f: &dyn Fn(&ImageLabels) -> bool| drawn.iter().filter(|l| f(l)).count() as f64 / n as f64;
        let close = |got: f64, p: f64| assert!((got - p).abs() < 4.5 * (p * (1.0 - p) / n as f64).sqrt(), "{got} vs {p}");
        close(share(&|l| l.vendor == Vendor::Siemens), 0.2);
        close(share(&|l| l.density == Density::D), 0.4);
        close(share(&|l| l.density == Density::A), 0.1);
        close(share(&|l| l.view == View::Mlo), 0.5);
        close(share(&|l| l.lesion), 0.25);
        assert!(drawn.iter().all(|l| l.area == Area::Big));
        assert!(drawn.iter().all(|l| l.lesion == l.box_size.is_some()));
        assert!(drawn.iter().filter_map(|l| l.box_size).all(|(w, h)| (10..=19).contains(&w) && (10..=19).contains(&h)));
        // Image i's labels depend on (seed, i) alone.
        assert_eq!(source.draw(7, 123, &boxes), drawn[123]);
        assert_ne!((0..50).map(|i| source.draw(8, i, &boxes)).collect::<Vec<_>>(), drawn[..50].to_vec());
    }
}
