"""How well a DAMSM model tells attributes apart on `shapes`: for real single-object test images,
the true caption against the same caption with the shape word (or the colour word) swapped for
another; prints how often the true caption scores higher at the word level (Eq. 10) and the mean
sentence-level cosine of each. With ``--positions``: for each single-object test image, which of
nine captions "a <colour> <shape> <position phrase>", one per grid cell, its sentence vector is
closest to, per true cell (does the DAMSM tell "in the center" from "on the left"?). With
``--landscape``: the real single-object scenes with their object in the centre cell, moved
sideways by k pixels, against their own captions: the mean sentence cosine for each k (does the
score still rise as an object that sits a cell off comes back towards the centre, or is it flat
there, leaving a generator that draws it off-centre no gradient back?).

    python benchmarks/damsm_attributes.py [--model runs/00000-shapes-damsm/model]
        [--positions | --landscape]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import torch
from PIL import Image

from attngan.checkpoints import load_model
from attngan.data.dataset import load_image
from attngan.data.shapes import COLOURS, POSITIONS, SHAPES
from attngan.data.transforms import PyramidTransform, to_unit_range
from attngan.errors import AttnGANError
from attngan.losses import word_match

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import padded_ids  # noqa: E402


def position_phrase(cell: str) -> str:
    """A caption phrase for one of :data:`POSITIONS`: "in the center", "at the top", "on the
    left", "in the top left" ..."""
    if cell == "center":
        return "in the center"
    if " " in cell:
        return f"in the {cell}"
    return f"at the {cell}" if cell in ("top", "bottom") else f"on the {cell}"


@torch.no_grad()
def position_choices(model, images: torch.Tensor, objects: list[dict]) -> dict[str, dict]:
    """For each image (``[N, 3, s, s]`` in [-1, 1], one object each), the position whose caption
    its sentence vector is closest to: ``{true cell: {chosen cell: count}}``."""
    text_encoder, image_encoder = model["text_encoder"].eval(), model["image_encoder"].eval()
    chosen: dict[str, dict[str, int]] = {p: dict.fromkeys(POSITIONS, 0) for p in POSITIONS}
    codes = image_encoder(images).image  # [N, D], every image in one pass
    for code, obj in zip(codes, objects, strict=True):
        captions = [f"a {obj['colour']} {obj['shape']} {position_phrase(p)}" for p in POSITIONS]
        tokens, lengths = padded_ids([model.vocab.encode(c).ids for c in captions])
        sentence = text_encoder(tokens, lengths).sentence
        best = int(torch.nn.functional.cosine_similarity(code[None], sentence).argmax())
        chosen[obj["position"]][POSITIONS[best]] += 1
    return chosen


def load_views(root: Path, rows: list[dict], size: int) -> torch.Tensor:
    """The test images of ``rows`` at ``size`` px, ``[N, 3, size, size]`` in [-1, 1]; a corrupt
    or missing image raises :class:`AttnGANError`."""
    view = PyramidTransform([size], train=False)  # the evaluation view
    return torch.stack([view(load_image(root / r["file_name"]))[-1] for r in rows])


LANDSCAPE_SHIFTS = tuple(range(-24, 25, 3))  # pixels at 64 px; a grid cell is 21 px


@torch.no_grad()
def position_landscape(
    model, images: torch.Tensor, captions: list[list[str]], shifts=LANDSCAPE_SHIFTS
) -> dict[int, float]:
    """For each shift k (pixels, negative: to the left), the mean sentence cosine between
    ``images`` ``[N, 3, s, s]`` rolled sideways by k (what leaves one side comes in at the other)
    and each image's own ``captions``."""
    text_encoder, image_encoder = model["text_encoder"].eval(), model["image_encoder"].eval()
    flat = [c for per_image in captions for c in per_image]
    owner = torch.tensor([i for i, per_image in enumerate(captions) for _ in per_image])
    sentence = text_encoder(*padded_ids([model.vocab.encode(c).ids for c in flat])).sentence
    scores = {}
    for k in shifts:
        code = image_encoder(images.roll(k, dims=3)).image[owner]
        scores[k] = torch.nn.functional.cosine_similarity(code, sentence).mean().item()
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/00000-shapes-damsm/model")
    parser.add_argument("--data", default="data/shapes")
    parser.add_argument("--images", type=int, default=300, help="test images to look at")
    probes = parser.add_mutually_exclusive_group()
    probes.add_argument("--positions", action="store_true", help="the nine-position probe")
    help_landscape = "the score of centre objects moved sideways, pixel by pixel"
    probes.add_argument("--landscape", action="store_true", help=help_landscape)
    args = parser.parse_args()
    try:
        run(args)
    except AttnGANError as exc:  # a missing file, a wrong model, a corrupt image: one line
        raise SystemExit(f"damsm_attributes: error: {exc}") from None


def run(args: argparse.Namespace) -> None:
    """The probe of :func:`main` for parsed arguments; raises :class:`AttnGANError` on bad
    input."""
    metadata = Path(args.data) / "test" / "metadata.jsonl"
    model = load_model(args.model, components=("text_encoder", "image_encoder"))
    if not metadata.is_file():
        raise AttnGANError(f"{metadata} not found: build the set with `attngan data shapes`")
    text_encoder, image_encoder = model["text_encoder"].eval(), model["image_encoder"].eval()
    size = model.config.model.image_sizes[-1]
    root = Path(args.data) / "test"
    rows = [json.loads(line) for line in metadata.open()]
    if args.landscape:  # every centre scene of the split
        rows = [
            r for r in rows if len(r["objects"]) == 1 and r["objects"][0]["position"] == "center"
        ]
        if not rows:
            raise AttnGANError(f"{metadata}: no single-object scene in the centre cell")
        images = load_views(root, rows, size)
        scores = position_landscape(model, images, [r["text"] for r in rows])
        print(f"{args.model}: {len(rows)} centre-cell test images moved sideways by k px; "
              f"mean sentence cosine with their own captions")  # fmt: skip
        print(" ".join(f"{k:+d}:{v:.3f}" for k, v in scores.items()))
        return
    rows = rows[: args.images]
    if args.positions:
        rows = [r for r in rows if len(r["objects"]) == 1]
        images = load_views(root, rows, size)
        chosen = position_choices(model, images, [r["objects"][0] for r in rows])
        print(f"{args.model}: {len(rows)} single-object test images, the closest position caption")
        for cell, counts in chosen.items():
            n = sum(counts.values())
            top = max(counts, key=counts.get)
            right = counts[cell] / max(n, 1)
            print(f"  {cell:13s} {n:4d} images: right {right:.1%}, most often {top!r}")
        return
    rng = random.Random(0)
    wins = {"shape": 0, "colour": 0}
    sentence_wins = {"shape": 0, "colour": 0}
    cosines = {"true": 0.0, "shape": 0.0, "colour": 0.0}
    count = 0
    for row in rows:
        if len(row["objects"]) != 1:
            continue
        obj, words = row["objects"][0], row["text"][0].split()
        if obj["shape"] not in words or obj["colour"] not in words:
            continue
        swap = {"shape": rng.choice([s for s in SHAPES if s != obj["shape"]]),
                "colour": rng.choice([c for c in COLOURS if c != obj["colour"]])}  # fmt: skip
        captions = [words] + [[swap[k] if w == obj[k] else w for w in words] for k in swap]
        ids = [model.vocab.encode(" ".join(c)).ids for c in captions]
        tokens, lengths = padded_ids(ids)
        image = load_image(root / row["file_name"]).resize((size, size), Image.BILINEAR)
        x = to_unit_range(image)
        with torch.no_grad():
            text, feats = text_encoder(tokens, lengths), image_encoder(x[None])
            scores = word_match(feats.regions, text.words, lengths).scores[0]  # [3 captions]
            cos = torch.nn.functional.cosine_similarity(feats.image, text.sentence)
        count += 1
        for k, key in enumerate(("shape", "colour"), start=1):
            wins[key] += int(scores[0] > scores[k])
            sentence_wins[key] += int(cos[0] > cos[k])
        for k, key in enumerate(("true", "shape", "colour")):
            cosines[key] += cos[k].item()
    print(f"{args.model}: {count} single-object test images")
    for key in ("shape", "colour"):
        word, sentence = wins[key] / count, sentence_wins[key] / count
        print(f"  true caption scores above the {key}-swapped one: word level {word:.1%}, "
              f"sentence level {sentence:.1%}")  # fmt: skip
    means = ", ".join(f"{k} {v / count:.3f}" for k, v in cosines.items())
    print(f"  mean sentence cosine: {means}")


if __name__ == "__main__":
    main()
