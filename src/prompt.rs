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
    pub const ALL: [Priority; 4] =
        [Priority::Area, Priority::Density, Priority::OnlyArea, Priority::OnlyDensity];
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

/// Everything the fusion model's prompt can say about a healthy mammogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PromptSpec {
    pub vendor: Vendor,
    pub view: View,
    pub density: Density,
    pub area: Area,
    pub priority: Priority,
}

impl Default for PromptSpec {
    fn default() -> Self {
        Self {
            vendor: Vendor::Siemens,
            view: View::Mlo,
            density: Density::C,
            area: Area::Small,
            priority: Priority::Density,
        }
    }
}

impl fmt::Display for PromptSpec {
    /// The fusion GUI's template for this spec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
        let base = PromptSpec {
            vendor: Vendor::Hologic,
            view: View::Cc,
            density: Density::A,
            area: Area::Big,
            priority: Priority::Area,
        };
        let with = |priority| PromptSpec { priority, ..base }.to_string();
        assert_eq!(with(Priority::Area), "a hologic mammogram in CC view with big area and very low density");
        assert_eq!(with(Priority::Density), "a hologic mammogram in CC view with very low density and big area");
        assert_eq!(with(Priority::OnlyArea), "a hologic mammogram in CC view with big area");
        assert_eq!(with(Priority::OnlyDensity), "a hologic mammogram in CC view with very low density");
    }

    #[test]
    fn area_thresholds_are_mam_e_s() {
        assert_eq!(Area::from_ratio(0.399), Area::Small);
        assert_eq!(Area::from_ratio(0.4), Area::Medium);
        assert_eq!(Area::from_ratio(0.6), Area::Medium);
        assert_eq!(Area::from_ratio(0.601), Area::Big);
    }
}
