//! Durable atomic writes, the one way the crate writes a file that must never be seen half
//! written: into a temporary file beside the target (named for this process and call, so two
//! processes writing the same file never share one), flushed to disk, renamed over the target,
//! and the folder flushed so the rename itself survives a crash.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// `.NAME.PID-N.partial` beside `path`: unique to this process and call.
pub fn temporary_path(path: &Path) -> PathBuf {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}-{}.partial", std::process::id(), CALLS.fetch_add(1, Ordering::Relaxed)))
}

/// Writes `path` with `write(temporary)`, which creates the temporary file; then flushes it,
/// renames it over `path` and flushes the folder. On failure the temporary file is removed.
pub fn write_with(path: &Path, write: impl FnOnce(&Path) -> std::io::Result<()>) -> std::io::Result<()> {
    let tmp = temporary_path(path);
    let result = write(&tmp).and_then(|()| std::fs::File::open(&tmp)?.sync_all()).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    sync_folder(path)
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with(path, |tmp| std::fs::write(tmp, bytes))
}

/// Flushes the folder holding `path`, so a rename into it is on disk.
fn sync_folder(path: &Path) -> std::io::Result<()> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(folder)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_whole_files_and_leave_no_temporary_behind() {
        let dir = std::env::temp_dir().join(format!("mam-e-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.json");
        write(&path, b"first").unwrap();
        write(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let failed = write_with(&path, |tmp| {
            std::fs::write(tmp, b"half")?;
            Err(std::io::Error::other("killed"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"second", "a failed write changed the file");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["a.json"], "temporary files left behind");
        assert_ne!(temporary_path(&path), temporary_path(&path), "two calls share a temporary name");
        assert!(temporary_path(&path).to_string_lossy().contains(&format!(".a.json.{}-", std::process::id())));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
