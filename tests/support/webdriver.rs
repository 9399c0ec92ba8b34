//! Just enough of the W3C WebDriver protocol to drive headless Chromium through chromedriver.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// A chromedriver process and one browser session in it; both end on drop.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

impl Browser {
    /// Starts headless Chromium, with WebGPU (SwiftShader) when `webgpu` is true, sending every
    /// request (loopback ones too) through the HTTP proxy at `proxy` (`http://127.0.0.1:port`).
    pub fn start(webgpu: bool, proxy: &str) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {chromedriver}: {e} (scripts/test installs chromium-driver)"));
        let mut browser = Browser { driver, port, session: String::new() };
        let mut args = vec![
            "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-quic", "--window-size=1280,900",
        ];
        let proxy = format!("--proxy-server={proxy}");
        args.extend([proxy.as_str(), "--proxy-bypass-list=<-loopback>"]);
        if webgpu {
            args.push("--enable-unsafe-webgpu");
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": args},
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"},
        }}});
        let deadline = Instant::now() + Duration::from_secs(20);
        let created = loop {
            match browser.try_request("POST", "/session", Some(&capabilities)) {
                Ok(v) => break v,
                Err(e) if Instant::now() > deadline => panic!("chromedriver did not answer: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        browser.session = created["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}")).to_string();
        browser
    }

    pub fn goto(&self, url: &str) {
        self.command("POST", "url", json!({ "url": url }));
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub fn eval(&self, script: &str) -> Value {
        self.command("POST", "execute/sync", json!({ "script": script, "args": [] }))
    }

    /// Polls `script` until it returns something truthy, or panics after `timeout`.
    pub fn wait_for(&self, script: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(script);
            if !(value.is_null() || value == json!(false) || value == json!("")) {
                return value;
            }
            if Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for: {script}\npage: {}", self.eval("return document.body.innerText"));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Runs `script` (a function body whose last argument is the callback to call with the
    /// result) and waits for the callback.
    pub fn eval_async(&self, script: &str) -> Value {
        self.eval_async_with(script, &[])
    }

    /// [`Browser::eval_async`] with `args` (the script's `arguments[0]`, …).
    pub fn eval_async_with(&self, script: &str, args: &[Value]) -> Value {
        self.command("POST", "execute/async", json!({ "script": script, "args": args }))
    }

    fn element(&self, selector: &str) -> Value {
        let found = self.command("POST", "element", json!({ "using": "css selector", "value": selector }));
        let id = &found["element-6066-11e4-a52e-4f735466cecf"];
        assert!(id.is_string(), "no element for {selector}: {found}");
        id.clone()
    }

    /// Clicks the first element matching `selector`, as a user would (scrolled into view).
    pub fn click(&self, selector: &str) {
        let id = self.element(selector);
        self.command("POST", &format!("element/{}/click", id.as_str().unwrap()), json!({}));
    }

    /// Presses the mouse at `from` and releases it at `to`, moving in `steps` (offsets in CSS
    /// pixels from the centre of the element matching `selector`).
    pub fn drag(&self, selector: &str, from: (i64, i64), to: (i64, i64), steps: i64) {
        let element = json!({ "element-6066-11e4-a52e-4f735466cecf": self.element(selector) });
        let mut actions =
            vec![json!({ "type": "pointerMove", "origin": element, "x": from.0, "y": from.1, "duration": 0 }), json!({ "type": "pointerDown", "button": 0 })];
        for i in 1..=steps {
            let (x, y) = (from.0 + (to.0 - from.0) * i / steps, from.1 + (to.1 - from.1) * i / steps);
            actions.push(json!({ "type": "pointerMove", "origin": element, "x": x, "y": y, "duration": 20 }));
        }
        actions.push(json!({ "type": "pointerUp", "button": 0 }));
        let body = json!({ "actions": [{ "type": "pointer", "id": "mouse", "parameters": { "pointerType": "mouse" }, "actions": actions }] });
        self.command("POST", "actions", body);
        self.command("DELETE", "actions", Value::Null);
    }

    /// Gives the file input matching `selector` these files, as a person picking them would.
    pub fn upload(&self, selector: &str, files: &[std::path::PathBuf]) {
        let id = self.element(selector);
        let text = files.iter().map(|f| f.to_str().unwrap()).collect::<Vec<_>>().join("\n");
        self.command("POST", &format!("element/{}/value", id.as_str().unwrap()), json!({ "text": text }));
    }

    /// Presses and releases `key` (a character, or a WebDriver key code such as "\u{E003}",
    /// Backspace) on whatever has the focus.
    pub fn press(&self, key: &str) {
        let actions = json!([{ "type": "keyDown", "value": key }, { "type": "keyUp", "value": key }]);
        self.command("POST", "actions", json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] }));
        self.command("DELETE", "actions", Value::Null);
    }

    pub fn screenshot(&self, path: &std::path::Path) {
        let b64 = self.command("GET", "screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Runs the DevTools protocol command `method` in the page's session.
    pub fn cdp(&self, method: &str, params: Value) -> Value {
        self.command("POST", "goog/cdp/execute", json!({ "cmd": method, "params": params }))
    }

    /// Evaluates `expression` in the page's dedicated worker whose script URL contains `script`,
    /// through the DevTools protocol (WebDriver cannot reach into workers).
    pub fn eval_in_worker(&self, script: &str, expression: &str) {
        let targets = self.cdp("Target.getTargets", json!({}));
        let worker = targets["targetInfos"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "worker" && t["url"].as_str().is_some_and(|u| u.contains(script))))
            .unwrap_or_else(|| panic!("no worker {script} among {targets}"));
        let attached = self.cdp("Target.attachToTarget", json!({ "targetId": worker["targetId"], "flatten": false }));
        let evaluate = json!({ "id": 1, "method": "Runtime.evaluate", "params": { "expression": expression } });
        self.cdp("Target.sendMessageToTarget", json!({ "sessionId": attached["sessionId"], "message": evaluate.to_string() }));
    }

    /// Chromium's log of one type ("browser" for the console, "performance" for DevTools events).
    pub fn log(&self, kind: &str) -> Vec<Value> {
        self.command("POST", "se/log", json!({ "type": kind })).as_array().cloned().unwrap_or_default()
    }

    /// Every URL the page requested, from the DevTools network events.
    pub fn requested_urls(&self) -> Vec<String> {
        self.log("performance")
            .iter()
            .filter_map(|entry| serde_json::from_str::<Value>(entry["message"].as_str()?).ok())
            .filter(|m| m["message"]["method"] == "Network.requestWillBeSent")
            .filter_map(|m| m["message"]["params"]["request"]["url"].as_str().map(String::from))
            .collect()
    }

    fn command(&self, method: &str, endpoint: &str, body: Value) -> Value {
        let path = format!("/session/{}/{endpoint}", self.session);
        let body = (!body.is_null()).then_some(body);
        self.try_request(method, &path, body.as_ref()).unwrap_or_else(|e| panic!("{method} {endpoint}: {e}"))
    }

    fn try_request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(120))).map_err(|e| e.to_string())?;
        let (head, payload) = read_response(&mut stream)?;
        let value: Value = serde_json::from_str(&payload).map_err(|e| format!("{e}: {payload}"))?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!("{head}: {}", value["value"]));
        }
        Ok(value["value"].clone())
    }
}

/// Reads one HTTP/1.1 response: chromedriver may keep the connection open, so stop at the
/// end of the body (Content-Length or chunked) rather than at end of stream.
fn read_response(stream: &mut TcpStream) -> Result<(String, String), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let lower = head.to_ascii_lowercase();
            let length = lower.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
            match length {
                Some(n) if body.len() >= n => return Ok((head.to_string(), body[..n].to_string())),
                None if lower.contains("transfer-encoding: chunked") && body.ends_with("0\r\n\r\n") => {
                    return Ok((head.to_string(), dechunk(body)));
                }
                _ => {}
            }
        }
        let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return match String::from_utf8_lossy(&buf).split_once("\r\n\r\n") {
                Some((head, body)) => Ok((head.to_string(), body.to_string())),
                None => Err("connection closed before a response".into()),
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn dechunk(body: &str) -> String {
    let (mut out, mut rest) = (String::new(), body);
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.try_request("DELETE", &path, None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
