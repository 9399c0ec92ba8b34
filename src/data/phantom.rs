//! Procedural 2-D mammograms ("phantoms") with exact labels, for tests, teaching and the embedded
//! demo model. Deterministic in their seed.
//!
//! The model, in the order it is rendered (left-facing: chest wall at x = 0, nipple to the right;
//! a right breast is the finished image mirrored, as a detector shows it):
//! - **Outline** of a compressed breast: the contour depth at row y is
//!   `a · (1 − |t|^q)^(1/p)`, `t = (y − y_nipple) / h`, with different `h` above and below the
//!   nipple. CC is nearly symmetric about the nipple; MLO runs off the top of the image (axilla)
//!   and has the **pectoral muscle** as a bright, slightly curved triangle in the upper corner. The
//!   size is solved (bisection) so the breast/image ratio of the prepared 512 image lands inside
//!   the requested area class; the label is then *measured* on that image, with MAM-E's thresholds.
//! - **Thickness fall-off** near the skin (a quarter circle over the outer 12 % of the depth),
//!   partly undone by the vendor's peripheral equalization; a bright **skin line**; a **nipple**.
//! - **Fibroglandular tissue**: a power-law Gaussian field (β = 3, the exponent measured on real
//!   mammograms) plus a smooth prior centred behind the nipple, soft-thresholded at the quantile
//!   that makes the dense fraction of the breast equal to a target drawn from the BI-RADS class
//!   (A 3–15 %, B 31–43 %, C 57–68 %, D 82–92 %: the BI-RADS quartiles with margins, so a
//!   measurement's noise does not cross a class border), with a second β = 3 field as parenchymal texture.
//! - **Cooper's ligaments** (thin curved bright lines running to the skin, visible in fat) and
//!   **vessels** (tapering random walks from the chest wall towards the nipple).
//! - **Lesions**: masses (round, oval, irregular, spiculated; 8–25 mm) denser than glandular
//!   tissue with a soft 0.6 mm edge, and clusters of 6–20 calcifications (0.2–0.7 mm) in a 3–7 mm
//!   radius. Each lesion's pixel mask is where its own contrast is at least half its peak; its box
//!   is that mask's bounding box. Lesions are placed inside the rows the prepared image keeps.
//! - **Detector noise** (Gaussian), then the vendor's **tone curve** into 12-bit stored values,
//!   background exactly 0.
//!
//! The pectoral muscle is drawn brighter than any fibroglandular tissue (0.93–0.95 against
//! at most ≈ 0.8), so a measurement can find it by brightness from the corner.
//!
//! Vendor styles imitate processed ("for presentation") images. Hologic: darker fat and a steeper
//! tone curve (γ 1.15) — high contrast — with moderate peripheral equalization, values up to 4095.
//! Siemens: brighter, flatter fat, strong peripheral equalization (the periphery is nearly as
//! bright as the centre), a softer curve (γ 0.85), slightly more noise and values up to 3400 —
//! which is why MAM-E divided Siemens images by 3500 and Hologic ones by 4095.

use std::f64::consts::PI;

use crate::data::dicom::{MammogramHeader, Voi, uid, write_mammogram};
use crate::data::prepare::SourcePixels;
use crate::data::texture::power_law_noise;
use crate::data::{BoundingBox, Finding, Laterality, hex_id, prepare};
use crate::prompt::{Area, Density, Vendor, View};
use crate::rng::NoiseRng;

/// Physical height of the phantom's detector in millimetres (a 24 × 30 cm detector, portrait).
pub const FIELD_HEIGHT_MM: f64 = 240.0;
pub use crate::data::dicom::BITS_STORED;

/// What one phantom shows; everything else follows from `seed`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhantomSpec {
    pub seed: u64,
    pub view: View,
    pub laterality: Laterality,
    pub density: Density,
    pub vendor: Vendor,
    /// The area class the outline is sized for (the label is measured; see the module doc).
    pub target_area: Area,
    /// Number of lesions to place (0 for a healthy image).
    pub lesions: usize,
}

/// The kind of a phantom lesion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LesionKind {
    RoundMass,
    OvalMass,
    IrregularMass,
    SpiculatedMass,
    Calcifications,
}

impl LesionKind {
    /// VinDr-Mammo's finding category.
    pub fn category(self) -> &'static str {
        match self {
            LesionKind::Calcifications => "Suspicious Calcification",
            _ => "Mass",
        }
    }
    /// The BI-RADS assessment such a finding usually gets.
    pub fn birads(self) -> u8 {
        match self {
            LesionKind::RoundMass | LesionKind::OvalMass => 3,
            LesionKind::IrregularMass | LesionKind::Calcifications => 4,
            LesionKind::SpiculatedMass => 5,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            LesionKind::RoundMass => "round mass",
            LesionKind::OvalMass => "oval mass",
            LesionKind::IrregularMass => "irregular mass",
            LesionKind::SpiculatedMass => "spiculated mass",
            LesionKind::Calcifications => "calcification cluster",
        }
    }
}

/// A rendered lesion: its kind, its size in millimetres (mass diameter or cluster diameter) and
/// its finding (category, BI-RADS, box in the stored image's pixels).
#[derive(Debug, Clone, PartialEq)]
pub struct Lesion {
    pub kind: LesionKind,
    pub size_mm: f64,
    pub finding: Finding,
}

/// A rendered phantom, oriented as a detector stores it (right breasts facing right).
#[derive(Debug, Clone)]
pub struct Phantom {
    pub spec: PhantomSpec,
    pub rows: usize,
    pub cols: usize,
    pub pixel_spacing_mm: f64,
    /// Stored values (`BITS_STORED` bits), row-major; 0 outside the breast.
    pub pixels: Vec<u16>,
    /// The VOI window (centre, width) for the DICOM header.
    pub window: (f64, f64),
    pub lesions: Vec<Lesion>,
    /// 255 where a lesion is, 0 elsewhere (the union of the lesions' pixel masks).
    pub lesion_mask: Vec<u8>,
    /// Fraction of breast pixels (outside the pectoral muscle) that are fibroglandular.
    pub dense_fraction: f64,
}

/// A vendor's processing style (see the module doc).
struct Style {
    fat: f32,
    gland: f32,
    muscle: f32,
    skin: f32,
    equalization: f32,
    gamma: f32,
    stored_max: f32,
    noise: f32,
    window: (f64, f64),
}

impl Style {
    fn of(vendor: Vendor) -> Style {
        match vendor {
            Vendor::Hologic => Style {
                fat: 0.26,
                gland: 0.74,
                muscle: 0.95,
                skin: 0.10,
                equalization: 0.55,
                gamma: 1.15,
                stored_max: 4095.0,
                noise: 0.010,
                window: (2048.0, 4096.0),
            },
            Vendor::Siemens => Style {
                fat: 0.40,
                gland: 0.72,
                muscle: 0.93,
                skin: 0.06,
                equalization: 0.85,
                gamma: 0.85,
                stored_max: 3400.0,
                noise: 0.014,
                window: (2000.0, 4000.0),
            },
        }
    }
}

/// The prepared 8-bit gray level a phantom of `vendor` shows for tissue `intensity` (0 fat-free
/// black … 1 the brightest): tone curve, VOI window and the vendor's divisor, as rendered and
/// prepared. `fat`, `gland` and `muscle` give the levels of the vendor's style.
pub fn gray_level(vendor: Vendor, intensity: f64) -> f64 {
    let style = Style::of(vendor);
    let stored = intensity.clamp(0.0, 1.0).powf(style.gamma as f64) * style.stored_max as f64;
    let voi = Voi::Window { center: style.window.0, width: style.window.1, function: dicom_pixeldata::VoiLutFunction::Linear };
    let windowed = voi.apply(stored, 0.0, ((1u32 << BITS_STORED) - 1) as f64);
    let divisor = match vendor {
        Vendor::Hologic => 4095.0,
        Vendor::Siemens => 3500.0,
    };
    (windowed / divisor * 255.0).min(255.0)
}

/// A vendor style's tissue levels: (fat, fibroglandular, pectoral muscle), before the tone curve.
pub fn tissue_levels(vendor: Vendor) -> (f64, f64, f64) {
    let style = Style::of(vendor);
    (style.fat as f64, style.gland as f64, style.muscle as f64)
}

/// The breast outline, in pixels of the left-facing image.
#[derive(Debug, Clone, Copy)]
struct Outline {
    depth: f64,
    p: f64,
    q: f64,
    nipple_y: f64,
    h_top: f64,
    h_bottom: f64,
}

impl Outline {
    /// Normalised vertical coordinate at row y.
    fn t(&self, y: f64) -> f64 {
        let h = if y < self.nipple_y { self.h_top } else { self.h_bottom };
        (y - self.nipple_y) / h
    }

    /// Contour depth (x of the skin) at row y; 0 where the breast does not reach.
    fn x_max(&self, y: f64) -> f64 {
        let t = self.t(y).abs();
        if t >= 1.0 { 0.0 } else { self.depth * (1.0 - t.powf(self.q)).powf(1.0 / self.p) }
    }

    /// `ρ < 1` inside, and an estimate of the distance to the contour in pixels, `(1 − ρ) / |∇ρ|`.
    fn rho_and_distance(&self, x: f64, y: f64) -> (f64, f64) {
        let t = self.t(y);
        let h = if y < self.nipple_y { self.h_top } else { self.h_bottom };
        let (ax, at) = ((x / self.depth).max(0.0), t.abs());
        let rho = ax.powf(self.p) + at.powf(self.q);
        let gx = self.p * ax.powf(self.p - 1.0) / self.depth;
        let gy = self.q * at.powf(self.q - 1.0) / h;
        let grad = (gx * gx + gy * gy).sqrt().max(1e-9);
        (rho, (1.0 - rho) / grad)
    }

    fn scaled(&self, s: f64, view: View) -> Outline {
        match view {
            View::Cc => Outline { depth: self.depth * s, h_top: self.h_top * s, h_bottom: self.h_bottom * s, ..*self },
            View::Mlo => Outline { depth: self.depth * s, h_bottom: self.h_bottom * s, ..*self },
        }
    }

    /// Breast/image ratio of the prepared square (the central `cols` rows), nipple left out.
    fn prepared_ratio(&self, rows: usize, cols: usize) -> f64 {
        let top = rows.saturating_sub(cols) / 2;
        let kept = rows.min(cols);
        let covered: f64 = (top..top + kept).map(|r| self.x_max(r as f64 + 0.5).min(cols as f64)).sum();
        covered / (kept * cols) as f64
    }
}

/// The pectoral muscle of an MLO view: `x < width · (1 − y/height)^curve`.
#[derive(Debug, Clone, Copy)]
struct Muscle {
    width: f64,
    height: f64,
    curve: f64,
}

impl Muscle {
    fn edge(&self, y: f64) -> f64 {
        if y >= self.height { 0.0 } else { self.width * (1.0 - y / self.height).powf(self.curve) }
    }
}

/// Dense-fraction targets per BI-RADS class (BI-RADS 4th edition quartiles, kept off the borders).
fn dense_fraction_range(density: Density) -> (f64, f64) {
    match density {
        Density::A => (0.03, 0.15),
        Density::B => (0.31, 0.43),
        Density::C => (0.57, 0.68),
        Density::D => (0.82, 0.92),
    }
}

/// Breast/image ratio targets per area class (MAM-E's thresholds 0.4 and 0.6, kept off the borders).
fn area_ratio_range(area: Area) -> (f64, f64) {
    match area {
        Area::Small => (0.24, 0.36),
        Area::Medium => (0.44, 0.56),
        Area::Big => (0.64, 0.76),
    }
}

fn uniform(rng: &mut NoiseRng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.uniform()
}

fn smoothstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

/// A point of a stroke: position, Gaussian width (σ, pixels) and peak contrast.
#[derive(Debug, Clone, Copy)]
struct StrokePoint {
    x: f64,
    y: f64,
    sigma: f64,
    amplitude: f64,
}

/// Draws strokes into `buffer` as the maximum of Gaussian profiles (overlaps do not add up).
fn draw_stroke(buffer: &mut [f32], rows: usize, cols: usize, points: &[StrokePoint]) {
    for p in points {
        let reach = (2.5 * p.sigma).ceil() as isize;
        let (cx, cy) = (p.x.floor() as isize, p.y.floor() as isize);
        for yy in (cy - reach).max(0)..(cy + reach + 1).min(rows as isize) {
            for xx in (cx - reach).max(0)..(cx + reach + 1).min(cols as isize) {
                let (dx, dy) = (xx as f64 + 0.5 - p.x, yy as f64 + 0.5 - p.y);
                let v = (p.amplitude * (-(dx * dx + dy * dy) / (2.0 * p.sigma * p.sigma)).exp()) as f32;
                let slot = &mut buffer[yy as usize * cols + xx as usize];
                if v > *slot {
                    *slot = v;
                }
            }
        }
    }
}

/// Samples a quadratic Bézier curve every half pixel, with width and contrast interpolated.
fn bezier(from: (f64, f64), control: (f64, f64), to: (f64, f64), sigma: (f64, f64), amplitude: (f64, f64)) -> Vec<StrokePoint> {
    let length = ((to.0 - from.0).hypot(to.1 - from.1) + (control.0 - from.0).hypot(control.1 - from.1)).max(1.0);
    let n = (length * 2.0).ceil() as usize;
    (0..=n)
        .map(|i| {
            let s = i as f64 / n as f64;
            let (a, b, c) = ((1.0 - s) * (1.0 - s), 2.0 * s * (1.0 - s), s * s);
            StrokePoint {
                x: a * from.0 + b * control.0 + c * to.0,
                y: a * from.1 + b * control.1 + c * to.1,
                sigma: sigma.0 + (sigma.1 - sigma.0) * s,
                amplitude: amplitude.0 + (amplitude.1 - amplitude.0) * s,
            }
        })
        .collect()
}

/// Where the breast is: the image size, the outline, the pectoral muscle and the nipple.
struct Geometry {
    rows: usize,
    cols: usize,
    /// Pixels per millimetre.
    mm: f64,
    outline: Outline,
    muscle: Option<Muscle>,
    nipple: (f64, f64),
    nipple_r: f64,
}

/// The geometry and, per pixel, the distance to the skin (pixels; negative outside) and how much
/// the pixel is muscle.
struct Body {
    geometry: Geometry,
    distance: Vec<f32>,
    muscle_weight: Vec<f32>,
}

/// The fibroglandular tissue: a field whose values above `threshold` are dense, the fine texture
/// over it, the dense fraction it was made for, and the width of the zone under the skin where
/// the breast thins.
struct Tissue {
    field: Vec<f32>,
    threshold: f32,
    texture: Vec<f32>,
    dense_target: f64,
    edge_zone: f64,
}

/// The lesions drawn: per pixel their added contrast and mask, and their labels.
struct Lesions {
    contrast: Vec<f32>,
    mask: Vec<u8>,
    found: Vec<Lesion>,
}

/// Renders the phantom `spec` at `cols` pixels wide (rows = 5/4 · cols, portrait), stage by
/// stage, each drawing from the same random stream in turn.
pub fn render(spec: &PhantomSpec, cols: usize) -> Phantom {
    let style = Style::of(spec.vendor);
    let mut rng = NoiseRng::new(spec.seed);
    let body = body(geometry(spec, cols, &mut rng));
    let tissue = fibroglandular_tissue(&body, spec.density, &mut rng);
    let lines = ligaments_and_vessels(&body, &tissue, &mut rng);
    let lesions = lesions(&body, spec.lesions, &mut rng);
    let (pixels, dense_fraction) = compose(&body, &tissue, &lines, &lesions.contrast, &style, &mut rng);
    let Geometry { rows, cols, mm, .. } = body.geometry;
    let mut phantom = Phantom {
        spec: *spec,
        rows,
        cols,
        pixel_spacing_mm: 1.0 / mm,
        pixels,
        window: style.window,
        lesions: lesions.found,
        lesion_mask: lesions.mask,
        dense_fraction,
    };
    if spec.laterality == Laterality::R {
        mirror_in_place(&mut phantom.pixels, cols);
        mirror_in_place(&mut phantom.lesion_mask, cols);
        for lesion in &mut phantom.lesions {
            let b = &mut lesion.finding.bbox;
            (b.xmin, b.xmax) = (cols as f64 - b.xmax, cols as f64 - b.xmin);
        }
    }
    phantom
}

/// The outline (sized for the target area class), the muscle of an MLO view and the nipple.
fn geometry(spec: &PhantomSpec, cols: usize, rng: &mut NoiseRng) -> Geometry {
    let rows = cols * 5 / 4;
    let mm = rows as f64 / FIELD_HEIGHT_MM;
    let base = match spec.view {
        View::Cc => {
            let h = rows as f64 * 0.4;
            let ratio = uniform(rng, 0.9, 1.1);
            Outline {
                depth: h * uniform(rng, 0.85, 1.25),
                p: uniform(rng, 1.7, 2.3),
                q: uniform(rng, 1.8, 2.6),
                nipple_y: rows as f64 * (0.5 + 0.02 * rng.normal()),
                h_top: h * ratio,
                h_bottom: h / ratio,
            }
        }
        View::Mlo => {
            let nipple_y = rows as f64 * uniform(rng, 0.48, 0.6);
            Outline {
                depth: cols as f64 * 0.6,
                p: uniform(rng, 1.6, 2.2),
                q: uniform(rng, 1.8, 2.4),
                nipple_y,
                h_top: nipple_y / uniform(rng, 0.55, 0.8),
                h_bottom: rows as f64 * uniform(rng, 0.25, 0.38),
            }
        }
    };
    let (lo, hi) = area_ratio_range(spec.target_area);
    let target = uniform(rng, lo, hi);
    let outline = {
        let (mut s_lo, mut s_hi) = (0.05, 3.0);
        for _ in 0..40 {
            let mid = 0.5 * (s_lo + s_hi);
            let o = base.scaled(mid, spec.view);
            if o.depth > 0.97 * cols as f64 || o.prepared_ratio(rows, cols) > target {
                s_hi = mid;
            } else {
                s_lo = mid;
            }
        }
        base.scaled(s_lo, spec.view)
    };
    let muscle = (spec.view == View::Mlo).then(|| Muscle {
        width: outline.x_max(0.0) * uniform(rng, 0.35, 0.7),
        height: rows as f64 * uniform(rng, 0.35, 0.6),
        curve: uniform(rng, 0.8, 1.25),
    });
    let nipple_r = uniform(rng, 3.0, 5.0) * mm;
    let nipple = (outline.x_max(outline.nipple_y) + 0.3 * nipple_r, outline.nipple_y);
    Geometry { rows, cols, mm, outline, muscle, nipple, nipple_r }
}

/// Distance to the skin and muscle membership of every pixel.
fn body(geometry: Geometry) -> Body {
    let Geometry { rows, cols, mm, outline, muscle, nipple, nipple_r } = geometry;
    let mut distance = vec![-1.0f32; rows * cols];
    let mut muscle_weight = vec![0.0f32; rows * cols];
    for r in 0..rows {
        let y = r as f64 + 0.5;
        let x_max = outline.x_max(y);
        let edge = muscle.map_or(0.0, |m| m.edge(y));
        for c in 0..cols {
            let x = c as f64 + 0.5;
            let i = r * cols + c;
            let from_nipple = nipple_r - (x - nipple.0).hypot(y - nipple.1);
            if x < x_max {
                let (_, d) = outline.rho_and_distance(x, y);
                distance[i] = d.max(from_nipple).max(0.01) as f32;
            } else if from_nipple > 0.0 {
                distance[i] = from_nipple as f32;
            }
            if edge > 0.0 {
                muscle_weight[i] = smoothstep((edge - x) / (1.5 * mm) + 0.5) as f32;
            }
        }
    }
    Body { geometry, distance, muscle_weight }
}

impl Body {
    /// A random point inside the breast at least `min_distance` pixels under the skin and off the
    /// muscle (200 tries).
    fn inside_point(&self, rng: &mut NoiseRng, min_distance: f64) -> Option<(f64, f64)> {
        let (rows, cols) = (self.geometry.rows, self.geometry.cols);
        for _ in 0..200 {
            let (x, y) = (rng.uniform() * cols as f64, rng.uniform() * rows as f64);
            let i = (y as usize).min(rows - 1) * cols + (x as usize).min(cols - 1);
            if self.distance[i] as f64 > min_distance && self.muscle_weight[i] < 0.5 {
                return Some((x, y));
            }
        }
        None
    }
}

/// Fibroglandular tissue: a soft threshold of noise plus a prior, at the density's dense fraction.
fn fibroglandular_tissue(body: &Body, density: Density, rng: &mut NoiseRng) -> Tissue {
    let Geometry { rows, cols, outline, nipple, .. } = body.geometry;
    let n = rows * cols;
    let anatomy = power_law_noise(cols, rows, 3.0, rng);
    let texture = power_law_noise(cols, rows, 3.0, rng);
    let (prior_x, prior_y) = (uniform(rng, 0.3, 0.5), uniform(rng, -0.25, 0.1));
    let (lo, hi) = dense_fraction_range(density);
    let dense_target = uniform(rng, lo, hi);
    let edge_zone = 0.12 * outline.depth;
    let mut field = vec![0.0f32; n];
    let mut tissue_values = Vec::with_capacity(n / 2);
    for r in 0..rows {
        let t = outline.t(r as f64 + 0.5);
        for c in 0..cols {
            let i = r * cols + c;
            if body.distance[i] <= 0.0 {
                continue;
            }
            let u = (c as f64 + 0.5) / outline.depth;
            let prior = (-((u - prior_x) / 0.32).powi(2) - ((t - prior_y) / 0.55).powi(2)).exp();
            let near_skin = smoothstep(body.distance[i] as f64 / edge_zone);
            // Ducts and their stroma converge on the nipple: a copy of the field sampled in polar
            // coordinates about the nipple, compressed along the radius, draws radial strands.
            let (dx, dy) = (nipple.0 - (c as f64 + 0.5), r as f64 + 0.5 - nipple.1);
            let radial = sample_periodic(&anatomy, cols, rows, 0.3 * dx.hypot(dy), dy.atan2(dx) * 0.8 * outline.depth + rows as f64 / 2.0);
            let fan = smoothstep(dx.hypot(dy) / (0.3 * outline.depth));
            let structure = (0.55 + 0.4 * (1.0 - fan)) * anatomy[i] as f64 + 0.75 * fan * radial as f64;
            field[i] = (structure + 2.2 * prior * near_skin - 1.5 * (1.0 - near_skin)) as f32;
            if body.muscle_weight[i] < 0.5 {
                tissue_values.push(field[i]);
            }
        }
    }
    let threshold = if tissue_values.is_empty() {
        0.0
    } else {
        let k = ((1.0 - dense_target) * tissue_values.len() as f64) as usize;
        let k = k.min(tissue_values.len() - 1);
        *tissue_values.select_nth_unstable_by(k, |a, b| a.total_cmp(b)).1
    };
    Tissue { field, threshold, texture, dense_target, edge_zone }
}

/// Cooper's ligaments (fewer in dense breasts) and a few vessels running towards the nipple.
fn ligaments_and_vessels(body: &Body, tissue: &Tissue, rng: &mut NoiseRng) -> Vec<f32> {
    let Geometry { rows, cols, mm, outline, nipple, .. } = body.geometry;
    let mut lines = vec![0.0f32; rows * cols];
    let ligaments = (30.0 * (1.0 - 0.7 * tissue.dense_target)).round() as usize;
    for _ in 0..ligaments {
        let Some((x, y)) = body.inside_point(rng, 4.0 * mm) else { break };
        let h = if y < outline.nipple_y { outline.h_top } else { outline.h_bottom };
        let (gx, gy) = (x / outline.depth / outline.depth, outline.t(y) / h);
        let angle = gy.atan2(gx) + 0.5 * rng.normal();
        let length = uniform(rng, 6.0, 20.0) * mm;
        let bend = uniform(rng, -0.3, 0.3) * length;
        let to = (x + length * angle.cos(), y + length * angle.sin());
        let control = (0.5 * (x + to.0) - bend * angle.sin(), 0.5 * (y + to.1) + bend * angle.cos());
        let sigma = (uniform(rng, 0.2, 0.35) * mm).max(0.5);
        let amplitude = uniform(rng, 0.04, 0.08);
        draw_stroke(&mut lines, rows, cols, &bezier((x, y), control, to, (sigma, sigma), (amplitude, amplitude * 0.6)));
    }
    let vessels = 2 + (rng.next_u64() % 3) as usize;
    for _ in 0..vessels {
        let mut y = outline.nipple_y + uniform(rng, -0.5, 0.5) * outline.h_bottom;
        let mut x = uniform(rng, 0.05, 0.2) * outline.depth;
        let mut heading = (nipple.1 - y).atan2(nipple.0 - x) + 0.3 * rng.normal();
        let length = uniform(rng, 0.4, 0.8) * outline.depth;
        let (sigma0, amplitude) = ((uniform(rng, 0.5, 0.8) * mm).max(0.6), uniform(rng, 0.04, 0.06));
        let mut points = Vec::new();
        let mut walked = 0.0;
        while walked < length {
            let s = walked / length;
            points.push(StrokePoint { x, y, sigma: sigma0 * (1.0 - 0.5 * s), amplitude: amplitude * (1.0 - 0.4 * s) });
            heading += 0.04 * rng.normal();
            x += 0.5 * heading.cos();
            y += 0.5 * heading.sin();
            walked += 0.5;
        }
        draw_stroke(&mut lines, rows, cols, &points);
    }
    lines
}

/// `count` lesions of random kinds, each inside the rows the prepared image keeps, off the
/// muscle and clear of the others (a lesion that finds no place is left out).
fn lesions(body: &Body, count: usize, rng: &mut NoiseRng) -> Lesions {
    let Geometry { rows, cols, mm, muscle, .. } = body.geometry;
    let mut contrast = vec![0.0f32; rows * cols];
    let mut mask = vec![0u8; rows * cols];
    let mut found = Vec::new();
    let keep_top = rows.saturating_sub(cols) as f64 / 2.0;
    for _ in 0..count {
        let kind = match rng.next_u64() % 5 {
            0 => LesionKind::RoundMass,
            1 => LesionKind::OvalMass,
            2 => LesionKind::IrregularMass,
            3 => LesionKind::SpiculatedMass,
            _ => LesionKind::Calcifications,
        };
        let size_mm = match kind {
            LesionKind::Calcifications => 2.0 * uniform(rng, 3.0, 7.0),
            _ => uniform(rng, 8.0, 25.0),
        };
        let reach = 0.5 * size_mm * mm * if kind == LesionKind::SpiculatedMass { 2.5 } else { 1.1 };
        let mut centre = None;
        for _ in 0..400 {
            let Some((x, y)) = body.inside_point(rng, reach + 3.0 * mm) else { break };
            let inside_kept = y - reach > keep_top + 2.0 && y + reach < keep_top + cols.min(rows) as f64 - 2.0;
            let clear_of_muscle = muscle.is_none_or(|m| x - reach > m.edge(y - reach) + 2.0 * mm);
            let clear_of_others = found.iter().all(|l: &Lesion| {
                let b = &l.finding.bbox;
                x + reach < b.xmin || x - reach > b.xmax || y + reach < b.ymin || y - reach > b.ymax
            });
            if inside_kept && clear_of_muscle && clear_of_others {
                centre = Some((x, y));
                break;
            }
        }
        let Some(centre) = centre else { continue };
        let mut own = Vec::new();
        let bbox = render_lesion(kind, size_mm * mm, centre, mm, rng, rows, cols, &mut own);
        let Some((r0, r1, c0, c1)) = bbox else { continue };
        // `own` covers the lesion's window; fold it into the image-wide buffers.
        let width = c1 - c0;
        let (mut xmin, mut ymin, mut xmax, mut ymax) = (usize::MAX, usize::MAX, 0, 0);
        let level = mask_level(kind, own.iter().cloned().fold(0.0f32, f32::max));
        for r in r0..r1 {
            for c in c0..c1 {
                let v = own[(r - r0) * width + (c - c0)];
                let i = r * cols + c;
                contrast[i] = contrast[i].max(v);
                if v > 0.0 && v >= level {
                    mask[i] = 255;
                    (xmin, ymin, xmax, ymax) = (xmin.min(c), ymin.min(r), xmax.max(c + 1), ymax.max(r + 1));
                }
            }
        }
        if xmin == usize::MAX {
            continue;
        }
        let bbox = BoundingBox { xmin: xmin as f64, ymin: ymin as f64, xmax: xmax as f64, ymax: ymax as f64 };
        found.push(Lesion { kind, size_mm, finding: Finding { category: kind.category().into(), birads: Some(kind.birads()), bbox } });
    }
    Lesions { contrast, mask, found }
}

/// Composes tissue, skin, lines, muscle (brightening towards the corner) and lesions, adds
/// detector noise and applies the vendor's tone curve: the stored pixels and the dense
/// fraction actually drawn.
fn compose(body: &Body, tissue: &Tissue, lines: &[f32], lesion_contrast: &[f32], style: &Style, rng: &mut NoiseRng) -> (Vec<u16>, f64) {
    let Geometry { rows, cols, mm, muscle, .. } = body.geometry;
    let softness = 1.2f32;
    let muscle_depth = |i: usize| -> f32 {
        let (r, c) = (i / cols, i % cols);
        muscle.map_or(0.0, |m| (1.0 - (c as f64 + 0.5) / m.edge(r as f64 + 0.5).max(1.0)).clamp(0.0, 1.0) as f32)
    };
    let edge_zone = tissue.edge_zone;
    let mut pixels = vec![0u16; rows * cols];
    let mut dense = (0usize, 0usize);
    for (i, pixel) in pixels.iter_mut().enumerate() {
        let d = body.distance[i];
        if d <= 0.0 {
            continue;
        }
        let g = smoothstep(((tissue.field[i] - tissue.threshold) / softness + 0.5) as f64) as f32;
        let m = body.muscle_weight[i];
        if m < 0.5 {
            dense.1 += 1;
            if g > 0.5 {
                dense.0 += 1;
            }
        }
        let texture = tissue.texture[i];
        let mut v = style.fat + (style.gland - style.fat) * g + 0.07 * texture * (0.4 + g);
        let thickness = if (d as f64) < edge_zone { (1.0 - (1.0 - d as f64 / edge_zone).powi(2)).sqrt() as f32 } else { 1.0 };
        v *= style.equalization + (1.0 - style.equalization) * thickness;
        v += style.skin * (-(d / (1.2 * mm as f32)).powi(2)).exp();
        v += lines[i] * (1.0 - 0.7 * g);
        v = v * (1.0 - m) + m * (style.muscle * (0.97 + 0.03 * muscle_depth(i)) + 0.02 * texture);
        v += lesion_contrast[i];
        v += style.noise * rng.normal() as f32;
        let v = v.clamp(0.06, 1.0).powf(style.gamma);
        *pixel = (v * style.stored_max).round() as u16;
    }
    let dense_fraction = if dense.1 == 0 { 0.0 } else { dense.0 as f64 / dense.1 as f64 };
    (pixels, dense_fraction)
}

/// The contrast from which a pixel belongs to a lesion's mask: half the lesion's peak (for a
/// spiculated mass, half the spicules' contrast, 0.6 of the core's).
fn mask_level(kind: LesionKind, peak: f32) -> f32 {
    match kind {
        LesionKind::SpiculatedMass => 0.3 * peak,
        _ => 0.5 * peak,
    }
}

/// Renders one lesion of `size` pixels (diameter) at `centre` into `out`, a buffer covering the
/// returned window `(row0, row1, col0, col1)` of the image.
#[allow(clippy::too_many_arguments)]
fn render_lesion(
    kind: LesionKind,
    size: f64,
    centre: (f64, f64),
    mm: f64,
    rng: &mut NoiseRng,
    rows: usize,
    cols: usize,
    out: &mut Vec<f32>,
) -> Option<(usize, usize, usize, usize)> {
    let radius = size / 2.0;
    let reach = radius * if kind == LesionKind::SpiculatedMass { 2.6 } else { 1.3 } + 3.0;
    let r0 = (centre.1 - reach).floor().max(0.0) as usize;
    let r1 = ((centre.1 + reach).ceil() as usize).min(rows);
    let c0 = (centre.0 - reach).floor().max(0.0) as usize;
    let c1 = ((centre.0 + reach).ceil() as usize).min(cols);
    if r0 >= r1 || c0 >= c1 {
        return None;
    }
    let (h, w) = (r1 - r0, c1 - c0);
    *out = vec![0.0f32; h * w];
    let local = (centre.0 - c0 as f64, centre.1 - r0 as f64);
    if kind == LesionKind::Calcifications {
        let count = 6 + (rng.next_u64() % 15) as usize;
        let mut points = Vec::with_capacity(count);
        for _ in 0..count {
            let (rr, phi) = (radius * rng.uniform().sqrt(), 2.0 * PI * rng.uniform());
            let diameter = uniform(rng, 0.2, 0.7) * mm;
            points.push(StrokePoint {
                x: local.0 + rr * phi.cos(),
                y: local.1 + rr * phi.sin(),
                sigma: (diameter / 2.0).max(0.45),
                amplitude: uniform(rng, 0.25, 0.4),
            });
        }
        draw_stroke(out, h, w, &points);
        return Some((r0, r1, c0, c1));
    }
    let contrast = uniform(rng, 0.14, 0.24);
    let (axis_ratio, tilt) = match kind {
        LesionKind::OvalMass => (uniform(rng, 0.5, 0.8), PI * rng.uniform()),
        _ => (1.0, 0.0),
    };
    let harmonics: Vec<(f64, f64)> = match kind {
        LesionKind::IrregularMass => (2..7).map(|k| (uniform(rng, 0.05, 0.18) / k as f64 * 2.0, 2.0 * PI * rng.uniform())).collect(),
        LesionKind::SpiculatedMass => (2..7).map(|k| (uniform(rng, 0.03, 0.1) / k as f64 * 2.0, 2.0 * PI * rng.uniform())).collect(),
        _ => Vec::new(),
    };
    let boundary = |theta: f64| -> f64 {
        let modulation: f64 = harmonics.iter().enumerate().map(|(j, (a, phase))| a * ((j + 2) as f64 * theta + phase).cos()).sum();
        let (ct, st) = ((theta - tilt).cos(), (theta - tilt).sin());
        let ellipse = axis_ratio / (axis_ratio * axis_ratio * ct * ct + st * st).sqrt();
        radius * ellipse * (1.0 + modulation)
    };
    let edge = 0.6 * mm;
    for r in 0..h {
        for c in 0..w {
            let (dx, dy) = (c as f64 + 0.5 - local.0, r as f64 + 0.5 - local.1);
            let bound = boundary(dy.atan2(dx));
            let u = dx.hypot(dy) / bound;
            let core = 1.0 / (1.0 + ((u - 1.0) * bound / edge).exp());
            let v = contrast * core * (0.8 + 0.2 * (1.0 - u * u).max(0.0));
            out[r * w + c] = v as f32;
        }
    }
    if kind == LesionKind::SpiculatedMass {
        let spicules = 8 + (rng.next_u64() % 9) as usize;
        let mut lines = vec![0.0f32; h * w];
        for _ in 0..spicules {
            let theta = 2.0 * PI * rng.uniform();
            let b = boundary(theta);
            let length = uniform(rng, 0.5, 1.4) * b;
            let from = (local.0 + 0.8 * b * theta.cos(), local.1 + 0.8 * b * theta.sin());
            let to = (local.0 + (b + length) * theta.cos(), local.1 + (b + length) * theta.sin());
            let bend = uniform(rng, -0.15, 0.15) * length;
            let control = (0.5 * (from.0 + to.0) - bend * theta.sin(), 0.5 * (from.1 + to.1) + bend * theta.cos());
            let sigma = ((0.35 * mm).max(0.6), (0.15 * mm).max(0.4));
            draw_stroke(&mut lines, h, w, &bezier(from, control, to, sigma, (contrast * 0.6, contrast * 0.6)));
        }
        for (o, l) in out.iter_mut().zip(&lines) {
            *o = o.max(*l);
        }
    }
    Some((r0, r1, c0, c1))
}

/// Bilinear sample of a periodic `width`×`height` field at any real position.
fn sample_periodic(field: &[f32], width: usize, height: usize, x: f64, y: f64) -> f32 {
    let (fx, fy) = (x.rem_euclid(width as f64), y.rem_euclid(height as f64));
    let (x0, y0) = (fx.floor() as usize % width, fy.floor() as usize % height);
    let (x1, y1) = ((x0 + 1) % width, (y0 + 1) % height);
    let (ax, ay) = ((fx - fx.floor()) as f32, (fy - fy.floor()) as f32);
    let top = field[y0 * width + x0] * (1.0 - ax) + field[y0 * width + x1] * ax;
    let bottom = field[y1 * width + x0] * (1.0 - ax) + field[y1 * width + x1] * ax;
    top * (1.0 - ay) + bottom * ay
}

fn mirror_in_place<T>(pixels: &mut [T], cols: usize) {
    for row in pixels.chunks_exact_mut(cols) {
        row.reverse();
    }
}

/// How a phantom data set is drawn.
#[derive(Debug, Clone)]
pub struct DatasetOptions {
    pub seed: u64,
    /// Image width in pixels (height is 5/4 of it).
    pub cols: usize,
    /// Probability that an image carries lesions.
    pub lesion_fraction: f64,
    /// Vendors to draw from (per study).
    pub vendors: Vec<Vendor>,
}

/// One image of a phantom data set: its VinDr-style ids and its spec.
#[derive(Debug, Clone)]
pub struct DatasetEntry {
    pub index: usize,
    pub study_id: String,
    pub series_id: String,
    pub image_id: String,
    /// VinDr's split: `training` (80 % of studies) or `test`.
    pub split: &'static str,
    pub spec: PhantomSpec,
}

/// The `index`-th image of a data set: studies of four images (L-CC, L-MLO, R-CC, R-MLO) sharing
/// density, vendor and target area, as a screening exam does; lesions drawn per image.
pub fn dataset_entry(options: &DatasetOptions, index: usize) -> DatasetEntry {
    let study = (index / 4) as u64;
    let key = options.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ study.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut study_rng = NoiseRng::new(key);
    let density = Density::ALL[(study_rng.next_u64() % 4) as usize];
    let vendor = options.vendors[(study_rng.next_u64() % options.vendors.len() as u64) as usize];
    let target_area = Area::ALL[(study_rng.next_u64() % 3) as usize];
    let split = if study_rng.uniform() < 0.8 { "training" } else { "test" };
    let which = index % 4;
    let (laterality, view) = [(Laterality::L, View::Cc), (Laterality::L, View::Mlo), (Laterality::R, View::Cc), (Laterality::R, View::Mlo)][which];
    let image_key = key ^ (which as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407);
    let mut image_rng = NoiseRng::new(image_key);
    let lesions = if image_rng.uniform() < options.lesion_fraction { if image_rng.uniform() < 0.1 { 2 } else { 1 } } else { 0 };
    DatasetEntry {
        index,
        study_id: hex_id(key),
        series_id: hex_id(key ^ 0x5E21E5 ^ (which as u64 / 2)),
        image_id: hex_id(image_key),
        split,
        spec: PhantomSpec { seed: image_rng.next_u64(), view, laterality, density, vendor, target_area, lesions },
    }
}

/// A phantom's labels as the prepared 512 image shows them (the ground truth `prepare` must
/// reproduce): the measured breast/image ratio and its class.
pub fn measured_area(phantom: &Phantom, size: usize) -> (f64, Area) {
    let prepared = phantom.prepared(size);
    (prepared.area_ratio, Area::from_ratio(prepared.area_ratio))
}

impl Phantom {
    /// The phantom as `prepare` makes a training image of it at `size` (its laterality, the
    /// vendor's scaling; no lesion boxes).
    pub fn prepared(&self, size: usize) -> prepare::Prepared {
        prepare::prepare_pixels(&self.source_pixels(), self.spec.laterality, &[], size, prepare::Scaling::Vendor)
    }

    /// Its pixels through the VOI window its DICOM header carries (exactly what reading the
    /// written file gives), ready for `prepare`.
    pub fn source_pixels(&self) -> SourcePixels {
        let max = ((1u32 << BITS_STORED) - 1) as f64;
        let voi = Voi::Window { center: self.window.0, width: self.window.1, function: dicom_pixeldata::VoiLutFunction::Linear };
        SourcePixels {
            rows: self.rows,
            cols: self.cols,
            values: self.pixels.iter().map(|&v| voi.apply(v as f64, 0.0, max) as f32).collect(),
            max: max as f32,
            vendor: Some(self.spec.vendor),
        }
    }
}

/// Writes `phantom` as a 16-bit "for presentation" digital mammogram of its vendor.
pub fn write_phantom(path: &std::path::Path, phantom: &Phantom, entry: &DatasetEntry) -> std::io::Result<()> {
    let spec = &phantom.spec;
    let (manufacturer, model) = match spec.vendor {
        Vendor::Hologic => ("HOLOGIC, Inc.", "Selenia Dimensions"),
        Vendor::Siemens => ("SIEMENS", "Mammomat Inspiration"),
    };
    let header = MammogramHeader {
        sop_instance: uid(&entry.image_id),
        study: uid(&entry.study_id),
        series: uid(&entry.series_id),
        manufacturer,
        model,
        patient_id: &entry.study_id[..16],
        patient_name: "PHANTOM^MAM-E",
        laterality: spec.laterality,
        view: spec.view,
        image_type: "DERIVED\\PRIMARY",
        series_description: format!("{} {} (MAM-E phantom, seed {})", spec.laterality, spec.view.word(), spec.seed),
        derivation: None,
        pixel_spacing_mm: Some(phantom.pixel_spacing_mm),
        rows: phantom.rows,
        cols: phantom.cols,
        window: phantom.window,
    };
    write_mammogram(path, &header, phantom.pixels.clone())
}
