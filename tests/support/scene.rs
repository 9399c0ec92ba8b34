//! The one scene both the native and the browser tests run on the embedded packages
//! (static/models/), so the browser can be compared with native results.

use mam_e::imaging::RgbImage;
use mam_e::mask::Mask;
use mam_e::pipeline::text_to_image::GenerateParams;
use mam_e::schedulers::SchedulerKind;

pub const SIZE: usize = 64;

pub fn text_to_image_params() -> GenerateParams {
    GenerateParams {
        prompt: "a siemens mammogram in MLO view with high density and small area".into(),
        steps: 4,
        guidance: 6.0,
        scheduler: SchedulerKind::Dpm,
        height: SIZE,
        width: SIZE,
        seed: 1338,
        ..Default::default()
    }
}

pub fn inpaint_params() -> GenerateParams {
    GenerateParams { prompt: mam_e::prompt::LESION_PROMPT.into(), guidance: 3.0, ..text_to_image_params() }
}

/// A smooth gray gradient with a brighter disc, and a rectangle mask over part of it.
pub fn inpaint_input() -> (RgbImage, Vec<u8>) {
    let mut pixels = Vec::with_capacity(SIZE * SIZE * 3);
    for y in 0..SIZE {
        for x in 0..SIZE {
            let d = ((x as f64 - 24.0).powi(2) + (y as f64 - 30.0).powi(2)).sqrt();
            let v = (40.0 + 2.0 * x as f64 + if d < 14.0 { 60.0 } else { 0.0 }).min(255.0) as u8;
            pixels.extend([v, v, v]);
        }
    }
    let mut mask = Mask::new(SIZE, SIZE);
    mask.rectangle((20.0, 16.0), (44.0, 40.0), 255);
    (RgbImage { width: SIZE, height: SIZE, pixels }, mask.data)
}
