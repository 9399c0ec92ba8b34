//! The README's first command as it serves: `trunk serve` with this project's Trunk.toml keeps
//! serving the page, with the CSP header, while the project tree takes a flood of file events —
//! 40,000 files written under `target/`, as a cold build writes them (a newcomer's trunk died on
//! such a flood: inotify's queue overflowed and trunk 0.21's debouncer panicked). Needs trunk on
//! PATH (scripts/test installs it) and the app built once (scripts/test's `trunk build`).
#![cfg(not(target_arch = "wasm32"))]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills trunk when the test ends, passed or not.
struct Trunk(Child);

impl Drop for Trunk {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn trunk_serve_keeps_serving_through_a_flood_of_file_events() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // Its own dist folder and no live-reload script, so dist/ (the end-to-end test's) stays as built.
    let dist = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-dist");
    let log = std::fs::File::create(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("trunk-serve.log")).unwrap();
    let child = Command::new("trunk")
        .args(["serve", "--port", &port.to_string(), "--no-autoreload=true", "--dist", dist.to_str().unwrap()])
        .current_dir(&root)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("trunk on PATH (scripts/test installs it)");
    let mut trunk = Trunk(child);
    let started = Instant::now();
    let serving = |trunk: &mut Trunk| loop {
        assert!(trunk.0.try_wait().unwrap().is_none(), "trunk exited: see target/tmp/trunk-serve.log");
        if let Some(response) = get(port).filter(|r| r.starts_with("HTTP/1.1 200")) {
            return response;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "trunk served nothing in 10 minutes");
        std::thread::sleep(Duration::from_millis(500));
    };
    let first = serving(&mut trunk);
    assert!(first.to_ascii_lowercase().contains("content-security-policy: default-src 'self'"), "no CSP header: {first}");

    let flood = root.join("target").join("serve-flood");
    let _ = std::fs::remove_dir_all(&flood);
    for dir in 0..40 {
        let folder = flood.join(dir.to_string());
        std::fs::create_dir_all(&folder).unwrap();
        for file in 0..1000 {
            std::fs::write(folder.join(file.to_string()), b"x").unwrap();
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    let after = serving(&mut trunk);
    assert!(after.contains("<title>"), "{after}");
    std::fs::remove_dir_all(&flood).unwrap();
}
