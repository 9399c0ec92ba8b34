//! The lesion mask being painted: one byte per pixel (255 = repaint, 0 = keep), brush strokes,
//! rectangles (the paper trained on lesion bounding boxes), and undo/redo by whole strokes.

/// A mask at the image's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Mask {
    pub fn new(width: usize, height: usize) -> Self {
        Mask { width, height, data: vec![0; width * height] }
    }

    pub fn is_empty(&self) -> bool {
        self.data.iter().all(|&v| v == 0)
    }

    /// A disc of `radius` pixels at (x, y) (pixel units, may be fractional).
    pub fn disc(&mut self, x: f64, y: f64, radius: f64, value: u8) {
        let r = radius.max(0.5);
        let (y0, y1) = ((y - r).floor().max(0.0) as usize, ((y + r).ceil().max(0.0) as usize).min(self.height));
        let (x0, x1) = ((x - r).floor().max(0.0) as usize, ((x + r).ceil().max(0.0) as usize).min(self.width));
        for py in y0..y1 {
            for px in x0..x1 {
                let (dx, dy) = (px as f64 + 0.5 - x, py as f64 + 0.5 - y);
                if dx * dx + dy * dy <= r * r {
                    self.data[py * self.width + px] = value;
                }
            }
        }
    }

    /// A stroke from `from` to `to`: discs every half radius along the segment.
    pub fn line(&mut self, from: (f64, f64), to: (f64, f64), radius: f64, value: u8) {
        let length = ((to.0 - from.0).powi(2) + (to.1 - from.1).powi(2)).sqrt();
        let steps = (length / (radius.max(0.5) / 2.0)).ceil().max(1.0) as usize;
        for i in 0..=steps {
            let t = i as f64 / steps as f64;
            self.disc(from.0 + (to.0 - from.0) * t, from.1 + (to.1 - from.1) * t, radius, value);
        }
    }

    /// Every pixel whose centre lies in the rectangle spanned by two corners (any order).
    pub fn rectangle(&mut self, a: (f64, f64), b: (f64, f64), value: u8) {
        let (x0, x1) = (a.0.min(b.0), a.0.max(b.0));
        let (y0, y1) = (a.1.min(b.1), a.1.max(b.1));
        for py in 0..self.height {
            for px in 0..self.width {
                let (cx, cy) = (px as f64 + 0.5, py as f64 + 0.5);
                if cx >= x0 && cx <= x1 && cy >= y0 && cy <= y1 {
                    self.data[py * self.width + px] = value;
                }
            }
        }
    }
}

/// Undo/redo of whole strokes: snapshots taken before each change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    undo: Vec<Vec<u8>>,
    redo: Vec<Vec<u8>>,
}

impl History {
    /// Call before a change to `mask`.
    pub fn record(&mut self, mask: &Mask) {
        self.undo.push(mask.data.clone());
        self.redo.clear();
    }

    pub fn undo(&mut self, mask: &mut Mask) -> bool {
        let Some(previous) = self.undo.pop() else { return false };
        self.redo.push(std::mem::replace(&mut mask.data, previous));
        true
    }

    pub fn redo(&mut self, mask: &mut Mask) -> bool {
        let Some(next) = self.redo.pop() else { return false };
        self.undo.push(std::mem::replace(&mut mask.data, next));
        true
    }

    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rectangle_covers_the_pixels_inside_its_corners() {
        let mut mask = Mask::new(8, 6);
        mask.rectangle((5.0, 4.0), (2.0, 1.0), 255);
        for y in 0..6 {
            for x in 0..8 {
                let inside = (2..5).contains(&x) && (1..4).contains(&y);
                assert_eq!(mask.data[y * 8 + x] == 255, inside, "({x}, {y})");
            }
        }
    }

    #[test]
    fn disc_area_is_close_to_pi_r_squared_and_clipped_at_the_border() {
        let mut mask = Mask::new(100, 100);
        mask.disc(50.0, 50.0, 10.0, 255);
        let area = mask.data.iter().filter(|&&v| v == 255).count() as f64;
        assert!((area - std::f64::consts::PI * 100.0).abs() < 15.0, "{area}");
        let mut corner = Mask::new(10, 10);
        corner.disc(0.0, 0.0, 3.0, 255);
        assert!(!corner.is_empty());
    }

    #[test]
    fn eraser_undo_and_redo_restore_whole_strokes() {
        let mut mask = Mask::new(20, 20);
        let mut history = History::default();
        history.record(&mask);
        mask.line((2.0, 2.0), (18.0, 2.0), 1.5, 255);
        let stroke = mask.clone();
        history.record(&mask);
        mask.disc(10.0, 2.0, 3.0, 0);
        assert_ne!(mask, stroke);
        assert!(history.undo(&mut mask));
        assert_eq!(mask, stroke);
        assert!(history.undo(&mut mask));
        assert!(mask.is_empty());
        assert!(!history.undo(&mut mask));
        assert!(history.redo(&mut mask));
        assert_eq!(mask, stroke);
    }
}
