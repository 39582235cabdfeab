"""Shared fixtures: tiny data sets in every supported layout, made on the fly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attngan.text import load_plain_pickle

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CUB = SHARED_DATA / "cub"
COCO_MINI = SHARED_DATA / "coco-mini"

needs_cub = pytest.mark.skipif(
    not (CUB / "captions.pickle").is_file(), reason="no ../shared/data/cub"
)
needs_coco = pytest.mark.skipif(not COCO_MINI.is_dir(), reason="no ../shared/data/coco-mini")


def write_image(path: Path, size: tuple[int, int], seed: int = 0, fmt: str | None = None) -> Path:
    """A random-noise RGB image of ``size`` (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).save(path, format=fmt)
    return path


def write_folder(root: Path, rows: dict[str, list[dict]], image_size: int = 48) -> Path:
    """An own-data folder: ``root/<split>/metadata.jsonl`` and the images its rows name."""
    for split, split_rows in rows.items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for k, row in enumerate(split_rows):
            if not row.get("_no_image"):
                write_image(folder / row["file_name"], (image_size, image_size), seed=k)
        lines = [
            json.dumps({k: v for k, v in r.items() if not k.startswith("_")}) for r in split_rows
        ]
        (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def simple_rows(n: int, captions: int = 3, prefix: str = "img") -> list[dict]:
    colours = ["red", "green", "blue", "yellow"]
    return [
        {
            "file_name": f"images/{prefix}{i}.png",
            "text": [
                f"a {colours[(i + j) % 4]} square number {j} on a plain background"
                for j in range(captions)
            ],
            "colour": colours[i % 4],
        }
        for i in range(n)
    ]


@pytest.fixture
def folder_data(tmp_path: Path) -> Path:
    """A small own-data folder with train and test splits, 3 captions per image."""
    return write_folder(
        tmp_path / "own", {"train": simple_rows(6), "test": simple_rows(3, prefix="t")}
    )


@pytest.fixture
def cub_layout(tmp_path: Path) -> tuple[Path, dict[str, list[str]]]:
    """The release's CUB layout with the real tables and captions.pickle (linked in place) and
    images made for the first 3 keys of each split, each large enough to hold its bounding box."""
    if not (CUB / "captions.pickle").is_file():
        pytest.skip("no ../shared/data/cub")
    root = tmp_path / "birds"
    (root / "CUB_200_2011").mkdir(parents=True)
    for name in ("images.txt", "bounding_boxes.txt"):
        (root / "CUB_200_2011" / name).symlink_to(CUB / "CUB_200_2011" / name)
    (root / "captions.pickle").symlink_to(CUB / "captions.pickle")
    boxes = {}
    ids = {}
    for line in (CUB / "CUB_200_2011" / "images.txt").read_text().splitlines():
        image_id, rel = line.split()
        ids[rel[: -len(".jpg")]] = image_id
    for line in (CUB / "CUB_200_2011" / "bounding_boxes.txt").read_text().splitlines():
        image_id, *box = line.split()
        boxes[image_id] = [float(v) for v in box]
    keys = {}
    for split in ("train", "test"):
        (root / split).mkdir()
        (root / split / "filenames.pickle").symlink_to(CUB / split / "filenames.pickle")
        keys[split] = load_plain_pickle(CUB / split / "filenames.pickle")[:3]
        for n, key in enumerate(keys[split]):
            x, y, w, h = boxes[ids[key]]
            size = (int(x + w) + 20, int(y + h) + 15)
            write_image(root / "CUB_200_2011" / "images" / f"{key}.jpg", size, seed=n)
    return root, keys
