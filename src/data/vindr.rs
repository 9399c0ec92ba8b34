//! The VinDr-Mammo folder layout as published (`images/<study_id>/<image_id>.dicom`,
//! `breast-level_annotations.csv`, `finding_annotations.csv`), read and written; and the generic
//! CSV (`path, view, laterality, density, vendor, xmin, ymin, xmax, ymax`) for other datasets.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::data::{BoundingBox, Finding, Laterality};
use crate::prompt::{Density, View};

pub const BREAST_LEVEL_CSV: &str = "breast-level_annotations.csv";
pub const FINDING_CSV: &str = "finding_annotations.csv";
const BREAST_COLUMNS: [&str; 10] =
    ["study_id", "series_id", "image_id", "laterality", "view_position", "height", "width", "breast_birads", "breast_density", "split"];
const FINDING_EXTRA: [&str; 6] = ["finding_categories", "finding_birads", "xmin", "ymin", "xmax", "ymax"];

/// One image to prepare, from whichever source.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    /// Unique id, used as the output file name.
    pub id: String,
    pub path: PathBuf,
    pub laterality: Laterality,
    pub view: View,
    pub density: Option<Density>,
    /// Vendor given by the source (the generic CSV); otherwise the DICOM Manufacturer decides.
    pub vendor: Option<String>,
    pub split: String,
    pub findings: Vec<Finding>,
    /// Findings the source names without a box (they make the image unusable for either set).
    pub unboxed_findings: Vec<String>,
}

/// A source entry that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub file: String,
    pub reason: String,
}

fn parse_laterality(s: &str) -> Option<Laterality> {
    match s.trim().to_ascii_uppercase().as_str() {
        "L" | "LEFT" => Some(Laterality::L),
        "R" | "RIGHT" => Some(Laterality::R),
        _ => None,
    }
}

fn parse_view(s: &str) -> Option<View> {
    match s.trim().to_ascii_uppercase().as_str() {
        "CC" => Some(View::Cc),
        "MLO" => Some(View::Mlo),
        _ => None,
    }
}

/// `DENSITY C`, `C`, or empty.
fn parse_density(s: &str) -> Result<Option<Density>, String> {
    let letter = s.trim().trim_start_matches("DENSITY").trim();
    match letter {
        "" => Ok(None),
        "A" => Ok(Some(Density::A)),
        "B" => Ok(Some(Density::B)),
        "C" => Ok(Some(Density::C)),
        "D" => Ok(Some(Density::D)),
        other => Err(format!("density {other:?} is not A–D")),
    }
}

/// `BI-RADS 4` → 4.
fn parse_birads(s: &str) -> Option<u8> {
    s.trim().trim_start_matches("BI-RADS").trim().parse().ok()
}

/// `['Mass', 'Suspicious Calcification']` → the names.
fn parse_categories(s: &str) -> Vec<String> {
    s.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|c| c.trim().trim_matches(|ch| ch == '\'' || ch == '"').trim().to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

fn parse_box(row: &csv::StringRecord, at: [usize; 4]) -> Result<Option<BoundingBox>, String> {
    let fields: Vec<&str> = at.iter().map(|&i| row.get(i).unwrap_or("").trim()).collect();
    if fields.iter().all(|f| f.is_empty()) {
        return Ok(None);
    }
    let v: Result<Vec<f64>, _> = fields.iter().map(|f| f.parse::<f64>()).collect();
    let v = v.map_err(|_| format!("box {fields:?} is not four numbers"))?;
    if !(v[0] < v[2] && v[1] < v[3]) {
        return Err(format!("box {v:?} has xmin ≥ xmax or ymin ≥ ymax"));
    }
    Ok(Some(BoundingBox { xmin: v[0], ymin: v[1], xmax: v[2], ymax: v[3] }))
}

fn open_csv(path: &Path) -> Result<(csv::Reader<std::fs::File>, Vec<String>), String> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let headers = reader.headers().map_err(|e| format!("{}: {e}", path.display()))?.iter().map(|h| h.trim().to_string()).collect();
    Ok((reader, headers))
}

/// An id usable as one file name: not empty, no path separator or NUL, not `.` or `..`.
fn is_plain_name(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && !id.contains(['/', '\\', '\0'])
}

fn column(headers: &[String], name: &str, file: &Path) -> Result<usize, String> {
    headers.iter().position(|h| h == name).ok_or_else(|| format!("{}: no column {name:?} (columns: {})", file.display(), headers.join(", ")))
}

/// Reads a VinDr-Mammo folder: every image the breast-level CSV lists, with its findings.
/// Whole-file problems (missing CSV, missing column) are errors; row and file problems are
/// returned as skipped entries.
pub fn read_vindr(root: &Path) -> Result<(Vec<ImageRecord>, Vec<Skipped>), String> {
    let mut skipped = Vec::new();
    let mut records = read_breast_levels(root, &mut skipped)?;
    let with_findings = read_findings(root, &mut records, &mut skipped)?;
    // Every image needs a finding row (VinDr lists "No Finding" explicitly).
    let mut out = Vec::new();
    for (image, record) in records {
        if with_findings.contains(&image) {
            out.push(record);
        } else {
            skipped.push(Skipped {
                file: record.path.strip_prefix(root).unwrap_or(&record.path).display().to_string(),
                reason: format!("no row in {FINDING_CSV}"),
            });
        }
    }
    skip_unlisted_files(root, &out, &mut skipped);
    Ok((out, skipped))
}

/// The images of `breast-level_annotations.csv` by image id; rows that cannot be used are
/// added to `skipped` with their reason.
fn read_breast_levels(root: &Path, skipped: &mut Vec<Skipped>) -> Result<BTreeMap<String, ImageRecord>, String> {
    let breast_path = root.join(BREAST_LEVEL_CSV);
    let (mut reader, headers) = open_csv(&breast_path)?;
    let at: Vec<usize> = BREAST_COLUMNS.iter().map(|c| column(&headers, c, &breast_path)).collect::<Result<_, _>>()?;
    let mut records: BTreeMap<String, ImageRecord> = BTreeMap::new();
    for (line, row) in reader.records().enumerate() {
        let line = line + 2;
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                skipped.push(Skipped { file: format!("{BREAST_LEVEL_CSV}:{line}"), reason: e.to_string() });
                continue;
            }
        };
        let get = |k: usize| row.get(at[k]).unwrap_or("").trim().to_string();
        let (study, image) = (get(0), get(2));
        let parsed = if study.is_empty() || image.is_empty() {
            Err("row without study_id or image_id".to_string())
        } else if let Some(id) = [&study, &image].into_iter().find(|id| !is_plain_name(id)) {
            // The ids name the input file and the outputs: `../` would reach outside both folders.
            Err(format!("id {id:?} is not a plain name (no /, \\, . or ..)"))
        } else if records.contains_key(&image) {
            Err(format!("image_id {image:?} is listed twice in {BREAST_LEVEL_CSV}; the first row is used"))
        } else {
            let laterality = parse_laterality(&get(3)).ok_or_else(|| format!("laterality {:?} is not L or R", get(3)));
            let view = parse_view(&get(4)).ok_or_else(|| format!("view {:?} is not CC or MLO (other views are not used)", get(4)));
            laterality.and_then(|l| view.map(|v| (l, v))).and_then(|(l, v)| parse_density(&get(8)).map(|d| (l, v, d)))
        };
        match parsed {
            Ok((laterality, view, density)) => {
                let path = root.join("images").join(&study).join(format!("{image}.dicom"));
                let record = ImageRecord {
                    id: image.clone(),
                    path,
                    laterality,
                    view,
                    density,
                    vendor: None,
                    split: get(9),
                    findings: Vec::new(),
                    unboxed_findings: Vec::new(),
                };
                records.insert(image, record);
            }
            Err(reason) => skipped.push(Skipped { file: format!("{BREAST_LEVEL_CSV}:{line} (images/{study}/{image}.dicom)"), reason }),
        }
    }
    Ok(records)
}

/// Adds `finding_annotations.csv`'s lesions (boxed or not) to `records`; the ids of the images
/// it has a row for.
fn read_findings(root: &Path, records: &mut BTreeMap<String, ImageRecord>, skipped: &mut Vec<Skipped>) -> Result<HashSet<String>, String> {
    let finding_path = root.join(FINDING_CSV);
    let (mut reader, headers) = open_csv(&finding_path)?;
    let image_at = column(&headers, "image_id", &finding_path)?;
    let extra: Vec<usize> = FINDING_EXTRA.iter().map(|c| column(&headers, c, &finding_path)).collect::<Result<_, _>>()?;
    let mut seen_findings = HashSet::new();
    for (line, row) in reader.records().enumerate() {
        let where_ = format!("{FINDING_CSV}:{}", line + 2);
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                skipped.push(Skipped { file: where_, reason: e.to_string() });
                continue;
            }
        };
        let image = row.get(image_at).unwrap_or("").trim().to_string();
        let Some(record) = records.get_mut(&image) else {
            skipped.push(Skipped { file: where_, reason: format!("image {image:?} is not in {BREAST_LEVEL_CSV}") });
            continue;
        };
        seen_findings.insert(image.clone());
        let categories = parse_categories(row.get(extra[0]).unwrap_or(""));
        let lesion: Vec<&String> = categories.iter().filter(|c| c.as_str() != "No Finding").collect();
        if lesion.is_empty() {
            continue;
        }
        let category = lesion.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ");
        match parse_box(&row, [extra[2], extra[3], extra[4], extra[5]]) {
            Ok(Some(bbox)) => record.findings.push(Finding { category, birads: parse_birads(row.get(extra[1]).unwrap_or("")), bbox }),
            Ok(None) => record.unboxed_findings.push(category),
            Err(reason) => {
                skipped.push(Skipped { file: where_, reason: reason.clone() });
                record.unboxed_findings.push(format!("{category} ({reason})"));
            }
        }
    }
    Ok(seen_findings)
}

/// Reports the DICOM files under `images/` that no kept record and no skipped row names.
fn skip_unlisted_files(root: &Path, records: &[ImageRecord], skipped: &mut Vec<Skipped>) {
    let listed: HashSet<PathBuf> = records.iter().map(|r| r.path.clone()).collect();
    let Ok(studies) = std::fs::read_dir(root.join("images")) else { return };
    for study in studies.flatten() {
        for file in std::fs::read_dir(study.path()).into_iter().flatten().flatten() {
            let path = file.path();
            if path.extension().is_some_and(|e| e == "dicom" || e == "dcm")
                && !listed.contains(&path)
                && !skipped.iter().any(|s| s.file.contains(&*path.file_stem().unwrap_or_default().to_string_lossy()))
            {
                skipped.push(Skipped {
                    file: path.strip_prefix(root).unwrap_or(&path).display().to_string(),
                    reason: format!("not listed in {BREAST_LEVEL_CSV}"),
                });
            }
        }
    }
}

/// Reads the generic CSV: `path` (relative to the CSV's folder), `view`, `laterality`, and
/// optionally `density` (A–D), `vendor`, `split`, `category` and a box `xmin, ymin, xmax, ymax`.
/// Rows naming the same path add boxes to one image.
pub fn read_generic_csv(csv_path: &Path) -> Result<(Vec<ImageRecord>, Vec<Skipped>), String> {
    let base = csv_path.parent().unwrap_or(Path::new("."));
    let (mut reader, headers) = open_csv(csv_path)?;
    let required: Vec<usize> = ["path", "view", "laterality"].iter().map(|c| column(&headers, c, csv_path)).collect::<Result<_, _>>()?;
    let optional = |name: &str| headers.iter().position(|h| h == name);
    let (density_at, vendor_at, split_at, category_at) = (optional("density"), optional("vendor"), optional("split"), optional("category"));
    let box_at = match (optional("xmin"), optional("ymin"), optional("xmax"), optional("ymax")) {
        (Some(a), Some(b), Some(c), Some(d)) => Some([a, b, c, d]),
        _ => None,
    };
    let mut owners: HashMap<String, String> = HashMap::new();
    let mut records: BTreeMap<String, ImageRecord> = BTreeMap::new();
    let mut skipped = Vec::new();
    let file_name = csv_path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    for (line, row) in reader.records().enumerate() {
        let where_ = format!("{file_name}:{}", line + 2);
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                skipped.push(Skipped { file: where_, reason: e.to_string() });
                continue;
            }
        };
        let get = |i: Option<usize>| i.and_then(|i| row.get(i)).unwrap_or("").trim().to_string();
        let rel = get(Some(required[0]));
        let (view, laterality) = (parse_view(&get(Some(required[1]))), parse_laterality(&get(Some(required[2]))));
        let density = parse_density(&get(density_at));
        let bbox = box_at.map_or(Ok(None), |at| parse_box(&row, at));
        let (Some(view), Some(laterality), Ok(density), Ok(bbox)) = (view, laterality, density.clone(), bbox.clone()) else {
            let reason = [
                view.is_none().then(|| format!("view {:?} is not CC or MLO", get(Some(required[1])))),
                laterality.is_none().then(|| format!("laterality {:?} is not L or R", get(Some(required[2])))),
                density.err(),
                bbox.err(),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
            skipped.push(Skipped { file: format!("{where_} ({rel})"), reason });
            continue;
        };
        if rel.is_empty() {
            skipped.push(Skipped { file: where_, reason: "empty path".into() });
            continue;
        }
        let id = rel.trim_end_matches(".dicom").trim_end_matches(".dcm").replace(['/', '\\'], "_");
        // Two paths that flatten to one id would write the same output files.
        match owners.entry(id.clone()) {
            Entry::Occupied(owner) if *owner.get() != rel => {
                skipped.push(Skipped {
                    file: format!("{where_} ({rel})"),
                    reason: format!("its output name {id:?} is also {:?}'s; the first is used", owner.get()),
                });
                continue;
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(slot) => {
                slot.insert(rel.clone());
            }
        }
        let record = records.entry(rel.clone()).or_insert_with(|| ImageRecord {
            id,
            path: base.join(&rel),
            laterality,
            view,
            density,
            vendor: Some(get(vendor_at)).filter(|v| !v.is_empty()),
            split: get(split_at),
            findings: Vec::new(),
            unboxed_findings: Vec::new(),
        });
        if let Some(bbox) = bbox {
            let category = Some(get(category_at)).filter(|c| !c.is_empty()).unwrap_or_else(|| "Lesion".into());
            record.findings.push(Finding { category, birads: None, bbox });
        }
    }
    Ok((records.into_values().collect(), skipped))
}

/// One image row of the VinDr CSVs we write for phantoms.
#[derive(Debug, Clone)]
pub struct VindrRow {
    pub study_id: String,
    pub series_id: String,
    pub image_id: String,
    pub laterality: Laterality,
    pub view: View,
    pub height: usize,
    pub width: usize,
    pub density: Density,
    pub split: String,
    pub findings: Vec<Finding>,
}

/// Writes both VinDr CSVs for `rows` (atomically). Healthy images get a `No Finding` row, as
/// VinDr has; BI-RADS 1 for a healthy breast, else the highest finding's.
pub fn write_vindr_csvs(root: &Path, rows: &[VindrRow]) -> std::io::Result<()> {
    let mut breast = csv::Writer::from_writer(Vec::new());
    let mut finding = csv::Writer::from_writer(Vec::new());
    breast.write_record(BREAST_COLUMNS)?;
    finding.write_record(BREAST_COLUMNS[..9].iter().chain(FINDING_EXTRA.iter()).chain(["split"].iter()))?;
    for r in rows {
        let birads = r.findings.iter().filter_map(|f| f.birads).max().unwrap_or(1);
        let common = [
            r.study_id.clone(),
            r.series_id.clone(),
            r.image_id.clone(),
            r.laterality.letter().into(),
            r.view.word().into(),
            r.height.to_string(),
            r.width.to_string(),
            format!("BI-RADS {birads}"),
            format!("DENSITY {}", r.density.letter()),
        ];
        breast.write_record(common.iter().chain([&r.split]))?;
        if r.findings.is_empty() {
            finding.write_record(common.iter().map(String::as_str).chain(["['No Finding']", "", "", "", "", "", &r.split]))?;
        }
        for f in &r.findings {
            let b = &f.bbox;
            let fields = [
                format!("['{}']", f.category),
                f.birads.map(|b| format!("BI-RADS {b}")).unwrap_or_default(),
                format!("{:.2}", b.xmin),
                format!("{:.2}", b.ymin),
                format!("{:.2}", b.xmax),
                format!("{:.2}", b.ymax),
                r.split.clone(),
            ];
            finding.write_record(common.iter().chain(fields.iter()))?;
        }
    }
    let bytes = |w: csv::Writer<Vec<u8>>| w.into_inner().map_err(|e| std::io::Error::other(e.to_string()));
    crate::data::write_atomic(&root.join(BREAST_LEVEL_CSV), &bytes(breast)?)?;
    crate::data::write_atomic(&root.join(FINDING_CSV), &bytes(finding)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vindr_field_formats() {
        assert_eq!(parse_categories("['Mass', 'Suspicious Calcification']"), vec!["Mass", "Suspicious Calcification"]);
        assert_eq!(parse_categories("['No Finding']"), vec!["No Finding"]);
        assert_eq!(parse_birads("BI-RADS 4"), Some(4));
        assert_eq!(parse_density("DENSITY C"), Ok(Some(Density::C)));
        assert_eq!(parse_density(""), Ok(None));
        assert!(parse_density("DENSITY E").is_err());
    }
}
