//! Where a synthetic lesion goes: a box placed at random inside the breast, taken as the largest
//! connected region of breast-bright pixels of the generated healthy image (as MAM-E's batch
//! inpainting tool did).

use crate::data::prepare::PixelBox;
use crate::imaging::BREAST_LEVEL;
use crate::rng::NoiseRng;

/// The largest 4-connected region of pixels brighter than [`BREAST_LEVEL`] in a `width`×`height`
/// gray image: `true` inside it.
pub fn breast_region(gray: &[u8], width: usize, height: usize) -> Vec<bool> {
    let mut label = vec![0u32; gray.len()];
    let (mut best, mut best_size, mut next) = (0u32, 0usize, 0u32);
    let mut stack = Vec::new();
    for start in 0..gray.len() {
        if gray[start] <= BREAST_LEVEL || label[start] != 0 {
            continue;
        }
        next += 1;
        label[start] = next;
        stack.push(start);
        let mut size = 0;
        while let Some(i) = stack.pop() {
            size += 1;
            let (x, y) = (i % width, i / width);
            let neighbours = [(x > 0).then(|| i - 1), (x + 1 < width).then(|| i + 1), (y > 0).then(|| i - width), (y + 1 < height).then(|| i + width)];
            for j in neighbours.into_iter().flatten() {
                if gray[j] > BREAST_LEVEL && label[j] == 0 {
                    label[j] = next;
                    stack.push(j);
                }
            }
        }
        if size > best_size {
            (best, best_size) = (next, size);
        }
    }
    label.iter().map(|&l| l != 0 && l == best).collect()
}

/// A `box_w`×`box_h` box inside `region`, drawn from `rng`: uniformly among the positions that
/// put the whole box in the region; if none does (a small breast), among those whose centre is
/// in it; if the region is empty, the image's centre. Returns the box and whether it lies
/// wholly inside the breast.
pub fn place_box(region: &[bool], width: usize, height: usize, (box_w, box_h): (usize, usize), rng: &mut NoiseRng) -> (PixelBox, bool) {
    assert!(box_w < width && box_h < height, "place_box: box larger than the image");
    // Summed-area table of the region: a box lies inside when its sum is its area.
    let mut sums = vec![0u32; (width + 1) * (height + 1)];
    for y in 0..height {
        for x in 0..width {
            sums[(y + 1) * (width + 1) + x + 1] =
                region[y * width + x] as u32 + sums[y * (width + 1) + x + 1] + sums[(y + 1) * (width + 1) + x] - sums[y * (width + 1) + x];
        }
    }
    let inside = |x0: usize, y0: usize| {
        let (x1, y1) = (x0 + box_w, y0 + box_h);
        sums[y1 * (width + 1) + x1] + sums[y0 * (width + 1) + x0] - sums[y0 * (width + 1) + x1] - sums[y1 * (width + 1) + x0] == (box_w * box_h) as u32
    };
    let corners = (0..=height - box_h).flat_map(|y| (0..=width - box_w).map(move |x| (x, y)));
    let whole: Vec<(usize, usize)> = corners.clone().filter(|&(x, y)| inside(x, y)).collect();
    let centred: Vec<(usize, usize)> = corners.filter(|&(x, y)| region[(y + box_h / 2) * width + x + box_w / 2]).collect();
    let pick = |candidates: &[(usize, usize)], rng: &mut NoiseRng| candidates[((rng.uniform() * candidates.len() as f64) as usize).min(candidates.len() - 1)];
    let ((x0, y0), whole_inside) = if !whole.is_empty() {
        (pick(&whole, rng), true)
    } else if !centred.is_empty() {
        (pick(&centred, rng), false)
    } else {
        (((width - box_w) / 2, (height - box_h) / 2), false)
    };
    (PixelBox { x0, y0, x1: x0 + box_w, y1: y0 + box_h }, whole_inside)
}

/// A mask of `width`×`height` bytes, 255 inside `b`.
pub fn box_mask(b: &PixelBox, width: usize, height: usize) -> Vec<u8> {
    let mut mask = vec![0u8; width * height];
    for y in b.y0..b.y1 {
        mask[y * width + b.x0..y * width + b.x1].fill(255);
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_region_wins_and_boxes_stay_inside_it() {
        // 40×30: a 4×4 speck top-left and a 20×20 square (bright) at x 15..35, y 5..25.
        let (w, h) = (40, 30);
        let mut gray = vec![0u8; w * h];
        for y in 0..h {
            for x in 0..w {
                if (x < 4 && y < 4) || ((15..35).contains(&x) && (5..25).contains(&y)) {
                    gray[y * w + x] = 200;
                }
            }
        }
        gray[20 * w + 20] = BREAST_LEVEL; // not above the level: a hole, still one region around it
        let region = breast_region(&gray, w, h);
        assert_eq!(region.iter().filter(|&&r| r).count(), 20 * 20 - 1);
        assert!(!region[0]);
        let mut rng = NoiseRng::new(3);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let (b, whole) = place_box(&region, w, h, (6, 4), &mut rng);
            assert!(whole);
            assert!(b.x0 >= 15 && b.x1 <= 35 && b.y0 >= 5 && b.y1 <= 25, "{b:?}");
            assert!(!(b.x0..b.x1).contains(&20) || !(b.y0..b.y1).contains(&20), "the hole is not breast: {b:?}");
            seen.insert((b.x0, b.y0));
        }
        assert!(seen.len() > 30, "boxes spread over the breast: {}", seen.len());
        // Too big to fit wholly: centred in the breast instead.
        let (b, whole) = place_box(&region, w, h, (24, 8), &mut rng);
        assert!(!whole && region[(b.y0 + 4) * w + b.x0 + 12], "{b:?}");
        // An empty image: the centre.
        let (b, whole) = place_box(&vec![false; w * h], w, h, (10, 10), &mut rng);
        assert_eq!((b.x0, b.y0, whole), (15, 10, false));
        let mask = box_mask(&b, w, h);
        assert_eq!(mask.iter().filter(|&&m| m == 255).count(), 100);
        assert_eq!(mask[10 * w + 15], 255);
        assert_eq!(mask[20 * w + 25], 0);
    }
}
