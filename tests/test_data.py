import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from attngan.config import load_config
from attngan.data.dataset import Sample, TextImageDataset, open_datasets, select_words
from attngan.data.records import Record
from attngan.data.transforms import PyramidTransform, crop_to_box
from attngan.errors import ConfigError, DataError
from attngan.text import Vocabulary

from .conftest import COCO_MINI, needs_coco, simple_rows, write_folder, write_image


def _cfg(preset: str, root: Path, *overrides: str):
    return load_config(preset, [f"data.root={root}", *overrides])


def _check_sample(sample: Sample, sizes: list[int], max_words: int) -> None:
    assert [tuple(im.shape) for im in sample.images] == [(3, s, s) for s in sizes]
    for image in sample.images:
        assert image.dtype == torch.float32 and image.min() >= -1.0 and image.max() <= 1.0
    assert sample.tokens.shape == (max_words,) and sample.tokens.dtype == torch.int64
    assert 1 <= sample.length <= max_words
    assert (sample.tokens[: sample.length] > 0).all() and (
        sample.tokens[sample.length :] == 0
    ).all()


# --- the three layouts through one interface


def test_cub_release_layout_with_captions_pickle(cub_layout):
    root, keys = cub_layout
    data = open_datasets(_cfg("birds", root, "data.limit=3"), progress=False)
    assert len(data.vocab) == 5450  # the release's vocabulary, not a rebuilt one
    train, test = data["train"], data["test"]
    assert len(train) == 3 and len(test) == 3
    sample = train[0]
    _check_sample(sample, [64, 128, 256], 18)
    assert sample.key == keys["train"][0]
    assert sample.class_id == int(keys["train"][0].split(".")[0])  # species number
    assert train.caption_texts(0)[0] == "a bird with a very long wing span and a long pointed beak"
    assert len(train.caption_texts(0)) == 10
    _check_sample(test[2], [64, 128, 256], 18)


def test_cub_release_layout_with_text_folder(cub_layout, tmp_path):
    root, keys = cub_layout
    (root / "captions.pickle").unlink()
    for split in ("train", "test"):
        (root / split / "filenames.pickle").unlink()
        (root / split / "filenames.pickle").write_bytes(pickle.dumps(keys[split], protocol=2))
        for n, key in enumerate(keys[split]):
            path = root / "text" / f"{key}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                "".join(f"this bird {split} {n} has a red crown {j}\n" for j in range(10))
            )
    data = open_datasets(_cfg("birds", root, "model.stages=2"), progress=False)
    assert data.vocab.word(0) == "<end>" and "crown" in data.vocab and "test" in data.vocab
    _check_sample(data["train"][1], [64, 128], 18)
    # too few captions for data.captions_per_image names the file
    bad = root / "text" / f"{keys['test'][1]}.txt"
    bad.write_text("only one caption here\n")
    with pytest.raises(DataError, match=f"{bad.name}.*1 captions, 10 needed"):
        open_datasets(_cfg("birds", root), progress=False)
    skipped = open_datasets(_cfg("birds", root, "data.skip_bad=true"), progress=False)
    assert len(skipped["test"]) == 2 and len(skipped.skipped) == 1
    bad.unlink()
    with pytest.raises(DataError, match=f"caption file not found: .*{bad.name}"):
        open_datasets(_cfg("birds", root), progress=False)


def test_cub_bounding_box_crop():
    image = Image.new("RGB", (400, 300))
    # side 1.5 * max(w, h) = 150, centred on (100, 100)
    assert crop_to_box(image, (60.0, 50.0, 80.0, 100.0)).size == (150, 150)
    assert crop_to_box(image, (0.0, 0.0, 100.0, 100.0)).size == (125, 125)  # clipped at 0
    assert crop_to_box(image, (350.0, 250.0, 50.0, 50.0)).size == (62, 62)  # clipped at the edge


@needs_coco
def test_coco_official_layout():
    data = open_datasets(_cfg("coco", COCO_MINI), progress=False)
    assert len(data["train"]) == 80 and len(data["test"]) == 79
    annotations = json.loads((COCO_MINI / "annotations" / "captions_val2017.json").read_text())
    assert all(
        w in data.vocab
        for a in annotations["annotations"][:20]
        for w in a["caption"].lower().replace(".", " ").split()
        if w.isalpha()
    )
    sample = data["test"][5]
    _check_sample(sample, [64, 128, 256], 12)
    assert (COCO_MINI / "val2017" / f"{sample.key}.jpg").is_file()
    assert len({data["train"][i].class_id for i in range(10)}) == 10  # no classes to mask in COCO


def test_coco_release_layout(tmp_path):
    root = tmp_path / "coco"
    keys = {"train": ["COCO_train2014_000000000009"], "test": ["COCO_val2014_000000000042"]}
    words = ["<end>", "a", "plate", "of", "food", "dog"]
    caps = {"train": [[1, 2, 3, 4]] * 5, "test": [[1, 5]] * 5}
    (root / "images").mkdir(parents=True)
    for split in keys:
        (root / split).mkdir()
        (root / split / "filenames.pickle").write_bytes(pickle.dumps(keys[split], protocol=2))
        write_image(root / "images" / f"{keys[split][0]}.jpg", (80, 60))
    (root / "captions.pickle").write_bytes(
        pickle.dumps(
            [
                caps["train"],
                caps["test"],
                dict(enumerate(words)),
                {w: i for i, w in enumerate(words)},
            ],
            protocol=2,
        )
    )
    data = open_datasets(_cfg("coco", root), progress=False)
    assert data.vocab.words == words
    assert data["test"].caption_texts(0)[0] == "a dog"
    _check_sample(data["train"][0], [64, 128, 256], 12)


def test_own_folder_with_splits(folder_data):
    cfg = _cfg("shapes", folder_data, "data.captions_per_image=3")
    data = open_datasets(cfg, progress=False)
    assert len(data["train"]) == 6 and len(data["test"]) == 3
    _check_sample(data["train"][0], cfg.model.image_sizes, cfg.data.max_words)
    assert data["train"].records[0].attributes == {"colour": "red"}  # extra fields are kept
    # the same vocabulary whichever split is opened first
    assert open_datasets(cfg, ["test"], progress=False).vocab == data.vocab


def test_own_folder_without_splits_and_single_string_text(tmp_path):
    root = tmp_path / "flat"
    rows = [
        {"file_name": f"{i}.png", "text": f"picture number {i}", "split": s}
        for i, s in enumerate(["train", "train", "test"])
    ]
    write_folder(tmp_path, {"flat": rows})
    (root / "metadata.jsonl").rename(root / "metadata.jsonl")
    data = open_datasets(_cfg("shapes", root, "data.captions_per_image=1"), progress=False)
    assert len(data["train"]) == 2 and len(data["test"]) == 1
    assert data["test"].caption_texts(0) == ["picture number 2"]


# --- sampling


def test_long_captions_keep_an_ordered_random_subset():
    ids = list(range(1, 31))
    generator = torch.Generator().manual_seed(0)
    subsets = {tuple(select_words(ids, 18, generator)) for _ in range(5)}
    assert len(subsets) > 1
    for subset in subsets:
        assert len(subset) == 18 and list(subset) == sorted(subset) and set(subset) <= set(ids)
    assert select_words(ids, 18, None) == ids[:18]
    assert select_words(ids[:5], 18, generator) == ids[:5]


def test_train_draws_vary_and_eval_draws_do_not(folder_data):
    cfg = _cfg("shapes", folder_data, "data.captions_per_image=3")
    train = open_datasets(cfg, ["train"], progress=False)["train"]
    torch.manual_seed(0)
    draws = [train[0] for _ in range(12)]
    assert len({d.caption_index for d in draws}) > 1
    assert any(not torch.equal(draws[0].images[-1], d.images[-1]) for d in draws)  # crop / flip
    test = open_datasets(cfg, ["train"], train=False, progress=False)["train"]
    first, again = test[1], test[1]
    assert first.caption_index == again.caption_index
    assert torch.equal(first.images[-1], again.images[-1]) and torch.equal(
        first.tokens, again.tokens
    )


def test_datasets_take_the_random_shift_from_the_config(folder_data):
    """``data.random_shift`` reaches the training split: without crops its draws still vary (by
    place), with the shift off they are all the test split's view."""
    for shift, varies in ((0, False), (3, True)):
        cfg = _cfg("shapes", folder_data, "data.captions_per_image=3", "data.random_crop=false",
                   f"data.random_shift={shift}")  # fmt: skip
        train = open_datasets(cfg, ["train"], progress=False)["train"]
        torch.manual_seed(0)
        draws = [train[0].images[-1] for _ in range(8)]
        assert any(not torch.equal(draws[0], d) for d in draws) is varies


def test_pyramid_stages_are_the_same_crop():
    image = write_image(Path("/tmp") / "attngan_pyramid.png", (120, 90))
    stages = PyramidTransform([32, 64, 128], train=True)(Image.open(image).convert("RGB"))
    down = torch.nn.functional.interpolate(stages[2][None], size=32, mode="area")[0]
    assert (down - stages[0]).abs().mean() < 0.1  # same content, not a different crop
    other = torch.nn.functional.interpolate(stages[2].flip(-1)[None], size=32, mode="area")[0]
    assert (other - stages[0]).abs().mean() > (down - stages[0]).abs().mean()


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_batches_samples(folder_data, workers):
    cfg = _cfg("shapes", folder_data, "data.captions_per_image=3")
    dataset = open_datasets(cfg, ["train"], progress=False)["train"]
    batch = next(iter(DataLoader(dataset, batch_size=4, num_workers=workers)))
    assert [tuple(im.shape) for im in batch.images] == [(4, 3, s, s) for s in cfg.model.image_sizes]
    assert batch.tokens.shape == (4, cfg.data.max_words) and batch.length.shape == (4,)
    assert len(batch.key) == 4


# --- bad input: a clear error naming the file, or skipped and counted


def test_missing_image_is_named(folder_data):
    (folder_data / "train" / "images" / "img2.png").unlink()
    cfg = _cfg("shapes", folder_data, "data.captions_per_image=3")
    with pytest.raises(DataError, match=r"image file not found: .*img2\.png"):
        open_datasets(cfg, progress=False)
    data = open_datasets(
        _cfg("shapes", folder_data, "data.captions_per_image=3", "data.skip_bad=true"),
        progress=False,
    )
    assert len(data["train"]) == 5 and len(data.skipped) == 1


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_or_truncated_image(folder_data, damage):
    path = folder_data / "train" / "images" / "img1.png"
    data = path.read_bytes()
    path.write_bytes(b"\x00not an image at all" if damage == "garbage" else data[: len(data) // 2])
    cfg = _cfg("shapes", folder_data, "data.captions_per_image=3")
    dataset = open_datasets(cfg, ["train"], progress=False)["train"]
    with pytest.raises(DataError, match=r"corrupt or truncated image: .*img1\.png"):
        dataset[1]
    skipping = open_datasets(
        _cfg("shapes", folder_data, "data.captions_per_image=3", "data.skip_bad=true"),
        ["train"],
        progress=False,
    )
    assert len(skipping["train"]) == 5 and "img1.png" in skipping.skipped[0]
    assert all(s.key != "images/img1" for s in (skipping["train"][i] for i in range(5)))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"file_name": "images/x.png", "text": ""}, "empty or has no words"),
        ({"file_name": "images/x.png", "text": ["fine caption", "?!"]}, "caption 2 is empty"),
        ({"file_name": "images/x.png", "text": ["just one"]}, "1 captions, 3 needed"),
        ({"file_name": "images/x.png"}, "needs 'text'"),
        ({"text": "no file"}, "needs a 'file_name'"),
    ],
)
def test_bad_metadata_rows_name_the_line(folder_data, row, message):
    with (folder_data / "train" / "metadata.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
    cfg = _cfg("shapes", folder_data, "data.captions_per_image=3")
    with pytest.raises(DataError, match=rf"metadata\.jsonl:7: .*{message}"):
        open_datasets(cfg, progress=False)


def test_bad_metadata_files(tmp_path):
    with pytest.raises(DataError, match="data folder not found"):
        open_datasets(_cfg("shapes", tmp_path / "nowhere"), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no metadata.jsonl"):
        open_datasets(_cfg("shapes", tmp_path / "empty"), progress=False)
    root = write_folder(tmp_path / "broken", {"train": simple_rows(2), "test": simple_rows(1)})
    (root / "test" / "metadata.jsonl").write_text('{"file_name": "a.png", "text": \n')
    with pytest.raises(DataError, match=r"test/metadata\.jsonl:1: not valid JSON"):
        open_datasets(_cfg("shapes", root, "data.captions_per_image=3"), progress=False)


def test_skip_bad_reports_caption_problems(folder_data):
    with (folder_data / "train" / "metadata.jsonl").open("a") as f:
        f.write(json.dumps({"file_name": "images/img0.png", "text": ["", "", ""]}) + "\n")
    data = open_datasets(
        _cfg("shapes", folder_data, "data.captions_per_image=3", "data.skip_bad=true"),
        progress=False,
    )
    assert len(data["train"]) == 6 and len(data.skipped) == 1


def test_unknown_words_with_a_given_vocabulary(folder_data):
    cfg = _cfg("shapes", folder_data, "data.captions_per_image=3")
    vocab = Vocabulary(["<end>", "a", "square"])
    dataset = open_datasets(cfg, ["train"], vocab=vocab, progress=False)["train"]
    assert dataset.caption_texts(0)[0] == "a square a"  # "red", "number", ... dropped
    with pytest.raises(DataError, match="no word the vocabulary knows"):
        TextImageDataset(
            [Record("k", folder_data / "train" / "images" / "img0.png", [["zebra"]], 0)],
            vocab,
            [32],
            18,
            train=True,
        )


def test_cub_missing_tables(tmp_path):
    (tmp_path / "birds").mkdir()
    with pytest.raises(DataError, match=r"CUB table not found: .*images\.txt"):
        open_datasets(_cfg("birds", tmp_path / "birds"), progress=False)


def test_malformed_coco_annotations(tmp_path):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    ann = {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1}]}
    for name in ("train", "val"):
        (root / "annotations" / f"captions_{name}2017.json").write_text(json.dumps(ann))
    with pytest.raises(DataError, match=r"captions_train2017\.json: not a COCO captions file"):
        open_datasets(_cfg("coco", root), progress=False)
    ann["annotations"] = [{"image_id": 1, "caption": f"a cat {k}"} for k in range(5)]
    (root / "annotations" / "captions_train2017.json").write_text(json.dumps(ann))
    (root / "annotations" / "captions_val2017.json").unlink()
    with pytest.raises(DataError, match="captions_val2017.json"):
        open_datasets(_cfg("coco", root), progress=False)


def test_random_crop_off_trains_on_the_evaluation_view():
    image = Image.open(write_image(Path("/tmp") / "attngan_nocrop.png", (120, 90))).convert("RGB")
    test_view = PyramidTransform([32, 64], train=False)(image)
    gen = torch.Generator().manual_seed(0)
    views = [PyramidTransform([32, 64], train=True, flip=False, crop=False)(image, generator=gen)
             for _ in range(3)]  # fmt: skip
    for view in views:  # no randomness left: the test split's resize and centre crop
        for a, b in zip(view, test_view, strict=True):
            assert torch.equal(a, b)
    cropped = [PyramidTransform([32, 64], train=True, flip=False)(image, generator=gen)[-1]
               for _ in range(3)]  # fmt: skip
    assert not all(torch.equal(c, test_view[-1]) for c in cropped)
    config = load_config("shapes", ["data.random_crop=false"])
    assert config.data.random_crop is False and load_config("birds").data.random_crop is True


def test_random_shift_moves_the_image_at_its_scale_and_only_in_training():
    """``data.random_shift``: the training view moved by at most that many pixels along each axis,
    nothing enlarged (an object keeps its size); every shift in range is drawn; evaluation and
    ``shift=0`` keep the fixed view; the lower stage is the same view downsampled."""
    array = np.full((64, 64, 3), 100, np.uint8)
    array[28:36, 24:40] = 255  # a 16 x 8 bar in the middle
    image = Image.fromarray(array)
    plain = PyramidTransform([32, 64], train=True, flip=False, crop=False)(image)
    shifted = PyramidTransform([32, 64], train=True, flip=False, crop=False, shift=5)
    gen, moves = torch.Generator().manual_seed(0), set()
    for _ in range(200):
        small, view = shifted(image, generator=gen)
        ys, xs = torch.nonzero(view[0] > 0.9, as_tuple=True)
        assert (int(ys.max() - ys.min()) + 1, int(xs.max() - xs.min()) + 1) == (8, 16)
        dy, dx = int(ys.min()) - 28, int(xs.min()) - 24
        assert max(abs(dy), abs(dx)) <= 5
        moves.add((dy, dx))
        expected = Image.fromarray(((view.permute(1, 2, 0) + 1) * 127.5).round().byte().numpy())
        assert torch.allclose(small, PyramidTransform([32], train=False)(expected)[0], atol=0.02)
    assert {dy for dy, _ in moves} == {dx for _, dx in moves} == set(range(-5, 6))
    assert torch.equal(PyramidTransform([32, 64], train=False)(image)[-1], plain[-1])
    evaluation = PyramidTransform([32, 64], train=False, shift=5)
    assert all(torch.equal(evaluation(image)[-1], plain[-1]) for _ in range(3))
    with pytest.raises(ValueError, match="shift"):
        PyramidTransform([32, 64], train=True, shift=32)
    assert load_config("shapes", ["data.random_shift=6"]).data.random_shift == 6
    assert load_config("birds").data.random_shift == 0
    with pytest.raises(ConfigError, match="data.random_shift must be below half"):
        load_config("shapes", ["data.random_shift=32"])
    with pytest.raises(ConfigError, match="data.random_shift must be >= 0"):
        load_config("shapes", ["data.random_shift=-1"])
