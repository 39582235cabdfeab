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


def shifted(image: Image.Image, shift: int, generator: torch.Generator | None) -> Image.Image:
    """``image`` moved by a random ``(dx, dy)``, each in ``[-shift, shift]`` px, same size; the
    pixels that come in are the border reflected."""
    dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=generator))
    array = np.pad(np.asarray(image), ((shift, shift), (shift, shift), (0, 0)), mode="reflect")
    h, w = image.height, image.width
    return Image.fromarray(array[shift - dy : shift - dy + h, shift - dx : shift - dx + w])


class PyramidTransform:
    """An image → one ``[3, s, s]`` tensor per stage size ``s`` (smallest first), in [−1, 1].

    Training: resize to ⌊size·76/64⌋, random crop to ``size``, random horizontal flip (unless
    ``flip=False``: captions that say "left" and "right" must not be mirrored; ``crop=False``
    resizes to ``size`` and centre-crops as evaluation does, for captions that name where things
    are and how big). ``shift`` > 0 (training only) then moves the image by a random whole number
    of pixels in ``[-shift, shift]`` along each axis, at the same scale, the border reflected in:
    a jitter of place without the crop's enlargement. Evaluation: resize and centre crop, no
    randomness. Lower stages are the same crop downsampled.
    """

    def __init__(
        self, sizes: list[int], train: bool, flip: bool = True, crop: bool = True, shift: int = 0
    ) -> None:
        if not sizes or sorted(sizes) != list(sizes):
            raise ValueError(f"stage sizes must be increasing, got {sizes}")
        if not 0 <= shift < sizes[-1] // 2:
            raise ValueError(f"shift must be in [0, {sizes[-1] // 2}) px, got {shift}")
        self.sizes = list(sizes)
        self.train = train
        self.flip = flip
        self.crop = crop
        self.shift = shift

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
            if self.shift:
                image = shifted(image, self.shift, generator)
            if torch.rand((), generator=generator) < 0.5 and self.flip:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
        else:
            image = resize_short_side(image, size)
            left, top = (image.width - size) // 2, (image.height - size) // 2
            image = image.crop((left, top, left + size, top + size))
        stages = [image.resize((s, s), Image.BILINEAR) for s in self.sizes[:-1]]
        return [to_unit_range(im) for im in (*stages, image)]
