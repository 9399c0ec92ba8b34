//! Running the `mam-e` binary and giving each test its own temporary folder.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh (emptied) folder `suite/name` under cargo's temporary folder for tests
/// (`target/tmp`). Each test empties its own folder when it starts, so the disk holds one run's
/// output at most (the last one, left for a look after a failure), however many runs there were.
pub fn temp_dir(suite: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(suite).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    dir
}

/// `mam-e ARGS` with `env` set; its output, whatever its status.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mam-e")).args(args).envs(env.iter().copied()).output().expect("run mam-e")
}

/// `mam-e ARGS`, which must succeed; its standard output.
pub fn ok(args: &[&str]) -> String {
    let out = run(args, &[]);
    assert!(out.status.success(), "mam-e {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `mam-e ARGS`, which must fail; its standard error.
pub fn fails(args: &[&str]) -> String {
    let out = run(args, &[]);
    assert!(!out.status.success(), "mam-e {args:?} should have failed:\n{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file under `root` (relative path → bytes), hidden ones included.
pub fn tree(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(path.strip_prefix(root).unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = Default::default();
    walk(root, root, &mut out);
    out
}

/// Asserts two folders hold the same files with the same bytes, naming the first difference.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let (ta, tb) = (tree(a), tree(b));
    let names = |t: &std::collections::BTreeMap<String, Vec<u8>>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&ta), names(&tb), "{} and {} hold different files", a.display(), b.display());
    for (name, bytes) in &ta {
        assert!(bytes == &tb[name], "{name} differs between {} and {}", a.display(), b.display());
    }
}

/// A PNG's `parameters` text (JSON, as `generate` and `synth` write it) and its size.
pub fn png_parameters(path: &Path) -> (serde_json::Value, (u32, u32)) {
    let decoder = png::Decoder::new(std::io::Cursor::new(std::fs::read(path).unwrap()));
    let reader = decoder.read_info().unwrap();
    let text = reader.info().utf8_text[0].get_text().unwrap();
    (serde_json::from_str(&text).unwrap(), (reader.info().width, reader.info().height))
}
