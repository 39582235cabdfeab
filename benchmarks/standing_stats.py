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
def standing_statistics(
    pipe: Pipeline, captions: list[str], batches: int, batch_size: int = 24, seed: int = 0
) -> nn.Module:
    """Measure every BatchNorm's running mean and variance of ``pipe.generator`` again, as the
    plain average over ``batches`` training-mode batches of random ``captions``; returns the
    generator, in eval mode, with its momentum as before."""
    if batches < 1:
        raise AttnGANError(f"--batches must be at least 1 (got {batches})")
    g, rng = pipe.generator, random.Random(seed)
    norms = [m for m in g.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    gen = torch.Generator().manual_seed(seed)
    g.train()
    for _ in range(batches):
        ids = [pipe.encode(rng.choice(captions))[0].ids for _ in range(batch_size)]
        tokens, lengths = padded_ids(ids)
        text = pipe.text_encoder(tokens.to(pipe.device), lengths.to(pipe.device))
        z = torch.randn(batch_size, g.z_dim, generator=gen).to(pipe.device)
        ca = torch.randn(batch_size, g.condition_dim, generator=gen).to(pipe.device)
        g(z, text.sentence, text.words, text.mask, ca_noise=ca)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return g.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a GAN model folder")
    parser.add_argument("out", help="the new model folder (a copy, with the new statistics)")
    parser.add_argument("--data", default="data/shapes", help="a folder data set (its captions)")
    parser.add_argument("--batches", type=int, default=100)
    args = parser.parse_args()
    pipe = Pipeline.from_pretrained(args.model)
    pipe.text_encoder.eval()
    g = standing_statistics(pipe, training_captions(Path(args.data)), args.batches)
    out = Path(args.out)
    shutil.copytree(args.model, out, dirs_exist_ok=True)
    save_weights(g, out / "generator.safetensors", "generator")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
