"""``attngan evaluate``: the literature's measures of a trained model in one call (SPEC §8).

One image per test caption: for test image ``i`` (cycling when more images are asked for than the
split has) a caption drawn with ``(seed, i)`` and the noise of ``image_seed(seed, i, 0)``, so the
images do not depend on the batch size. Every generated image (the last stage, quantised to 8 bits
as a saved PNG would be) is measured as it comes; none are kept.

- ``fid``, ``kid``: Inception pool features of the generated images against the test split's real
  images, prepared as the test loader prepares them (box crop, resize, centre crop to the last
  stage's size) and quantised to 8 bits. The real statistics are cached under a key of everything
  that changes them.
- ``is``: the Inception Score with a classifier: the ``shapes`` attribute classifier on ``shapes``
  data (64 (colour, shape) classes), else an ImageNet Inception-v3 given with ``is_weights``.
- ``r_precision``: the model's own DAMSM encoders rank each image's caption among ``candidates``.
- ``semantic`` (``shapes`` only): the attribute classifier checks every object the caption names.
- ``shape_realism`` (``shapes`` only): the attribute classifier's confidence in its top shape at
  each generated object's cell, beside the same on the real test images.
- ``variety``: M images of each of K captions (different seeds); their mean pairwise Inception
  feature distance over the mean distance between images of different captions, beside the same
  for groups of real test images that share their attributes (or their class).
- ``stage_agreement`` (models of more than one stage): each sample's last-stage image downsampled
  to each earlier stage's size against that stage's own image, beside the real image pyramid.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from attngan.errors import ConfigError, DataError, ModelError
from attngan.evaluation import METRICS
from attngan.fileio import atomic_path
from attngan.metrics import (
    feature_stats,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    r_precision,
)
from attngan.progress import progress_bar

log = logging.getLogger(__name__)

ATTRIBUTES = ("colour", "shape", "size", "position")
STATS_VERSION = 1  # bump when the real-image preparation changes
VARIETY_STREAM = 0x76617269  # "vari": the variety's draws, apart from the items' (seed, i) draws


def default_cache_dir() -> Path:
    """``$ATTNGAN_CACHE``, else ``~/.cache/attngan``."""
    env = os.environ.get("ATTNGAN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "attngan"


@dataclass
class EvalItem:
    """One generated image's request: its caption and the truth it should show."""

    record_index: int
    caption: str
    seed: int
    objects: list[dict] = field(default_factory=list)
    relation: str | None = None
    held_out: bool = False


def _is_shapes(records: Sequence[Any]) -> bool:
    return bool(records) and all("objects" in r.attributes for r in records)


def plan_items(records: Sequence[Any], num_images: int, seed: int) -> list[EvalItem]:
    """``num_images`` requests cycling through ``records``; item ``i``'s caption is drawn with
    ``(seed, i)``."""
    from attngan.pipeline import image_seed

    items = []
    for i in range(num_images):
        r = i % len(records)
        record = records[r]
        rng = np.random.default_rng([seed, i])
        tokens = record.captions[int(rng.integers(len(record.captions)))]
        attrs = record.attributes
        items.append(
            EvalItem(
                record_index=r,
                caption=" ".join(tokens),
                seed=image_seed(seed, i, 0),
                objects=list(attrs.get("objects", [])),
                relation=attrs.get("relation"),
                held_out=bool(attrs.get("held_out", False)),
            )
        )
    return items


def _batches(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


# ------------------------------------------------------------------------------------------------
# Real-image statistics
# ------------------------------------------------------------------------------------------------


def _records_signature(records: Sequence[Any]) -> str:
    digest = hashlib.sha1()
    for r in records:
        try:
            st = r.image.stat()
            digest.update(f"{r.image.resolve()}|{st.st_size}|{st.st_mtime_ns}|{r.bbox}\n".encode())
        except OSError:
            digest.update(f"{r.image}|missing\n".encode())
    return digest.hexdigest()


def stats_key(feature_key: str, records: Sequence[Any], image_size: int, count: int) -> str:
    """A cache key of every option that changes the real images' features."""
    parts = {
        "version": STATS_VERSION,
        "features": feature_key,
        "images": _records_signature(records[:count]),
        "count": count,
        "image_size": image_size,
        "preparation": "test-transform,bilinear-299,uint8",
    }
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def real_features(
    records: Sequence[Any],
    image_size: int,
    features: Any,
    batch_size: int,
    progress: bool,
) -> np.ndarray:
    """Features of the real images, prepared as the test loader prepares them."""
    from attngan.data.dataset import load_image
    from attngan.data.transforms import PyramidTransform
    from attngan.evaluation.inception import to_uint8

    transform = PyramidTransform([image_size], train=False)
    out = []
    bar = progress_bar(total=len(records), desc="real images", unit="img", disable=not progress)
    for batch in _batches(len(records), batch_size):
        images = torch.stack(
            [transform(load_image(records[i].image), records[i].bbox)[-1] for i in batch]
        )
        out.append(features(to_uint8(images), uint8=True).numpy())
        bar.update(len(batch))
    bar.close()
    return np.concatenate(out)


def cached_real_features(
    records: Sequence[Any],
    image_size: int,
    features: Any,
    batch_size: int,
    cache_dir: Path | None,
    progress: bool,
) -> np.ndarray:
    """:func:`real_features`, read from / written to ``cache_dir`` (None: no cache)."""
    key = stats_key(features.key, records, image_size, len(records))
    path = None if cache_dir is None else Path(cache_dir) / f"fid-real-{key}.npz"
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                log.info("real-image features from the cache: %s", path)
                return f["features"].astype(np.float64)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring a bad cache file %s (%s)", path, exc)

    feats = real_features(records, image_size, features, batch_size, progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, features=feats.astype(np.float32))
    return feats


# ------------------------------------------------------------------------------------------------
# Semantic accuracy on shapes
# ------------------------------------------------------------------------------------------------


def _size_named(caption: str) -> bool:
    from attngan.data.shapes import SIZE_WORDS

    words = set(caption.split())
    return any(w in words for ws in SIZE_WORDS.values() for w in ws)


def _relation_holds(relation: str, first: int, second: int) -> bool:
    """Cells (row-major, 3 x 3) of object 0 and object 1 satisfy 'object 0 <relation> object 1'."""
    (r0, c0), (r1, c1) = divmod(first, 3), divmod(second, 3)
    return {
        "left of": c0 < c1,
        "right of": c0 > c1,
        "above": r0 < r1,
        "below": r0 > r1,
    }[relation]


class SemanticTally:
    """Correct / judged counts per attribute, over all items and over held-out-pair items, and
    shape accuracy per named shape (all items): which shapes a model draws, which it does not."""

    def __init__(self) -> None:
        self.counts = {g: {a: [0, 0] for a in ATTRIBUTES} for g in ("all", "held_out")}
        self.images = {"all": [0, 0], "held_out": [0, 0]}
        self.by_shape: dict[str, list[int]] = {}

    def add(self, item: EvalItem, verdicts: list[dict]) -> None:
        size_named = _size_named(item.caption)
        two = len(item.objects) == 2 and item.relation is not None
        image_ok = True
        for obj_i, v in enumerate(verdicts):
            judged = {"colour": v["colour"], "shape": v["shape"]}
            if size_named:
                judged["size"] = v["size"]
            if two:
                if obj_i == 0:  # the relation is judged once per pair
                    cells = [verdicts[0]["cell"], verdicts[1]["cell"]]
                    judged["position"] = _relation_holds(item.relation, *cells)
            else:
                judged["position"] = v["position"]
            for group in ("all", "held_out") if item.held_out else ("all",):
                for attr, ok in judged.items():
                    self.counts[group][attr][0] += int(ok)
                    self.counts[group][attr][1] += 1
            image_ok = image_ok and all(judged.values())
            if obj_i < len(item.objects) and "shape" in item.objects[obj_i]:
                count = self.by_shape.setdefault(str(item.objects[obj_i]["shape"]), [0, 0])
                count[0] += int(v["shape"])
                count[1] += 1
        for group in ("all", "held_out") if item.held_out else ("all",):
            self.images[group][0] += int(image_ok)
            self.images[group][1] += 1

    def result(self) -> dict:
        out = {}
        for group, counts in self.counts.items():
            out[group] = {a: (c / n if n else None) for a, (c, n) in counts.items()}
            out[group]["all_correct"] = (
                self.images[group][0] / self.images[group][1] if self.images[group][1] else None
            )
            out[group]["images"] = self.images[group][1]
        out["shape_by_name"] = {
            shape: {"accuracy": c / n, "objects": n}
            for shape, (c, n) in sorted(self.by_shape.items())
        }
        return out


# ------------------------------------------------------------------------------------------------
# Shape realism, variety, stage agreement
# ------------------------------------------------------------------------------------------------


def shape_confidences(shape_logits: Tensor, cells: Sequence[Sequence[int]]) -> Tensor:
    """The softmax confidence of the top shape (right or wrong) at each listed cell: image ``b``'s
    cells ``cells[b]``, read from the classifier's ``[B, 9, shapes]`` shape logits; flat, in
    order."""
    rows = [b for b, image_cells in enumerate(cells) for _ in image_cells]
    flat = [c for image_cells in cells for c in image_cells]
    return shape_logits[rows, flat].float().softmax(-1).amax(-1)


def stage_differences(stages: Sequence[Tensor]) -> dict[int, Tensor]:
    """Per image, for each stage but the last (keyed by its side): the mean absolute difference,
    in [0, 1] pixel units, between that stage's image and the last stage's image downsampled to
    its size (bilinear, antialiased). Images ``[B, 3, s, s]`` in [-1, 1], smallest first."""
    last = stages[-1].float()
    out = {}
    for image in stages[:-1]:
        down = F.interpolate(
            last, size=tuple(image.shape[-2:]), mode="bilinear", antialias=True, align_corners=False
        )
        out[int(image.shape[-1])] = (down - image.float()).abs().mean(dim=(1, 2, 3)) / 2
    return out


class MeanTally:
    """Running means of named values (one key per quantity)."""

    def __init__(self) -> None:
        self.sums: dict[Any, float] = {}
        self.counts: dict[Any, int] = {}

    def add(self, key: Any, values: Tensor) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + float(values.double().sum())
        self.counts[key] = self.counts.get(key, 0) + values.numel()

    def mean(self, key: Any) -> float | None:
        return self.sums[key] / self.counts[key] if self.counts.get(key) else None


def real_references(
    records: Sequence[Any],
    sizes: Sequence[int],
    classifier: Any | None,
    stages: bool,
    batch_size: int,
    progress: bool,
) -> MeanTally:
    """The real images' side of ``shape_realism`` (key ``"shape"``, with a ``classifier``: the top
    shape's confidence at each object's own cell, on the last stage's image quantised to 8 bits)
    and of ``stage_agreement`` (with ``stages``: keys the earlier stages' sides, as
    :func:`stage_differences` on the test transform's image pyramid)."""
    from attngan.data.dataset import load_image
    from attngan.data.transforms import PyramidTransform
    from attngan.evaluation.inception import to_uint8
    from attngan.evaluation.shapes_classifier import _object_cells, _predict

    transform = PyramidTransform(list(sizes), train=False)
    tally = MeanTally()
    bar = progress_bar(total=len(records), desc="real references", unit="img", disable=not progress)
    for batch in _batches(len(records), batch_size):
        pyramids = [transform(load_image(records[i].image), records[i].bbox) for i in batch]
        pyramid = [torch.stack(stage) for stage in zip(*pyramids, strict=True)]
        if classifier is not None:
            preds = _predict(classifier, to_uint8(pyramid[-1]) / 127.5 - 1)
            cells = [_object_cells(records[i].attributes["objects"]) for i in batch]
            tally.add("shape", shape_confidences(preds.shape, cells))
        if stages:
            for size, diff in stage_differences(pyramid).items():
                tally.add(size, diff)
        bar.update(len(batch))
    bar.close()
    return tally


def variety_ratio(features: Any, groups: Sequence[Any]) -> float | None:
    """Mean Euclidean distance between the feature rows of one group, over the mean distance
    between rows of different groups (None when either kind of pair is missing or every row is
    the same)."""
    x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
    labels = {g: n for n, g in enumerate(dict.fromkeys(groups))}
    g = torch.tensor([labels[k] for k in groups])
    dist = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    upper = torch.ones_like(dist, dtype=torch.bool).triu(1)
    same = g[:, None] == g[None, :]
    within, across = dist[same & upper], dist[~same & upper]
    if not len(within) or not len(across) or float(across.mean()) == 0:
        return None
    return float(within.mean() / across.mean())


def variety_items(records: Sequence[Any], captions: int, seed: int) -> list[EvalItem]:
    """``captions`` test records drawn without replacement with ``seed``, each with the caption
    :func:`plan_items` gives its record (so image 0 of each is the image the other measures see
    when the evaluation reaches that record)."""
    rng = np.random.default_rng([seed, VARIETY_STREAM])
    chosen = sorted(rng.choice(len(records), size=min(captions, len(records)), replace=False))
    items = plan_items(records, int(chosen[-1]) + 1, seed)
    return [items[int(r)] for r in chosen]


def real_variety_groups(
    records: Sequence[Any], groups: int, images: int, seed: int
) -> tuple[list[list[int]], str | None]:
    """Up to ``groups`` groups of up to ``images`` real test records that share what a caption
    fixes: on shapes data the set of their objects' (colour, shape) pairs, elsewhere their class
    id; only groups of >= 2 records, drawn with ``seed``. Returns the groups (record indices) and,
    when there are fewer than two such groups, why not."""
    if _is_shapes(records):
        keys: list[Any] = [
            tuple(sorted({(o["colour"], o["shape"]) for o in r.attributes["objects"]}))
            for r in records
        ]
        what = "the same (colour, shape) objects"
    else:
        keys = [r.class_id for r in records]
        what = "a class id"
    members: dict[Any, list[int]] = {}
    for n, key in enumerate(keys):
        members.setdefault(key, []).append(n)
    candidates = [m for m in members.values() if len(m) >= 2]
    if len(candidates) < 2:
        return [], f"fewer than two groups of test images share {what}"
    rng = np.random.default_rng([seed, VARIETY_STREAM, 1])
    order = rng.permutation(len(candidates))[:groups]
    return [
        sorted(
            int(n)
            for n in rng.choice(candidates[k], size=min(images, len(candidates[k])), replace=False)
        )
        for k in order
    ], None


# ------------------------------------------------------------------------------------------------
# The evaluation
# ------------------------------------------------------------------------------------------------


def _sentence_features(pipe: Any, ids: list[list[int]]) -> torch.Tensor:
    """Sentence features of captions of any lengths, in their order."""
    from attngan.pipeline import _length_batches

    out: dict[int, torch.Tensor] = {}
    for batch in _length_batches(ids, 64):
        sentence = pipe.encode_text([ids[n] for n in batch]).sentence.float().cpu()
        for b, n in enumerate(batch):
            out[n] = sentence[b]
    return torch.stack([out[n] for n in range(len(ids))])


def evaluate(
    model: str | Path,
    data: str | Path | None = None,
    metrics: Sequence[str] | None = None,
    data_format: str | None = None,
    num_images: int | None = None,
    seed: int = 0,
    batch_size: int = 50,
    device: str | torch.device = "cpu",
    inception: str | Path | None = None,
    is_weights: str | Path | None = None,
    classifier: str | Path | None = None,
    cache_dir: str | Path | None = "default",
    candidates: int = 100,
    folds: int = 10,
    is_splits: int = 10,
    variety_captions: int = 50,
    variety_images: int = 4,
    progress: bool = True,
) -> dict:
    """Measure ``model`` on the test split of ``data`` (default: the model's ``data.root``), read
    in layout ``data_format`` (default: the model's ``data.format``).

    ``metrics`` (default: every one that applies) is a subset of :data:`METRICS`; one that was
    asked for and cannot run (e.g. ``semantic`` off ``shapes``) is an error, one that was not asked
    for is skipped with the reason in ``result["skipped"]``. ``variety`` draws ``variety_images``
    images of each of ``variety_captions`` test captions. Returns a JSON-ready dict.
    """
    from attngan.checkpoints import load_model
    from attngan.data.records import read_records
    from attngan.pipeline import Pipeline, _length_batches

    started = time.perf_counter()
    asked = list(metrics) if metrics else []
    unknown = [m for m in asked if m not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric {unknown[0]!r} (one of {', '.join(METRICS)})")
    wanted = asked or list(METRICS)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1 (got {batch_size})")
    if "variety" in wanted and (variety_captions < 2 or variety_images < 2):
        raise ConfigError(
            f"variety needs >= 2 captions and >= 2 images of each "
            f"(got {variety_captions} and {variety_images})"
        )
    device = torch.device(device)
    cache = default_cache_dir() if cache_dir == "default" else cache_dir

    pipe = Pipeline.from_pretrained(model, device)
    config = pipe.config
    root = Path(data) if data is not None else Path(config.data.root)
    fmt = data_format or config.data.format
    split = read_records(fmt, root, config.data.captions_per_image, True)
    records = split.records.get("test", [])
    if not records:
        raise DataError(f"{root}: the test split has no images")
    num = len(records) if num_images is None else int(num_images)
    if num < 2:
        raise ConfigError(f"num_images must be >= 2 (got {num})")
    items = plan_items(records, num, seed)
    sizes = config.model.image_sizes
    image_size = sizes[-1]
    shapes = _is_shapes(records)
    skipped: dict[str, str] = {}

    def skip(metric: str, why: str) -> None:
        if metric in asked:
            raise ConfigError(f"cannot compute {metric}: {why}")
        skipped[metric] = why

    # --- the judges ------------------------------------------------------------------------
    features = None
    if {"fid", "kid", "variety"} & set(wanted):
        from attngan.evaluation.inception import InceptionFeatures

        try:
            features = InceptionFeatures(inception, device)
        except ModelError as exc:
            for m in ("fid", "kid", "variety"):
                if m in wanted:
                    skip(m, str(exc))
    if "variety" in wanted and "variety" not in skipped and len(records) < 2:
        skip("variety", "needs >= 2 test captions")
    judge_net = None
    needs_classifier = {"semantic", "shape_realism"} & set(wanted) or (
        "is" in wanted and is_weights is None
    )
    if shapes and needs_classifier:
        from attngan.evaluation.shapes_classifier import (
            _predict,
            class_probabilities,
            judge,
            load_shapes_classifier,
        )

        judge_net = load_shapes_classifier(classifier, device=device)
    elif not shapes:
        for m, name in (("semantic", "semantic accuracy"), ("shape_realism", "shape realism")):
            if m in wanted:
                skip(m, f"{name} needs shapes data (objects in its metadata)")
    if "stage_agreement" in wanted and len(sizes) < 2:
        skip("stage_agreement", f"the model has one stage ({image_size} px): nothing to compare")
    imagenet = None
    if "is" in wanted and is_weights is not None:
        from attngan.evaluation.inception import ImageNetClassifier

        imagenet = ImageNetClassifier(is_weights, device)
    elif "is" in wanted and judge_net is None:
        skip("is", "the Inception Score needs a classifier: pass --is-weights (ImageNet Inception)")
    encoders = None
    if "r_precision" in wanted:
        if num < candidates:
            skip("r_precision", f"needs >= {candidates} images (got {num}); see --candidates")
        else:
            try:  # the pipeline holds the text encoder already
                encoders = load_model(model, components=("image_encoder",), device=device)
            except ModelError as exc:
                skip("r_precision", str(exc))
    active = [m for m in wanted if m not in skipped]

    # --- real images -----------------------------------------------------------------------
    real = None
    cache_path = None if cache is None else Path(cache)
    fid_active = "fid" in active or "kid" in active
    if fid_active:
        real = cached_real_features(
            records[:num], image_size, features, batch_size, cache_path, progress
        )
    references = None
    if "shape_realism" in active or "stage_agreement" in active:
        references = real_references(
            records[:num],
            sizes,
            judge_net if "shape_realism" in active else None,
            "stage_agreement" in active,
            batch_size,
            progress,
        )

    # --- generated images ------------------------------------------------------------------
    encoded = [pipe.encode(item.caption, i)[0] for i, item in enumerate(items)]
    ids = [e.ids for e in encoded]
    fake_feats, probs, image_codes = [], [], []
    tally = SemanticTally()
    generated = MeanTally()  # shape realism ("shape") and stage agreement (earlier stage sides)
    bar = progress_bar(total=num, desc="generating", unit="img", disable=not progress)
    generator = pipe.inference_generator()
    with torch.inference_mode():
        for batch in _length_batches(ids, batch_size):
            seeds = [items[n].seed for n in batch]
            stages = pipe._generate(generator, [ids[n] for n in batch], seeds, False)[0]
            images = stages[-1]
            if fid_active:
                fake_feats.append(features(images).numpy())
            if judge_net is not None:
                x = images.to(device)
                preds = _predict(judge_net, x)  # one pass of the classifier for all its measures
                if "semantic" in active or "shape_realism" in active:
                    objects = [items[n].objects for n in batch]
                    verdicts = judge(judge_net, x, objects, predictions=preds)
                    if "semantic" in active:
                        for n, v in zip(batch, verdicts, strict=True):
                            tally.add(items[n], v)
                    if "shape_realism" in active:
                        cells = [[obj["cell"] for obj in v] for v in verdicts]
                        generated.add("shape", shape_confidences(preds.shape, cells))
                if "is" in active and imagenet is None:
                    p = class_probabilities(judge_net, x, predictions=preds)
                    probs.append((list(batch), p.cpu()))
            if "stage_agreement" in active:
                for size, diff in stage_differences(stages).items():
                    generated.add(size, diff)
            if imagenet is not None:
                probs.append((list(batch), imagenet(images).cpu()))
            if encoders is not None:
                codes = encoders["image_encoder"](images.to(device)).image.float().cpu()
                image_codes.append((list(batch), codes))
            bar.update(len(batch))
    bar.close()
    variety = None
    if "variety" in active:
        variety = _variety(
            pipe,
            generator,
            records,
            features,
            variety_captions,
            variety_images,
            seed,
            batch_size,
            image_size,
            cache_path,
            progress,
        )

    results: dict[str, Any] = {}
    if fid_active:
        fake = np.concatenate(fake_feats)
        if "fid" in active:
            results["fid"] = frechet_distance(feature_stats(fake), feature_stats(real))
        if "kid" in active:
            size = min(1000, max(2, min(len(fake), len(real)) // 2))
            kid = kernel_inception_distance(fake, real, subsets=100, subset_size=size, seed=seed)
            results["kid"] = {"mean": kid.mean, "std": kid.std, "subset_size": size}
    if "is" in active and probs:
        p = torch.empty(num, probs[0][1].size(1))
        for rows, chunk in probs:
            p[rows] = chunk
        score = inception_score(p, splits=is_splits)
        results["is"] = {
            "mean": score.mean,
            "std": score.std,
            "classifier": "imagenet-inception" if imagenet is not None else "shapes",
            "splits": is_splits,
        }
    if encoders is not None:
        codes = torch.empty(num, image_codes[0][1].size(1))
        for rows, chunk in image_codes:
            codes[rows] = chunk
        with torch.inference_mode():
            sentences = _sentence_features(pipe, ids)
        rp = r_precision(codes, sentences, candidates=candidates, folds=folds, seed=seed)
        results["r_precision"] = {
            "mean": rp.mean,
            "std": rp.std,
            "candidates": candidates,
            "folds": folds,
        }
    if "semantic" in active:
        results["semantic"] = tally.result()
    if "shape_realism" in active:
        results["shape_realism"] = {
            "generated": generated.mean("shape"),
            "real": references.mean("shape"),
            "objects": generated.counts.get("shape", 0),
        }
    if variety is not None:
        results["variety"] = variety
    if "stage_agreement" in active:
        results["stage_agreement"] = {}
        for size in sizes[:-1]:
            fake_diff, real_diff = generated.mean(size), references.mean(size)
            results["stage_agreement"][str(size)] = {
                "generated": fake_diff,
                "real": real_diff,
                "ratio": fake_diff / real_diff if real_diff else None,
            }

    return {
        "model": str(model),
        "data": str(root),
        "split": "test",
        "num_images": num,
        "image_size": image_size,
        "seed": seed,
        "metrics": results,
        "skipped": skipped,
        "inception": None if features is None else str(features.path),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _variety(
    pipe: Any,
    generator: torch.nn.Module,
    records: Sequence[Any],
    features: Any,
    captions: int,
    images: int,
    seed: int,
    batch_size: int,
    image_size: int,
    cache_dir: Path | None,
    progress: bool,
) -> dict:
    """The ``variety`` measure: ``images`` images (seeds ``image_seed(seed, record, j)``) of each
    of :func:`variety_items`' captions, and the real groups of :func:`real_variety_groups`."""
    from attngan.pipeline import _length_batches, image_seed

    chosen = variety_items(records, captions, seed)
    ids = [pipe.encode(item.caption, k)[0].ids for k, item in enumerate(chosen)]
    rows = [(k, j) for k in range(len(chosen)) for j in range(images)]
    row_ids = [ids[k] for k, _ in rows]
    parts = []
    bar = progress_bar(total=len(rows), desc="variety", unit="img", disable=not progress)
    with torch.inference_mode():
        for batch in _length_batches(row_ids, batch_size):
            seeds = [image_seed(seed, chosen[rows[n][0]].record_index, rows[n][1]) for n in batch]
            last = pipe._generate(generator, [row_ids[n] for n in batch], seeds, False)[0][-1]
            parts.append((batch, features(last).numpy()))
            bar.update(len(batch))
    bar.close()
    feats = np.empty((len(rows), parts[0][1].shape[1]))
    for batch, chunk in parts:
        feats[batch] = chunk
    result: dict[str, Any] = {
        "generated": variety_ratio(feats, [k for k, _ in rows]),
        "real": None,
        "captions": len(chosen),
        "images_per_caption": images,
    }
    groups, why = real_variety_groups(records, captions, images, seed)
    if why is not None:
        result["real_skipped"] = why
        return result
    members = [records[n] for group in groups for n in group]
    real = cached_real_features(members, image_size, features, batch_size, cache_dir, progress)
    labels = [g for g, group in enumerate(groups) for _ in group]
    result.update(
        real=variety_ratio(real, labels), real_groups=len(groups), real_images=len(labels)
    )
    return result


def format_table(result: dict) -> str:
    """The result as a small text table, one measure per line."""
    m = result["metrics"]
    rows: list[tuple[str, str]] = []
    if "fid" in m:
        rows.append(("FID", f"{m['fid']:.2f}"))
    if "kid" in m:
        rows.append(
            ("KID (x 1000)", f"{1000 * m['kid']['mean']:.2f} ± {1000 * m['kid']['std']:.2f}")
        )
    if "is" in m:
        rows.append(
            (f"IS ({m['is']['classifier']})", f"{m['is']['mean']:.2f} ± {m['is']['std']:.2f}")
        )
    if "r_precision" in m:
        rp = m["r_precision"]
        rows.append(
            (
                f"R-precision (1 of {rp['candidates']})",
                f"{100 * rp['mean']:.2f} ± {100 * rp['std']:.2f} %",
            )
        )
    for group, title in (("all", "all test captions"), ("held_out", "held-out pairs")):
        sem = m.get("semantic", {}).get(group)
        if not sem or not sem["images"]:
            continue
        for attr in (*ATTRIBUTES, "all_correct"):
            if sem.get(attr) is not None:
                name = "all attributes" if attr == "all_correct" else attr
                rows.append((f"{name} ({title}, {sem['images']})", f"{100 * sem[attr]:.1f} %"))
    by_shape = m.get("semantic", {}).get("shape_by_name")
    if by_shape:
        rows.append(("shape by name (accuracy)", ", ".join(
            f"{shape} {100 * v['accuracy']:.0f} %" for shape, v in by_shape.items())))  # fmt: skip
    if "shape_realism" in m:
        sr = m["shape_realism"]
        rows.append(
            (
                "shape realism (top-shape confidence)",
                f"generated {_num(sr['generated'])}, real {_num(sr['real'])}",
            )
        )
    if "variety" in m:
        v = m["variety"]
        real = _num(v["real"]) + (f" ({v['real_skipped']})" if "real_skipped" in v else "")
        rows.append(
            (
                f"variety ({v['captions']} captions x {v['images_per_caption']}, within / across)",
                f"generated {_num(v['generated'])}, real {real}",
            )
        )
    for size, sa in m.get("stage_agreement", {}).items():
        ratio = "–" if sa["ratio"] is None else f"{sa['ratio']:.1f}"
        rows.append(
            (
                f"stage agreement {size} px (mean |diff|)",
                f"generated {_num(sa['generated'])}, real {_num(sa['real'])}, ratio {ratio}",
            )
        )
    width = max((len(r[0]) for r in rows), default=10)
    lines = [
        f"{result['model']} on {result['data']} ({result['num_images']} images, "
        f"{result['image_size']} px, seed {result['seed']})"
    ]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    lines += [f"  skipped {k}: {v}" for k, v in result["skipped"].items()]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"
