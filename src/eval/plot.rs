//! A ROC curve drawn as a picture: the unit square with quarter grid lines, the chance diagonal
//! (dashed) and the curve, points joined by straight lines as scikit-learn's `RocCurveDisplay`
//! draws them, as a raster (the CLI's PNG) or as SVG (the page). No text: the numbers go beside
//! it (the CLI's output, the page's panel). And the CAD study's AUROCs per variant (SVG).

use crate::eval::roc::RocCurve;
use crate::imaging::RgbImage;

const MARGIN: usize = 16;
const BACKGROUND: [u8; 3] = [255, 255, 255];
const GRID: [u8; 3] = [225, 225, 225];
const AXES: [u8; 3] = [60, 60, 60];
const CHANCE: [u8; 3] = [150, 150, 150];
const CURVE: [u8; 3] = [31, 119, 180];

struct Canvas {
    image: RgbImage,
    side: usize,
}

impl Canvas {
    fn set(&mut self, x: i64, y: i64, colour: [u8; 3]) {
        let w = self.image.width as i64;
        if (0..w).contains(&x) && (0..self.image.height as i64).contains(&y) {
            let i = (y * w + x) as usize * 3;
            self.image.pixels[i..i + 3].copy_from_slice(&colour);
        }
    }

    /// A point of the unit square (fpr, tpr) in pixels: origin bottom left.
    fn at(&self, fx: f64, fy: f64) -> (f64, f64) {
        (MARGIN as f64 + fx * self.side as f64, (MARGIN + self.side) as f64 - fy * self.side as f64)
    }

    /// A line between two points of the unit square, `width` pixels wide, every `dash` pixels
    /// drawn and the next `dash` skipped when `dash` > 0.
    fn line(&mut self, from: (f64, f64), to: (f64, f64), width: i64, dash: usize, colour: [u8; 3]) {
        let ((x0, y0), (x1, y1)) = (self.at(from.0, from.1), self.at(to.0, to.1));
        let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
        for s in 0..=steps {
            if dash > 0 && (s / dash) % 2 == 1 {
                continue;
            }
            let t = s as f64 / steps as f64;
            let (x, y) = ((x0 + (x1 - x0) * t).round() as i64, (y0 + (y1 - y0) * t).round() as i64);
            for dy in -(width / 2)..=(width - 1) / 2 {
                for dx in -(width / 2)..=(width - 1) / 2 {
                    self.set(x + dx, y + dy, colour);
                }
            }
        }
    }
}

/// The curve on a `side`-pixel unit square (plus a margin).
pub fn roc_plot(curve: &RocCurve, side: usize) -> RgbImage {
    let full = side + 2 * MARGIN;
    let mut canvas = Canvas { image: RgbImage { width: full, height: full, pixels: BACKGROUND.repeat(full * full) }, side };
    for q in 1..4 {
        let v = q as f64 / 4.0;
        canvas.line((v, 0.0), (v, 1.0), 1, 0, GRID);
        canvas.line((0.0, v), (1.0, v), 1, 0, GRID);
    }
    canvas.line((0.0, 0.0), (1.0, 1.0), 1, 6, CHANCE);
    for (from, to) in [((0.0, 0.0), (1.0, 0.0)), ((0.0, 0.0), (0.0, 1.0)), ((1.0, 0.0), (1.0, 1.0)), ((0.0, 1.0), (1.0, 1.0))] {
        canvas.line(from, to, 1, 0, AXES);
    }
    for i in 1..curve.fpr.len() {
        canvas.line((curve.fpr[i - 1], curve.tpr[i - 1]), (curve.fpr[i], curve.tpr[i]), 3, 0, CURVE);
    }
    canvas.image
}

/// The same picture as SVG, `side` pixels on a side plus the margin, axes labelled.
pub fn roc_svg(curve: &RocCurve, side: usize) -> String {
    let (m, s) = (MARGIN as f64 * 2.0, side as f64);
    let full = s + 2.0 * m;
    let x = |f: f64| m + f * s;
    let y = |f: f64| m + s - f * s;
    let rgb = |c: [u8; 3]| format!("rgb({},{},{})", c[0], c[1], c[2]);
    let mut svg =
        format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{full}" height="{full}" viewBox="0 0 {full} {full}" role="img" aria-label="ROC curve">"#);
    svg += &format!(r#"<rect width="{full}" height="{full}" fill="{}"/>"#, rgb(BACKGROUND));
    for q in 1..4 {
        let v = q as f64 / 4.0;
        svg += &format!(r#"<path d="M{} {}V{}M{} {}H{}" stroke="{}" fill="none"/>"#, x(v), y(0.0), y(1.0), x(0.0), y(v), x(1.0), rgb(GRID));
    }
    svg += &format!(r#"<path d="M{} {}L{} {}" stroke="{}" stroke-dasharray="6 6"/>"#, x(0.0), y(0.0), x(1.0), y(1.0), rgb(CHANCE));
    svg += &format!(r#"<rect x="{m}" y="{m}" width="{s}" height="{s}" fill="none" stroke="{}"/>"#, rgb(AXES));
    let points: Vec<String> = curve.fpr.iter().zip(&curve.tpr).map(|(&f, &t)| format!("{:.2},{:.2}", x(f), y(t))).collect();
    svg += &format!(r#"<polyline data-test="roc-curve" points="{}" fill="none" stroke="{}" stroke-width="3"/>"#, points.join(" "), rgb(CURVE));
    let label = |text: &str, lx: f64, ly: f64, rotate: bool| {
        let transform = if rotate { format!(r#" transform="rotate(-90 {lx} {ly})""#) } else { String::new() };
        format!(r#"<text x="{lx}" y="{ly}" font-size="12" text-anchor="middle"{transform}>{text}</text>"#)
    };
    svg += &label("false positive rate (synthetic called real)", m + s / 2.0, full - 8.0, false);
    svg += &label("true positive rate (real called real)", 12.0, m + s / 2.0, true);
    svg + "</svg>"
}

/// One group of the study plot: its name and its runs' AUROC with their 95 % intervals.
pub struct AurocGroup<'a> {
    pub name: &'a str,
    pub runs: Vec<(f64, [f64; 2])>,
}

/// The AUROC range the study plot shows: 0.5 (chance) to 1, widened to every interval.
fn auroc_range(groups: &[AurocGroup]) -> (f64, f64) {
    let values = groups.iter().flat_map(|g| g.runs.iter().flat_map(|(a, ci)| [*a, ci[0], ci[1]]));
    let (lo, hi) = values.fold((0.5f64, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    ((lo * 20.0).floor() / 20.0, (hi * 20.0).ceil() / 20.0)
}

/// The CAD study as SVG: per group a column of its runs (a dot with its interval as a vertical
/// line, runs side by side) and their mean (a horizontal bar); the chance level dashed; grid
/// lines every 0.05 of AUROC.
pub fn auroc_svg(groups: &[AurocGroup], title: &str) -> String {
    let (column, height, left, top, bottom) = (160.0, 320.0, 56.0, 32.0, 40.0);
    let width = left + column * groups.len() as f64 + 16.0;
    let full_height = top + height + bottom;
    let (lo, hi) = auroc_range(groups);
    let y = |a: f64| top + height * (hi - a) / (hi - lo);
    let rgb = |c: [u8; 3]| format!("rgb({},{},{})", c[0], c[1], c[2]);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{full_height}" viewBox="0 0 {width} {full_height}" role="img" aria-label="{title}">"#
    );
    svg += &format!(r#"<rect width="{width}" height="{full_height}" fill="{}"/>"#, rgb(BACKGROUND));
    svg += &format!(r#"<text x="{}" y="20" font-size="13" text-anchor="middle">{title}</text>"#, width / 2.0);
    let steps = ((hi - lo) / 0.05).round() as usize;
    for k in 0..=steps {
        let a = lo + 0.05 * k as f64;
        svg += &format!(r#"<path d="M{left} {0:.2}H{1}" stroke="{2}"/>"#, y(a), width - 16.0, rgb(GRID));
        svg += &format!(r#"<text x="{}" y="{:.2}" font-size="11" text-anchor="end">{a:.2}</text>"#, left - 6.0, y(a) + 4.0);
    }
    svg += &format!(r#"<path data-test="chance" d="M{left} {0:.2}H{1}" stroke="{2}" stroke-dasharray="6 6"/>"#, y(0.5), width - 16.0, rgb(CHANCE));
    svg += &format!(
        r#"<text x="14" y="{}" font-size="12" text-anchor="middle" transform="rotate(-90 14 {0})">AUROC on the real test split</text>"#,
        top + height / 2.0
    );
    for (g, group) in groups.iter().enumerate() {
        let centre = left + column * (g as f64 + 0.5);
        let spread = 14.0;
        let first = centre - spread * (group.runs.len() as f64 - 1.0) / 2.0;
        for (r, (auroc, ci)) in group.runs.iter().enumerate() {
            let x = first + spread * r as f64;
            svg += &format!(r#"<path d="M{x:.2} {:.2}V{:.2}" stroke="{}" stroke-width="1.5"/>"#, y(ci[0]), y(ci[1]), rgb(CURVE));
            svg += &format!(r#"<circle data-test="run" cx="{x:.2}" cy="{:.2}" r="4" fill="{}"/>"#, y(*auroc), rgb(CURVE));
        }
        if !group.runs.is_empty() {
            let mean = group.runs.iter().map(|r| r.0).sum::<f64>() / group.runs.len() as f64;
            svg +=
                &format!(r#"<path data-test="mean" d="M{:.2} {:.2}H{:.2}" stroke="{}" stroke-width="3"/>"#, centre - 40.0, y(mean), centre + 40.0, rgb(AXES));
        }
        svg += &format!(r#"<text x="{centre:.2}" y="{}" font-size="12" text-anchor="middle">{}</text>"#, top + height + 24.0, group.name);
    }
    svg + "</svg>"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_passes_through_its_points() {
        // A perfect reader: (0,0) → (0,1) → (1,1): the left and top edges in the curve's colour.
        let curve = RocCurve { fpr: vec![0.0, 0.0, 1.0], tpr: vec![0.0, 1.0, 1.0], thresholds: vec![f64::INFINITY, 3.0, 0.0] };
        let image = roc_plot(&curve, 100);
        let pixel = |x: usize, y: usize| image.pixels[(y * image.width + x) * 3..][..3].to_vec();
        assert_eq!(pixel(MARGIN, MARGIN + 50), CURVE.to_vec(), "left edge");
        assert_eq!(pixel(MARGIN + 50, MARGIN), CURVE.to_vec(), "top edge");
        assert_eq!(pixel(MARGIN + 75, MARGIN + 25), CHANCE.to_vec(), "the diagonal at (0.75, 0.75)");
        assert_eq!(pixel(MARGIN + 60, MARGIN + 70), BACKGROUND.to_vec(), "below the diagonal, off the grid");
        let svg = roc_svg(&curve, 100);
        let m = 2.0 * MARGIN as f64;
        assert!(svg.contains(&format!(r#"points="{m:.2},{:.2} {m:.2},{m:.2} {:.2},{m:.2}""#, m + 100.0, m + 100.0)), "{svg}");
    }

    #[test]
    fn study_plot_places_runs_and_means_on_the_auroc_axis() {
        let groups = [
            AurocGroup { name: "real", runs: vec![(0.6, [0.55, 0.65]), (0.7, [0.65, 0.75])] },
            AurocGroup { name: "synthetic", runs: vec![(0.52, [0.44, 0.6])] },
        ];
        // Axis from 0.40 (the lowest interval end, down to a 0.05 step) to 1: 320 pixels from y = 32.
        assert_eq!(auroc_range(&groups), (0.4, 1.0));
        let svg = auroc_svg(&groups, "study");
        let y = |a: f64| 32.0 + 320.0 * (1.0 - a) / 0.6;
        assert_eq!(svg.matches(r#"data-test="run""#).count(), 3);
        assert!(svg.contains(&format!(r#"cx="{:.2}" cy="{:.2}""#, 56.0 + 80.0 - 7.0, y(0.6))), "{svg}");
        // The first group's mean, 0.65, as a bar across its column.
        assert!(svg.contains(&format!(r#"d="M{:.2} {:.2}H{:.2}""#, 96.0, y(0.65), 176.0)), "{svg}");
        assert!(svg.contains(&format!(r#"data-test="chance" d="M56 {:.2}"#, y(0.5))), "{svg}");
    }
}
