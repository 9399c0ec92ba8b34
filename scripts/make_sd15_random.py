"""A diffusers folder with SD1.5's architecture and random weights (for package sizes and
quantization error at full size; says nothing about a trained model's accuracy).

    python3 scripts/make_sd15_random.py OUT_DIR [--inpaint]
"""
import argparse
import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--inpaint", action="store_true")
args = parser.parse_args()
out = Path(args.out)
torch.manual_seed(0)
fixtures = Path(__file__).resolve().parent.parent / "tests/fixtures/tiny-sd"

unet = UNet2DConditionModel(cross_attention_dim=768, in_channels=9 if args.inpaint else 4)
if not (out / "unet").exists():
    unet.save_pretrained(out / "unet")
del unet
# SD1.5's text encoder: CLIP ViT-L/14's text tower.
text_config = CLIPTextConfig(
    hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
    max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu",
)
CLIPTextModel(text_config).save_pretrained(out / "text_encoder")
AutoencoderKL(
    block_out_channels=[128, 256, 512, 512],
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    latent_channels=4,
    layers_per_block=2,
    sample_size=512,
).save_pretrained(out / "vae")
shutil.copytree(fixtures / "tokenizer", out / "tokenizer", dirs_exist_ok=True)
shutil.copytree(fixtures / "scheduler", out / "scheduler", dirs_exist_ok=True)
shutil.copy(fixtures / "model_index.json", out / "model_index.json")
print("wrote", out)
