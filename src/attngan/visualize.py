"""Pictures people would rather look at than read: image grids with their captions, and per-word
attention overlays."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
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


# --- word attention (paper Fig. 3)

# A jet-like colour ramp: attention 0 (dark blue) -> 1 (dark red), as (position, R, G, B).
_RAMP = np.array(
    [
        [0.000, 0.0, 0.0, 0.5],
        [0.125, 0.0, 0.0, 1.0],
        [0.375, 0.0, 1.0, 1.0],
        [0.625, 1.0, 1.0, 0.0],
        [0.875, 1.0, 0.0, 0.0],
        [1.000, 0.5, 0.0, 0.0],
    ]
)
_HEAT_ALPHA = 0.6  # weight of the heat map in the blend over the image


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1], any shape ``S`` -> RGB in [0, 1], shape ``S + (3,)`` (jet-like ramp)."""
    values = np.clip(values, 0.0, 1.0)
    channels = [np.interp(values, _RAMP[:, 0], _RAMP[:, c]) for c in (1, 2, 3)]
    return np.stack(channels, axis=-1)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """``[C, h, w]`` -> ``[C, size, size]``, bilinear."""
    x = x.detach().float().cpu()[None]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[0]


def _image_array(image: torch.Tensor, size: int) -> np.ndarray:
    """``[3, s, s]`` in [−1, 1] -> ``[size, size, 3]`` in [0, 1]."""
    return _resize(image, size).add(1.0).div(2.0).clamp(0, 1).permute(1, 2, 0).numpy()


def _fit(text: str, font, width: int) -> str:
    """``text``, shortened with '..' until it fits ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    while len(text) > 1 and font.getlength(text + "..") > width:
        text = text[:-1]
    return text + ".."


def _check_attention_inputs(
    stage_images: Sequence[torch.Tensor], words: Sequence[str], attention: Sequence[torch.Tensor]
) -> None:
    if len(stage_images) < 2:
        raise ValueError(f"need the images of at least 2 stages, got {len(stage_images)}")
    if len(attention) != len(stage_images) - 1:
        raise ValueError(
            f"{len(stage_images)} stage images need {len(stage_images) - 1} attention maps "
            f"(one per refinement stage), got {len(attention)}"
        )
    if not words:
        raise ValueError("no words to show")
    for k, image in enumerate(stage_images):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"stage {k} image: expected [3, s, s], got {list(image.shape)}")
    for k, att in enumerate(attention):
        if att.ndim != 3 or att.shape[0] < len(words):
            raise ValueError(
                f"attention of refinement stage {k}: expected [T, h, w] with T >= {len(words)} "
                f"words, got {list(att.shape)}"
            )


def attention_figure(
    stage_images: Sequence[torch.Tensor],
    words: Sequence[str],
    attention: Sequence[torch.Tensor],
    cell: int = 96,
) -> Image.Image:
    """Where each word looks, as in Fig. 3 of the AttnGAN paper, for one generated sample.

    Args:
        stage_images: one ``[3, s, s]`` image in [−1, 1] per generator stage, smallest first.
        words: the caption words the model used (1 or more).
        attention: one ``[T, h, w]`` map per refinement stage (``T >= len(words)``; columns past
            ``len(words)`` are padding and ignored).
        cell: the side of each picture in pixels.

    One row per refinement stage, labelled with the size it generates: first the image it made,
    then one column per word (labels in the header row) with that word's attention, upsampled
    bilinearly and drawn as a heat map over the image the stage refines (the previous stage's
    output). Each map is scaled to its own maximum, so every word's focus shows even where the
    word gets little attention overall.
    """
    _check_attention_inputs(stage_images, words, attention)
    pad = max(2, cell // 24)
    font_size = max(9, cell // 8)
    font = _font(font_size)
    label_width = int(font.getlength("1024 px")) + 2 * pad
    header = font_size + 3 * pad
    columns = 1 + len(words)
    width = label_width + columns * (cell + pad) + pad
    height = header + len(attention) * (cell + pad) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    ink = (20, 20, 20)
    for col, label in enumerate(["image", *words]):
        x = label_width + col * (cell + pad)
        draw.text((x, pad), _fit(label, font, cell), fill=ink, font=font)
    for row, att in enumerate(attention):
        y = header + row * (cell + pad)
        made = stage_images[row + 1]
        label = f"{made.shape[-1]} px"
        draw.text((pad, y + (cell - font_size) // 2), label, fill=ink, font=font)
        sheet.paste(_as_pil(_image_array(made, cell)), (label_width, y))
        base = _image_array(stage_images[row], cell)  # [cell, cell, 3] the image being refined
        maps = _resize(att[: len(words)], cell).numpy()  # [W, cell, cell]
        maps = maps / np.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12)
        for k, word_map in enumerate(maps):
            blend = (1 - _HEAT_ALPHA) * base + _HEAT_ALPHA * heat_colours(word_map)
            sheet.paste(_as_pil(blend), (label_width + (k + 1) * (cell + pad), y))
    return sheet


def _as_pil(array: np.ndarray) -> Image.Image:
    """``[H, W, 3]`` in [0, 1] -> RGB image."""
    return Image.fromarray(np.round(np.clip(array, 0, 1) * 255).astype(np.uint8), "RGB")
