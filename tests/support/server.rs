//! A static file server on 127.0.0.1 for the built app that is also the browser's HTTP proxy
//! (see `Browser::start`), so it sees every request the browser makes — the page's, and the
//! pipeline worker's, which DevTools' page log does not show — and serves only its own origin.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;

pub struct StaticServer {
    pub origin: String,
    /// Every request target as the browser sent it: `/path`, `http://host:port/path` through
    /// the proxy, or `host:port` for a `CONNECT` (https).
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl StaticServer {
    /// Serves `root` on a free loopback port until the process ends.
    pub fn start(root: &Path) -> StaticServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (root, log, own) = (root.to_path_buf(), requests.clone(), origin.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (root, log, own) = (root.clone(), log.clone(), own.clone());
                thread::spawn(move || serve(stream, &root, &own, &log));
            }
        });
        StaticServer { origin, requests }
    }

    /// Requests for anything but this server's origin (each was refused), less Chromium's own
    /// background requests (see [`BROWSER_SERVICE_DOMAINS`]).
    pub fn foreign_requests(&self) -> Vec<String> {
        let browser_service = |target: &str| {
            let host = target.split("://").last().unwrap_or(target).split(['/', ':']).next().unwrap_or("");
            BROWSER_SERVICE_DOMAINS.iter().any(|d| host == *d || host.ends_with(&format!(".{d}")))
        };
        self.requests.lock().unwrap().iter().filter(|t| own_path(t, &self.origin).is_none() && !browser_service(t)).cloned().collect()
    }
}

/// Where headless Chromium itself connects in the background (component updates, network
/// time, accounts, autofill) whatever page it shows. The proxy cannot tell such a request from
/// one a page makes, so these hosts are left to the DevTools log of the page's own requests
/// (`Browser::requested_urls`), which sees a page's request to them but not a worker's.
const BROWSER_SERVICE_DOMAINS: [&str; 3] = ["google.com", "googleapis.com", "gstatic.com"];

/// The path of a request target on `origin`, if it is one.
fn own_path<'a>(target: &'a str, origin: &str) -> Option<&'a str> {
    if target.starts_with('/') {
        return Some(target);
    }
    target.strip_prefix(origin).filter(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn serve(mut stream: TcpStream, root: &Path, origin: &str, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // Drain the headers.
    let mut header = String::new();
    while reader.read_line(&mut header).map(|n| n > 2).unwrap_or(false) {
        header.clear();
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    log.lock().unwrap().push(target.clone());
    let Some(path) = own_path(&target, origin) else {
        let _ = stream.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let path = path.split('?').next().unwrap_or("/");
    let path = if path.is_empty() { "/" } else { path };
    let relative = if path == "/" { "index.html".to_string() } else { path.trim_start_matches('/').to_string() };
    let file = root.join(&relative);
    let (status, body, kind) = match (relative.contains(".."), std::fs::read(&file)) {
        (false, Ok(body)) => ("200 OK", body, content_type(&file)),
        _ => ("404 Not Found", b"not found".to_vec(), "text/plain"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Security-Policy: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        content_security_policy(),
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&body));
}

/// The policy `trunk serve` sends with every file (Trunk.toml's `[serve.headers]`), so the page
/// and its worker run here under the header users' servers are told to send.
fn content_security_policy() -> String {
    let trunk = include_str!("../../Trunk.toml");
    let line = trunk.lines().find_map(|l| l.strip_prefix("\"Content-Security-Policy\" = ")).expect("Trunk.toml sends a Content-Security-Policy");
    line.trim().trim_matches('"').to_string()
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}
