//! `mam-e convert`: a diffusers folder to a model package, with a size table; or a package back
//! to a diffusers folder (f32), to train on or to load in diffusers.

use std::path::PathBuf;

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};

use crate::package::{ConvertOptions, StorageDtype, convert};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The diffusers model folder (model_index.json, unet/, text_encoder/, vae/, tokenizer/,
    /// scheduler/); or a package (manifest.json), which is written back as a diffusers folder.
    #[arg(long)]
    from: PathBuf,
    /// The package folder to write (created; must not hold a package already), or the diffusers
    /// folder (new or empty) when --from is a package.
    #[arg(long)]
    out: PathBuf,
    /// How weights are stored: f32, f16, q8 (8-bit blocks) or q4 (4-bit UNet and VAE, 8-bit text
    /// encoder). Default q8; a package converts back to f32 only.
    #[arg(long, value_enum)]
    dtype: Option<DtypeArg>,
    /// Name shown in the app (default: the folder's name).
    #[arg(long)]
    name: Option<String>,
    /// One line about the model, shown in the app.
    #[arg(long, default_value = "")]
    description: String,
    /// Default image side in pixels shown by the app (default: the UNet's sample_size × 8).
    #[arg(long)]
    size: Option<usize>,
    /// Which MAM-E model it is, for a text-to-image model: its prompts' template (the page's
    /// prompt controls and the default prompt follow it).
    #[arg(long, value_enum)]
    template: Option<super::phantom::TemplateArg>,
    /// Mark the weights as untrained (random): the app says so next to every image.
    #[arg(long)]
    untrained: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DtypeArg {
    F32,
    F16,
    Q8,
    Q4,
}

impl From<DtypeArg> for StorageDtype {
    fn from(arg: DtypeArg) -> Self {
        match arg {
            DtypeArg::F32 => StorageDtype::F32,
            DtypeArg::F16 => StorageDtype::F16,
            DtypeArg::Q8 => StorageDtype::Q8,
            DtypeArg::Q4 => StorageDtype::Q4,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.from.join(crate::package::MANIFEST).exists() {
        return to_diffusers(&args);
    }
    let name = args.name.clone().unwrap_or_else(|| args.from.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into()));
    let options = ConvertOptions {
        dtype: args.dtype.unwrap_or(DtypeArg::Q8).into(),
        name,
        description: args.description.clone(),
        trained: !args.untrained,
        size: args.size,
        template: args.template.map(Into::into),
    };
    let bar = ProgressBar::new(0).with_style(ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} tensors").expect("template"));
    let report = convert(&args.from, &args.out, &options, &mut |component, done, total| {
        bar.set_message(component.to_string());
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    println!("{} package, {}, in {}", report.kind, options.dtype, args.out.display());
    println!("{:<14} {:>14} {:>12} {:>12} {:>12} {:>12}", "component", "parameters", "8-bit", "4-bit", "float", "MiB");
    for c in &report.components {
        println!("{:<14} {:>14} {:>12} {:>12} {:>12} {:>12.1}", c.component, c.parameters, c.q8, c.q4, c.float, c.bytes as f64 / (1 << 20) as f64);
    }
    println!("{} shard(s) + tokenizer: {:.1} MiB ({} bytes) in all", report.shards, report.total_bytes as f64 / (1 << 20) as f64, report.total_bytes);
    Ok(())
}

/// A package back to a diffusers folder.
fn to_diffusers(args: &Args) -> anyhow::Result<()> {
    if args.dtype.is_some_and(|d| d != DtypeArg::F32) {
        anyhow::bail!("{} is a package: it converts back to a diffusers folder in f32 only (drop --dtype)", args.from.display());
    }
    let report = crate::package::export_diffusers(&args.from, &args.out)?;
    println!("{} package → diffusers folder (f32, {} parameters) in {}", report.kind, report.parameters, args.out.display());
    if !report.vae_encoder {
        println!("the package has no VAE encoder (text-to-image packages ship the decoder only): vae/ holds the decoder; train on a folder whose VAE has both");
    }
    Ok(())
}
