"""Do a GAN's discriminators ask for shapes? For real `shapes` test scenes and their blob twins
(the same scene with every object a soft blob of its colour, place and size,
`attngan.data.shapes.render_blob_twin`), each discriminator's unconditional and conditional
logits (with the scene's own caption; a checkpoint of a run with ``train.feature_critic`` adds
its feature critic as ``F<size>``): how often the real shape scores above its blob. Near 50 %
means the discriminator gives the generator no reason to draw shapes. And the conditional
head's caption check: how often a real image scores higher with its own caption than with the
caption's shape word swapped (`SHAPE_SWAP_WORDS`): 50 % means the head ignores the shape word.
A run with ``train.d_contrastive`` adds its discriminators' contrastive heads: how often each
real image picks its own caption among the 24 of its block (the training batch's size), how
often its own caption is nearer than the shape-swapped one, and how often the real shape is
nearer its caption than its blob twin.
Also prints the shapes classifier's top-shape confidence on both images (the scale of
`attngan evaluate`'s shape realism).

    python benchmarks/d_shape_probe.py RUN/checkpoints/step-00001000 [more checkpoints ...]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from attngan.checkpoints import load_model, load_weights
from attngan.data.shapes import SHAPE_SWAP_WORDS, render_blob_twin
from attngan.data.transforms import PyramidTransform
from attngan.errors import AttnGANError
from attngan.evaluation.evaluate import shape_confidences
from attngan.evaluation.shapes_classifier import load_shapes_classifier
from attngan.models.discriminator import FeatureDiscriminator
from attngan.text import WordSwapper
from attngan.training.gan import CRITIC_FILE


def scenes(count: int, sizes: list[int], seed: int, split: str = "test"):
    """Sharp and blob pyramids (one ``[N, 3, s, s]`` per size) of the first ``count`` scenes of
    ``split``, and each scene's record (one caption, its objects)."""
    transform = PyramidTransform(sizes, train=False)
    sharp, blob, records = [], [], []
    for i in range(count):
        real, twin, record = render_blob_twin(split, i, seed, 128)
        sharp.append(transform(real))
        blob.append(transform(twin))
        records.append(record)
    stack = lambda rows: [torch.stack([r[k] for r in rows]) for k in range(len(sizes))]  # noqa: E731
    return stack(sharp), stack(blob), records


@torch.no_grad()
def probe(checkpoint: str, count: int, seed: int) -> list[str]:
    model = load_model(checkpoint, components=("discriminators", "text_encoder", "image_encoder"))
    # train mode, as in training: BatchNorm normalises the real batch and the blob batch each by
    # its own statistics (the running statistics mix reals and fakes); nothing is saved
    discs, encoder = list(model["discriminators"].train()), model["text_encoder"].eval()
    sizes = list(model.config.model.image_sizes)
    names = [f"D{size}" for size in sizes]
    critic_file = Path(checkpoint) / CRITIC_FILE
    if critic_file.is_file():  # train.feature_critic's critic, on the last stage ("F<size>")
        critic = FeatureDiscriminator(
            model["image_encoder"].eval(), model.config.model.embedding_dim,
            model.config.train.feature_critic_width,
        )  # fmt: skip
        discs.append(load_weights(critic, critic_file).train())
        sizes.append(sizes[-1])
        names.append(f"F{sizes[-1]}")
    sharp, blob, records = scenes(count, sizes, seed)  # the critic's size repeats the last
    captions = [record["text"][0] for record in records]
    swapper, rng = WordSwapper(SHAPE_SWAP_WORDS, model.vocab), random.Random(0)
    sentences, swapped, valid = [], [], []
    for caption in captions:
        ids = model.vocab.encode(caption, strict=True).ids
        (other,), (ok,) = swapper([ids], [len(ids)], rng)
        for row, into in ((ids, sentences), (other, swapped)):
            into.append(encoder(torch.tensor([row]), torch.tensor([len(row)])).sentence[0])
        valid.append(ok)
    sentence, wrong, valid = torch.stack(sentences), torch.stack(swapped), torch.tensor(valid)
    lines = []
    for name, disc, s, b in zip(names, discs, sharp, blob, strict=True):
        real, twin = disc(s, sentence), disc(b, sentence)
        for head in ("unconditional", "conditional"):
            x, y = getattr(real, head), getattr(twin, head)
            if x is None:
                continue
            above = (x > y).float().mean()
            lines.append(f"{checkpoint}  {name} {head:<13} shape above blob {above:6.1%}  "
                         f"logit {x.mean():+.2f} vs {y.mean():+.2f}")  # fmt: skip
        own, other = real.conditional[valid], disc(s[valid], wrong[valid]).conditional
        lines.append(f"{checkpoint}  {name} conditional   own caption above shape-swapped "
                     f"{(own > other).float().mean():6.1%}  logit {own.mean():+.2f} vs "
                     f"{other.mean():+.2f}")  # fmt: skip
        if getattr(disc, "contrast", None) is not None:
            lines.append(f"{checkpoint}  {name} contrastive   " +
                         contrastive_reading(disc, s, b, sentence, wrong, valid))  # fmt: skip
    return lines


@torch.no_grad()
def contrastive_reading(disc, sharp, blob, sentence, wrong, valid, block: int = 24) -> str:
    """``train.d_contrastive``'s head on real images: own caption picked among each block of
    ``block`` captions; own caption nearer than the shape-swapped one; the real shape nearer its
    caption than its blob twin (cosines)."""
    unit = torch.nn.functional.normalize
    image, twin = (
        unit(disc.embed(disc.features(sharp)), dim=1),
        unit(disc.embed(disc.features(blob)), dim=1),
    )
    own, swapped = unit(sentence, dim=1), unit(wrong, dim=1)
    picked = []
    for i in range(0, len(image), block):
        cos = image[i : i + block] @ own[i : i + block].t()
        picked.append(cos.argmax(1) == torch.arange(len(cos)))
    picked = torch.cat(picked).float().mean()
    near, far = (image * own).sum(1), (image * swapped).sum(1)
    swap = (near[valid] > far[valid]).float().mean()
    outline = (near > (twin * own).sum(1)).float().mean()
    return (f"own caption picked of {block} {picked:6.1%}, own above shape-swapped {swap:6.1%}, "
            f"shape above blob {outline:6.1%}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "checkpoints", nargs="+", help="GAN checkpoint folders (with discriminators)"
    )
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0, help="the shapes data set's seed")
    args = parser.parse_args()
    sharp, blob, _ = scenes(args.scenes, [64], args.seed)
    classifier = load_shapes_classifier(None).eval()
    for name, images in (("shapes", sharp[0]), ("blob twins", blob[0])):
        with torch.no_grad():
            preds = classifier(images)
        cells = [[int(c)] for c in preds.occupancy.argmax(1)]  # the most confident object
        conf = shape_confidences(preds.shape, cells)
        print(f"shapes classifier, top-shape confidence on {name}: {conf.mean():.3f}")
    try:
        for checkpoint in args.checkpoints:
            print("\n".join(probe(checkpoint, args.scenes, args.seed)))
    except AttnGANError as exc:
        raise SystemExit(f"d_shape_probe: error: {exc}") from None


if __name__ == "__main__":
    main()
