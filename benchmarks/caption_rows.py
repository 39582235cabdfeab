"""One picture of several models side by side: a row per model, the same captions in the same
columns (the last stage's image, seed 0, one image per caption), each image enlarged by
``--scale`` (nearest neighbour, so the pixels stay visible), written as a 256-colour PNG. For
the figures of docs/evaluation.md.

    python benchmarks/caption_rows.py OUT.png MODEL [MODEL ...] [--captions "a red ..." ...]
        [--position "in the center"] [--scale 2] [--seed 0]

Without ``--captions``: "a big <colour> <shape> <position>" for eight colour and shape pairs
(red circle, blue square, green triangle, yellow star, purple heart, orange cross, cyan diamond,
pink hexagon), at ``--position``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image
from torch.nn.functional import interpolate
from torchvision.utils import make_grid

from attngan.errors import AttnGANError
from attngan.pipeline import Pipeline

PAIRS = (
    ("red", "circle"),
    ("blue", "square"),
    ("green", "triangle"),
    ("yellow", "star"),
    ("purple", "heart"),
    ("orange", "cross"),
    ("cyan", "diamond"),
    ("pink", "hexagon"),
)


def default_captions(position: str) -> list[str]:
    return [f"a big {colour} {shape} {position}" for colour, shape in PAIRS]


def caption_rows(models: list[str], captions: list[str], scale: int = 2, seed: int = 0):
    """``[len(models) * len(captions), 3, s * scale, s * scale]`` images in [0, 1], model-major."""
    rows = []
    for model in models:
        images = Pipeline.from_pretrained(model)(captions, num_images=1, seed=seed).images[-1]
        rows.append((images.float() + 1) / 2)
    return interpolate(torch.cat(rows), scale_factor=scale, mode="nearest").clamp(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("models", nargs="+", help="GAN model or checkpoint folders, one per row")
    parser.add_argument("--captions", nargs="+", help="the columns' captions")
    parser.add_argument("--position", default="in the center", help="for the default captions")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.scale < 1:
        parser.error(f"--scale must be >= 1 (got {args.scale})")
    captions = args.captions or default_captions(args.position)
    try:
        images = caption_rows(args.models, captions, args.scale, args.seed)
    except AttnGANError as exc:
        raise SystemExit(f"caption_rows: error: {exc}") from None
    grid = make_grid(images, nrow=len(captions), padding=2, pad_value=1.0)
    picture = Image.fromarray(grid.mul(255).round().byte().permute(1, 2, 0).numpy())
    # 256 colours: a docs figure a third of the size, the difference invisible
    picture.quantize(256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"wrote {args.out}: {len(args.models)} rows x {len(captions)} captions")


if __name__ == "__main__":
    main()
