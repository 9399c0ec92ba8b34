"""Exports a diffusers folder (the demo package converted back with `mam-e convert --from`) to the
three ONNX models ONNX Runtime Web runs in `scripts/bench-web`: the CLIP text encoder, the UNet
(batch 2, classifier-free guidance) and the VAE decoder, fp32, opset 17, each checked against
PyTorch with onnxruntime. Not part of the tests.

    python3 scripts/bench_web/export_onnx.py FOLDER OUT_DIR
"""
import json
import warnings
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel

folder, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
warnings.filterwarnings("ignore")  # tracer and deprecation notes about code paths the demo does not take

text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder").eval()
unet = UNet2DConditionModel.from_pretrained(folder / "unet").eval()
vae = AutoencoderKL.from_pretrained(folder / "vae").eval()
vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
height = unet.config.sample_size * vae_factor  # diffusers' default size: the demo's 128
latent = height // vae_factor


class Decoder(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latents):
        return self.vae.decode(latents / self.vae.config.scaling_factor).sample


class UNet(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, context):
        return self.unet(sample, timestep, encoder_hidden_states=context).sample


class Text(torch.nn.Module):
    def __init__(self, text_encoder):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, ids):
        return self.text_encoder(ids).last_hidden_state


dim = text_encoder.config.hidden_size
cases = {
    "text_encoder": (Text(text_encoder), (torch.randint(0, 49407, (2, 77), dtype=torch.int64),), ["ids"]),
    "unet": (UNet(unet), (torch.randn(2, unet.config.in_channels, latent, latent), torch.tensor(500, dtype=torch.int64), torch.randn(2, 77, dim)), ["sample", "timestep", "context"]),
    "vae_decoder": (Decoder(vae), (torch.randn(1, vae.config.latent_channels, latent, latent),), ["latents"]),
}
shapes = {}
for name, (module, inputs, names) in cases.items():
    path = out / f"{name}.onnx"
    with torch.no_grad():
        want = module(*inputs).numpy()
        torch.onnx.export(module, inputs, path, input_names=names, output_names=["out"], opset_version=17, dynamo=False)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {n: i.numpy() for n, i in zip(names, inputs)})[0]
    error = np.abs(got - want).max() / np.abs(want).max()
    print(f"{name}: exported, onnxruntime vs torch relative error {error:.1e}")
    assert error < 1e-4, f"{name}: the ONNX export differs from torch by {error}"
    shapes[name] = {n: list(i.shape) for n, i in zip(names, inputs)}
(out / "shapes.json").write_text(json.dumps(shapes))
