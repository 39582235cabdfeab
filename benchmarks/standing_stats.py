"""Standing statistics (Brock et al. 2019, BigGAN): a copy of a GAN model whose generator's
BatchNorm running statistics are measured again for the weights it holds.

The trainer saves the moving average (EMA) of the generator's weights with the *live*
generator's BatchNorm statistics (the trainer's ``ema_update`` copies buffers), so in eval mode the
averaged weights are normalised by another network's statistics. This script runs the saved
generator in training mode over ``--batches`` batches of training captions (batch 24, random z
and conditioning noise, the trainer's batch size), accumulating a plain average of every
BatchNorm's batch statistics, and writes the model folder again with those. Evaluate both with
``attngan evaluate --model ...`` to see what the mismatch costs.

    python benchmarks/standing_stats.py MODEL OUT [--data data/shapes] [--batches 100]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from attngan.checkpoints import save_weights
from attngan.errors import AttnGANError
from attngan.pipeline import Pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import padded_ids  # noqa: E402


def training_captions(data: Path) -> list[str]:
    metadata = data / "train" / "metadata.jsonl"
    if not metadata.is_file():
        raise AttnGANError(f"{metadata} not found: a folder data set with a train split")
    captions = [c for line in metadata.open() for c in json.loads(line)["text"]]
    if not captions:
        raise AttnGANError(f"{metadata}: no captions")
    return captions


@torch.no_grad()
def remeasure_batchnorm(net: nn.Module, forward: Callable[[], object], batches: int) -> nn.Module:
    """Reset every BatchNorm's running statistics of ``net`` and measure them again as the plain
    average of their batch statistics over ``batches`` calls of ``forward`` (one forward pass of
    ``net``) in training mode; returns ``net`` in eval mode, each momentum as before."""
    if batches < 1:
        raise AttnGANError(f"--batches must be at least 1 (got {batches})")
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    net.train()
    for _ in range(batches):
        forward()
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return net.eval()


@torch.no_grad()
def standing_statistics(
    pipe: Pipeline, captions: list[str], batches: int, batch_size: int = 24, seed: int = 0
) -> nn.Module:
    """:func:`remeasure_batchnorm` for ``pipe.generator`` over batches of random ``captions``
    (random z and conditioning noise); returns the generator."""
    g, rng = pipe.generator, random.Random(seed)
    gen = torch.Generator().manual_seed(seed)

    def forward() -> None:
        ids = [pipe.encode(rng.choice(captions))[0].ids for _ in range(batch_size)]
        tokens, lengths = padded_ids(ids)
        text = pipe.text_encoder(tokens.to(pipe.device), lengths.to(pipe.device))
        z = torch.randn(batch_size, g.z_dim, generator=gen).to(pipe.device)
        ca = torch.randn(batch_size, g.condition_dim, generator=gen).to(pipe.device)
        g(z, text.sentence, text.words, text.mask, ca_noise=ca)

    return remeasure_batchnorm(g, forward, batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a GAN model folder")
    parser.add_argument("out", help="the new model folder (a copy, with the new statistics)")
    parser.add_argument("--data", default="data/shapes", help="a folder data set (its captions)")
    parser.add_argument("--batches", type=int, default=100)
    args = parser.parse_args()
    model, out = Path(args.model), Path(args.out)
    try:
        if out.resolve() == model.resolve():
            raise AttnGANError("OUT must be another folder than MODEL (MODEL is left as it is)")
        pipe = Pipeline.from_pretrained(model)
        pipe.text_encoder.eval()
        g = standing_statistics(pipe, training_captions(Path(args.data)), args.batches)
    except AttnGANError as exc:
        raise SystemExit(f"standing_stats: error: {exc}") from None
    shutil.copytree(model, out, dirs_exist_ok=True)
    save_weights(g, out / "generator.safetensors", "generator")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
