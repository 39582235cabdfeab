"""The built-in ``shapes`` data set: offline, deterministic, compositional text-to-image data.

Every image shows one or two coloured shapes on a neutral plain or textured background, and
comes with several captions that state each object's colour, shape, size and position (one
object) or the spatial relation between the two objects.  A few (colour, shape) pairs, chosen
from the seed, never appear in the training split and make up about 30% of the test split, so
the test split measures compositional generalisation.

The output follows the Hugging Face ImageFolder convention::

    OUT/info.json                 build parameters, held-out pairs and attribute vocabulary
    OUT/train/metadata.jsonl      one JSON object per image, in index order
    OUT/train/images/000000.png
    OUT/test/metadata.jsonl
    OUT/test/images/000000.png

``info.json`` is written last: a folder without it is an incomplete build.  Every image is a
pure function of ``(seed, split, index, image_size)`` (its captions also of
``captions_per_image``), so builds are byte-identical whatever the number of workers.
"""

from __future__ import annotations

import functools
import json
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from attngan.errors import DataError
from attngan.fileio import atomic_path, write_text_atomic

FORMAT_NAME = "attngan-shapes"
FORMAT_VERSION = 1

#: Object colours (well separated hues, RGB).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (245, 220, 20),
    "green": (30, 165, 50),
    "cyan": (20, 205, 225),
    "blue": (30, 70, 230),
    "purple": (140, 40, 200),
    "pink": (255, 105, 190),
}
SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "heart",
    "cross",
    "diamond",
    "hexagon",
)
SIZES: tuple[str, ...] = ("small", "large")
#: The 3x3 grid of cells, in row-major order.
POSITIONS: tuple[str, ...] = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)
#: ``relation`` in a record means "object 0 is <relation> object 1".
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
SPLITS: tuple[str, ...] = ("train", "test")

BACKGROUND_KINDS: tuple[str, ...] = ("plain", "stripes", "checker", "dots", "grid")
#: Neutral (unsaturated) background tones: never confusable with an object colour.
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20),
    "dark grey": (68, 68, 68),
    "grey": (120, 120, 120),
    "light grey": (185, 185, 185),
    "white": (238, 238, 238),
}

#: Half-extent of an object as a fraction of the image side (a grid cell is 1/3 wide).
SIZE_FRACTIONS: dict[str, float] = {"small": 0.09, "large": 0.155}

#: Words a caption may use for each attribute value (the first is the canonical name).
COLOUR_WORDS: dict[str, tuple[str, ...]] = {name: (name,) for name in COLOURS}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc"),
    "square": ("square",),
    "triangle": ("triangle",),
    "star": ("star",),
    "heart": ("heart",),
    "cross": ("cross", "plus sign"),
    "diamond": ("diamond", "rhombus"),
    "hexagon": ("hexagon",),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "large": ("large", "big", "huge"),
}
RELATION_WORDS: dict[str, tuple[str, ...]] = {
    "left of": ("to the left of", "left of", "on the left of"),
    "right of": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over"),
    "below": ("below", "beneath", "under"),
}
#: ``damsm.swap_words`` for shape hard negatives: one class per shape, its one-word synonyms
SHAPE_SWAP_WORDS = " ".join("/".join(w.split()[0] for w in words) for words in SHAPE_WORDS.values())
MAX_CAPTION_WORDS = 18
MAX_CAPTIONS_PER_IMAGE = 10

HELD_OUT_FRACTION = 0.10  # of all (colour, shape) pairs
TEST_HELD_OUT_PROBABILITY = 0.30  # of test images that show a held-out pair
TWO_OBJECT_PROBABILITY = 0.5

_SPLIT_IDS = {"train": 0, "test": 1}
_HELD_OUT_STREAM = 7919  # distinguishes the held-out RNG from per-image RNGs
_SUPERSAMPLE = 4  # objects are drawn at 4x and box-filtered down (exact area coverage)
_TEXTURE_SUPERSAMPLE = 2
_CHUNK = 64  # images per worker task
_MARKER = ".incomplete"  # present while a build runs; holds its parameters
_ALL_PAIRS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOURS for s in SHAPES)


@dataclass(frozen=True)
class ShapesInfo:
    """A finished ``shapes`` build: what :func:`build_shapes` returns and ``info.json`` holds.

    ``root`` is not stored in ``info.json`` (the folder may move); :func:`read_info` fills it.
    """

    root: Path
    num_train: int
    num_test: int
    image_size: int
    seed: int
    held_out_pairs: list[tuple[str, str]]
    seconds: float
    captions_per_image: int = 5


# --------------------------------------------------------------------------------------------
# Shape geometry: unit polygons centred on their bounding box, half-extent at most 1.
# --------------------------------------------------------------------------------------------


def _normalise(points: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Centre ``points`` on their bounding box and scale the larger half-extent to ``scale``."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    centred = points - (lo + hi) / 2
    return centred / np.abs(centred).max() * scale


def _ring(n: int, radii: Sequence[float], start_deg: float) -> np.ndarray:
    """``n`` vertices at evenly spaced angles, radii cycling through ``radii`` (y points down)."""
    angles = np.deg2rad(start_deg + 360.0 * np.arange(n) / n)
    r = np.resize(np.asarray(radii, dtype=np.float64), n)
    return np.stack([r * np.cos(angles), r * np.sin(angles)], axis=1)


def _heart() -> np.ndarray:
    """The classic parametric heart curve, sampled as a polygon."""
    t = np.linspace(0.0, 2 * np.pi, 96, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y], axis=1)


def _cross(arm: float = 0.34) -> np.ndarray:
    """A plus sign whose arms are ``2 * arm`` wide."""
    a = arm
    return np.array(
        [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a),
         (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a)],
        dtype=np.float64,
    )  # fmt: skip


_UNIT_SHAPES: dict[str, np.ndarray] = {
    "circle": _normalise(_ring(96, [1.0], 0.0)),
    "square": _normalise(np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], float), 0.84),
    "triangle": _normalise(np.array([(0, -1), (1, 0.732), (-1, 0.732)], float)),
    "star": _normalise(_ring(10, [1.0, 0.45], -90.0)),
    "heart": _normalise(_heart()),
    "cross": _normalise(_cross(), 0.95),
    "diamond": _normalise(np.array([(0, -1), (0.82, 0), (0, 1), (-0.82, 0)], float)),
    "hexagon": _normalise(_ring(6, [1.0], 0.0)),  # flat top and bottom: unlike a circle
}


# --------------------------------------------------------------------------------------------
# Scene sampling
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Object:
    colour: str
    shape: str
    size: str
    cell: int  # index into POSITIONS
    centre: tuple[float, float]  # pixels

    def points(self, image_size: int) -> np.ndarray:
        """Polygon vertices in output pixel coordinates (pixel i spans [i, i + 1))."""
        radius = SIZE_FRACTIONS[self.size] * image_size
        return _UNIT_SHAPES[self.shape] * radius + np.asarray(self.centre)


@dataclass(frozen=True)
class _Background:
    kind: str
    colour: str
    period: float  # texture period as a fraction of the image side
    orientation: int  # stripes: 0 horizontal, 1 vertical, 2 diagonal, 3 anti-diagonal


@dataclass(frozen=True)
class _Scene:
    objects: tuple[_Object, ...]
    relation: str | None
    background: _Background


def held_out_pairs(seed: int) -> list[tuple[str, str]]:
    """The (colour, shape) pairs kept out of the training split for ``seed``.

    About ``HELD_OUT_FRACTION`` of all pairs; each colour and each shape is in at most one
    held-out pair, so every colour and every shape still appears in training.  The list is in
    canonical (``COLOURS`` x ``SHAPES``) order.
    """
    _check_int("seed", seed, 0)
    rng = np.random.default_rng([seed, _HELD_OUT_STREAM])
    count = min(round(HELD_OUT_FRACTION * len(_ALL_PAIRS)), len(COLOURS), len(SHAPES))
    colours = rng.permutation(list(COLOURS))[:count]
    shapes = rng.permutation(list(SHAPES))[:count]
    chosen = {(str(c), str(s)) for c, s in zip(colours, shapes, strict=True)}
    return [pair for pair in _ALL_PAIRS if pair in chosen]


def _canonical_held_out(held_out: Iterable[Sequence[str]]) -> list[tuple[str, str]]:
    """Validate user-given held-out pairs and return them in canonical order."""
    given = {tuple(pair) for pair in held_out}
    unknown = sorted(str(p) for p in given if p not in _ALL_PAIRS)
    if unknown:
        raise DataError(f"unknown (colour, shape) held-out pair(s): {', '.join(unknown)}")
    if len(given) > len(_ALL_PAIRS) - 2:
        raise DataError("held-out pairs must leave at least two (colour, shape) pairs for train")
    return [pair for pair in _ALL_PAIRS if pair in given]


def _pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    """One element of ``items``, uniformly."""
    return items[int(rng.integers(len(items)))]


def _sample_pairs(
    rng: np.random.Generator, count: int, split: str, held: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """``count`` distinct (colour, shape) pairs; in test, maybe one held-out pair."""
    held_set = set(held)
    seen = [pair for pair in _ALL_PAIRS if pair not in held_set]
    use_held = split == "test" and held and rng.random() < TEST_HELD_OUT_PROBABILITY
    held_slot = int(rng.integers(count)) if use_held else -1
    pairs: list[tuple[str, str]] = []
    for slot in range(count):
        pool = held if slot == held_slot else seen
        pair = _pick(rng, pool)
        while pair in pairs:
            pair = _pick(rng, pool)
        pairs.append(pair)
    return pairs


def _sample_cells(rng: np.random.Generator, count: int) -> tuple[list[int], str | None]:
    """Grid cells for the objects and the relation of object 0 to object 1 (if two)."""
    if count == 1:
        return [int(rng.integers(len(POSITIONS)))], None
    line = int(rng.integers(6))  # 0-2: a row, 3-5: a column
    a, b = (int(v) for v in rng.choice(3, size=2, replace=False))
    if line < 3:
        cells = [line * 3 + a, line * 3 + b]
        return cells, "left of" if a < b else "right of"
    column = line - 3
    cells = [a * 3 + column, b * 3 + column]
    return cells, "above" if a < b else "below"


def _place(rng: np.random.Generator, cell: int, size: str, image_size: int) -> tuple[float, float]:
    """A jittered centre that keeps an object of ``size`` inside its grid cell."""
    row, col = divmod(cell, 3)
    half_cell = image_size / 6
    slack = max(0.0, half_cell - SIZE_FRACTIONS[size] * image_size - 0.01 * image_size)
    dx, dy = rng.uniform(-slack, slack, size=2)
    return (col * 2 + 1) * half_cell + float(dx), (row * 2 + 1) * half_cell + float(dy)


def _sample_background(rng: np.random.Generator) -> _Background:
    """A neutral background tone and texture."""
    return _Background(
        kind=_pick(rng, BACKGROUND_KINDS),
        colour=_pick(rng, list(BACKGROUND_COLOURS)),
        period=float(_pick(rng, (1 / 6, 1 / 8, 1 / 10, 1 / 12))),
        orientation=int(rng.integers(4)),
    )


def _sample_scene(
    rng: np.random.Generator, split: str, image_size: int, held: list[tuple[str, str]]
) -> _Scene:
    """Everything random about one image, drawn in a fixed order from ``rng``."""
    count = 2 if rng.random() < TWO_OBJECT_PROBABILITY else 1
    pairs = _sample_pairs(rng, count, split, held)
    cells, relation = _sample_cells(rng, count)
    objects = []
    for (colour, shape), cell in zip(pairs, cells, strict=True):
        size = _pick(rng, SIZES)
        centre = _place(rng, cell, size, image_size)
        objects.append(_Object(colour, shape, size, cell, centre))
    return _Scene(tuple(objects), relation, _sample_background(rng))


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _texture_mask(bg: _Background, image_size: int) -> np.ndarray:
    """Antialiased 0..1 coverage of the background's second tone, shape (size, size)."""
    ss = _TEXTURE_SUPERSAMPLE
    coords = (np.arange(image_size * ss, dtype=np.float32) + 0.5) / ss
    y, x = coords[:, None], coords[None, :]
    period = 2.0 * max(2, round(bg.period * image_size / 2))  # even pixels: crisp, small PNGs
    n = image_size * ss
    if bg.kind == "stripes" and bg.orientation < 2:  # horizontal or vertical
        line = np.floor(coords / (period / 2)) % 2 == 1
        mask = np.broadcast_to(line[:, None] if bg.orientation == 0 else line[None, :], (n, n))
    elif bg.kind == "stripes":  # diagonal or anti-diagonal
        mask = np.floor((x + y if bg.orientation == 2 else x - y) / (period / 2)) % 2 == 1
    elif bg.kind == "checker":
        mask = (np.floor(x / period) + np.floor(y / period)) % 2 == 1
    elif bg.kind == "dots":
        fx, fy = x % period - period / 2, y % period - period / 2
        mask = fx**2 + fy**2 < (0.22 * period) ** 2
    else:  # grid
        width = max(1.0, float(round(0.1 * period)))
        mask = (x % period < width) | (y % period < width)
    return mask.reshape(image_size, ss, image_size, ss).mean(axis=(1, 3), dtype=np.float32)


def _render_background(bg: _Background, image_size: int) -> np.ndarray:
    """The background as a float32 (size, size, 3) array."""
    base = np.asarray(BACKGROUND_COLOURS[bg.colour], dtype=np.float32)
    canvas = np.empty((image_size, image_size, 3), dtype=np.float32)
    canvas[...] = base
    if bg.kind != "plain":
        delta = 30.0 if base.mean() < 128 else -30.0  # a subtle second tone
        canvas += _texture_mask(bg, image_size)[..., None] * np.float32(delta)
    return canvas


def _bbox(points: np.ndarray, image_size: int) -> list[int]:
    """Integer ``[x0, y0, x1, y1]`` pixel box around ``points`` (x1, y1 exclusive)."""
    lo = np.clip(np.floor(points.min(axis=0)), 0, image_size).astype(int)
    hi = np.clip(np.ceil(points.max(axis=0)), 0, image_size).astype(int)
    return [int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])]


def _draw_object(canvas: np.ndarray, points: np.ndarray, colour: tuple[int, int, int]) -> None:
    """Alpha-blend an antialiased filled polygon onto ``canvas`` in place."""
    size = canvas.shape[0]
    x0, y0, x1, y1 = _bbox(points, size)
    x0, y0, x1, y1 = max(0, x0 - 1), max(0, y0 - 1), min(size, x1 + 1), min(size, y1 + 1)
    ss = _SUPERSAMPLE
    mask = Image.new("L", ((x1 - x0) * ss, (y1 - y0) * ss), 0)
    local = (points - np.array([x0, y0])) * ss - 0.5  # PIL puts integer coords at pixel centres
    ImageDraw.Draw(mask).polygon([tuple(p) for p in local.tolist()], fill=255)
    alpha = np.asarray(mask.reduce(ss), dtype=np.float32)[..., None] / 255.0
    region = canvas[y0:y1, x0:x1]
    region += alpha * (np.asarray(colour, dtype=np.float32) - region)


def _render(scene: _Scene, image_size: int) -> Image.Image:
    """Draw a scene as an RGB image."""
    canvas = _render_background(scene.background, image_size)
    for obj in scene.objects:
        _draw_object(canvas, obj.points(image_size), COLOURS[obj.colour])
    return Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), "RGB")


# --------------------------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------------------------

_SINGLE_TEMPLATES: tuple[str, ...] = (
    "{A} {pos}",
    "{A} {pos} on {BG}",
    "{pos}, there is {A}",
    "there is {A} {pos}",
    "{A} sits {pos}",
    "this image shows {A} {pos}",
    "{a_size} {shape} colored {colour} {pos}",
    "{size} {colour} {shape} {pos}",
    "the {colour} {shape} is {size} and located {pos}",
    "a picture of {A} {pos}",
    "{pos} is {A}",
    "{A} {pos} against {BG}",
    "{A} on {BG}, placed {pos}",
)
_PAIR_TEMPLATES: tuple[str, ...] = (
    "{A} {rel} {B}",
    "{A} is {rel} {B}",
    "{B} is {inv} {A}",
    "{B} {inv} {A}",
    "there is {A} {rel} {B}",
    "an image of {A} {rel} {B}",
    "the {a} is {rel} the {b}",
    "{A} and {B}, the {a} is {rel} the {b}",
    "{B} with {A} {rel} it",
    "{A} {rel} {B} on {BG}",
    "two shapes: {A} {rel} {B}",
)
_ROW_TEMPLATES: tuple[str, ...] = (
    "left: {L}, right: {R}",
    "{L} with {R} to its right",
    "{L} next to {R}, with the {l} on the left",
)
_COLUMN_TEMPLATES: tuple[str, ...] = (
    "top: {T}, bottom: {D}",
    "{T} with {D} below it",
    "{T} and {D}, with the {t} higher up",
)
_INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}

_CORNER_FORMS = (
    "in the {v} {h} corner",
    "at the {v} {h}",
    "in the {v} {h} of the image",
    "near the {v} {h} corner",
)
_TOP_BOTTOM_FORMS = (
    "at the {v}",
    "at the {v} of the image",
    "near the {v} edge",
    "at the {v} center",
    "in the middle of the {v} edge",
)
_SIDE_FORMS = (
    "on the {h}",
    "on the {h} side",
    "at the {h} edge",
    "on the {h} side of the picture",
    "in the middle of the {h} side",
)
_CENTRE_FORMS = (
    "in the center",
    "in the middle",
    "at the center of the image",
    "in the middle of the picture",
    "in the very center",
)
_BACKGROUND_FORMS: dict[str, tuple[str, ...]] = {
    "plain": ("plain {c} background", "{c} background"),
    "stripes": ("{c} striped background", "striped {c} background"),
    "checker": ("{c} checkered background", "{c} checkerboard background"),
    "dots": ("{c} dotted background", "{c} polka dot background"),
    "grid": ("{c} grid background", "{c} background with a grid"),
}


def _a(phrase: str) -> str:
    """``phrase`` with the right indefinite article."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _position_phrase(rng: np.random.Generator, cell: int) -> str:
    """A prepositional phrase naming a grid cell, e.g. ``"in the upper left corner"``."""
    row, col = divmod(cell, 3)
    h = ("left", "", "right")[col]
    if row == 1:
        return _pick(rng, _CENTRE_FORMS if col == 1 else _SIDE_FORMS).format(h=h)
    if col == 1:
        return _pick(rng, _TOP_BOTTOM_FORMS).format(v=("top", "", "bottom")[row])
    v = _pick(rng, (("top", "upper"), (), ("bottom", "lower"))[row])
    return _pick(rng, _CORNER_FORMS).format(v=v, h=h)


def _background_phrase(rng: np.random.Generator, bg: _Background) -> str:
    """E.g. ``"a dark grey striped background"``."""
    return _a(_pick(rng, _BACKGROUND_FORMS[bg.kind]).format(c=bg.colour))


def _object_words(rng: np.random.Generator, obj: _Object) -> tuple[str, str, str]:
    """Randomly chosen (size, colour, shape) words for ``obj``."""
    return (
        _pick(rng, SIZE_WORDS[obj.size]),
        _pick(rng, COLOUR_WORDS[obj.colour]),
        _pick(rng, SHAPE_WORDS[obj.shape]),
    )


def _single_fields(rng: np.random.Generator, scene: _Scene) -> dict[str, str]:
    """Template fields for a one-object scene, with fresh synonym choices."""
    obj = scene.objects[0]
    size, colour, shape = _object_words(rng, obj)
    return {
        "A": _a(f"{size} {colour} {shape}"),
        "a_size": _a(size),
        "size": size,
        "colour": colour,
        "shape": shape,
        "pos": _position_phrase(rng, obj.cell),
        "BG": _background_phrase(rng, scene.background),
    }


def _pair_fields(rng: np.random.Generator, scene: _Scene) -> dict[str, str]:
    """Template fields for a two-object scene, with fresh synonym choices."""
    with_size = rng.random() < 0.5
    full, short = [], []
    for obj in scene.objects:
        size, colour, shape = _object_words(rng, obj)
        short.append(f"{colour} {shape}")
        full.append(_a(f"{size} {colour} {shape}" if with_size else f"{colour} {shape}"))
    relation = scene.relation or ""
    first = 0 if relation in ("left of", "above") else 1  # the left / upper object
    return {
        "A": full[0],
        "B": full[1],
        "a": short[0],
        "b": short[1],
        "rel": _pick(rng, RELATION_WORDS[relation]),
        "inv": _pick(rng, RELATION_WORDS[_INVERSE[relation]]),
        "L": full[first],
        "R": full[1 - first],
        "l": short[first],
        "T": full[first],
        "D": full[1 - first],
        "t": short[first],
        "BG": _background_phrase(rng, scene.background),
    }


def _captions(rng: np.random.Generator, scene: _Scene, count: int) -> list[str]:
    """``count`` distinct captions, cycling through the templates in a random order."""
    if len(scene.objects) == 1:
        templates, fields = _SINGLE_TEMPLATES, _single_fields
    else:
        extra = _ROW_TEMPLATES if scene.relation in ("left of", "right of") else _COLUMN_TEMPLATES
        templates, fields = _PAIR_TEMPLATES + extra, _pair_fields
    order = rng.permutation(len(templates))
    captions: list[str] = []
    for attempt in range(20 * len(templates)):
        text = templates[order[attempt % len(templates)]].format(**fields(rng, scene))
        if len(text.split()) <= MAX_CAPTION_WORDS and text not in captions:
            captions.append(text)
            if len(captions) == count:
                return captions
    raise RuntimeError(f"could not make {count} distinct captions")  # pragma: no cover


# --------------------------------------------------------------------------------------------
# One sample
# --------------------------------------------------------------------------------------------


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    """Raise DataError unless ``value`` is an int in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise DataError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise DataError(f"{name} must be {bound}, got {value}")


def _record(scene: _Scene, index: int, image_size: int, held: set[tuple[str, str]],
            captions: list[str]) -> dict[str, Any]:  # fmt: skip
    """The metadata.jsonl record of one image."""
    objects = [
        {
            "colour": obj.colour,
            "shape": obj.shape,
            "size": obj.size,
            "position": POSITIONS[obj.cell],
            "bbox": _bbox(obj.points(image_size), image_size),
        }
        for obj in scene.objects
    ]
    return {
        "file_name": f"images/{index:06d}.png",
        "text": captions,
        "objects": objects,
        "relation": scene.relation,
        "background": {"kind": scene.background.kind, "colour": scene.background.colour},
        "held_out": any((o.colour, o.shape) in held for o in scene.objects),
    }


def render_sample(
    split: str,
    index: int,
    seed: int,
    image_size: int,
    held_out: Iterable[Sequence[str]] | None = None,
    captions_per_image: int = 5,
) -> tuple[Image.Image, dict[str, Any]]:
    """Render image ``index`` of ``split`` and return it with its metadata record.

    ``held_out`` is the list of held-out (colour, shape) pairs; ``None`` means
    ``held_out_pairs(seed)``, as :func:`build_shapes` uses.  The image depends only on
    ``(seed, split, index, image_size, held_out)``; the captions also on ``captions_per_image``.
    """
    if split not in _SPLIT_IDS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    _check_int("index", index, 0)
    _check_int("seed", seed, 0)
    _check_int("image_size", image_size, 32, 1024)
    _check_int("captions_per_image", captions_per_image, 1, MAX_CAPTIONS_PER_IMAGE)
    held = held_out_pairs(seed) if held_out is None else _canonical_held_out(held_out)
    stream = [seed, _SPLIT_IDS[split], index]
    scene = _sample_scene(np.random.default_rng([*stream, 0]), split, image_size, held)
    captions = _captions(np.random.default_rng([*stream, 1]), scene, captions_per_image)
    record = _record(scene, index, image_size, set(held), captions)
    return _render(scene, image_size), record


def render_blob_twin(
    split: str, index: int, seed: int, image_size: int, blur: float = 0.05
) -> tuple[Image.Image, Image.Image, dict[str, Any]]:
    """Image ``index`` of ``split`` (as :func:`render_sample` draws it), its blob twin, and its
    record (one caption). The blob twin is the
    same scene with every object replaced by a soft blob of its colour, place and rough size
    (its mask blurred by ``blur`` of the image side, then thresholded softly: no corners, no
    points). What a generator that draws colour, place and size but not shape makes; a
    discriminator that scores both alike does not ask for shapes."""
    sharp, record = render_sample(split, index, seed, image_size, captions_per_image=1)
    held = held_out_pairs(seed)
    scene = _sample_scene(np.random.default_rng([seed, _SPLIT_IDS[split], index, 0]), split,
                          image_size, held)  # fmt: skip
    canvas = _render_background(scene.background, image_size).astype(np.float64)
    radius = blur * image_size
    for obj in scene.objects:
        mask = np.zeros((image_size, image_size, 3), dtype=np.float32)
        _draw_object(mask, obj.points(image_size), (255, 255, 255))
        soft = Image.fromarray(mask[..., 0].astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(radius)
        )
        soft = np.asarray(soft, dtype=np.float64)[..., None]
        alpha = np.clip((soft / max(soft.max(), 1.0) - 0.3) * 2.5, 0, 1)  # full colour inside
        canvas += alpha * (np.asarray(COLOURS[obj.colour], dtype=np.float64) - canvas)
    blob = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), "RGB")
    return sharp, blob, record


# --------------------------------------------------------------------------------------------
# Building a data set
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    """A worker task: images ``start`` to ``stop - 1`` of one split."""

    folder: str
    split: str
    start: int
    stop: int
    seed: int
    image_size: int
    held_out: tuple[tuple[str, str], ...]
    captions_per_image: int


def _render_chunk(chunk: _Chunk) -> tuple[str, list[str]]:
    """Render and save one chunk; return its split and metadata lines in index order."""
    lines = []
    for index in range(chunk.start, chunk.stop):
        image, record = render_sample(
            chunk.split,
            index,
            chunk.seed,
            chunk.image_size,
            chunk.held_out,
            chunk.captions_per_image,
        )
        image.save(Path(chunk.folder, record["file_name"]), format="PNG", compress_level=1)
        lines.append(json.dumps(record))
    return chunk.split, lines


def _run_chunks(
    chunks: list[Any], workers: int, render: Callable[[Any], Any] = _render_chunk
) -> Iterator[Any]:
    """Results of ``render`` (a picklable function of one chunk; default :func:`_render_chunk`)
    in task order, in a process pool if ``workers > 1``."""
    workers = min(workers, len(chunks))
    if workers <= 1:
        yield from map(render, chunks)
        return
    # spawn, not fork: the caller may hold CUDA state or OpenMP threads (torch).
    with mp.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(render, chunks)


def _params(num_train: int, num_test: int, image_size: int, seed: int,
            captions_per_image: int) -> dict[str, Any]:  # fmt: skip
    """The build parameters that determine the output bytes."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "num_train": num_train,
        "num_test": num_test,
        "image_size": image_size,
        "seed": seed,
        "captions_per_image": captions_per_image,
    }


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or DataError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path} does not hold a JSON object")
    return data


def _prepare_folder(root: Path, params: dict[str, Any]) -> None:
    """Make ``root`` ready for a build, refusing folders that hold anything else."""
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} exists and is not a folder; pick another output folder")
    if root.is_dir() and any(root.iterdir()):
        info_path, marker = root / "info.json", root / _MARKER
        if info_path.is_file():
            old = _read_json(info_path)
            if {key: old.get(key) for key in params} != params:
                changed = ", ".join(k for k in params if old.get(k) != params[k])
                raise DataError(
                    f"{root} holds a shapes build with other parameters ({changed}); "
                    "pick another output folder or delete it"
                )
        elif not marker.is_file():
            raise DataError(
                f"{root} is not empty and holds no shapes build; "
                "pick another output folder or delete it"
            )
        for name in ("info.json", *SPLITS):  # our own (possibly partial) earlier build
            path = root / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    root.mkdir(parents=True, exist_ok=True)
    (root / _MARKER).write_text(json.dumps(params) + "\n", encoding="utf-8")


def _make_chunks(root: Path, counts: dict[str, int], seed: int, image_size: int,
                 held: list[tuple[str, str]], captions_per_image: int) -> list[_Chunk]:  # fmt: skip
    """Split both splits into worker tasks, train first, each in index order."""
    return [
        _Chunk(str(root / split), split, start, min(start + _CHUNK, counts[split]), seed,
               image_size, tuple(held), captions_per_image)
        for split in SPLITS
        for start in range(0, counts[split], _CHUNK)
    ]  # fmt: skip


def _info_json(info: ShapesInfo) -> dict[str, Any]:
    """The contents of ``info.json``."""
    params = _params(info.num_train, info.num_test, info.image_size, info.seed,
                     info.captions_per_image)  # fmt: skip
    return {
        **params,
        "held_out_pairs": [list(pair) for pair in info.held_out_pairs],
        "seconds": round(info.seconds, 3),
        "splits": {split: f"{split}/metadata.jsonl" for split in SPLITS},
        "vocab": {
            "colours": list(COLOURS),
            "shapes": list(SHAPES),
            "sizes": list(SIZES),
            "positions": list(POSITIONS),
            "relations": list(RELATIONS),
            "background_kinds": list(BACKGROUND_KINDS),
            "background_colours": list(BACKGROUND_COLOURS),
        },
        "colour_rgb": {name: list(rgb) for name, rgb in COLOURS.items()},
    }


def build_shapes(
    out: str | Path,
    num_train: int = 10_000,
    num_test: int = 1_000,
    image_size: int = 128,
    seed: int = 0,
    workers: int | None = None,
    captions_per_image: int = 5,
    progress: bool = True,
) -> ShapesInfo:
    """Build the ``shapes`` data set into folder ``out`` and return its :class:`ShapesInfo`.

    ``out`` must be missing, empty, or an earlier (possibly unfinished) build with the same
    parameters, which is rebuilt.  ``workers`` defaults to ``os.cpu_count()``.
    """
    _check_int("num_train", num_train, 1)
    _check_int("num_test", num_test, 0)
    _check_int("image_size", image_size, 32, 1024)
    if image_size % 16:
        raise DataError(f"image_size must be a multiple of 16, got {image_size}")
    _check_int("seed", seed, 0)
    _check_int("captions_per_image", captions_per_image, 1, MAX_CAPTIONS_PER_IMAGE)
    workers = (os.cpu_count() or 1) if workers is None else workers
    _check_int("workers", workers, 1)
    root = Path(out)
    _prepare_folder(root, _params(num_train, num_test, image_size, seed, captions_per_image))

    started = time.perf_counter()
    held = held_out_pairs(seed)
    counts = {"train": num_train, "test": num_test}
    for split in SPLITS:
        (root / split / "images").mkdir(parents=True, exist_ok=True)
    chunks = _make_chunks(root, counts, seed, image_size, held, captions_per_image)
    _build_chunks(root, chunks, workers, num_train + num_test, progress)

    info = ShapesInfo(root, num_train, num_test, image_size, seed, held,
                      time.perf_counter() - started, captions_per_image)  # fmt: skip
    write_text_atomic(root / "info.json", json.dumps(_info_json(info), indent=2) + "\n")
    (root / _MARKER).unlink()
    return info


def _render_twins(target: str, seed: int, size: int, jobs: list[tuple[str, int, str]]) -> int:
    """Render and save the blob twins of ``jobs`` (split, index, file name) under ``target``."""
    for split, index, name in jobs:
        _, blob, _ = render_blob_twin(split, index, seed, size)
        with atomic_path(Path(target, split, name)) as path:
            blob.save(path, format="PNG", compress_level=1)
    return len(jobs)


def build_blob_twins(
    data: str | Path, out: str | Path, splits: Sequence[str] = ("train",), progress: bool = True,
    workers: int = 1,
) -> int:  # fmt: skip
    """Render the blob twin (:func:`render_blob_twin`) of every image of ``splits`` of the
    ``shapes`` build in ``data`` into ``out``, at the same relative paths: paired negatives for
    ``train.d_negatives`` with ``data.negatives=out``. ``workers`` > 1 renders in that many
    processes. Returns the number of images written."""
    _check_int("workers", workers, 1)
    root, target = Path(data), Path(out)
    info = _read_json(root / "info.json") if (root / "info.json").is_file() else {}
    if info.get("format") != FORMAT_NAME:
        raise DataError(f"{root} is not a shapes build (no shapes info.json); build one with "
                        "`attngan data shapes`")  # fmt: skip
    if target.resolve() == root.resolve():
        raise DataError("the blob twins need their own folder, not the data set's")
    from attngan.progress import progress_bar

    seed, size = int(info["seed"]), int(info["image_size"])
    jobs = []
    for split in splits:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r} (one of {', '.join(SPLITS)})")
        metadata = root / split / "metadata.jsonl"
        try:
            lines = metadata.read_text(encoding="utf-8").splitlines()
            jobs += [(split, i, json.loads(line)["file_name"]) for i, line in enumerate(lines)]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"cannot read {metadata}: {exc}") from None
    for split in splits:
        (target / split / "images").mkdir(parents=True, exist_ok=True)
    step = max(1, min(200, -(-len(jobs) // (4 * workers))))  # a few chunks per worker
    chunks = [jobs[i : i + step] for i in range(0, len(jobs), step)]
    render = functools.partial(_render_twins, str(target), seed, size)
    with progress_bar(total=len(jobs), desc="blob twins", unit="img", disable=not progress) as bar:
        for done in _run_chunks(chunks, workers, render):
            bar.update(done)
    write_text_atomic(target / "info.json", json.dumps({"blob_twins_of": str(root), **info},
                                                       indent=2) + "\n")  # fmt: skip
    return len(jobs)


def _build_chunks(root: Path, chunks: list[_Chunk], workers: int, total: int,
                  progress: bool) -> None:  # fmt: skip
    """Render all chunks and write each split's metadata.jsonl in index order."""
    from attngan.progress import progress_bar

    tmp_paths = {split: root / split / "metadata.jsonl.tmp" for split in SPLITS}
    files = {split: path.open("w", encoding="utf-8") for split, path in tmp_paths.items()}
    try:
        with progress_bar(total=total, desc="shapes", unit="img", disable=not progress) as bar:
            for split, lines in _run_chunks(chunks, workers):
                files[split].writelines(line + "\n" for line in lines)
                bar.update(len(lines))
    finally:
        for handle in files.values():
            handle.close()
    for path in tmp_paths.values():
        os.replace(path, path.with_name("metadata.jsonl"))


def read_info(root: str | Path) -> ShapesInfo:
    """The :class:`ShapesInfo` of a finished build in ``root`` (DataError if unfinished)."""
    root = Path(root)
    path = root / "info.json"
    if not path.is_file():
        raise DataError(f"{root} has no info.json: not a finished shapes build")
    data = _read_json(path)
    if data.get("format") != FORMAT_NAME:
        raise DataError(f"{path} is not a shapes info file")
    if data.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{path} has format version {data.get('format_version')}, "
            f"this code reads {FORMAT_VERSION}; rebuild the data set"
        )
    try:
        return ShapesInfo(
            root=root,
            num_train=int(data["num_train"]),
            num_test=int(data["num_test"]),
            image_size=int(data["image_size"]),
            seed=int(data["seed"]),
            held_out_pairs=[(str(c), str(s)) for c, s in data["held_out_pairs"]],
            seconds=float(data["seconds"]),
            captions_per_image=int(data["captions_per_image"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path} is malformed: {exc}") from exc
