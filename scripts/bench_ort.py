"""ONNX Runtime reference for `mam-e bench --model`: the ONNX models `scripts/bench_web/export_onnx.py`
writes (text encoder, UNet with batch 2, VAE decoder), timed on the CPU execution provider with as
many threads as the machine has cores, by `mam-e bench`'s rule (one warm-up, median of N runs),
printed in its line format (UNet, text encoder, VAE). Not part of the tests.

    python3 scripts/bench_ort.py ONNX_DIR [runs]
"""
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime

folder, runs = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 3
shapes = json.loads((folder / "shapes.json").read_text())
options = onnxruntime.SessionOptions()
options.intra_op_num_threads = os.cpu_count()
rng = np.random.default_rng(0)


def timed(name, inputs):
    session = onnxruntime.InferenceSession(folder / f"{name}.onnx", options, providers=["CPUExecutionProvider"])
    session.run(None, inputs)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, inputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


unet = shapes["unet"]
latent = unet["sample"][2]
ids = np.full(shapes["text_encoder"]["ids"], 320, dtype=np.int64)
ids[:, 0] = 49406
decoder = shapes["vae_decoder"]["latents"]
results = [
    (f"unet cfg-step batch=2 latent={latent}x{latent}", timed("unet", {
        "sample": rng.standard_normal(unet["sample"], dtype=np.float32),
        "timestep": np.array(500, dtype=np.int64),
        "context": rng.standard_normal(unet["context"], dtype=np.float32)})),
    ("text-encoder batch=2 tokens=77", timed("text_encoder", {"ids": ids})),
    ("vae-decode batch=1", timed("vae_decoder", {"latents": rng.standard_normal(decoder, dtype=np.float32)})),
]
for label, median in results:
    print(f"{label} backend=onnxruntime-cpu threads={os.cpu_count()} median_s={median:.4f}", flush=True)
