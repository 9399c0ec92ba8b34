//! DICOM mammograms through dicom-rs: reading any transfer syntax the build can decode (with the
//! modality and VOI LUTs applied as pydicom's `apply_modality_lut` + `apply_voi_lut` do, which is
//! what MAM-E's preprocessing ran), and writing our phantoms and synthetic images as 16-bit MG files.

use std::path::Path;

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, DecodedPixelData, ModalityLutOption, PixelDecoder, VoiLutFunction, VoiLutOption};

use crate::data::Laterality;
use crate::prompt::{Vendor, View};

/// A VOI LUT (DICOM PS3.3 C.11.2): a window with its function, a LUT table, or none.
#[derive(Debug, Clone, PartialEq)]
pub enum Voi {
    /// Window centre and width with LINEAR, LINEAR_EXACT or SIGMOID.
    Window { center: f64, width: f64, function: VoiLutFunction },
    /// VOI LUT Sequence table: values below `first_mapped` take the first entry, above the end the last.
    Table { first_mapped: i32, bits: u8, data: Vec<u16> },
    /// No VOI transform: the modality values, clipped to the output range.
    Identity,
}

impl Voi {
    /// Maps a modality value into `[y_min, y_max]` (for a table, into the table's own range).
    pub fn apply(&self, x: f64, y_min: f64, y_max: f64) -> f64 {
        let range = y_max - y_min;
        match *self {
            Voi::Window { center, width, function: VoiLutFunction::Linear } => {
                // C.11.2.1.2.1: the window is [c − 0.5 − (w−1)/2, c − 0.5 + (w−1)/2].
                let (c, w) = (center - 0.5, (width - 1.0).max(0.0));
                if x <= c - w / 2.0 {
                    y_min
                } else if x > c + w / 2.0 {
                    y_max
                } else {
                    ((x - c) / w.max(f64::MIN_POSITIVE) + 0.5) * range + y_min
                }
            }
            Voi::Window { center, width, function: VoiLutFunction::LinearExact } => {
                if x <= center - width / 2.0 {
                    y_min
                } else if x > center + width / 2.0 {
                    y_max
                } else {
                    ((x - center) / width + 0.5) * range + y_min
                }
            }
            Voi::Window { center, width, function: VoiLutFunction::Sigmoid } => range / (1.0 + (-4.0 * (x - center) / width).exp()) + y_min,
            Voi::Table { first_mapped, ref data, .. } => {
                let index = (x.round() as i64 - first_mapped as i64).clamp(0, data.len() as i64 - 1);
                data[index as usize] as f64
            }
            Voi::Identity => x.clamp(y_min, y_max),
        }
    }

    /// The output range for input range `[y_min, y_max]` (a table has its own).
    pub fn output_range(&self, y_min: f64, y_max: f64) -> (f64, f64) {
        match self {
            Voi::Table { bits, .. } => (0.0, ((1u32 << bits) - 1) as f64),
            _ => (y_min, y_max),
        }
    }
}

/// A decoded mammogram, VOI applied, shifted so the output range starts at 0 and inverted when
/// MONOCHROME1, so 0 is black (background) and `max` white.
#[derive(Debug, Clone)]
pub struct DicomImage {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<f32>,
    /// The largest value `values` can take (2^BitsStored − 1 for a window on unsigned data).
    pub max: f32,
    pub bits_stored: u16,
    pub manufacturer: Option<String>,
    pub laterality: Option<Laterality>,
    pub view: Option<View>,
    pub transfer_syntax: String,
    /// What was done that a user may want to know (MONOCHROME1 inverted, no VOI in the file, ...).
    pub notes: Vec<String>,
}

/// The vendor a Manufacturer tag names, if it is one MAM-E's prompts know.
pub fn vendor_of(manufacturer: &str) -> Option<Vendor> {
    let m = manufacturer.to_ascii_lowercase();
    if m.contains("hologic") || m.contains("lorad") {
        Some(Vendor::Hologic)
    } else if m.contains("siemens") {
        Some(Vendor::Siemens)
    } else {
        None
    }
}

fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<String> {
    obj.get(tag).and_then(|e| e.to_str().ok()).map(|s| s.trim().trim_end_matches('\0').trim().to_string()).filter(|s| !s.is_empty())
}

/// The longest side accepted (full-field digital mammograms: ≤ 6000 or so).
pub const MAX_SIDE: u64 = 16_384;
/// The most pixels over all frames accepted before decoding (2^27: 512 MiB as f32).
pub const MAX_PIXELS: u64 = 1 << 27;

/// Reads a DICOM file into a [`DicomImage`]. The error says what is wrong with the file, in words
/// fit for a per-file report (unreadable, no pixel data, unsupported transfer syntax, colour, ...).
/// A panic inside the DICOM libraries on a malformed file (dicom-rs 0.10.1's RLE decoder indexes
/// past a truncated segment: found by `tests/fuzz.rs`) is that file's error too, not the run's end.
pub fn read(path: &Path) -> Result<DicomImage, String> {
    std::panic::catch_unwind(|| read_unguarded(path)).unwrap_or_else(|panic| {
        let what = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        Err(format!("malformed file: the DICOM decoder failed on it ({what})"))
    })
}

fn read_unguarded(path: &Path) -> Result<DicomImage, String> {
    let obj = OpenFileOptions::new().open_file(path).map_err(|e| format!("not a readable DICOM file: {e}"))?;
    let transfer_syntax = obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
    use dicom_encoding::TransferSyntaxIndex;
    let ts_name =
        dicom_transfer_syntax_registry::TransferSyntaxRegistry.get(&transfer_syntax).map(|ts| ts.name().to_string()).unwrap_or_else(|| "unknown".into());
    if obj.get(tags::PIXEL_DATA).is_none() {
        return Err("no pixel data".into());
    }
    // Decoding allocates every frame at once: a header claiming a huge image must not.
    let number = |tag| obj.element(tag).ok().and_then(|e| e.to_int::<u64>().ok());
    let (rows, cols, frames) = (number(tags::ROWS).unwrap_or(0), number(tags::COLUMNS).unwrap_or(0), number(tags::NUMBER_OF_FRAMES).unwrap_or(1));
    if rows.max(cols) > MAX_SIDE || (rows * cols).saturating_mul(frames.max(1)) > MAX_PIXELS {
        return Err(format!("{rows}×{cols} pixels in {frames} frame(s): more than a mammogram has (at most {MAX_SIDE} a side, {MAX_PIXELS} pixels)"));
    }
    let decoded = obj.decode_pixel_data().map_err(|e| format!("cannot decode pixel data in transfer syntax {ts_name} ({transfer_syntax}): {e}"))?;
    if decoded.samples_per_pixel() != 1 {
        return Err(format!("{} samples per pixel: a mammogram is grayscale", decoded.samples_per_pixel()));
    }
    let (rows, cols) = (decoded.rows() as usize, decoded.columns() as usize);
    if rows == 0 || cols == 0 {
        return Err("empty image".into());
    }
    // Modality LUT (rescale) applied by dicom-pixeldata; VOI done here, as pydicom does it.
    let options = ConvertOptions::new().with_modality_lut(ModalityLutOption::Default).with_voi_lut(VoiLutOption::Identity);
    let modality: Vec<f32> = decoded.to_vec_frame_with_options(0, &options).map_err(|e| format!("cannot convert pixel data: {e}"))?;
    let bits_stored = decoded.bits_stored();
    let (y_min, y_max) = modality_range(&decoded);
    let mut notes = Vec::new();
    let voi = voi_of(&obj, &decoded, &mut notes)?;
    let (out_min, out_max) = voi.output_range(y_min, y_max);
    let monochrome1 = decoded.photometric_interpretation().as_str() == "MONOCHROME1";
    if monochrome1 {
        notes.push("MONOCHROME1: inverted so the breast is bright".into());
    }
    let values = modality
        .iter()
        .map(|&x| {
            let y = voi.apply(x as f64, out_min, out_max) - out_min;
            (if monochrome1 { (out_max - out_min) - y } else { y }) as f32
        })
        .collect();
    let obj_ref: &InMemDicomObject = &obj;
    let laterality = text(obj_ref, tags::IMAGE_LATERALITY).or_else(|| text(obj_ref, tags::LATERALITY)).and_then(|l| match l.as_str() {
        "L" => Some(Laterality::L),
        "R" => Some(Laterality::R),
        _ => None,
    });
    let view = text(obj_ref, tags::VIEW_POSITION).and_then(|v| match v.as_str() {
        "CC" => Some(View::Cc),
        "MLO" => Some(View::Mlo),
        _ => None,
    });
    Ok(DicomImage {
        rows,
        cols,
        values,
        max: (out_max - out_min) as f32,
        bits_stored,
        manufacturer: text(obj_ref, tags::MANUFACTURER),
        laterality,
        view,
        transfer_syntax,
        notes,
    })
}

/// The range of modality values the stored bits can hold: signed or not, through the rescale.
fn modality_range(decoded: &DecodedPixelData<'_>) -> (f64, f64) {
    let bits_stored = decoded.bits_stored() as i32;
    let signed = matches!(decoded.pixel_representation(), dicom_pixeldata::PixelRepresentation::Signed);
    let (mut y_min, mut y_max) = if signed { (-(2f64.powi(bits_stored - 1)), 2f64.powi(bits_stored - 1) - 1.0) } else { (0.0, 2f64.powi(bits_stored) - 1.0) };
    if let Ok(rescale) = decoded.rescale()
        && let Some(r) = rescale.first()
    {
        (y_min, y_max) = (y_min * r.slope + r.intercept, y_max * r.slope + r.intercept);
        if y_min > y_max {
            std::mem::swap(&mut y_min, &mut y_max);
        }
    }
    (y_min, y_max)
}

/// The file's VOI transform: its first VOI LUT table, else its first window (with its function),
/// else none (noted).
fn voi_of(obj: &InMemDicomObject, decoded: &DecodedPixelData<'_>, notes: &mut Vec<String>) -> Result<Voi, String> {
    // A VOI LUT the file has but dicom-rs finds malformed (it drops such a sequence: wrong length,
    // more than 16 bits) is the file's error: the window instead would be another image than the
    // file says.
    let tables = decoded.voi_lut_sequence().map_err(|e| format!("VOI LUT Sequence: {e}"))?;
    let listed = obj.get(tags::VOILUT_SEQUENCE).and_then(|e| e.items()).is_some_and(|items| !items.is_empty());
    if listed && tables.is_none_or(|t| t.is_empty()) {
        return Err("VOI LUT Sequence: a table is malformed (its length, entries or bits per entry, 1 to 16)".into());
    }
    Ok(match (tables, decoded.window().ok().flatten()) {
        (Some(tables), _) if !tables.is_empty() => {
            let t = &tables[0];
            // dicom-rs accepts 0 bits per entry, which leaves no output range.
            if t.data.is_empty() || !(1..=16).contains(&t.bits_stored) {
                return Err(format!("VOI LUT Sequence: a table of {} entries of {} bits (1 to 16 bits, at least one entry)", t.data.len(), t.bits_stored));
            }
            Voi::Table { first_mapped: t.min_pixel_value, bits: t.bits_stored, data: t.data.clone() }
        }
        (_, Some(windows)) if !windows.is_empty() => {
            let function = decoded.voi_lut_function().ok().flatten().and_then(|f| f.first().copied()).unwrap_or_default();
            Voi::Window { center: windows[0].center, width: windows[0].width, function }
        }
        _ => {
            notes.push("no VOI LUT or window in the file: modality values used as they are".into());
            Voi::Identity
        }
    })
}

/// A DICOM UID under the 2.25 root made from a 128-bit hex id (its first 32 digits).
pub fn uid(hex: &str) -> String {
    format!("2.25.{}", u128::from_str_radix(&hex[..32.min(hex.len())], 16).unwrap_or(0))
}

/// The Patient Orientation (row direction, column direction) of a mammogram as detectors store
/// it: a left breast has the chest wall at the left, so rows run anterior; a right one posterior.
fn patient_orientation(laterality: Laterality, view: View) -> &'static str {
    match (laterality, view) {
        (Laterality::L, View::Cc) => "A\\R",
        (Laterality::L, View::Mlo) => "A\\FR",
        (Laterality::R, View::Cc) => "P\\L",
        (Laterality::R, View::Mlo) => "P\\FL",
    }
}

/// Stored bits of the MG files we write (phantoms and synthetic images): 12, as most
/// full-field digital mammograms.
pub const BITS_STORED: u16 = 12;

/// What a written MG file says (everything but its pixels).
pub struct MammogramHeader<'a> {
    pub sop_instance: String,
    pub study: String,
    pub series: String,
    pub manufacturer: &'a str,
    pub model: &'a str,
    pub patient_id: &'a str,
    pub patient_name: &'a str,
    pub laterality: Laterality,
    pub view: View,
    pub image_type: &'a str,
    pub series_description: String,
    /// Derivation Description (0008,2111), for derived images.
    pub derivation: Option<String>,
    pub pixel_spacing_mm: Option<f64>,
    pub rows: usize,
    pub cols: usize,
    pub window: (f64, f64),
}

/// Writes a 16-bit (`BITS_STORED` bits used) "for presentation" digital mammogram (explicit VR
/// little endian), through a temporary file and a rename.
pub fn write_mammogram(path: &Path, h: &MammogramHeader, pixels: Vec<u16>) -> std::io::Result<()> {
    let el = |tag, vr, value: PrimitiveValue| DataElement::new(tag, vr, value);
    let s = |v: &str| PrimitiveValue::from(v);
    let mut elements = vec![
        el(tags::SOP_CLASS_UID, VR::UI, s(uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION)),
        el(tags::SOP_INSTANCE_UID, VR::UI, s(&h.sop_instance)),
        el(tags::STUDY_INSTANCE_UID, VR::UI, s(&h.study)),
        el(tags::SERIES_INSTANCE_UID, VR::UI, s(&h.series)),
        el(tags::MODALITY, VR::CS, s("MG")),
        el(tags::PRESENTATION_INTENT_TYPE, VR::CS, s("FOR PRESENTATION")),
        el(tags::MANUFACTURER, VR::LO, s(h.manufacturer)),
        el(tags::MANUFACTURER_MODEL_NAME, VR::LO, s(h.model)),
        el(tags::PATIENT_ID, VR::LO, s(h.patient_id)),
        el(tags::PATIENT_NAME, VR::PN, s(h.patient_name)),
        el(tags::BODY_PART_EXAMINED, VR::CS, s("BREAST")),
        el(tags::IMAGE_LATERALITY, VR::CS, s(h.laterality.letter())),
        el(tags::VIEW_POSITION, VR::CS, s(h.view.word())),
        el(tags::PATIENT_ORIENTATION, VR::CS, s(patient_orientation(h.laterality, h.view))),
        el(tags::BREAST_IMPLANT_PRESENT, VR::CS, s("NO")),
        el(tags::IMAGE_TYPE, VR::CS, s(h.image_type)),
        el(tags::SERIES_DESCRIPTION, VR::LO, s(&h.series_description)),
        el(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
        el(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, s("MONOCHROME2")),
        el(tags::ROWS, VR::US, PrimitiveValue::from(h.rows as u16)),
        el(tags::COLUMNS, VR::US, PrimitiveValue::from(h.cols as u16)),
        el(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16)),
        el(tags::BITS_STORED, VR::US, PrimitiveValue::from(BITS_STORED)),
        el(tags::HIGH_BIT, VR::US, PrimitiveValue::from(BITS_STORED - 1)),
        el(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(0u16)),
        el(tags::WINDOW_CENTER, VR::DS, s(&format!("{}", h.window.0))),
        el(tags::WINDOW_WIDTH, VR::DS, s(&format!("{}", h.window.1))),
        el(tags::VOILUT_FUNCTION, VR::CS, s("LINEAR")),
        el(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(dicom_core::smallvec::SmallVec::from_vec(pixels))),
    ];
    if let Some(mm) = h.pixel_spacing_mm {
        let spacing = format!("{mm:.6}\\{mm:.6}");
        elements.push(el(tags::PIXEL_SPACING, VR::DS, s(&spacing)));
        elements.push(el(tags::IMAGER_PIXEL_SPACING, VR::DS, s(&spacing)));
    }
    if let Some(derivation) = &h.derivation {
        elements.push(el(tags::DERIVATION_DESCRIPTION, VR::ST, s(derivation)));
        elements.push(el(tags::BURNED_IN_ANNOTATION, VR::CS, s("NO")));
    }
    let file = InMemDicomObject::from_element_iter(elements)
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .map_err(std::io::Error::other)?;
    crate::atomic::write_with(path, |tmp| file.write_to_file(tmp).map_err(std::io::Error::other))
}

/// The 12-bit value `prepare`'s vendor scaling maps to 8-bit `gray` (Siemens images are
/// divided by 3500, others by 4095), so a synthetic DICOM prepares back to its PNG.
pub fn synthetic_stored_value(gray: u8, vendor: Option<Vendor>) -> u16 {
    let full = if vendor == Some(Vendor::Siemens) { 3500.0 } else { 4095.0 };
    (gray as f64 * full / 255.0).round() as u16
}

/// A synthetic image as its DICOM file describes it.
pub struct SyntheticImage<'a> {
    /// 8-bit gray, row-major, in stored orientation (right breasts facing right).
    pub gray: &'a [u8],
    pub width: usize,
    pub height: usize,
    pub laterality: Laterality,
    pub view: View,
    /// The vendor whose style the prompt asked for (decides the stored values, see
    /// [`synthetic_stored_value`]).
    pub vendor: Option<Vendor>,
    /// What it shows: "healthy", "with a synthetic lesion", "healthy original".
    pub kind: &'a str,
    /// Seeds its UIDs: the same image always gets the same ones.
    pub uid_key: u64,
    /// How it was made (model, its SHA-256, seed, prompt), for the derivation description.
    pub provenance: String,
}

/// Writes a synthetic image (`mam-e synth`) as an MG file marked synthetic beyond doubt: Image
/// Type DERIVED\SECONDARY, a "SYNTHETIC" series description and a derivation description
/// saying how it was made, no patient identity, UIDs under 2.25 derived from `uid_key`.
pub fn write_synthetic(path: &Path, image: &SyntheticImage) -> std::io::Result<()> {
    let key = image.uid_key;
    let header = MammogramHeader {
        sop_instance: uid(&super::hex_id(key ^ if image.kind == "healthy original" { 0x0419 } else { 0x1 })),
        study: uid(&super::hex_id(key ^ 0x5701)),
        series: uid(&super::hex_id(key ^ 0x5E21)),
        manufacturer: match image.vendor {
            Some(Vendor::Siemens) => "MAM-E SYNTHETIC (SIEMENS style)",
            Some(Vendor::Hologic) => "MAM-E SYNTHETIC (HOLOGIC style)",
            None => "MAM-E SYNTHETIC",
        },
        model: "mam-e",
        patient_id: "SYNTHETIC",
        patient_name: "SYNTHETIC^IMAGE",
        laterality: image.laterality,
        view: image.view,
        image_type: "DERIVED\\SECONDARY",
        series_description: format!("SYNTHETIC {} {} ({})", image.laterality, image.view.word(), image.kind),
        derivation: Some(format!("SYNTHETIC IMAGE, NOT OF A PATIENT: {}", image.provenance)),
        pixel_spacing_mm: None,
        rows: image.height,
        cols: image.width,
        window: (2048.0, 4096.0),
    };
    write_mammogram(path, &header, image.gray.iter().map(|&g| synthetic_stored_value(g, image.vendor)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_window_follows_the_standard() {
        // C.11.2.1.2.1 with c = 2048, w = 4096 over [0, 4095] is the identity.
        let voi = Voi::Window { center: 2048.0, width: 4096.0, function: VoiLutFunction::Linear };
        for x in [0.0, 1.0, 1000.0, 4095.0] {
            assert!((voi.apply(x, 0.0, 4095.0) - x).abs() < 1e-9, "{x}");
        }
        // c = 100, w = 51 over [0, 255]: x ≤ 74.5 → 0, x > 124.5 → 255, else
        // ((x − 99.5) / 50 + 0.5) · 255, so 75 → 2.55 and c − 0.5 → 127.5.
        let voi = Voi::Window { center: 100.0, width: 51.0, function: VoiLutFunction::Linear };
        assert_eq!(voi.apply(74.5, 0.0, 255.0), 0.0);
        assert!((voi.apply(75.0, 0.0, 255.0) - 2.55).abs() < 1e-9);
        assert_eq!(voi.apply(124.6, 0.0, 255.0), 255.0);
        assert!((voi.apply(99.5, 0.0, 255.0) - 127.5).abs() < 1e-9);
    }

    #[test]
    fn exact_and_sigmoid_windows() {
        let exact = Voi::Window { center: 100.0, width: 50.0, function: VoiLutFunction::LinearExact };
        assert_eq!(exact.apply(75.0, 0.0, 255.0), 0.0);
        assert!((exact.apply(100.0, 0.0, 255.0) - 127.5).abs() < 1e-9);
        assert!((exact.apply(112.5, 0.0, 255.0) - 191.25).abs() < 1e-9);
        let sigmoid = Voi::Window { center: 100.0, width: 50.0, function: VoiLutFunction::Sigmoid };
        assert!((sigmoid.apply(100.0, 0.0, 255.0) - 127.5).abs() < 1e-9);
        assert!((sigmoid.apply(125.0, 0.0, 255.0) - 255.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-9);
    }

    #[test]
    fn table_clamps_at_both_ends() {
        let table = Voi::Table { first_mapped: 10, bits: 8, data: vec![0, 100, 200] };
        assert_eq!(table.apply(3.0, 0.0, 4095.0), 0.0);
        assert_eq!(table.apply(11.0, 0.0, 4095.0), 100.0);
        assert_eq!(table.apply(500.0, 0.0, 4095.0), 200.0);
        assert_eq!(table.output_range(0.0, 4095.0), (0.0, 255.0));
    }
}
