"""PyTorch reference for `mam-e bench`: the same components, sizes and timing rule (one warm-up,
median of N runs), on the CPU with as many threads as the machine has cores, or on a CUDA GPU
(`--device cuda`; fp32 without TF32 unless `--dtype float16`).

    python3 scripts/bench_pytorch.py --component unet --size sd15 --runs 3
    python3 scripts/bench_pytorch.py --model DIFFUSERS_FOLDER   (a model at its own size)
"""
import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

parser = argparse.ArgumentParser()
parser.add_argument("--component", choices=["unet", "text-encoder", "vae"], action="append")
parser.add_argument("--size", choices=["tiny", "sd15"], default="sd15")
parser.add_argument("--model", help="a diffusers folder (e.g. `mam-e convert --from PACKAGE`), timed at its own size")
parser.add_argument("--runs", type=int, default=3)
parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
parser.add_argument("--dtype", choices=["float32", "float16"], default="float32")
args = parser.parse_args()
torch.set_num_threads(os.cpu_count())
torch.manual_seed(0)
# fp32 as burn computes it: no TF32 in matmuls or convolutions.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
device, dtype = torch.device(args.device), getattr(torch, args.dtype)


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(f):
    with torch.no_grad():
        f()
        sync()
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            f()
            sync()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


sd15 = args.size == "sd15"
latent = 64 if sd15 else 32
folder = Path(args.model) if args.model else None
if folder:
    latent = UNet2DConditionModel.load_config(folder / "unet")["sample_size"]
for component in args.component or ["unet", "text-encoder", "vae"]:
    if component == "unet":
        if folder:
            model = UNet2DConditionModel.from_pretrained(folder / "unet")
        elif sd15:
            model = UNet2DConditionModel(cross_attention_dim=768)
        else:
            model = UNet2DConditionModel(
                block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                attention_head_dim=4, norm_num_groups=8)
        model.eval().to(device, dtype)
        cross = model.config.cross_attention_dim
        sample, context = torch.randn(2, 4, latent, latent).to(device, dtype), torch.randn(2, 77, cross).to(device, dtype)
        t = torch.tensor([500.0, 500.0], device=device)
        median = timed(lambda: model(sample, t, encoder_hidden_states=context).sample)
        label = f"unet cfg-step batch=2 latent={latent}x{latent}"
    elif component == "text-encoder":
        config = CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12) if sd15 \
            else CLIPTextConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
        model = CLIPTextModel.from_pretrained(folder / "text_encoder") if folder else CLIPTextModel(config)
        model = model.eval().to(device, dtype)
        ids = torch.full((2, 77), 320, device=device)
        ids[:, 0] = 49406
        median = timed(lambda: model(input_ids=ids).last_hidden_state)
        label = "text-encoder batch=2 tokens=77"
    else:
        model = AutoencoderKL.from_pretrained(folder / "vae") if folder else \
            AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4) if sd15 \
            else AutoencoderKL(block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
                               down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
        model.eval().to(device, dtype)
        latents = torch.randn(1, 4, latent, latent).to(device, dtype)
        scale = 2 ** (len(model.config.block_out_channels) - 1)
        median = timed(lambda: model.decode(latents).sample)
        label = f"vae-decode batch=1 image={latent * scale}x{latent * scale}"
    print(f"{label} size={args.model or args.size} backend=pytorch-{args.device} dtype={args.dtype} median_s={median:.4f}", flush=True)
