"""Pictures people would rather look at than read: image grids with their captions."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont


def to_pil(image: torch.Tensor) -> Image.Image:
    """``[3, H, W]`` tensor in [−1, 1] → RGB image."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a [3, H, W] image tensor, got {tuple(image.shape)}")
    array = image.detach().float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).cpu().numpy(), "RGB")


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _wrap(text: str, font, width: int, max_lines: int) -> list[str]:
    average = max(1.0, font.getlength("abcdefghijklmnopqrstuvwxyz") / 26)
    lines = textwrap.wrap(text, width=max(8, int(width / average)))
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(0, len(lines[-1]) - 3)] + "..."
    return lines


def captioned_grid(
    images: Sequence[Image.Image],
    captions: Sequence[str],
    columns: int = 4,
    cell: int = 160,
    text_lines: int = 4,
    font_size: int = 11,
) -> Image.Image:
    """A grid of ``images`` (scaled to ``cell`` pixels) with each caption wrapped beneath it."""
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    if not images:
        raise ValueError("no images to draw")
    font = _font(font_size)
    line_height = font_size + 3
    pad = 6
    columns = max(1, min(columns, len(images)))
    rows = (len(images) + columns - 1) // columns
    cell_h = cell + pad + text_lines * line_height
    sheet = Image.new("RGB", (columns * (cell + pad) + pad, rows * (cell_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for n, (image, caption) in enumerate(zip(images, captions, strict=True)):
        x = pad + (n % columns) * (cell + pad)
        y = pad + (n // columns) * (cell_h + pad)
        sheet.paste(image.convert("RGB").resize((cell, cell), Image.NEAREST), (x, y))
        for k, line in enumerate(_wrap(caption, font, cell, text_lines)):
            draw.text((x, y + cell + 3 + k * line_height), line, fill=(20, 20, 20), font=font)
    return sheet
