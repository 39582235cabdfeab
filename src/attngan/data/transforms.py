"""Image transforms of SPEC §7: bounding-box crop, random crop and flip, and the image pyramid."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

CROP_MARGIN = 76 / 64  # the release resizes to size·76/64 before a random crop to size


def crop_to_box(image: Image.Image, bbox: tuple[float, float, float, float]) -> Image.Image:
    """A square of side 1.5·max(w, h) centred on the box ``(x, y, w, h)``, clipped to the image."""
    x, y, w, h = bbox
    radius = int(max(w, h) * 0.75)
    cx, cy = int((2 * x + w) / 2), int((2 * y + h) / 2)
    left, top = max(0, cx - radius), max(0, cy - radius)
    right, bottom = min(image.width, cx + radius), min(image.height, cy + radius)
    if right <= left or bottom <= top:
        return image
    return image.crop((left, top, right, bottom))


def resize_short_side(image: Image.Image, size: int) -> Image.Image:
    """Scale so the shorter side is ``size`` pixels, keeping the aspect ratio (bilinear)."""
    w, h = image.size
    if min(w, h) == size:
        return image
    if w <= h:
        new = (size, max(size, round(h * size / w)))
    else:
        new = (max(size, round(w * size / h)), size)
    return image.resize(new, Image.BILINEAR)


def to_unit_range(image: Image.Image) -> torch.Tensor:
    """RGB image → ``[3, H, W]`` float tensor in [−1, 1]."""
    array = torch.from_numpy(np.asarray(image, dtype=np.float32))  # [H, W, 3] in 0..255
    return array.permute(2, 0, 1).div(127.5).sub_(1.0)


class PyramidTransform:
    """An image → one ``[3, s, s]`` tensor per stage size ``s`` (smallest first), in [−1, 1].

    Training: resize to ⌊size·76/64⌋, random crop to ``size``, random horizontal flip (unless
    ``flip=False``: captions that say "left" and "right" must not be mirrored; ``crop=False``
    resizes to ``size`` and centre-crops as evaluation does, for captions that name where things
    are and how big). Evaluation: resize and centre crop, no randomness. Lower stages are the same
    crop downsampled.
    """

    def __init__(self, sizes: list[int], train: bool, flip: bool = True, crop: bool = True) -> None:
        if not sizes or sorted(sizes) != list(sizes):
            raise ValueError(f"stage sizes must be increasing, got {sizes}")
        self.sizes = list(sizes)
        self.train = train
        self.flip = flip
        self.crop = crop

    def __call__(
        self,
        image: Image.Image,
        bbox: tuple[float, float, float, float] | None = None,
        generator: torch.Generator | None = None,
    ) -> list[torch.Tensor]:
        if bbox is not None:
            image = crop_to_box(image, bbox)
        size = self.sizes[-1]
        if self.train:
            margin = CROP_MARGIN if self.crop else 1.0
            image = resize_short_side(image, int(size * margin))
            left, top = (image.width - size) // 2, (image.height - size) // 2
            if self.crop:
                left = int(torch.randint(0, image.width - size + 1, (), generator=generator))
                top = int(torch.randint(0, image.height - size + 1, (), generator=generator))
            image = image.crop((left, top, left + size, top + size))
            if torch.rand((), generator=generator) < 0.5 and self.flip:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
        else:
            image = resize_short_side(image, size)
            left, top = (image.width - size) // 2, (image.height - size) // 2
            image = image.crop((left, top, left + size, top + size))
        stages = [image.resize((s, s), Image.BILINEAR) for s in self.sizes[:-1]]
        return [to_unit_range(im) for im in (*stages, image)]
