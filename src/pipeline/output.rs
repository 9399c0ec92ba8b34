//! What happens to a generated image after decoding, the same in the CLI and the page:
//! inpainting pastes the original back outside the mask (when asked), a right breast is
//! mirrored back from the model's left-facing orientation, and the PNG's `parameters` record the
//! run under the same keys everywhere.

use super::text_to_image::GenerateParams;
use crate::imaging::RgbImage;

/// The decoded `image` as shown and saved: the original kept outside the mask when
/// `keep_outside` gives them (both in the model's orientation), then mirrored for a right breast.
pub fn finish_image(image: RgbImage, keep_outside: Option<(&RgbImage, &[u8])>, right_breast: bool) -> RgbImage {
    let image = match keep_outside {
        Some((original, mask)) => image.keep_outside(original, mask),
        None => image,
    };
    if right_breast { image.mirrored() } else { image }
}

/// The `parameters` record of a run: its settings ([`GenerateParams::describe`]), `mode`
/// (`inpainting` when `keep_outside` is given, with it; else `text-to-image`), `laterality`,
/// `model` and `software`. Callers add what only they know (the CLI's input files).
pub fn parameters(params: &GenerateParams, keep_outside: Option<bool>, right_breast: bool, model: &str, software: &str) -> serde_json::Value {
    let mut parameters = params.describe();
    parameters["mode"] = (if keep_outside.is_some() { "inpainting" } else { "text-to-image" }).into();
    if let Some(keep) = keep_outside {
        parameters["keep_outside"] = keep.into();
    }
    parameters["laterality"] = (if right_breast { "R" } else { "L" }).into();
    parameters["model"] = model.into();
    parameters["software"] = software.into();
    parameters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_outside_then_mirror() {
        let original = RgbImage { width: 2, height: 1, pixels: vec![1, 1, 1, 2, 2, 2] };
        let painted = RgbImage { width: 2, height: 1, pixels: vec![8, 8, 8, 9, 9, 9] };
        // The mask covers the right pixel: the left one comes back from the original, then the
        // row is mirrored.
        let finished = finish_image(painted.clone(), Some((&original, &[0, 255])), true);
        assert_eq!(finished.pixels, vec![9, 9, 9, 1, 1, 1]);
        assert_eq!(finish_image(painted.clone(), None, false), painted);
        let p = parameters(&GenerateParams::default(), Some(true), true, "demo", "mam-e test");
        assert_eq!((&p["mode"], &p["keep_outside"], &p["laterality"], &p["model"]), (&"inpainting".into(), &true.into(), &"R".into(), &"demo".into()));
        let p = parameters(&GenerateParams::default(), None, false, "demo", "mam-e test");
        assert_eq!((&p["mode"], p.get("keep_outside"), &p["laterality"]), (&"text-to-image".into(), None, &"L".into()));
    }
}
