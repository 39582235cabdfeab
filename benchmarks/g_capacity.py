"""Can a generator of this architecture draw shapes at all, when told exactly what to draw? A
fresh generator of the `shapes` preset (every stage) is fitted by L1, supervised, to a fixed set
of real `shapes` training scenes, each with its own fixed z (the text zeroed, the conditioning at
its mean): the GAN's game left out. Every ``every`` steps it prints the L1 error and what the
shapes classifier reads in the last stage's reconstructions against each scene's objects (shape,
colour and position accuracy, as `attngan evaluate`'s semantic metric, and the top-shape
confidence of shape realism). High shape accuracy within a few hundred steps means the generator
can draw the named shapes; a GAN whose generator does not is not asked to (the twin of
`benchmarks/d_capacity.py`).

    python benchmarks/g_capacity.py [--gf 16] [--scenes 64] [--steps 600] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse

import torch
from d_shape_probe import scenes as shapes_scenes

from attngan.config import load_config
from attngan.errors import AttnGANError
from attngan.evaluation.evaluate import shape_confidences
from attngan.evaluation.shapes_classifier import (
    _object_cells,
    _predict,
    attribute_accuracies,
    load_shapes_classifier,
)
from attngan.models import build_generator


def fit_and_score(
    overrides: list[str], steps: int, scenes: int, batch: int = 32, every: int = 100,
    lr: float | None = None,
) -> list[dict[str, float]]:  # fmt: skip
    """Every ``every`` steps (and at 0): ``{"step", "l1", "shape", "colour", "position",
    "realism"}`` of the last stage's reconstructions of all ``scenes`` scenes (eval mode)."""
    torch.manual_seed(0)
    config = load_config("shapes", overrides)
    m = config.model
    reals, _, records = shapes_scenes(scenes, m.image_sizes, 0, "train")
    objects = [record["objects"] for record in records]
    generator = build_generator(m)
    opt = torch.optim.Adam(generator.parameters(), lr=lr or config.train.lr_g,
                           betas=(config.train.beta1, config.train.beta2))  # fmt: skip
    z = torch.randn(scenes, m.z_dim)
    classifier = load_shapes_classifier(None)
    cells = [_object_cells(objs) for objs in objects]

    def text(n: int):  # no text: a zero sentence and one zero word
        return torch.zeros(n, m.embedding_dim), torch.zeros(n, m.embedding_dim, 1), (
            torch.zeros(n, 1, dtype=torch.bool)
        )  # fmt: skip

    gen, rows = torch.Generator().manual_seed(0), []
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            generator.eval()
            with torch.no_grad():
                out = [generator(z[i : i + batch], *text(len(z[i : i + batch])), use_mean=True)
                       for i in range(0, scenes, batch)]  # fmt: skip
                images = [torch.cat([o.images[k] for o in out]) for k in range(len(reals))]
            generator.train()
            l1 = sum((x - r).abs().mean() for x, r in zip(images, reals, strict=True)) / len(reals)
            acc = attribute_accuracies(classifier, images[-1], objects)
            realism = shape_confidences(_predict(classifier, images[-1]).shape, cells).mean()
            rows.append({"step": step, "l1": float(l1), "shape": acc["shape"],
                         "colour": acc["colour"], "position": acc["position"],
                         "realism": float(realism)})  # fmt: skip
        if step == steps:
            break
        idx = torch.randperm(scenes, generator=gen)[:batch]
        out = generator(z[idx], *text(len(idx)), use_mean=True)
        loss = sum((x - r[idx]).abs().mean() for x, r in zip(out.images, reals, strict=True))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gf", type=int, default=16, help="generator width (default 16)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--scenes", type=int, default=64, help="scenes to fit (default 64)")
    parser.add_argument("--lr", type=float, default=None, help="default: the preset's lr_g")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE",
        help="more preset overrides, e.g. model.stages=1 model.base_size=64",
    )  # fmt: skip
    args = parser.parse_args()
    overrides = [f"model.gf={args.gf}", *args.set]
    try:
        rows = fit_and_score(overrides, args.steps, args.scenes, lr=args.lr)
    except AttnGANError as exc:  # a bad --set key or value
        raise SystemExit(f"g_capacity: error: {exc}") from None
    for row in rows:
        print(f"gf={args.gf} step {row['step']:4d}: L1 {row['l1']:.3f}  shape {row['shape']:6.1%}"
              f"  colour {row['colour']:6.1%}  position {row['position']:6.1%}"
              f"  shape realism {row['realism']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
