//! The training log (`log.csv`: step, loss, learning rate, gradient norm, step time, memory) and
//! its loss-curve plot.

use std::io::Write;
use std::path::Path;

use super::StepReport;
use crate::imaging::RgbImage;

const HEADER: &str = "step,loss,lr,grad_norm,step_seconds,rss_mib";

/// Appends one row per step; on resume, rows after the checkpoint's step are dropped first so
/// the log reads as one uninterrupted run.
pub struct TrainLog {
    file: std::fs::File,
}

/// Resident memory of this process in MiB (Linux `/proc/self/status`; 0 elsewhere).
pub fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kib| kib / 1024.0)
}

impl TrainLog {
    pub fn open(path: &Path, resumed_step: u64) -> std::io::Result<TrainLog> {
        let kept: Vec<String> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter(|l| l.split(',').next().and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s <= resumed_step))
            .map(String::from)
            .collect();
        let mut text = format!("{HEADER}\n");
        for line in kept {
            text.push_str(&line);
            text.push('\n');
        }
        crate::data::write_atomic(path, text.as_bytes())?;
        Ok(TrainLog { file: std::fs::OpenOptions::new().append(true).open(path)? })
    }

    pub fn append(&mut self, r: &StepReport) -> std::io::Result<()> {
        writeln!(self.file, "{},{:.6},{:.3e},{:.5},{:.3},{:.0}", r.step, r.loss, r.lr, r.grad_norm, r.seconds, rss_mib())?;
        self.file.flush()
    }
}

/// Reads `(step, loss)` pairs from a log.
pub fn read_losses(path: &Path) -> Result<Vec<(f64, f64)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut points = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let mut fields = line.split(',');
        let (Some(step), Some(loss)) = (fields.next(), fields.next()) else { continue };
        match (step.parse::<f64>(), loss.parse::<f64>()) {
            (Ok(s), Ok(l)) if l.is_finite() => points.push((s, l)),
            _ => return Err(format!("{}:{}: not a log row: {line}", path.display(), i + 1)),
        }
    }
    if points.is_empty() {
        return Err(format!("{} has no rows yet", path.display()));
    }
    Ok(points)
}

/// 3×5 pixel glyphs for axis labels: digits, `e`, `-`, `.`, each row three bits, top first.
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        'e' => [0, 7, 7, 4, 7],
        '-' => [0, 0, 7, 0, 0],
        '.' => [0, 0, 0, 0, 2],
        _ => [0; 5],
    }
}

/// Draws `text` with its top-left corner at (x, y), each glyph pixel `scale`² screen pixels.
fn draw_text(img: &mut RgbImage, text: &str, x: usize, y: usize, scale: usize) {
    for (k, c) in text.chars().enumerate() {
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..3 {
                if bits >> (2 - col) & 1 == 1 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let (px, py) = (x + (k * 4 + col) * scale + dx, y + row * scale + dy);
                            if px < img.width && py < img.height {
                                let i = (py * img.width + px) * 3;
                                img.pixels[i..i + 3].copy_from_slice(&[0, 0, 0]);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A loss curve: the raw loss in light gray, its exponential moving average (0.98) in dark
/// blue, on a log-scale loss axis with grid lines at each power of ten (labelled `1e-2`, ...)
/// and at 2× and 5×; the last step is written under the right end of the step axis.
pub fn plot(points: &[(f64, f64)], width: usize, height: usize) -> RgbImage {
    let mut img = RgbImage { width, height, pixels: vec![255; width * height * 3] };
    let (margin, w, h) = (40usize, width - 60, height - 60);
    let (x0, y0) = (margin, 20usize);
    let step_max = points.last().map_or(1.0, |p| p.0).max(1.0);
    let (lo, hi) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let (lo, hi) = (lo.max(1e-12).log10().floor(), hi.max(1e-12).log10().ceil().max(lo.max(1e-12).log10().floor() + 1.0));
    let to_px = |step: f64, loss: f64| -> (f64, f64) {
        let x = x0 as f64 + step / step_max * w as f64;
        let y = y0 as f64 + (hi - loss.max(1e-12).log10()) / (hi - lo) * h as f64;
        (x, y)
    };
    let mut set = |x: f64, y: f64, c: [u8; 3]| {
        let (x, y) = (x.round() as isize, y.round() as isize);
        if x >= 0 && y >= 0 && (x as usize) < width && (y as usize) < height {
            let i = (y as usize * width + x as usize) * 3;
            img.pixels[i..i + 3].copy_from_slice(&c);
        }
    };
    // Grid: each decade and its 2× and 5×.
    let mut decade = lo;
    while decade < hi {
        for m in [1.0, 2.0, 5.0] {
            let (_, y) = to_px(0.0, m * 10f64.powf(decade));
            let shade = if m == 1.0 { [150, 150, 150] } else { [220, 220, 220] };
            for x in x0..x0 + w {
                set(x as f64, y, shade);
            }
        }
        decade += 1.0;
    }
    let mut labels = Vec::new();
    let mut decade = lo;
    while decade <= hi {
        labels.push((to_px(0.0, 10f64.powf(decade)).1, format!("1e{}", decade as i64)));
        decade += 1.0;
    }
    for y in y0..=y0 + h {
        set(x0 as f64, y as f64, [0, 0, 0]);
    }
    for x in x0..=x0 + w {
        set(x as f64, (y0 + h) as f64, [0, 0, 0]);
    }
    let mut line = |pts: &[(f64, f64)], c: [u8; 3]| {
        for pair in pts.windows(2) {
            let (a, b) = (to_px(pair[0].0, pair[0].1), to_px(pair[1].0, pair[1].1));
            let n = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
            for k in 0..=n {
                let t = k as f64 / n as f64;
                set(a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t, c);
            }
        }
    };
    line(points, [200, 200, 200]);
    let mut ema = Vec::with_capacity(points.len());
    let mut value = points[0].1;
    for &(s, l) in points {
        value = 0.98 * value + 0.02 * l;
        ema.push((s, value));
    }
    line(&ema, [20, 40, 160]);
    for (y, text) in labels {
        draw_text(&mut img, &text, 2, (y as usize).saturating_sub(5), 2);
    }
    let last = format!("{}", step_max as u64);
    draw_text(&mut img, &last, (x0 + w).saturating_sub(last.len() * 8), y0 + h + 6, 2);
    draw_text(&mut img, "0", x0, y0 + h + 6, 2);
    img
}
