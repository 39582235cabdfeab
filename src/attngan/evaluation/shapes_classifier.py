"""An attribute classifier for the built-in ``shapes`` data set, used to judge generated images.

For each of the 3x3 grid cells of an image it predicts whether an object is there and, if so,
its colour, shape and size. :func:`judge` checks a generated image against the objects its
caption asked for; :func:`class_probabilities` feeds the Inception Score. The shipped weights
live in ``attngan/assets/shapes_classifier.safetensors``; rebuild them with::

    python -m attngan.evaluation.shapes_classifier --data data/shapes \\
        --out src/attngan/assets/shapes_classifier.safetensors
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from attngan.checkpoints import check_state_dict
from attngan.data.shapes import COLOURS, POSITIONS, SHAPES, SIZES
from attngan.errors import AttnGANError, ConfigError, DataError, ModelError
from attngan.fileio import atomic_path

FORMAT_NAME = "attngan-shapes-classifier"
FORMAT_VERSION = 1
IMAGE_SIZE = 64
SHIPPED_FILE = "shapes_classifier.safetensors"
IGNORE = -100  # target of an attribute in an empty cell (cross_entropy's ignore_index)
ATTRIBUTES = ("occupancy", "colour", "shape", "size", "position")

_VOCAB: dict[str, list[str]] = {
    "colours": list(COLOURS),
    "shapes": list(SHAPES),
    "sizes": list(SIZES),
    "positions": list(POSITIONS),
}
_CELLS = len(POSITIONS)
_HEAD_NAMES: dict[str, Sequence[str]] = {"colour": list(COLOURS), "shape": SHAPES, "size": SIZES}
_GRID = 3
_FEATURE_SIZE = 16  # side of the backbone's feature map (stride 4)
_HEAD_SIZES = (1, len(COLOURS), len(SHAPES), len(SIZES))
_ATTRIBUTE_SHAPES = ((len(COLOURS),), (len(SHAPES),), (len(SIZES),))
#: The five RGB channel orders other than the identity.
_CHANNEL_PERMUTATIONS = ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
#: Cell index after a horizontal flip of the image (row-major 3x3 grid).
_HFLIP_CELLS = tuple(
    row * _GRID + (_GRID - 1 - col) for row in range(_GRID) for col in range(_GRID)
)


class CellPredictions(NamedTuple):
    """Per-cell logits of :class:`ShapesClassifier`; cells in ``POSITIONS`` order."""

    occupancy: Tensor  # [B, 9]
    colour: Tensor  # [B, 9, 8]
    shape: Tensor  # [B, 9, 8]
    size: Tensor  # [B, 9, 2]


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _cell_overlaps(size: int) -> Tensor:
    """``[3, size]``: how much of feature row ``h`` (one unit long) lies in grid row ``i``."""
    edges = torch.arange(_GRID + 1, dtype=torch.float64) * size / _GRID
    lo, hi = torch.arange(size, dtype=torch.float64), torch.arange(1, size + 1, dtype=torch.float64)
    overlap = torch.minimum(hi[None], edges[1:, None]) - torch.maximum(lo[None], edges[:-1, None])
    return overlap.clamp(min=0.0)


class ShapesClassifier(nn.Module):
    """A small CNN: a stride-4 backbone, then per grid cell an attention-weighted and a plain
    area-weighted average of the features, and a shared MLP giving the cell's logits.

    Input ``[B, 3, H, W]`` in [-1, 1]; images that are not 64x64 are resized (antialiased
    bilinear). Output :class:`CellPredictions`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            _conv(3, 16, stride=2),  # 32x32
            _conv(16, 32),
            _conv(32, 48, stride=2),  # 16x16
            _conv(48, 64),
            _conv(64, 64, dilation=2),
        )
        self.score = nn.Conv1d(64, 1, 1)  # attention logit of each feature
        self.head = nn.Sequential(
            nn.Linear(128, 64), nn.ReLU(inplace=True), nn.Linear(64, sum(_HEAD_SIZES))
        )
        rows = _cell_overlaps(_FEATURE_SIZE)  # [3, 16]
        area = torch.einsum("ih,jw->ijhw", rows, rows).reshape(_CELLS, -1)  # [9, 256]
        self.register_buffer("cell_area", (area / area.sum(1, keepdim=True)).float(), False)
        log_area = torch.where(area > 0, area.clamp(min=1e-12).log(), torch.full_like(area, -1e4))
        self.register_buffer("cell_log_area", log_area.float(), False)

    def forward(self, images: Tensor) -> CellPredictions:
        """Per-cell logits for ``images`` ``[B, 3, H, W]`` in [-1, 1]."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise DataError(f"images must have shape [B, 3, H, W], got {list(images.shape)}")
        if tuple(images.shape[-2:]) != (IMAGE_SIZE, IMAGE_SIZE):
            images = F.interpolate(
                images, (IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True
            )
        features = self.backbone(images).flatten(2)  # [B, C, 256]
        scores = self.score(features) + self.cell_log_area[None]  # [B, 9, 256]
        attention = scores.softmax(-1)
        pooled = torch.cat(
            [
                torch.einsum("bkn,bcn->bkc", attention, features),
                torch.einsum("kn,bcn->bkc", self.cell_area, features),
            ],
            dim=-1,
        )
        occupancy, colour, shape, size = self.head(pooled).split(_HEAD_SIZES, dim=-1)
        return CellPredictions(occupancy.squeeze(-1), colour, shape, size)


# --------------------------------------------------------------------------------------------
# Targets, prediction, accuracy
# --------------------------------------------------------------------------------------------


def _index(vocab: Sequence[str], value: object, what: str) -> int:
    """Position of ``value`` in ``vocab``, or DataError."""
    try:
        return list(vocab).index(value)  # type: ignore[arg-type]
    except ValueError:
        raise DataError(f"unknown {what} {value!r}; expected one of {', '.join(vocab)}") from None


def _object_cells(objects: Sequence[dict[str, Any]]) -> list[int]:
    """Grid cells of one image's objects (1 to 9 objects, distinct cells), or DataError."""
    if not 1 <= len(objects) <= _CELLS:
        raise DataError(f"an image must have 1 to {_CELLS} objects, got {len(objects)}")
    try:
        cells = [_index(POSITIONS, obj["position"], "position") for obj in objects]
    except (KeyError, TypeError):
        raise DataError(f"every object needs a 'position', got {list(objects)!r}") from None
    if len(set(cells)) != len(cells):
        raise DataError(f"two objects share a grid cell: {[POSITIONS[c] for c in cells]}")
    return cells


def targets_from_objects(objects_list: Sequence[Sequence[dict[str, Any]]]) -> dict[str, Tensor]:
    """Training targets for a batch of object lists (``record["objects"]``).

    ``occupancy`` ``[B, 9]`` float (1 where an object is); ``colour``, ``shape``, ``size``
    ``[B, 9]`` long, indices into COLOURS / SHAPES / SIZES, ``-100`` in empty cells.
    """
    count = len(objects_list)
    occupancy = torch.zeros(count, _CELLS)
    labels = {name: torch.full((count, _CELLS), IGNORE, dtype=torch.long) for name in _HEAD_NAMES}
    for b, objects in enumerate(objects_list):
        for obj, cell in zip(objects, _object_cells(objects), strict=True):
            occupancy[b, cell] = 1.0
            for name, vocab in _HEAD_NAMES.items():
                if name not in obj:
                    raise DataError(f"object {obj!r} has no '{name}'")
                labels[name][b, cell] = _index(vocab, obj[name], name)
    return {"occupancy": occupancy, **labels}


def _as_input(images: Tensor) -> Tensor:
    """uint8 ``[B, 3, H, W]`` to float in [-1, 1]; float images pass through."""
    if images.dtype == torch.uint8:
        return images.float() / 127.5 - 1.0
    return images.float()


@torch.no_grad()
def _predict(
    classifier: ShapesClassifier, images: Tensor, batch_size: int = 256
) -> CellPredictions:
    """Predictions for ``images`` (uint8 or float in [-1, 1]) in batches, on CPU."""
    device = next(classifier.parameters()).device
    if not len(images):
        return CellPredictions(*(torch.zeros(0, _CELLS, *n) for n in ((), *_ATTRIBUTE_SHAPES)))
    was_training = classifier.training
    classifier.eval()
    parts = [
        classifier(_as_input(images[start : start + batch_size].to(device)))
        for start in range(0, len(images), batch_size)
    ]
    classifier.train(was_training)
    return CellPredictions(*(torch.cat([p[i] for p in parts]).cpu() for i in range(4)))


def attribute_accuracies(
    classifier: ShapesClassifier,
    images: Tensor,
    objects_list: Sequence[Sequence[dict[str, Any]]],
    batch_size: int = 256,
) -> dict[str, float]:
    """Accuracies on real images: ``occupancy`` (all 9 cells right, per image); ``colour``,
    ``shape``, ``size`` read at each object's own cell and ``position`` (the object's cell is
    among the top-k occupancy cells, k = number of objects), all per object."""
    if len(images) != len(objects_list) or not len(images):
        raise DataError(f"{len(images)} images but {len(objects_list)} object lists")
    preds = _predict(classifier, images, batch_size)
    targets = targets_from_objects(objects_list)
    occupied = targets["occupancy"] > 0
    result = {"occupancy": ((preds.occupancy > 0) == occupied).all(1).float().mean().item()}
    for name in _HEAD_NAMES:
        predicted = getattr(preds, name).argmax(-1)
        result[name] = (predicted[occupied] == targets[name][occupied]).float().mean().item()
    rank = preds.occupancy.argsort(1, descending=True).argsort(1)  # 0 = most confident cell
    in_top_k = rank < occupied.sum(1, keepdim=True)
    result["position"] = in_top_k[occupied].float().mean().item()
    return {name: result[name] for name in ATTRIBUTES}


# --------------------------------------------------------------------------------------------
# Judging generated images
# --------------------------------------------------------------------------------------------


def _check_images(images: Tensor, count: int | None = None) -> None:
    """DataError unless ``images`` is ``[B, 3, H, W]`` (with ``B == count`` if given)."""
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = list(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise DataError(f"images must be a tensor of shape [B, 3, H, W], got {shape}")
    if count is not None and len(images) != count:
        raise DataError(f"{len(images)} images but {count} object lists")


def judge(
    classifier: ShapesClassifier,
    images: Tensor,
    objects_list: Sequence[Sequence[dict[str, Any]]],
    predictions: CellPredictions | None = None,
) -> list[list[dict[str, Any]]]:
    """For each image and each expected object, whether its colour, shape, size and position
    are right, and the cell it was matched to (0..8, row-major):
    ``{"colour": bool, "shape": bool, "size": bool, "position": bool, "cell": int}``.

    The expected objects are matched to the k most confidently occupied cells (k = number of
    objects): among the assignments, the one with the most colour and shape matches wins, ties
    go to the one where more objects sit in their own cell, then to the first such assignment
    (object i to the i-th most confident cell). Attributes are read at the matched cell;
    ``position`` is whether that cell is the object's own. ``predictions``: the classifier's
    output for ``images`` when the caller has it already (else it is computed).
    """
    _check_images(images, len(objects_list))
    preds = _predict(classifier, images) if predictions is None else predictions
    results = []
    for b, objects in enumerate(objects_list):
        own = _object_cells(objects)
        if len(objects) > 4:
            raise DataError(f"judge handles 1 to 4 objects per image, got {len(objects)}")
        wanted = targets_from_objects([objects])
        cells = preds.occupancy[b].topk(len(objects)).indices.tolist()
        read = {name: getattr(preds, name)[b].argmax(-1).tolist() for name in _HEAD_NAMES}
        # hit[name][i][c]: does the prediction at cell c match object i's attribute?
        hit = {
            name: [[label == int(wanted[name][0, cell]) for label in read[name]] for cell in own]
            for name in _HEAD_NAMES
        }
        best, best_key = cells, (-1, -1)
        for perm in itertools.permutations(cells):
            matches = sum(hit["colour"][i][c] + hit["shape"][i][c] for i, c in enumerate(perm))
            key = (matches, sum(c == own[i] for i, c in enumerate(perm)))
            if key > best_key:
                best, best_key = list(perm), key
        results.append(
            [
                {
                    **{name: hit[name][i][cell] for name in _HEAD_NAMES},
                    "position": cell == own[i],
                    "cell": cell,
                }
                for i, cell in enumerate(best)
            ]
        )
    return results


@torch.no_grad()
def class_probabilities(
    classifier: ShapesClassifier, images: Tensor, predictions: CellPredictions | None = None
) -> Tensor:
    """``[B, 64]``: the (colour, shape) distribution at each image's most confidently occupied
    cell, ``P(colour) * P(shape)``, class index ``colour * 8 + shape``. For the Inception Score.
    ``predictions``: as in :func:`judge`."""
    _check_images(images)
    preds = _predict(classifier, images) if predictions is None else predictions
    cell = preds.occupancy.argmax(1)
    rows = torch.arange(len(cell))
    colour = preds.colour[rows, cell].softmax(-1)
    shape = preds.shape[rows, cell].softmax(-1)
    return (colour[:, :, None] * shape[:, None, :]).flatten(1)


# --------------------------------------------------------------------------------------------
# Data, augmentation, training
# --------------------------------------------------------------------------------------------


def _load_split(root: Path, split: str, progress: bool) -> tuple[Tensor, list[list[dict]]]:
    """All images of a split as uint8 ``[N, 3, 64, 64]`` and their object lists."""
    from tqdm.auto import tqdm

    path = root / split / "metadata.jsonl"
    if not path.is_file():
        raise DataError(f"{path} not found: --data must be a built shapes data set")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                rows.append((str(row["file_name"]), list(row["objects"])))
            except (ValueError, KeyError, TypeError):
                raise DataError(f"{path}:{number}: not a shapes record") from None
    if not rows:
        raise DataError(f"{path} has no rows")
    images = np.empty((len(rows), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for k, (name, _) in enumerate(tqdm(rows, desc=f"load {split}", disable=not progress)):
        try:
            with Image.open(root / split / name) as image:
                image = image.convert("RGB")
                if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                    size = (IMAGE_SIZE, IMAGE_SIZE)
                    image = image.resize(size, Image.Resampling.BILINEAR)
                images[k] = np.asarray(image)
        except OSError as exc:
            raise DataError(f"cannot read image {root / split / name}: {exc}") from None
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), [o for _, o in rows]


def _gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Separable gaussian blur of each channel, edges replicated."""
    radius = max(1, math.ceil(2.5 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    b, c, h, w = images.shape
    out = F.pad(images.reshape(b * c, 1, h, w), (radius,) * 4, mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1))
    return F.conv2d(out, kernel.view(1, 1, -1, 1)).view(b, c, h, w)


def _augment(images: Tensor, gen: torch.Generator) -> Tensor:
    """Make crisp renders look more like generated images: brightness, down-up sampling, blur
    and pixel noise, each on a random part of the batch. Hue is never changed."""
    count, device = len(images), images.device

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=gen).to(device)

    def some(p: float) -> Tensor:
        return (torch.rand(count, generator=gen) < p).nonzero().flatten().to(device)

    brightness = 1.0 + (rand(count, 1, 1, 1) * 2 - 1) * 0.2
    x = ((images + 1) * brightness - 1).clamp(-1, 1)
    rows, low = some(0.35), int(torch.randint(20, 49, (), generator=gen))
    if len(rows):
        small = F.interpolate(x[rows], (low, low), mode="bilinear", antialias=True)
        x[rows] = F.interpolate(small, (IMAGE_SIZE, IMAGE_SIZE), mode="bilinear")
    rows, sigma = some(0.35), 0.4 + 0.8 * float(torch.rand((), generator=gen))
    if len(rows):
        x[rows] = _gaussian_blur(x[rows], sigma)
    rows = some(0.5)
    if len(rows):
        std = rand(len(rows), 1, 1, 1) * 0.12
        noise = torch.randn((len(rows), *x.shape[1:]), generator=gen).to(device)
        x[rows] = x[rows] + std * noise
    return x.clamp(-1, 1)


def _permute_channels(
    images: Tensor, targets: dict[str, Tensor], gen: torch.Generator, p: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """Swap the RGB channels of a random part of the batch and drop (ignore) its colour labels,
    so that the shape and size heads see every shape in many colours (the train split never
    shows the held-out (colour, shape) pairs). The neutral backgrounds stay as they are."""
    rows = (torch.rand(len(images), generator=gen) < p).nonzero().flatten()
    if not len(rows):
        return images, targets
    perms = torch.tensor(_CHANNEL_PERMUTATIONS)[torch.randint(5, (len(rows),), generator=gen)]
    images = images.clone()
    images[rows] = images[rows][torch.arange(len(rows))[:, None], perms]
    colour = targets["colour"].clone()
    colour[rows] = IGNORE
    return images, {**targets, "colour": colour}


def _flip(images: Tensor, targets: dict[str, Tensor], flip: Tensor) -> tuple[Tensor, dict]:
    """Mirror the ``flip`` rows left-right (every shape is left-right symmetric)."""
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    perm = torch.tensor(_HFLIP_CELLS)
    targets = {k: torch.where(flip[:, None], v[:, perm], v) for k, v in targets.items()}
    return images, targets


def _loss(preds: CellPredictions, targets: dict[str, Tensor]) -> Tensor:
    """BCE on occupancy plus cross-entropy on the attributes of occupied cells."""
    loss = F.binary_cross_entropy_with_logits(preds.occupancy, targets["occupancy"])
    for name in _HEAD_NAMES:
        labels = targets[name].flatten()
        if (labels != IGNORE).any():  # colour labels may all be dropped (_permute_channels)
            loss = loss + F.cross_entropy(getattr(preds, name).flatten(0, 1), labels)
    return loss


def _metadata(accuracies: dict[str, float], extra: dict[str, Any]) -> dict[str, str]:
    """The safetensors metadata strings of a classifier file."""
    return {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        **{name: json.dumps(words) for name, words in _VOCAB.items()},
        "image_size": str(IMAGE_SIZE),
        "test_accuracy": json.dumps({k: round(v, 5) for k, v in accuracies.items()}),
        "training": json.dumps(extra),
    }


def save_shapes_classifier(
    classifier: ShapesClassifier,
    path: str | Path,
    accuracies: dict[str, float],
    training: dict[str, Any] | None = None,
) -> Path:
    """Write the weights and metadata to ``path`` as safetensors, atomically."""
    state = {k: v.detach().contiguous().cpu() for k, v in classifier.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=_metadata(accuracies, training or {}))
        os.chmod(tmp, 0o644)  # safetensors creates owner-only files; this one is shipped
    return Path(path)


def train_shapes_classifier(
    data_root: str | Path,
    out_path: str | Path,
    epochs: int = 5,
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    lr: float = 3e-3,
) -> dict[str, float]:
    """Train a :class:`ShapesClassifier` on ``data_root``'s train split, write it to
    ``out_path`` and return its test-split accuracies (see :func:`attribute_accuracies`)."""
    from tqdm.auto import tqdm

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    root, started = Path(data_root), time.perf_counter()
    images, objects = _load_split(root, "train", progress)
    test_images, test_objects = _load_split(root, "test", progress)
    targets = targets_from_objects(objects)

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    device = torch.device(device)
    model = ShapesClassifier().to(device)
    steps_per_epoch = math.ceil(len(images) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, lr, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    model.train()
    with tqdm(total=epochs * steps_per_epoch, desc="classifier", disable=not progress) as bar:
        for epoch in range(epochs):
            order = torch.randperm(len(images), generator=gen)
            for start in range(0, len(images), batch_size):
                rows = order[start : start + batch_size]
                flip = torch.rand(len(rows), generator=gen) < 0.5
                batch, batch_targets = _flip(
                    _as_input(images[rows]), {k: v[rows] for k, v in targets.items()}, flip
                )
                batch, batch_targets = _permute_channels(batch, batch_targets, gen, 0.4)
                batch = _augment(batch.to(device), gen)
                batch_targets = {k: v.to(device) for k, v in batch_targets.items()}
                loss = _loss(model(batch), batch_targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", refresh=False)
    model.eval()
    accuracies = attribute_accuracies(model, test_images, test_objects)
    training = {
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "lr": lr,
        "train_images": len(images),
        "test_images": len(test_images),
        "seconds": round(time.perf_counter() - started, 1),
    }
    save_shapes_classifier(model.cpu(), out_path, accuracies, training)
    return accuracies


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def read_classifier_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a shapes classifier file, checked (ModelError if it is anything else)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"shapes classifier file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(f"cannot read {path} as safetensors: {reason}") from None
    if meta.get("format") != FORMAT_NAME:
        raise ModelError(
            f"{path} is not a shapes classifier (format {meta.get('format')!r}, "
            f"expected {FORMAT_NAME!r})"
        )
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise ModelError(
            f"{path} has shapes classifier version {meta.get('format_version')}, "
            f"this code reads {FORMAT_VERSION}; retrain it"
        )
    for name, words in _VOCAB.items():
        try:
            same = json.loads(meta.get(name, "null")) == words
        except ValueError:
            same = False
        if not same:
            raise ModelError(f"{path} was trained for other shapes {name}; retrain it")
    if meta.get("image_size") != str(IMAGE_SIZE):
        raise ModelError(f"{path} has image size {meta.get('image_size')}, expected {IMAGE_SIZE}")
    return meta


def _load(path: Path, device: str | torch.device) -> ShapesClassifier:
    """Read and check a classifier file."""
    read_classifier_metadata(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(f"cannot read the weights in {path}: {reason}") from None
    model = ShapesClassifier()
    model.load_state_dict(check_state_dict(model.state_dict(), state, str(path)))
    return model.to(device).eval()


def load_shapes_classifier(
    path: str | Path | None = None, device: str | torch.device = "cpu"
) -> ShapesClassifier:
    """A trained :class:`ShapesClassifier` in eval mode; ``None`` loads the shipped weights."""
    if path is not None:
        return _load(Path(path), device)
    with as_file(files("attngan") / "assets" / SHIPPED_FILE) as shipped:
        return _load(Path(shipped), device)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Train the classifier, print its test accuracies and write it."""
    parser = argparse.ArgumentParser(
        prog="python -m attngan.evaluation.shapes_classifier",
        description="Train the shapes attribute classifier used to judge generated images.",
    )
    parser.add_argument("--data", required=True, help="a built shapes data set folder")
    parser.add_argument("--out", required=True, help="the .safetensors file to write")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        accuracies = train_shapes_classifier(
            args.data,
            args.out,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            device=args.device,
            progress=not args.no_progress,
        )
    except AttnGANError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, value in accuracies.items():
        print(f"{name:10s} {value:.4f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
