"""Can a discriminator of this architecture see shapes at all? A fresh discriminator of the
`shapes` preset (every stage's) is trained, supervised, to score real `shapes` training scenes
above their blob twins (`attngan.data.shapes.render_blob_twin`: the same scene, every object a
soft blob) with its unconditional head, then scored on test scenes: how often the shape scores
above its blob. Near 100 % within a few hundred steps means the architecture can tell shapes
from blobs; a GAN's discriminators that do not (`benchmarks/d_shape_probe.py`) are not asked to.

    python benchmarks/d_capacity.py [--df 16] [--steps 600] [--scenes 3000]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from d_shape_probe import scenes as blob_twin_scenes

from attngan.config import load_config
from attngan.models import build_discriminators


def train_and_score(
    overrides: list[str], steps: int, scenes: int, test_scenes: int = 300, batch: int = 24,
    every: int = 100,
) -> list[tuple[int, int, float]]:  # fmt: skip
    """``(size, step, test share of shape above blob)`` every ``every`` steps, per stage."""
    torch.manual_seed(0)
    config = load_config("shapes", overrides)
    sizes = config.model.image_sizes
    train_sharp, train_blob, _ = blob_twin_scenes(scenes, sizes, 0, "train")
    test_sharp, test_blob, _ = blob_twin_scenes(test_scenes, sizes, 0, "test")
    sentence = torch.zeros(1, config.model.embedding_dim)  # the unconditional head ignores it
    rows = []
    for k, disc in enumerate(build_discriminators(config.model)):
        opt = torch.optim.Adam(disc.parameters(), lr=config.train.lr_d,
                               betas=(config.train.beta1, config.train.beta2))  # fmt: skip
        gen = torch.Generator().manual_seed(0)
        for step in range(steps + 1):
            if step % every == 0 or step == steps:
                with torch.no_grad():  # train mode: BatchNorm as in training, one batch each
                    a = disc(test_sharp[k], sentence.expand(test_scenes, -1)).unconditional
                    b = disc(test_blob[k], sentence.expand(test_scenes, -1)).unconditional
                rows.append((sizes[k], step, (a > b).float().mean().item()))
            if step == steps:
                break
            idx = torch.randint(0, scenes, (batch,), generator=gen)
            s = sentence.expand(batch, -1)
            real = disc(train_sharp[k][idx], s).unconditional
            fake = disc(train_blob[k][idx], s).unconditional
            loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            loss = loss + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--df", type=int, default=16, help="discriminator width (default 16)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--scenes", type=int, default=3000, help="training scenes (default 3000)")
    args = parser.parse_args()
    for size, step, share in train_and_score([f"model.df={args.df}"], args.steps, args.scenes):
        print(f"df={args.df} D{size} step {step:4d}: test shape above blob {share:6.1%}")


if __name__ == "__main__":
    main()
