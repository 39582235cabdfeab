"""Where a `shapes` model draws its objects, against the real images, and whether the shapes it
misses are the ones cut by the image's border.

For single-object test captions (first ``--num``), three sets of 64 px images of the same scenes:
the real test images as evaluation sees them, the same images through the training transform
(``data.random_crop``: resized to 76 px, a random 64 px crop; no flips, as the preset), and the
model's images (seed 0, one per caption). An object pixel is a saturated one (the data set's
backgrounds are neutral greys; every object colour is saturated). Per set:

- ``frame``: the share of object pixels in the image's outer 2 px frame;
- ``touch``: the share of images with an object pixel in that frame;
- ``radius``: for objects whose true centre is off the middle cell, the mean distance of the
  object pixels' centroid from the image's centre (px), beside ``true`` (the same for the scenes'
  own centres; for the random crops, which shift the scene, only the images are measured);
- ``off``: the mean distance of the centroid from the scene's true object centre (px; not for the
  random crops, whose offset is random);
- shape and position accuracy (the shapes classifier,
  :func:`~attngan.evaluation.shapes_classifier.judge`, as ``attngan evaluate`` reads them) for
  objects in the centre cell, an edge cell and a corner cell.

Then, for the model's images, where it draws the objects of each cell: the grid cell of the
object pixels' centroid, counted per cell the captions name ("center: left 57" is every centre
object drawn in the left cell).

With ``--ceiling`` (no model needed) it scores, as ``attngan evaluate``'s semantic metric does
(one caption per test image, seed 0), the real test images and the same images through the
training transform: what a generator that drew the training images perfectly would score.

    python benchmarks/object_placement.py MODEL [--data data/shapes] [--num 500]
    python benchmarks/object_placement.py --ceiling [--data data/shapes]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from attngan.data.dataset import load_image
from attngan.data.transforms import PyramidTransform
from attngan.errors import AttnGANError

SIZE = 64
FRAME = 2
SATURATION = 0.25  # max - min channel in [0, 1]; backgrounds are < 0.01, objects > 0.6


def object_mask(images: torch.Tensor) -> np.ndarray:
    """``[N, 3, H, W]`` images in [-1, 1] → ``[N, H, W]`` boolean mask of saturated pixels."""
    unit = (images.detach().float().clamp(-1, 1) + 1) / 2
    saturation = unit.amax(1) - unit.amin(1)
    return (saturation > SATURATION).numpy()


def placement(images: torch.Tensor, centres: np.ndarray, aligned: bool = True) -> dict[str, float]:
    """The frame, touch, radius, true and off figures of the module docstring, and ``empty``
    (the share of images with no object pixel).

    ``centres``: ``[N, 2]`` (x, y) the scenes' object centres in pixels of ``images``;
    ``aligned=False`` when the images are shifted against them by an unknown offset (random
    crops): they then only pick the off-centre objects, and ``off`` is left out."""
    mask = object_mask(images)
    _, h, w = mask.shape
    frame = np.zeros((h, w), bool)
    frame[:FRAME], frame[-FRAME:], frame[:, :FRAME], frame[:, -FRAME:] = True, True, True, True
    total = mask.sum((1, 2))
    drawn = total > 0
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    cx = (mask * xx).sum((1, 2)) / np.maximum(total, 1)
    cy = (mask * yy).sum((1, 2)) / np.maximum(total, 1)
    radius = np.hypot(cx - w / 2, cy - h / 2)
    out = {
        "frame": float((mask & frame).sum() / max(1, mask.sum())),
        "touch": float((mask & frame).any((1, 2)).mean()),
        "empty": float(1 - drawn.mean()),
    }
    true_radius = np.hypot(centres[:, 0] - w / 2, centres[:, 1] - h / 2)
    outer = drawn & (true_radius > w / 6)  # off the middle cell
    out["radius"] = float(radius[outer].mean()) if outer.any() else float("nan")
    out["true"] = float(true_radius[outer].mean()) if outer.any() else float("nan")
    if not aligned:
        return out
    off = np.hypot(cx - centres[:, 0], cy - centres[:, 1])
    out["off"] = float(off[drawn].mean()) if drawn.any() else float("nan")
    return out


def drawn_cells(images: torch.Tensor, rows: list[dict]) -> dict[str, Counter]:
    """Per cell the captions name (``rows``' single objects), how many of ``images`` have their
    object pixels' centroid in each grid cell (``"none"``: no object pixel)."""
    from attngan.data.shapes import POSITIONS

    mask = object_mask(images)
    _, h, w = mask.shape
    drawn: dict[str, Counter] = {cell: Counter() for cell in POSITIONS}
    for row, m in zip(rows, mask, strict=True):
        ys, xs = np.nonzero(m)
        if not len(xs):
            cell = "none"
        else:
            r, c = min(2, int((ys.mean() + 0.5) * 3 // h)), min(2, int((xs.mean() + 0.5) * 3 // w))
            cell = POSITIONS[3 * r + c]
        drawn[row["objects"][0]["position"]][cell] += 1
    return drawn


def cell_group(position: str) -> str:
    """``"center"`` → centre, two-word positions ("top left") → corner, the rest → edge."""
    if position == "center":
        return "centre"
    return "corner" if " " in position else "edge"


def by_group(classifier, images: torch.Tensor, rows: list[dict], attribute: str) -> dict:
    """Accuracy of ``attribute`` (shape, position, ...) per cell group, as ``judge`` reads it."""
    from attngan.evaluation.shapes_classifier import judge

    verdicts = judge(classifier, images, [row["objects"] for row in rows])
    hits: dict[str, list[bool]] = {"centre": [], "edge": [], "corner": []}
    for row, verdict in zip(rows, verdicts, strict=True):
        hits[cell_group(row["objects"][0]["position"])].append(bool(verdict[0][attribute]))
    return {g: float(np.mean(v)) if v else float("nan") for g, v in hits.items()}


def single_object_rows(data: Path, num: int) -> list[dict]:
    metadata = data / "test" / "metadata.jsonl"
    if not metadata.is_file():
        raise AttnGANError(f"{metadata} not found: a `shapes` data folder with a test split")
    rows = []
    with metadata.open() as f:
        for line in f:
            row = json.loads(line)
            if len(row["objects"]) == 1:
                rows.append(row)
            if len(rows) == num:
                break
    if not rows:
        raise AttnGANError(f"{metadata} has no single-object scenes")
    return rows


def ceiling(data: Path, classifier, seed: int = 0) -> dict[str, dict[str, float]]:
    """``attngan evaluate``'s semantic accuracies (all captions) of the real test images, as
    evaluation sees them and through the training transform's random crops (seeded)."""
    from attngan.data.records import read_records
    from attngan.evaluation.evaluate import SemanticTally, plan_items
    from attngan.evaluation.shapes_classifier import judge

    records = read_records("folder", data, 5, True).records.get("test", [])
    if not records:
        raise AttnGANError(f"{data}: the test split has no images")
    items = plan_items(records, len(records), seed)
    views = {
        "real test images": PyramidTransform([SIZE], train=False),
        "the same, training crops": PyramidTransform([SIZE], train=True, flip=False, crop=True),
    }
    out = {}
    for name, transform in views.items():
        gen = torch.Generator().manual_seed(seed)
        tally = SemanticTally()
        for start in range(0, len(items), 250):
            batch = items[start : start + 250]
            images = torch.stack(
                [
                    transform(load_image(records[i.record_index].image), generator=gen)[-1]
                    for i in batch
                ]
            )
            verdicts = judge(classifier, images, [i.objects for i in batch])
            for item, verdict in zip(batch, verdicts, strict=True):
                tally.add(item, verdict)
        out[name] = tally.result()["all"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="a GAN model or checkpoint folder")
    parser.add_argument("--data", type=Path, default=Path("data/shapes"))
    parser.add_argument("--num", type=int, default=500, help="single-object test scenes")
    parser.add_argument("--ceiling", action="store_true", help="score the training crops")
    args = parser.parse_args()
    if args.num < 1:
        parser.error(f"--num must be >= 1 (got {args.num})")
    if (args.model is None) != args.ceiling:
        parser.error("give a MODEL or --ceiling")
    try:
        from attngan.evaluation.shapes_classifier import load_shapes_classifier
        from attngan.pipeline import Pipeline

        if args.ceiling:
            scores = ceiling(args.data, load_shapes_classifier())
            print("| images | colour | shape | size | position | all correct | images |")
            print("|---|---|---|---|---|---|---|")
            for name, r in scores.items():
                print(
                    f"| {name} | {r['colour']:.3f} | {r['shape']:.3f} | {r['size']:.3f} | "
                    f"{r['position']:.3f} | {r['all_correct']:.3f} | {r['images']} |"
                )
            return

        rows = single_object_rows(args.data, args.num)
        pictures = [load_image(args.data / "test" / r["file_name"]) for r in rows]
        scale = SIZE / pictures[0].width
        centres = np.array(
            [[(r["objects"][0]["bbox"][0] + r["objects"][0]["bbox"][2]) / 2 * scale,
              (r["objects"][0]["bbox"][1] + r["objects"][0]["bbox"][3]) / 2 * scale]
             for r in rows]
        )  # fmt: skip
        evaluation = PyramidTransform([SIZE], train=False)
        training = PyramidTransform([SIZE], train=True, flip=False, crop=True)
        gen = torch.Generator().manual_seed(0)
        sets = {
            "real test images": (torch.stack([evaluation(p)[-1] for p in pictures]), True),
            "the same, training crops": (
                torch.stack([training(p, generator=gen)[-1] for p in pictures]),
                False,
            ),
        }
        pipe = Pipeline.from_pretrained(args.model)
        out = pipe([r["text"][0] for r in rows], num_images=1, seed=0, batch_size=50)
        sets[str(args.model)] = (out.images[-1], True)
        classifier = load_shapes_classifier()
    except (AttnGANError, OSError) as err:  # a missing or unreadable model, data set or image
        parser.error(str(err))
    print(f"{len(rows)} single-object test scenes")
    print(
        "| images | frame | touch | radius | true | off | shape: centre | edge | corner "
        "| position: centre | edge | corner |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (images, aligned) in sets.items():
        p = placement(images, centres, aligned)
        s = by_group(classifier, images, rows, "shape")
        q = by_group(classifier, images, rows, "position")
        print(
            f"| {name} | {p['frame']:.3f} | {p['touch']:.3f} | {p['radius']:.1f} | "
            f"{p.get('true', float('nan')):.1f} | {p.get('off', float('nan')):.1f} | "
            f"{s['centre']:.3f} | {s['edge']:.3f} | {s['corner']:.3f} | "
            f"{q['centre']:.3f} | {q['edge']:.3f} | {q['corner']:.3f} |"
        )
    print(f"where {args.model} draws each cell's objects (the cell of their pixels' centroid):")
    for cell, counts in drawn_cells(sets[str(args.model)][0], rows).items():
        if counts:
            print(f"  {cell}: " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))


if __name__ == "__main__":
    main()
