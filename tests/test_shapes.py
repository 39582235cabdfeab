"""Tests of the built-in, offline, deterministic ``shapes`` data set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from attngan.data import shapes
from attngan.data.shapes import (
    COLOURS,
    POSITIONS,
    RELATIONS,
    SHAPES,
    SIZES,
    ShapesInfo,
    build_shapes,
    held_out_pairs,
    read_info,
    render_sample,
)
from attngan.errors import DataError

SMALL = {"num_train": 40, "num_test": 20, "image_size": 64, "seed": 0, "progress": False}


def _records(root: Path, split: str) -> list[dict[str, Any]]:
    """The parsed metadata.jsonl of ``split``."""
    lines = (root / split / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` except info.json (which records the build time)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "info.json"
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> ShapesInfo:
    """A small build with two worker processes."""
    return build_shapes(tmp_path_factory.mktemp("shapes") / "out", workers=2, **SMALL)


@pytest.fixture(scope="module")
def built_serial(tmp_path_factory: pytest.TempPathFactory) -> ShapesInfo:
    """The same build in one process, cut into other chunks."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shapes, "_CHUNK", 7)
        return build_shapes(tmp_path_factory.mktemp("shapes") / "out", workers=1, **SMALL)


def _samples(split: str, count: int, image_size: int = 128, seed: int = 0):
    """``count`` (image, record) pairs rendered directly."""
    return [render_sample(split, i, seed, image_size) for i in range(count)]


# --- vocabulary ---------------------------------------------------------------------------


def test_attribute_counts() -> None:
    assert len(COLOURS) >= 8
    assert len(SHAPES) >= 5
    assert SIZES == ("small", "large")
    assert len(POSITIONS) == len(set(POSITIONS)) == 9
    assert RELATIONS == ("left of", "right of", "above", "below")
    assert all(len(rgb) == 3 and all(0 <= v <= 255 for v in rgb) for rgb in COLOURS.values())


def test_background_colours_are_not_object_colours() -> None:
    for tone in shapes.BACKGROUND_COLOURS.values():
        assert max(tone) - min(tone) <= 10  # neutral
        for rgb in COLOURS.values():
            assert np.linalg.norm(np.subtract(tone, rgb)) > 100


# --- layout and schema --------------------------------------------------------------------


def test_layout_and_info(built: ShapesInfo) -> None:
    root = built.root
    assert (built.num_train, built.num_test, built.image_size, built.seed) == (40, 20, 64, 0)
    assert built.seconds > 0
    assert not (root / shapes._MARKER).exists()
    info = json.loads((root / "info.json").read_text())
    assert info["format_version"] == shapes.FORMAT_VERSION
    assert info["vocab"]["colours"] == list(COLOURS)
    assert info["vocab"]["shapes"] == list(SHAPES)
    assert info["vocab"]["positions"] == list(POSITIONS)
    assert info["vocab"]["relations"] == list(RELATIONS)
    assert [tuple(p) for p in info["held_out_pairs"]] == built.held_out_pairs
    again = read_info(root)
    assert again.held_out_pairs == built.held_out_pairs
    assert (again.num_train, again.num_test, again.image_size) == (40, 20, 64)
    for split, count in (("train", 40), ("test", 20)):
        assert len(list((root / split / "images").glob("*.png"))) == count
        assert len(_records(root, split)) == count


def test_metadata_schema(built: ShapesInfo) -> None:
    for split in ("train", "test"):
        for index, rec in enumerate(_records(built.root, split)):
            assert set(rec) == {"file_name", "text", "objects", "relation", "background",
                                "held_out"}  # fmt: skip
            assert rec["file_name"] == f"images/{index:06d}.png"
            with Image.open(built.root / split / rec["file_name"]) as image:
                assert image.format == "PNG" and image.mode == "RGB"
                assert image.size == (64, 64)
            assert len(rec["objects"]) in (1, 2)
            for obj in rec["objects"]:
                assert obj["colour"] in COLOURS and obj["shape"] in SHAPES
                assert obj["size"] in SIZES and obj["position"] in POSITIONS
                x0, y0, x1, y1 = obj["bbox"]
                assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            if len(rec["objects"]) == 1:
                assert rec["relation"] is None
            else:
                assert rec["relation"] in RELATIONS
            assert rec["background"]["kind"] in shapes.BACKGROUND_KINDS
            assert rec["background"]["colour"] in shapes.BACKGROUND_COLOURS
            assert isinstance(rec["held_out"], bool)


def test_about_half_the_images_have_two_objects() -> None:
    counts = [len(rec["objects"]) for _, rec in _samples("train", 200, image_size=32)]
    assert 0.35 < counts.count(2) / len(counts) < 0.65


# --- determinism --------------------------------------------------------------------------


def test_workers_and_chunking_keep_bytes(built: ShapesInfo, built_serial: ShapesInfo) -> None:
    assert _tree_bytes(built.root) == _tree_bytes(built_serial.root)
    assert built.held_out_pairs == built_serial.held_out_pairs


def test_rebuild_with_same_parameters_is_identical(tmp_path: Path, built: ShapesInfo) -> None:
    out = tmp_path / "out"
    build_shapes(out, workers=1, **SMALL)
    (out / "train" / "images" / "000000.png").write_bytes(b"garbage")
    build_shapes(out, workers=1, **SMALL)  # same parameters: rebuilt in place
    assert _tree_bytes(out) == _tree_bytes(built.root)


def test_different_seed_differs(tmp_path: Path, built: ShapesInfo) -> None:
    other = build_shapes(tmp_path / "out", workers=1, **{**SMALL, "seed": 1})
    assert _records(other.root, "train") != _records(built.root, "train")
    first = (other.root / "train" / "images" / "000000.png").read_bytes()
    assert first != (built.root / "train" / "images" / "000000.png").read_bytes()


def test_render_sample_matches_build(built: ShapesInfo) -> None:
    records = _records(built.root, "test")
    for index in (0, 7, 19):
        image, rec = render_sample("test", index, 0, 64)
        assert rec == records[index]
        with Image.open(built.root / "test" / rec["file_name"]) as saved:
            assert np.array_equal(np.asarray(saved), np.asarray(image))


def test_captions_per_image_does_not_change_the_image() -> None:
    image5, rec5 = render_sample("train", 3, 0, 64, captions_per_image=5)
    image10, rec10 = render_sample("train", 3, 0, 64, captions_per_image=10)
    assert image5.tobytes() == image10.tobytes()
    assert rec5["objects"] == rec10["objects"]
    assert len(set(rec10["text"])) == 10


# --- compositional split ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 123])
def test_held_out_pairs_keep_every_colour_and_shape(seed: int) -> None:
    pairs = held_out_pairs(seed)
    assert len(pairs) == round(0.1 * len(COLOURS) * len(SHAPES))
    colours, kinds = [c for c, _ in pairs], [s for _, s in pairs]
    assert len(set(colours)) == len(colours) and len(set(kinds)) == len(kinds)
    assert held_out_pairs(seed) == pairs


def test_held_out_pairs_never_in_train_and_present_in_test(built: ShapesInfo) -> None:
    held = set(built.held_out_pairs)
    train = _records(built.root, "train") + [rec for _, rec in _samples("train", 300, 32)]
    for rec in train:
        assert not rec["held_out"]
        assert all((o["colour"], o["shape"]) not in held for o in rec["objects"])
    test = _records(built.root, "test") + [rec for _, rec in _samples("test", 300, 32)]
    for rec in test:
        has_held = any((o["colour"], o["shape"]) in held for o in rec["objects"])
        assert rec["held_out"] == has_held
    share = sum(rec["held_out"] for rec in test) / len(test)
    assert 0.2 < share < 0.4
    assert any(rec["held_out"] for rec in _records(built.root, "test"))


# --- captions -----------------------------------------------------------------------------


def test_captions(built: ShapesInfo) -> None:
    records = _records(built.root, "train") + _records(built.root, "test")
    records += [rec for _, rec in _samples("train", 100, 32)]
    for rec in records:
        texts = rec["text"]
        assert len(texts) >= 5 and len(set(texts)) == len(texts)
        for text in texts:
            assert text and text == text.lower() and text.isascii()
            assert text == text.strip() and "  " not in text
            assert len(text.split()) <= shapes.MAX_CAPTION_WORDS
            for obj in rec["objects"]:
                assert any(w in text for w in shapes.COLOUR_WORDS[obj["colour"]]), text
                assert any(w in text for w in shapes.SHAPE_WORDS[obj["shape"]]), text
            if len(rec["objects"]) == 1:
                obj = rec["objects"][0]
                assert any(w in text.split() for w in shapes.SIZE_WORDS[obj["size"]]), text


def test_captions_are_varied() -> None:
    starts = {rec["text"][0].split()[0] for _, rec in _samples("train", 100, 32)}
    assert len(starts) >= 5


# --- rendered content ---------------------------------------------------------------------


def _nearest_colour(rgb: np.ndarray) -> str:
    """The name of the object colour nearest to ``rgb``."""
    return min(COLOURS, key=lambda name: float(np.linalg.norm(rgb - np.array(COLOURS[name]))))


def test_object_pixels_have_the_named_colour() -> None:
    checked = 0
    for image, rec in _samples("train", 60):
        pixels = np.asarray(image, dtype=np.float64)
        for obj in rec["objects"]:
            if obj["shape"] == "cross":
                continue
            x0, y0, x1, y1 = obj["bbox"]
            w, h = x1 - x0, y1 - y0
            centre = pixels[y0 + 2 * h // 5 : y1 - 2 * h // 5, x0 + 2 * w // 5 : x1 - 2 * w // 5]
            assert _nearest_colour(centre.reshape(-1, 3).mean(axis=0)) == obj["colour"], rec
            checked += 1
    assert checked >= 40


def test_positions_relations_and_no_overlap() -> None:
    for _, rec in _samples("train", 200, 64):
        centres = []
        for obj in rec["objects"]:
            x0, y0, x1, y1 = obj["bbox"]
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            centres.append((cx, cy))
            assert POSITIONS[int(cy // (64 / 3)) * 3 + int(cx // (64 / 3))] == obj["position"]
        if rec["relation"] is None:
            continue
        (ax, ay), (bx, by) = centres
        a, b = (o["bbox"] for o in rec["objects"])
        if rec["relation"] in ("left of", "right of"):
            assert abs(ay - by) < 64 / 6
            left, right = (a, b) if rec["relation"] == "left of" else (b, a)
            assert left[2] <= right[0] + 1  # disjoint in x (bbox ends are rounded outwards)
        else:
            assert abs(ax - bx) < 64 / 6
            top, bottom = (a, b) if rec["relation"] == "above" else (b, a)
            assert top[3] <= bottom[1] + 1


def test_large_objects_are_larger() -> None:
    widths: dict[str, list[int]] = {"small": [], "large": []}
    for _, rec in _samples("train", 100, 128):
        for obj in rec["objects"]:
            widths[obj["size"]].append(max(obj["bbox"][2] - obj["bbox"][0],
                                            obj["bbox"][3] - obj["bbox"][1]))  # fmt: skip
    assert min(widths["large"]) > max(widths["small"]) + 8
    assert min(widths["small"]) >= 20  # recognisable at 128 px


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_train": 0},
        {"num_test": -1},
        {"image_size": 16},
        {"image_size": 100},
        {"image_size": 128.0},
        {"captions_per_image": 0},
        {"captions_per_image": 11},
        {"seed": -1},
        {"workers": 0},
        {"num_train": True},
    ],
)
def test_bad_arguments_raise(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    args = {**SMALL, **kwargs}
    with pytest.raises(DataError):
        build_shapes(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()


def test_bad_render_arguments_raise() -> None:
    with pytest.raises(DataError, match="split"):
        render_sample("valid", 0, 0, 64)
    with pytest.raises(DataError, match="index"):
        render_sample("train", -1, 0, 64)
    with pytest.raises(DataError, match="held-out"):
        render_sample("train", 0, 0, 64, held_out=[("mauve", "circle")])


def test_refuses_folder_with_other_parameters(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build_shapes(out, workers=1, **SMALL)
    with pytest.raises(DataError, match="pick another output folder or delete it"):
        build_shapes(out, workers=1, **{**SMALL, "seed": 5})
    assert read_info(out).seed == 0  # the earlier build is untouched


def test_refuses_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "metadata.jsonl").write_text("{}\n")
    with pytest.raises(DataError, match="holds no shapes build"):
        build_shapes(tmp_path, workers=1, **SMALL)
    assert (tmp_path / "train" / "metadata.jsonl").exists()
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError):
        build_shapes(tmp_path / "file.txt", workers=1, **SMALL)


def test_finishes_an_interrupted_build(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "train" / "images").mkdir(parents=True)
    (out / "train" / "images" / "999999.png").write_bytes(b"stale")
    (out / shapes._MARKER).write_text("{}")
    with pytest.raises(DataError, match="no info.json"):
        read_info(out)
    info = build_shapes(out, workers=1, **SMALL)
    assert not (out / "train" / "images" / "999999.png").exists()
    assert read_info(out).num_train == info.num_train == 40


# --- the default build --------------------------------------------------------------------


@pytest.mark.slow
def test_default_build(tmp_path: Path) -> None:
    """The default 10,000 + 1,000 images at 128 px (timed by benchmarks/shapes_build.py)."""
    info = build_shapes(tmp_path / "shapes", progress=False)
    train, test = _records(info.root, "train"), _records(info.root, "test")
    assert len(train) == 10_000 and len(test) == 1_000
    assert not any(r["held_out"] for r in train)
    assert 0.2 < np.mean([r["held_out"] for r in test]) < 0.4
    with Image.open(info.root / "test" / test[-1]["file_name"]) as image:
        assert image.size == (128, 128)


def test_blob_twins_keep_the_scene_and_soften_the_objects(tmp_path):
    from attngan.data.shapes import build_blob_twins, build_shapes

    root = tmp_path / "shapes"
    build_shapes(root, num_train=6, num_test=2, image_size=64, workers=1, progress=False)
    assert build_blob_twins(root, tmp_path / "twins", progress=False) == 6
    lines = (root / "train" / "metadata.jsonl").read_text().splitlines()
    for line in lines:
        name = json.loads(line)["file_name"]
        sharp = np.asarray(Image.open(root / "train" / name), dtype=np.int16)
        twin = np.asarray(Image.open(tmp_path / "twins" / "train" / name), dtype=np.int16)
        assert twin.shape == sharp.shape
        changed = np.abs(twin - sharp).max(-1) > 30
        assert 0 < changed.mean() < 0.2  # the objects' outlines differ, the background does not
    assert not (tmp_path / "twins" / "test").exists()
    assert build_blob_twins(root, tmp_path / "twins2", progress=False, workers=2) == 6
    for name in ("000000.png", "000005.png"):  # processes render the same images
        one, two = (
            Image.open(tmp_path / t / "train" / "images" / name) for t in ("twins", "twins2")
        )
        assert np.array_equal(np.asarray(one), np.asarray(two))
    with pytest.raises(DataError, match="not a shapes build"):
        build_blob_twins(tmp_path / "twins" / "train", tmp_path / "other", progress=False)
    with pytest.raises(DataError, match="their own folder"):
        build_blob_twins(root, root, progress=False)
    with pytest.raises(DataError, match="workers must be >= 1"):
        build_blob_twins(root, tmp_path / "none", progress=False, workers=0)
    assert not (tmp_path / "none").exists()  # refused before anything is written
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "info.json").write_text((root / "info.json").read_text())
    with pytest.raises(DataError, match="cannot read .*metadata.jsonl"):
        build_blob_twins(tmp_path / "half", tmp_path / "none", progress=False)
    assert not (tmp_path / "none").exists()
