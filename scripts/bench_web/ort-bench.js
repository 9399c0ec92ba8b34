// Times ONNX Runtime Web on the exported demo models, as `web_bench` times the page: the text
// encoder, one UNet call (batch 2: classifier-free guidance) and the VAE decode, each a median
// after a warm-up; a whole 10-step generation is text + 10 UNet calls + decode.
// `?ep=wasm` (1 thread, as the page's CPU path) or `?ep=webgpu`. Results land in window.benchResult.
import * as ort from "./ort/ort.all.min.mjs";

const ep = new URLSearchParams(location.search).get("ep") || "wasm";
ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = new URL("./ort/", location.href).href;

function median(v) {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function tensor(shape, type) {
  const n = shape.reduce((a, b) => a * b, 1);
  if (type === "int64") return new ort.Tensor("int64", BigInt64Array.from({ length: n }, (_, i) => BigInt((i * 7919) % 49407)), shape);
  return new ort.Tensor("float32", Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37)), shape);
}

async function time(session, feeds, runs) {
  const times = [];
  for (let i = 0; i <= runs; i++) {
    const t = performance.now();
    const out = await session.run(feeds);
    // WebGPU returns GPU tensors only when asked; these are CPU tensors, read back like ours.
    void out.out.data;
    if (i > 0) times.push(performance.now() - t);
  }
  return median(times);
}

async function main() {
  const shapes = await (await fetch("onnx/shapes.json")).json();
  const result = { ep };
  const runs = ep === "wasm" ? 10 : 2;
  for (const name of ["text_encoder", "unet", "vae_decoder"]) {
    const session = await ort.InferenceSession.create(`onnx/${name}.onnx`, { executionProviders: [ep] });
    const feeds = {};
    for (const [input, shape] of Object.entries(shapes[name])) {
      feeds[input] = tensor(shape, input === "ids" || input === "timestep" ? "int64" : "float32");
    }
    result[name] = await time(session, feeds, runs);
  }
  result.whole = result.text_encoder + 10 * result.unet + result.vae_decoder;
  window.benchResult = result;
}
main().catch((e) => (window.benchResult = { ep, error: String(e && e.stack || e) }));
