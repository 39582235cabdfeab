"""How well a DAMSM model tells attributes apart on `shapes`: for real single-object test images,
the true caption against the same caption with the shape word (or the colour word) swapped for
another; prints how often the true caption scores higher at the word level (Eq. 10) and the mean
sentence-level cosine of each.

    python benchmarks/damsm_attributes.py [--model runs/00000-shapes-damsm/model]
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
from attngan.data.shapes import COLOURS, SHAPES
from attngan.data.transforms import to_unit_range
from attngan.errors import AttnGANError
from attngan.losses import word_match

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import padded_ids  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/00000-shapes-damsm/model")
    parser.add_argument("--data", default="data/shapes")
    parser.add_argument("--images", type=int, default=300, help="test images to look at")
    args = parser.parse_args()
    metadata = Path(args.data) / "test" / "metadata.jsonl"
    try:
        model = load_model(args.model, components=("text_encoder", "image_encoder"))
        if not metadata.is_file():
            raise AttnGANError(f"{metadata} not found: build the set with `attngan data shapes`")
    except AttnGANError as exc:
        raise SystemExit(f"damsm_attributes: error: {exc}") from None
    text_encoder, image_encoder = model["text_encoder"].eval(), model["image_encoder"].eval()
    size = model.config.model.image_sizes[-1]
    root = Path(args.data) / "test"
    rows = [json.loads(line) for line in metadata.open()][: args.images]
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
