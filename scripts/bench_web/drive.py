"""Runs the side-by-side browser benchmark (see scripts/bench-web): ONNX Runtime Web's pages in
headless Chromium through chromedriver, and mam-e's `web_bench` through wasm-bindgen-test, in
alternation, then prints medians per component and whole generation, and the ratios.

    python3 scripts/bench_web/drive.py SITE_DIR ROUNDS [--webgpu]
"""
import http.server
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

site, rounds, webgpu = Path(sys.argv[1]), int(sys.argv[2]), "--webgpu" in sys.argv
root = Path(__file__).resolve().parents[2]


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm"}

    def __init__(self, *a, **k):
        super().__init__(*a, directory=str(site), **k)

    def end_headers(self):
        # Cross-origin isolation, as ORT-Web's threaded builds want (we run it on 1 thread).
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def log_message(self, *a):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
origin = f"http://127.0.0.1:{server.server_address[1]}"
driver_port = free_port()
driver = subprocess.Popen(["chromedriver", f"--port={driver_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
args = json.loads((root / "webdriver.json").read_text())["goog:chromeOptions"]["args"]


def call(method, path, body=None):
    request = urllib.request.Request(f"http://127.0.0.1:{driver_port}{path}", method=method, data=None if body is None else json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=900) as response:
        return json.loads(response.read())["value"]


def ort(ep):
    for _ in range(50):
        try:
            session = call("POST", "/session", {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"args": args}}}})["sessionId"]
            break
        except OSError:
            time.sleep(0.2)
    try:
        call("POST", f"/session/{session}/url", {"url": f"{origin}/ort.html?ep={ep}"})
        deadline = time.time() + 1200
        while time.time() < deadline:
            result = call("POST", f"/session/{session}/execute/sync", {"script": "return window.benchResult || null", "args": []})
            if result:
                if "error" in result:
                    sys.exit(f"ORT-Web {ep}: {result['error']}")
                return result
            time.sleep(1)
        sys.exit(f"ORT-Web {ep}: no result in 20 minutes")
    finally:
        call("DELETE", f"/session/{session}")


LINE = re.compile(r"(Cpu|Gpu) round (\d+): text encoder ([\d.]+) ms, UNet CFG step median ([\d.]+) ms .*VAE decode ([\d.]+) ms, whole generation ([\d.]+) ms")


def ours(test):
    env = {**os.environ, "CHROMEDRIVER": subprocess.check_output(["which", "chromedriver"], text=True).strip(), "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER": "wasm-bindgen-test-runner", "WASM_BINDGEN_TEST_TIMEOUT": "1800"}
    out = subprocess.run(["cargo", "test", "--locked", "--target", "wasm32-unknown-unknown", "--test", "web_bench", "--", "--nocapture", test], cwd=root, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"web_bench {test} failed:\n{out.stdout}\n{out.stderr}")
    rows = [m.groups() for m in LINE.finditer(out.stdout)]
    measured = [r for r in rows if int(r[1]) > 0]  # round 0 is the warm-up
    return {"text_encoder": statistics.median(float(r[2]) for r in measured), "unet": statistics.median(float(r[3]) for r in measured),
            "vae_decoder": statistics.median(float(r[4]) for r in measured), "whole": statistics.median(float(r[5]) for r in measured)}


runs = {"mam-e CPU": [], "ORT-Web wasm": [], "mam-e WebGPU": [], "ORT-Web WebGPU": []}
try:
    for r in range(rounds):
        print(f"round {r + 1} of {rounds}", file=sys.stderr)
        runs["mam-e CPU"].append(ours("demo_generation_speed_on_the_cpu_path"))
        runs["ORT-Web wasm"].append(ort("wasm"))
        if webgpu:
            runs["mam-e WebGPU"].append(ours("demo_generation_speed_on_webgpu"))
            runs["ORT-Web WebGPU"].append(ort("webgpu"))
finally:
    driver.terminate()

keys = ["text_encoder", "unet", "vae_decoder", "whole"]
medians = {name: {k: statistics.median(run[k] for run in r) for k in keys} for name, r in runs.items() if r}
print(f"{'medians (ms)':<16}" + "".join(f"{k:>14}" for k in keys))
for name, m in medians.items():
    print(f"{name:<16}" + "".join(f"{m[k]:>14.1f}" for k in keys))
for ours_name, theirs_name in [("mam-e CPU", "ORT-Web wasm"), ("mam-e WebGPU", "ORT-Web WebGPU")]:
    if ours_name in medians:
        a, b = medians[ours_name], medians[theirs_name]
        print(f"ratio {ours_name} / {theirs_name}: " + ", ".join(f"{k} {a[k] / b[k]:.2f}" for k in keys))
