"""The shapes attribute classifier: the shipped weights, judging, class probabilities, training
and loading."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from attngan.data.shapes import COLOURS, POSITIONS, SHAPES, SIZES, build_shapes, render_sample
from attngan.errors import DataError, ModelError
from attngan.evaluation.shapes_classifier import (
    ATTRIBUTES,
    FORMAT_NAME,
    CellPredictions,
    ShapesClassifier,
    attribute_accuracies,
    class_probabilities,
    judge,
    load_shapes_classifier,
    targets_from_objects,
    train_shapes_classifier,
)


def _render(split: str, count: int, seed: int, size: int = 64) -> tuple[torch.Tensor, list]:
    """``count`` freshly rendered images in [-1, 1] and their object lists."""
    pictures, objects = [], []
    for index in range(count):
        image, record = render_sample(split, index, seed=seed, image_size=size)
        pictures.append(np.asarray(image))
        objects.append(record["objects"])
    array = torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2)
    return array.float() / 127.5 - 1.0, objects


@pytest.fixture(scope="module")
def classifier() -> ShapesClassifier:
    return load_shapes_classifier()


@pytest.fixture(scope="module")
def real() -> tuple[torch.Tensor, list]:
    return _render("test", 150, seed=0)


def _other(vocab: list[str] | tuple[str, ...], value: str) -> str:
    return next(v for v in vocab if v != value)


def test_network_shapes_and_size() -> None:
    model = ShapesClassifier().eval()
    for side in (64, 100):
        preds = model(torch.zeros(2, 3, side, side))
        assert isinstance(preds, CellPredictions)
        shapes = [list(p.shape) for p in preds]
        assert shapes == [[2, 9], [2, 9, len(COLOURS)], [2, 9, len(SHAPES)], [2, 9, len(SIZES)]]
    weight_bytes = sum(4 * v.numel() for v in model.state_dict().values())
    assert weight_bytes < 1_000_000
    with pytest.raises(DataError, match="shape"):
        model(torch.zeros(2, 1, 64, 64))


def test_targets_from_objects() -> None:
    objects = [
        [{"colour": "blue", "shape": "star", "size": "large", "position": "center"}],
        [
            {"colour": "red", "shape": "circle", "size": "small", "position": "top left"},
            {"colour": "pink", "shape": "hexagon", "size": "large", "position": "bottom right"},
        ],
    ]
    targets = targets_from_objects(objects)
    assert targets["occupancy"].tolist()[0] == [0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert targets["occupancy"][1].nonzero().flatten().tolist() == [0, 8]
    assert targets["colour"][0, 4] == list(COLOURS).index("blue")
    assert targets["shape"][1, 8] == SHAPES.index("hexagon")
    assert targets["size"][1, 0] == SIZES.index("small")
    assert (targets["colour"][0, :4] == -100).all() and targets["colour"].dtype == torch.long
    with pytest.raises(DataError, match="unknown colour 'mauve'"):
        targets_from_objects([[{**objects[0][0], "colour": "mauve"}]])
    with pytest.raises(DataError, match="share a grid cell"):
        targets_from_objects([[objects[0][0], objects[0][0]]])


def test_shipped_classifier_is_accurate(classifier: ShapesClassifier, real: tuple) -> None:
    images, objects = real
    unseen_images, unseen_objects = _render("train", 150, seed=7)  # renders it never saw
    for batch, wanted in ((images, objects), (unseen_images, unseen_objects)):
        accuracy = attribute_accuracies(classifier, batch, wanted)
        assert set(accuracy) == set(ATTRIBUTES)
        for name in ("colour", "shape", "size", "position"):
            assert accuracy[name] >= 0.95, (name, accuracy)


def test_judge_real_images(classifier: ShapesClassifier, real: tuple) -> None:
    images, objects = real[0][:24], real[1][:24]
    verdicts = judge(classifier, images, objects)
    assert [len(v) for v in verdicts] == [len(o) for o in objects]
    checks = ("colour", "shape", "size", "position")
    assert all(all(obj[k] for k in checks) for verdict in verdicts for obj in verdict)
    assert set(verdicts[0][0]) == {*checks, "cell"}

    assert all(
        obj["cell"] == POSITIONS.index(want["position"])
        for verdict, wanted in zip(verdicts, objects, strict=True)
        for obj, want in zip(verdict, wanted, strict=True)
    )

    for attribute, vocab in (("colour", list(COLOURS)), ("shape", SHAPES), ("size", SIZES)):
        wrong = copy.deepcopy(objects)
        for expected in wrong:
            expected[0][attribute] = _other(vocab, expected[0][attribute])
        for verdict in judge(classifier, images, wrong):
            flags = {k: v for k, v in verdict[0].items() if k != "cell"}
            assert flags == {**{k: True for k in flags}, attribute: False}, attribute

    single = [k for k, o in enumerate(objects) if len(o) == 1]
    moved = [[{**objects[k][0], "position": _other(POSITIONS, objects[k][0]["position"])}]
             for k in single]  # fmt: skip
    for verdict in judge(classifier, images[single], moved):
        flags = {k: v for k, v in verdict[0].items() if k != "cell"}
        assert flags == {"colour": True, "shape": True, "size": True, "position": False}

    assert judge(classifier, images[:0], []) == []
    with pytest.raises(DataError, match="2 images but 1 object lists"):
        judge(classifier, images[:2], objects[:1])


def test_judge_matches_two_objects_by_colour_and_shape(
    classifier: ShapesClassifier, real: tuple
) -> None:
    pairs = [k for k, o in enumerate(real[1]) if len(o) == 2][:8]
    images, objects = real[0][pairs], [real[1][k] for k in pairs]
    reversed_order = [list(reversed(o)) for o in objects]
    for verdict in judge(classifier, images, reversed_order):
        assert all(all(v for k, v in obj.items() if k != "cell") for obj in verdict)
    swapped = [
        [{**a, "position": b["position"]}, {**b, "position": a["position"]}] for a, b in objects
    ]
    for verdict in judge(classifier, images, swapped):
        for obj in verdict:
            assert obj["colour"] and obj["shape"] and not obj["position"]


def test_class_probabilities(classifier: ShapesClassifier, real: tuple) -> None:
    images, objects = real[0][:40], real[1][:40]
    probabilities = class_probabilities(classifier, images)
    assert probabilities.shape == (40, len(COLOURS) * len(SHAPES))
    assert torch.allclose(probabilities.sum(1), torch.ones(40), atol=1e-5)
    for row, wanted in zip(probabilities.argmax(1).tolist(), objects, strict=True):
        classes = {list(COLOURS).index(o["colour"]) * len(SHAPES) + SHAPES.index(o["shape"])
                   for o in wanted}  # fmt: skip
        assert row in classes


def test_train_save_and_load(tmp_path: Path) -> None:
    data = tmp_path / "shapes"
    build_shapes(data, num_train=40, num_test=12, image_size=64, workers=1, progress=False)
    out = tmp_path / "out" / "tiny.safetensors"
    accuracy = train_shapes_classifier(data, out, epochs=1, batch_size=16, progress=False)
    assert list(accuracy) == list(ATTRIBUTES)
    assert all(0.0 <= v <= 1.0 for v in accuracy.values())
    assert out.is_file() and not list(out.parent.glob("*.tmp"))
    with safe_open(str(out), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["format"] == FORMAT_NAME and json.loads(meta["colours"]) == list(COLOURS)
    assert json.loads(meta["test_accuracy"]).keys() == accuracy.keys()
    model = load_shapes_classifier(out)
    assert not model.training
    assert model(torch.zeros(1, 3, 64, 64)).occupancy.shape == (1, 9)

    bad_vocab = tmp_path / "vocab.safetensors"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(bad_vocab), metadata={**meta, "shapes": json.dumps(["blob"])})
    with pytest.raises(ModelError, match="other shapes shapes"):
        load_shapes_classifier(bad_vocab)


def test_load_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(ModelError, match="not found") as info:
        load_shapes_classifier(missing)
    assert "\n" not in str(info.value) and str(missing) in str(info.value)

    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3)}, str(other), metadata={"format": "attngan-model"})
    with pytest.raises(ModelError, match="not a shapes classifier") as info:
        load_shapes_classifier(other)
    assert "\n" not in str(info.value)

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"this is not a safetensors file")
    with pytest.raises(ModelError, match="cannot read") as info:
        load_shapes_classifier(garbage)
    assert "\n" not in str(info.value)

    with pytest.raises(DataError, match="not found"):
        train_shapes_classifier(tmp_path / "no-data", tmp_path / "x.safetensors", progress=False)
