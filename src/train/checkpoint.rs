//! Saving trained models in the diffusers layout (so `mam-e generate`, `mam-e convert` and
//! diffusers itself load them) and the training state next to them, each checkpoint written as
//! a hidden folder and renamed into place: a killed run never leaves a half-written checkpoint.

use std::path::{Path, PathBuf};

fn io(path: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

/// Copies the non-weight files of a diffusers folder: `model_index.json`, the components'
/// `config.json`, `scheduler/`, `tokenizer/`.
fn copy_configs(base: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    std::fs::copy(base.join("model_index.json"), to.join("model_index.json")).map_err(io(&base.join("model_index.json")))?;
    for component in ["unet", "text_encoder", "vae"] {
        std::fs::create_dir_all(to.join(component)).map_err(io(to))?;
        let from = base.join(component).join("config.json");
        std::fs::copy(&from, to.join(component).join("config.json")).map_err(io(&from))?;
    }
    for folder in ["scheduler", "tokenizer"] {
        std::fs::create_dir_all(to.join(folder)).map_err(io(to))?;
        for entry in std::fs::read_dir(base.join(folder)).map_err(io(&base.join(folder)))?.flatten() {
            if entry.path().is_file() {
                std::fs::copy(entry.path(), to.join(folder).join(entry.file_name())).map_err(io(&entry.path()))?;
            }
        }
    }
    Ok(())
}

/// Files to put in a checkpoint besides the model: name → bytes.
pub type Extra = Vec<(String, Vec<u8>)>;

/// Writes a diffusers folder at `dir` (configs from `base`; weights as (component, file stem,
/// safetensors bytes), saved as `<component>/<stem>.safetensors`; extra files), through
/// `.<name>.partial` and a rename; an existing `dir` is replaced.
pub fn write_folder(dir: &Path, base: &Path, weights: &[(&str, &str, Vec<u8>)], extra: &Extra) -> Result<(), String> {
    let name = dir.file_name().ok_or("checkpoint path has no name")?.to_string_lossy().into_owned();
    let tmp = dir.with_file_name(format!(".{name}.partial"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    copy_configs(base, &tmp)?;
    for (component, stem, bytes) in weights {
        let path = tmp.join(component).join(format!("{stem}.safetensors"));
        std::fs::write(&path, bytes).map_err(io(&path))?;
    }
    for (file, bytes) in extra {
        std::fs::write(tmp.join(file), bytes).map_err(io(&tmp.join(file)))?;
    }
    if dir.exists() {
        let old = dir.with_file_name(format!(".{name}.old"));
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(dir, &old).map_err(io(dir))?;
        std::fs::rename(&tmp, dir).map_err(io(dir))?;
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    } else {
        std::fs::rename(&tmp, dir).map_err(io(dir))?;
    }
    Ok(())
}

/// Checkpoints of a run (`checkpoint-000200`), newest last.
pub fn checkpoints(out: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("checkpoint-")?.parse().ok()?;
            e.path().join("training_state.json").exists().then(|| (step, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Keeps the newest `keep` checkpoints, deleting older ones.
pub fn prune(out: &Path, keep: usize) {
    let all = checkpoints(out);
    for (_, path) in all.iter().take(all.len().saturating_sub(keep)) {
        let _ = std::fs::remove_dir_all(path);
    }
}
