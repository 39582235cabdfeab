"""Which way do a GAN's critics pull an object that the generator drew in the wrong cell?

For the single-object `shapes` test scenes whose object is in one cell (``--cell``, default the
centre), the checkpoint's images of their captions (seed 0, one each) as drawn and moved one cell
sideways (``--move -1``: one cell to the left, ``1``: to the right; rolled, what leaves one side
comes in at the other), and the real images as they are and moved the same way. For each set:
the mean DAMSM sentence cosine and word-level score (Eq. 10) with the scene's caption, and each
discriminator's mean conditional and unconditional logit (BatchNorm in training mode, as the
game plays it). A critic that scores the moved fakes above the fakes as drawn asks the generator
to move its objects that way; the real rows show what each critic makes of the same move on the
true picture.

    python benchmarks/critic_preference.py CHECKPOINT [--cell center] [--move 1]
        [--data data/shapes] [--num 1000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from attngan.checkpoints import load_model
from attngan.data.dataset import load_image
from attngan.data.shapes import POSITIONS
from attngan.data.transforms import PyramidTransform
from attngan.errors import AttnGANError
from attngan.losses import cosine_scores, word_match
from attngan.pipeline import Pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import padded_ids  # noqa: E402
from object_placement import single_object_rows  # noqa: E402


def moved(pyramid: list[torch.Tensor], cells: int) -> list[torch.Tensor]:
    """Every stage's images ``[N, 3, s, s]`` rolled sideways by ``cells`` thirds of their side."""
    return [images.roll(round(cells * images.size(-1) / 3), dims=3) for images in pyramid]


@torch.no_grad()
def critic_scores(model, pyramid: list[torch.Tensor], captions: list[str]) -> dict[str, float]:
    """The mean critic scores of one set of images (one ``[N, 3, s, s]`` per stage) with their
    ``captions``: ``damsm cos`` and ``damsm word`` (the last stage through the model's image
    encoder), then ``D<s> cond`` / ``D<s> uncond`` for each discriminator the model holds."""
    text_encoder, image_encoder = model["text_encoder"].eval(), model["image_encoder"].eval()
    tokens, lengths = padded_ids([model.vocab.encode(c).ids for c in captions])
    text = text_encoder(tokens, lengths)
    features = image_encoder(pyramid[-1])
    word = word_match(features.regions, text.words, lengths).scores.diagonal()
    scores = {
        "damsm cos": cosine_scores(features.image, text.sentence).diagonal().mean().item(),
        "damsm word": word.mean().item(),
    }
    if "discriminators" in model.modules:
        for images, disc in zip(pyramid, model["discriminators"].train(), strict=True):
            out = disc(images, text.sentence)
            scores[f"D{images.size(-1)} cond"] = out.conditional.mean().item()
            if out.unconditional is not None:
                scores[f"D{images.size(-1)} uncond"] = out.unconditional.mean().item()
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a GAN checkpoint folder (with its discriminators)")
    parser.add_argument("--data", default="data/shapes")
    parser.add_argument("--cell", default="center", choices=POSITIONS)
    parser.add_argument("--move", type=int, default=1, help="cells to move sideways (+: right)")
    parser.add_argument("--num", type=int, default=1000, help="test scenes to look through")
    args = parser.parse_args()
    try:
        model = load_model(
            args.checkpoint,
            kind="attngan",
            components=("text_encoder", "image_encoder", "discriminators"),
        )
        rows = [r for r in single_object_rows(Path(args.data), args.num)
                if r["objects"][0]["position"] == args.cell]  # fmt: skip
        if not rows:
            raise AttnGANError(f"no single-object test scene in the {args.cell} cell")
        captions = [r["text"][0] for r in rows]
        sizes = model.config.model.image_sizes
        view = PyramidTransform(sizes, train=False)
        root = Path(args.data) / "test"
        views = [view(load_image(root / r["file_name"])) for r in rows]
        real = [torch.stack([v[k] for v in views]) for k in range(len(sizes))]
        fake = Pipeline.from_pretrained(args.checkpoint)(captions, num_images=1, seed=0).images
        fake = [images.float() for images in fake]
    except AttnGANError as exc:
        raise SystemExit(f"critic_preference: error: {exc}") from None
    sets = {
        "generated, as drawn": fake,
        f"generated, moved {args.move:+d} cell": moved(fake, args.move),
        "real": real,
        f"real, moved {args.move:+d} cell": moved(real, args.move),
    }
    table = {name: critic_scores(model, pyramid, captions) for name, pyramid in sets.items()}
    columns = list(next(iter(table.values())))
    print(f"{args.checkpoint}: {len(rows)} single-object test scenes in the {args.cell} cell")
    print("| images | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, scores in table.items():
        print(f"| {name} | " + " | ".join(f"{scores[c]:+.3f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
