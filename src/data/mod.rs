//! Training data: procedural phantom mammograms with exact labels (`phantom`), DICOM reading and
//! writing (`dicom`), the VinDr-Mammo folder layout (`vindr`), and MAM-E's preprocessing from
//! DICOM to a training set (`prepare`).

pub mod dicom;
pub mod measure;
pub mod phantom;
pub mod prepare;
pub mod texture;
pub mod training_set;
pub mod vindr;

use std::fmt;

/// Which breast an image shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Laterality {
    L,
    R,
}

impl Laterality {
    pub fn letter(self) -> &'static str {
        match self {
            Laterality::L => "L",
            Laterality::R => "R",
        }
    }
}

impl fmt::Display for Laterality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.letter())
    }
}

/// An axis-aligned box in pixel-edge coordinates: the pixels `xmin..xmax` × `ymin..ymax`
/// (VinDr-Mammo's convention, floats in the original image's pixels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundingBox {
    pub xmin: f64,
    pub ymin: f64,
    pub xmax: f64,
    pub ymax: f64,
}

impl BoundingBox {
    pub fn width(&self) -> f64 {
        self.xmax - self.xmin
    }
    pub fn height(&self) -> f64 {
        self.ymax - self.ymin
    }
}

/// A lesion annotation: VinDr's finding category (`Mass`, `Suspicious Calcification`, ...),
/// its BI-RADS assessment and its box.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub category: String,
    pub birads: Option<u8>,
    pub bbox: BoundingBox,
}

pub use crate::atomic::write as write_atomic;

/// A short lowercase hexadecimal id, deterministic in `key` (VinDr's ids are 32 hex digits).
pub fn hex_id(key: u64) -> String {
    let mut rng = crate::rng::NoiseRng::new(key);
    format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}
