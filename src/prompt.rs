//! MAM-E's prompt vocabulary and the original fusion GUI's prompt templates.
//!
//! From the paper (§ "Healthy mammogram generation") and the original GUI: view `CC`/`MLO`;
//! breast area as the ratio of breast pixels to image pixels (`small` < 0.4 ≤ `medium` ≤ 0.6 <
//! `big`); BI-RADS density A–D as `very low`/`low`/`high`/`very high`; vendor `siemens`
//! (VinDr-Mammo) or `hologic` (OPTIMAM OMI-H), lowercase as in the training captions.

use std::fmt;

/// Mammographic view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    /// Cranio-caudal.
    Cc,
    /// Medio-lateral oblique (pectoral muscle visible).
    Mlo,
}

/// BI-RADS breast density.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Density {
    /// BI-RADS A: almost entirely fatty.
    A,
    /// BI-RADS B: scattered fibroglandular density.
    B,
    /// BI-RADS C: heterogeneously dense.
    C,
    /// BI-RADS D: extremely dense.
    D,
}

/// Breast area class by the breast/image pixel ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Area {
    /// ratio < 0.4
    Small,
    /// 0.4 ≤ ratio ≤ 0.6
    Medium,
    /// ratio > 0.6
    Big,
}

/// Scanner vendor, standing for the training dataset it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// VinDr-Mammo.
    Siemens,
    /// OPTIMAM OMI-H.
    Hologic,
}

/// Which attributes the prompt carries, and in which order (the original GUI's "priority").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    /// `... with {area} area and {density} density`
    Area,
    /// `... with {density} density and {area} area`
    Density,
    /// `... with {area} area`
    OnlyArea,
    /// `... with {density} density`
    OnlyDensity,
}

impl View {
    pub const ALL: [View; 2] = [View::Cc, View::Mlo];
    /// The word used in prompts.
    pub fn word(self) -> &'static str {
        match self {
            View::Cc => "CC",
            View::Mlo => "MLO",
        }
    }
}

impl Density {
    pub const ALL: [Density; 4] = [Density::A, Density::B, Density::C, Density::D];
    /// The words used in prompts.
    pub fn word(self) -> &'static str {
        match self {
            Density::A => "very low",
            Density::B => "low",
            Density::C => "high",
            Density::D => "very high",
        }
    }
    /// The BI-RADS letter.
    pub fn letter(self) -> char {
        match self {
            Density::A => 'A',
            Density::B => 'B',
            Density::C => 'C',
            Density::D => 'D',
        }
    }
}

impl Area {
    pub const ALL: [Area; 3] = [Area::Small, Area::Medium, Area::Big];
    /// The word used in prompts.
    pub fn word(self) -> &'static str {
        match self {
            Area::Small => "small",
            Area::Medium => "medium",
            Area::Big => "big",
        }
    }
    /// The class of a breast/image pixel ratio, with MAM-E's thresholds 0.4 and 0.6.
    pub fn from_ratio(ratio: f64) -> Area {
        if ratio < 0.4 {
            Area::Small
        } else if ratio <= 0.6 {
            Area::Medium
        } else {
            Area::Big
        }
    }
}

impl Vendor {
    pub const ALL: [Vendor; 2] = [Vendor::Siemens, Vendor::Hologic];
    /// The word used in prompts (lowercase, as in the training captions).
    pub fn word(self) -> &'static str {
        match self {
            Vendor::Siemens => "siemens",
            Vendor::Hologic => "hologic",
        }
    }
}

impl Priority {
    pub const ALL: [Priority; 4] = [Priority::Area, Priority::Density, Priority::OnlyArea, Priority::OnlyDensity];
    /// A short label for menus.
    pub fn label(self) -> &'static str {
        match self {
            Priority::Area => "area, then density",
            Priority::Density => "density, then area",
            Priority::OnlyArea => "only area",
            Priority::OnlyDensity => "only density",
        }
    }
}

/// Which of the paper's three text-to-image models a prompt is for: what its captions carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Template {
    /// OMI-H model: view and area — "a mammogram in MLO view with small area".
    OmiH,
    /// VinDr model: view and density — "a mammogram in CC view with high density".
    Vindr,
    /// Fusion model: vendor, view, density, area — "a siemens mammogram in MLO view with high
    /// density and small area".
    #[default]
    Fusion,
}

impl Template {
    pub const ALL: [Template; 3] = [Template::Fusion, Template::OmiH, Template::Vindr];

    /// A short label for menus.
    pub fn label(self) -> &'static str {
        match self {
            Template::Fusion => "fusion (vendor, view, density, area)",
            Template::OmiH => "OMI-H (view, area)",
            Template::Vindr => "VinDr (view, density)",
        }
    }
}

/// The caption of a healthy training image under `template`, as MAM-E wrote them. `vendor` is
/// the lowercase word (MAM-E's two, or the manufacturer's first word for others).
pub fn caption(template: Template, vendor: &str, view: View, density: Option<Density>, area: Area) -> String {
    let view = view.word();
    match (template, density) {
        (Template::OmiH, _) => format!("a mammogram in {view} view with {} area", area.word()),
        (Template::Vindr, Some(d)) => format!("a mammogram in {view} view with {} density", d.word()),
        (Template::Vindr, None) => format!("a mammogram in {view} view"),
        (Template::Fusion, Some(d)) => format!("a {vendor} mammogram in {view} view with {} density and {} area", d.word(), area.word()),
        (Template::Fusion, None) => format!("a {vendor} mammogram in {view} view with {} area", area.word()),
    }
}

/// Everything a MAM-E model's prompt can say about a healthy mammogram; `template` decides which
/// of it the prompt carries (the OMI-H and VinDr models know no vendor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PromptSpec {
    pub template: Template,
    pub vendor: Vendor,
    pub view: View,
    pub density: Density,
    pub area: Area,
    pub priority: Priority,
}

impl Default for PromptSpec {
    fn default() -> Self {
        Self { template: Template::Fusion, vendor: Vendor::Siemens, view: View::Mlo, density: Density::C, area: Area::Small, priority: Priority::Density }
    }
}

impl fmt::Display for PromptSpec {
    /// The fusion GUI's template for this spec (with its priority); the OMI-H and VinDr models'
    /// captions for theirs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.template != Template::Fusion {
            return f.write_str(&caption(self.template, "", self.view, Some(self.density), self.area));
        }
        let (vendor, view) = (self.vendor.word(), self.view.word());
        let (density, area) = (self.density.word(), self.area.word());
        write!(f, "a {vendor} mammogram in {view} view with ")?;
        match self.priority {
            Priority::Area => write!(f, "{area} area and {density} density"),
            Priority::Density => write!(f, "{density} density and {area} area"),
            Priority::OnlyArea => write!(f, "{area} area"),
            Priority::OnlyDensity => write!(f, "{density} density"),
        }
    }
}

/// The inpainting model's prompt (the original lesion tool's default).
pub const LESION_PROMPT: &str = "a mammogram with a lesion";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_example_prompt() {
        // "a siemens mammogram in MLO view with high density and small area" (paper, Fig. 3).
        let spec = PromptSpec {
            template: Template::Fusion,
            vendor: Vendor::Siemens,
            view: View::Mlo,
            density: Density::C,
            area: Area::Small,
            priority: Priority::Density,
        };
        assert_eq!(spec.to_string(), "a siemens mammogram in MLO view with high density and small area");
    }

    #[test]
    fn every_priority_template() {
        let base =
            PromptSpec { template: Template::Fusion, vendor: Vendor::Hologic, view: View::Cc, density: Density::A, area: Area::Big, priority: Priority::Area };
        let with = |priority| PromptSpec { priority, ..base }.to_string();
        assert_eq!(with(Priority::Area), "a hologic mammogram in CC view with big area and very low density");
        assert_eq!(with(Priority::Density), "a hologic mammogram in CC view with very low density and big area");
        assert_eq!(with(Priority::OnlyArea), "a hologic mammogram in CC view with big area");
        assert_eq!(with(Priority::OnlyDensity), "a hologic mammogram in CC view with very low density");
    }

    #[test]
    fn captions_are_the_papers() {
        let (view, area) = (View::Mlo, Area::Small);
        assert_eq!(caption(Template::OmiH, "hologic", view, Some(Density::C), area), "a mammogram in MLO view with small area");
        assert_eq!(caption(Template::Vindr, "siemens", View::Cc, Some(Density::C), area), "a mammogram in CC view with high density");
        assert_eq!(caption(Template::Fusion, "siemens", view, Some(Density::C), area), "a siemens mammogram in MLO view with high density and small area");
        assert_eq!(caption(Template::Fusion, "hologic", view, None, Area::Big), "a hologic mammogram in MLO view with big area");
    }

    /// The OMI-H and VinDr models' prompts are their training captions: no vendor, no priority.
    #[test]
    fn omi_h_and_vindr_prompts_are_their_captions() {
        let spec =
            PromptSpec { vendor: Vendor::Hologic, view: View::Cc, density: Density::D, area: Area::Big, priority: Priority::Area, template: Template::OmiH };
        assert_eq!(spec.to_string(), "a mammogram in CC view with big area");
        assert_eq!(PromptSpec { template: Template::Vindr, ..spec }.to_string(), "a mammogram in CC view with very high density");
    }

    #[test]
    fn area_thresholds_are_mam_e_s() {
        assert_eq!(Area::from_ratio(0.399), Area::Small);
        assert_eq!(Area::from_ratio(0.4), Area::Medium);
        assert_eq!(Area::from_ratio(0.6), Area::Medium);
        assert_eq!(Area::from_ratio(0.601), Area::Big);
    }
}
