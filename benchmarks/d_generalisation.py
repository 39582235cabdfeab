"""Do a GAN's discriminators overfit their training images, and what tells them a fake? Each
discriminator's mean logits, in training mode as in training (BatchNorm on batches of 50, one kind
of image each), on real training scenes, real test scenes and the checkpoint's own generated
images of the test captions. Training reals far above test reals means the discriminator
memorises its data set (the case for data augmentation such as DiffAugment or ADA); both alike,
far above the fakes, means it wins on what the generator draws, not on memory. Then the test
reals degraded: with faint Gaussian noise (standard deviation 0.02 and 0.05 of the [-1, 1]
range) and Gaussian-blurred (sigma 1/48 of the side, as `train.d_blur_negatives`): a real image
that a faint noise turns "fake" tells that the discriminator reads the noise of flat regions.

    python benchmarks/d_generalisation.py RUN/checkpoints/step-00001000 [more ...] [--count 400]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor, nn

from attngan.checkpoints import load_model
from attngan.data.dataset import load_image
from attngan.data.records import SplitRecords, read_records
from attngan.data.transforms import PyramidTransform
from attngan.errors import AttnGANError
from attngan.losses import blur_images, instance_noise
from attngan.pipeline import Pipeline


@torch.no_grad()
def head_means(disc: nn.Module, images: Tensor, sentences: Tensor, batch: int = 50) -> dict:
    """``{"unconditional": mean, "conditional": mean}`` logits of ``disc`` over ``images`` with
    their ``sentences``, in batches of ``batch`` (the last may be smaller); no unconditional entry
    for a discriminator without that head."""
    sums: dict[str, float] = {}
    for start in range(0, len(images), batch):
        out = disc(images[start : start + batch], sentences[start : start + batch])
        for head in ("unconditional", "conditional"):
            logits = getattr(out, head)
            if logits is not None:
                sums[head] = sums.get(head, 0.0) + float(logits.double().sum())
    return {head: total / len(images) for head, total in sums.items()}


def split_scenes(data: SplitRecords, split: str, count: int, sizes: list[int]):
    """The first ``count`` images of a split as a pyramid (the test transform, as `attngan
    evaluate` reads them) and their first captions."""
    transform = PyramidTransform(sizes, train=False)
    records = data.records.get(split, [])[:count]
    pyramids = [transform(load_image(r.image), r.bbox) for r in records]
    stages = [torch.stack([p[k] for p in pyramids]) for k in range(len(sizes))]
    return stages, [" ".join(r.captions[0]) for r in records]


def report(checkpoint: str, root: Path, count: int) -> list[str]:
    model = load_model(checkpoint, components=("discriminators", "text_encoder"))
    discs, encoder = model["discriminators"].train(), model["text_encoder"].eval()
    sizes = model.config.model.image_sizes

    def sentences(captions: list[str]) -> Tensor:
        rows = []
        with torch.no_grad():
            for caption in captions:
                ids = model.vocab.encode(caption, strict=True).ids
                rows.append(encoder(torch.tensor([ids]), torch.tensor([len(ids)])).sentence[0])
        return torch.stack(rows)

    data = read_records(model.config.data.format, root, model.config.data.captions_per_image, False)
    train, train_captions = split_scenes(data, "train", count, sizes)
    test, test_captions = split_scenes(data, "test", count, sizes)
    fakes = Pipeline.from_pretrained(checkpoint)(test_captions, seed=0, batch_size=50).images
    own = sentences(test_captions)
    gen = torch.Generator().manual_seed(0)
    kinds = {
        "train reals": (train, sentences(train_captions)),
        "test reals": (test, own),
        "fakes": (fakes, own),
        "test + noise 0.02": ([instance_noise(x, 0.02, gen) for x in test], own),
        "test + noise 0.05": ([instance_noise(x, 0.05, gen) for x in test], own),
        "test blurred": ([blur_images(x) for x in test], own),
    }
    lines = []
    for k, disc in enumerate(discs):
        means = {kind: head_means(disc, ims[k], s) for kind, (ims, s) in kinds.items()}
        for head in means["fakes"]:
            cells = ", ".join(f"{kind} {means[kind][head]:+.2f}" for kind in kinds)
            lines.append(f"{checkpoint}  D{sizes[k]} {head:<13} mean logit: {cells}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="GAN checkpoint folders")
    parser.add_argument("--data", type=Path, default=Path("data/shapes"), help="the data folder")
    parser.add_argument("--count", type=int, default=400, help="images of each kind")
    args = parser.parse_args()
    try:
        for checkpoint in args.checkpoints:
            print("\n".join(report(checkpoint, args.data, args.count)), flush=True)
    except (AttnGANError, OSError) as exc:
        raise SystemExit(f"d_generalisation: error: {exc}") from None


if __name__ == "__main__":
    main()
