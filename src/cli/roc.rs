//! `mam-e eval roc`: a reader study's ratings → ROC curve, AUROC with DeLong's 95 % interval, the
//! rating histogram per class and the verdict; optionally a plot and a JSON report.

use std::path::PathBuf;

use anyhow::Context;

use crate::eval::plot::roc_plot;
use crate::eval::roc::{analyse, histogram, read_ratings_csv};

#[derive(Debug, clap::Args)]
pub struct RocArgs {
    /// A CSV with a header and the columns `class` (real or synthetic) and `rating` (0 definitely
    /// synthetic … 4 definitely real); other columns (e.g. `image`) are ignored.
    ratings: PathBuf,
    /// Write the ROC curve as a PNG (the unit square, chance dashed, the curve in blue).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Write the result (counts, AUROC, standard error, interval, curve, histogram, verdict) as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn roc(args: RocArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.ratings).with_context(|| format!("reading {}", args.ratings.display()))?;
    let ratings = read_ratings_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.ratings.display()))?;
    let result = analyse(&ratings).map_err(anyhow::Error::msg)?;
    let histogram = histogram(&ratings);
    println!("{} real and {} synthetic images rated", result.real, result.synthetic);
    println!("AUROC {:.4} (95 % CI {:.4}–{:.4}, DeLong; standard error {:.4})", result.auroc, result.ci95[0], result.ci95[1], result.standard_error);
    println!("{:<10} {}", "rating", (0..5).map(|r| format!("{r:>5}")).collect::<String>());
    for (class, row) in [("real", histogram[1]), ("synthetic", histogram[0])] {
        println!("{class:<10} {}", row.iter().map(|n| format!("{n:>5}")).collect::<String>());
    }
    println!("{}", result.verdict);
    if let Some(path) = &args.plot {
        let legend = format!("ROC of {} (AUROC {:.4}, 95 % CI {:.4}-{:.4})", args.ratings.display(), result.auroc, result.ci95[0], result.ci95[1]);
        crate::atomic::write(path, &roc_plot(&result.curve, 400).to_png(&[("Description", legend)])?)?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.json {
        let mut report = serde_json::to_value(&result)?;
        report["histogram"] = serde_json::json!({ "real": histogram[1], "synthetic": histogram[0] });
        report["ci_method"] = "DeLong (normal approximation)".into();
        crate::atomic::write(path, &serde_json::to_vec_pretty(&report)?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
