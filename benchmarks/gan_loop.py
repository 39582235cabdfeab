"""Does this GAN learn shapes at all, with everything but the game taken away? The `shapes`
preset's generator (one stage at 64 px, the text zeroed) against one discriminator's
unconditional head, in a plain loop: the non-saturating loss, Adam, no text, no DAMSM, no
refinement stage, no trainer. Every ``every`` steps it prints what the shapes classifier reads in
240 samples (fixed z, eval mode): objects per image, shape realism (the top shape's confidence at
each occupied cell, right or wrong) and the share of objects drawn crisply (confidence > 0.9),
beside the same for real images; it saves a grid of 64 samples there too.

One switch at a time tries a cure: ``--d-head patch`` (one logit per 8x8 cell), ``--d-norm none
--r1 G`` (a discriminator without BatchNorm, with the R1 penalty), ``--recon W`` (a cVAE-GAN: an
encoder gives half the batch its real image's z, which the generator must reconstruct, L1 weight
W, KL weight ``--kl``), ``--d-recon W`` (FastGAN's self-supervised discriminator), ``--d-batch
joint`` (BatchNorm over reals and fakes as one batch), ``--lr-d`` (the discriminator's own
rate). ``--simple`` keeps the images with one object on a plain background. A run is
deterministic for its arguments; ``--every`` is one of them (scoring draws the generator's
conditioning noise from torch's global generator, which training draws from too).

    python benchmarks/gan_loop.py OUT [--data data/shapes] [--simple] [--steps 3000] [--every 500]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torchvision.utils import save_image

from attngan.data.records import read_records
from attngan.errors import AttnGANError
from attngan.evaluation import inception
from attngan.evaluation.evaluate import shape_confidences
from attngan.evaluation.shapes_classifier import _predict, load_shapes_classifier
from attngan.models.discriminator import Discriminator
from attngan.models.generator import Generator
from attngan.models.layers import UpBlock

SIZE, Z_DIM, TEXT_DIM = 64, 100, 128


def load_images(root: Path, simple: bool) -> Tensor:
    """The training split's images at 64 px (bicubic), uint8 ``[N, 3, 64, 64]``; with ``simple``
    only those with one object on a plain background."""
    records = read_records("folder", root, 1, False).records["train"]
    if simple:
        records = [
            r for r in records
            if len(r.attributes["objects"]) == 1 and r.attributes["background"]["kind"] == "plain"
        ]  # fmt: skip
    if not records:
        raise AttnGANError(f"no training images to use in {root}")
    arrays = [
        np.asarray(Image.open(r.image).convert("RGB").resize((SIZE, SIZE), Image.BICUBIC))
        for r in records
    ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


class UncondGenerator(nn.Module):
    """The preset's generator, one stage at 64 px, fed a zero sentence and one zero word."""

    def __init__(self, gf: int) -> None:
        super().__init__()
        self.net = Generator(stages=1, base_size=SIZE, gf=gf, residual_blocks=1,
                             embedding_dim=TEXT_DIM, conditional=False)  # fmt: skip

    def forward(self, z: Tensor) -> Tensor:
        b = z.size(0)
        mask = torch.zeros(b, 1, dtype=torch.bool)
        return self.net(z, torch.zeros(b, TEXT_DIM), torch.zeros(b, TEXT_DIM, 1), mask).images[-1]


class UncondDiscriminator(nn.Module):
    """The preset's 64 px discriminator: its unconditional head (``head="global"``), or one logit
    per cell of its 8x8 map (``"patch"``); ``norm="none"`` drops its BatchNorm."""

    def __init__(self, df: int, head: str = "global", norm: str = "batch") -> None:
        super().__init__()
        self.net = Discriminator(SIZE, df, TEXT_DIM)
        if norm == "none":
            for block in [*self.net.down, *self.net.squeeze, self.net.cond_joint]:
                block.bn = None
        self.patch = nn.Conv2d(4 * df, 1, 3, 1, 1) if head == "patch" else None

    def forward(self, x: Tensor, map8: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Logits; with ``map8`` also the 8x8 feature map."""
        for block in self.net.down[:3]:  # 64 -> 8 px
            x = block(x)
        h8 = x
        if self.patch is None:
            x = self.net.down[3](x)
            logits = self.net.unconditional(x)
        else:
            logits = self.patch(x).flatten()
        return (logits, h8) if map8 else logits


class Decoder(nn.Module):
    """The discriminator's 8x8 map (``4 df`` channels) -> an image ``2**ups`` times larger:
    nearest x2, 3x3 conv, BatchNorm, GLU per step, then a 3x3 conv and tanh."""

    def __init__(self, df: int, ups: int) -> None:
        super().__init__()
        widths = [4 * df >> i for i in range(ups + 1)]
        self.ups = nn.ModuleList(UpBlock(widths[i], widths[i + 1]) for i in range(ups))
        self.out = nn.Conv2d(widths[-1], 3, 3, 1, 1)

    def forward(self, h: Tensor) -> Tensor:
        for up in self.ups:
            h = up(h)
        return torch.tanh(self.out(h))


class SelfSupervised(nn.Module):
    """FastGAN's self-supervised discriminator (Liu et al. 2021), with L1 for LPIPS: from the 8x8
    map of a real image, one decoder redraws the whole image (64 px), another the quarter of the
    image under a random quarter of the map (4x4 -> 32 px, full resolution). The discriminator
    must keep what an image shows, not only the cue that tells this generator's fakes."""

    def __init__(self, df: int) -> None:
        super().__init__()
        self.whole, self.part = Decoder(df, 3), Decoder(df, 3)

    def loss(self, h: Tensor, real: Tensor, gen: torch.Generator) -> Tensor:
        qy, qx = (int(v) for v in torch.randint(0, 2, (2,), generator=gen))
        part = self.part(h[:, :, 4 * qy : 4 * qy + 4, 4 * qx : 4 * qx + 4])
        crop = real[:, :, 32 * qy : 32 * qy + 32, 32 * qx : 32 * qx + 32]
        return (self.whole(h) - real).abs().mean() + (part - crop).abs().mean()


class Encoder(nn.Module):
    """Image -> (mu, log variance) of its z: the discriminator's trunk and a linear layer."""

    def __init__(self, df: int) -> None:
        super().__init__()
        self.trunk = Discriminator(SIZE, df, TEXT_DIM, unconditional=False)
        self.fc = nn.Linear(8 * df * 16, 2 * Z_DIM)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.fc(self.trunk.features(x).flatten(1))
        return h[:, :Z_DIM], h[:, Z_DIM:]


def crispness(classifier: nn.Module, images: Tensor) -> dict[str, float]:
    """uint8 images -> objects per image, mean top-shape confidence at the occupied cells, and
    the share of those above 0.9."""
    preds = _predict(classifier, images)
    occupied = preds.occupancy > 0
    cells = [row.nonzero().flatten().tolist() for row in occupied]
    top = shape_confidences(preds.shape, cells)
    if not top.numel():
        return {"objects": 0.0, "realism": float("nan"), "crisp": float("nan")}
    return {"objects": occupied.sum(1).float().mean().item(), "realism": top.mean().item(),
            "crisp": (top > 0.9).float().mean().item()}  # fmt: skip


def to_uint8(images: Tensor) -> Tensor:
    """Images in [-1, 1] -> the uint8 tensor that the classifier reads as pixels."""
    return inception.to_uint8(images).to(torch.uint8)


def fmt(stats: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.3f}" for k, v in stats.items())


def run(args: argparse.Namespace) -> list[dict[str, float]]:
    """Train; every ``args.every`` steps (and at the end) a row of ``crispness`` for the samples
    (and, with ``--recon``, ``recon_*`` for the reconstructions of 240 real images)."""
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = load_images(Path(args.data), args.simple)
    g = UncondGenerator(args.gf)
    d = UncondDiscriminator(args.df, args.d_head, args.d_norm)
    selfsup = SelfSupervised(args.df) if args.d_recon > 0 else None
    enc = Encoder(args.df) if args.recon > 0 else None
    g_params = list(g.parameters()) + (list(enc.parameters()) if enc else [])
    opt_g = torch.optim.Adam(g_params, args.lr, betas=(args.beta1, 0.999))
    d_params = list(d.parameters()) + (list(selfsup.parameters()) if selfsup else [])
    opt_d = torch.optim.Adam(d_params, args.lr_d or args.lr, betas=(args.beta1, 0.999))
    classifier = load_shapes_classifier(None)
    fixed = torch.randn(64, Z_DIM, generator=torch.Generator().manual_seed(args.seed + 7))
    scored = torch.randn(240, Z_DIM, generator=torch.Generator().manual_seed(args.seed + 8))
    print(f"{len(images)} images; real: {fmt(crispness(classifier, images[:240]))}", flush=True)
    gen, rows, start = torch.Generator().manual_seed(args.seed + 1), [], time.time()
    for step in range(1, args.steps + 1):
        real = images[torch.randint(0, len(images), (args.batch,), generator=gen)]
        real = real.float() / 127.5 - 1
        z = torch.randn(args.batch, Z_DIM, generator=gen)
        if enc is not None:  # the first half reconstructs its real image from the encoder's z
            half = args.batch // 2
            mu, logvar = enc(real[:half])
            eps = torch.randn(half, Z_DIM, generator=gen)
            z = torch.cat([mu + eps * (0.5 * logvar).exp(), z[half:]])
        fake = g(z)
        if args.r1 > 0:
            real.requires_grad_(True)
        if args.d_batch == "joint":  # one BatchNorm batch of reals and fakes
            logits, h8 = d(torch.cat([real, fake.detach()]), map8=True)
            real_logits, fake_logits, h8 = logits[: len(real)], logits[len(real) :], h8[: len(real)]
        else:  # the release's: reals and fakes normalised each by their own statistics
            real_logits, h8 = d(real, map8=True)
            fake_logits = d(fake.detach())
        d_loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        if selfsup is not None:
            d_loss = d_loss + args.d_recon * selfsup.loss(h8, real.detach(), gen)
        if args.r1 > 0:
            (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
            d_loss = d_loss + 0.5 * args.r1 * grad.pow(2).flatten(1).sum(1).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        d.requires_grad_(False)  # the generator's step leaves the discriminator's gradients out
        if args.d_batch == "joint":
            g_loss = F.softplus(-d(torch.cat([real.detach(), fake]))[len(real) :]).mean()
        else:
            g_loss = F.softplus(-d(fake)).mean()
        if enc is not None:
            rec = (fake[:half] - real[:half].detach()).abs().mean()
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
            g_loss = g_loss + args.recon * rec + args.kl * kl
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        d.requires_grad_(True)
        if step % args.every == 0 or step == args.steps:
            row = {"step": step, **score(g, enc, images, classifier, fixed, scored, out, step)}
            rows.append(row)
            stats = fmt({k: v for k, v in row.items() if k != "step"})
            print(f"step {step} ({time.time() - start:.0f} s): d {d_loss.item():.3f} "
                  f"g {g_loss.item():.3f} {stats}", flush=True)  # fmt: skip
    return rows


@torch.no_grad()
def score(g, enc, images, classifier, fixed, scored, out: Path, step: int) -> dict[str, float]:
    g.eval()
    save_image(g(fixed) * 0.5 + 0.5, out / f"step-{step:05d}.png", nrow=8)
    samples = torch.cat([g(scored[i : i + 60]) for i in range(0, len(scored), 60)])
    row = crispness(classifier, to_uint8(samples))
    if enc is not None:
        enc.eval()
        real = images[:240].float() / 127.5 - 1
        rec = torch.cat([g(enc(real[i : i + 60])[0]) for i in range(0, len(real), 60)])
        row.update({f"recon_{k}": v for k, v in crispness(classifier, to_uint8(rec)).items()})
        save_image(torch.cat([real[:32], rec[:32]]) * 0.5 + 0.5, out / f"recon-{step:05d}.png")
        enc.train()
    g.train()
    return row


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder for the sample grids")
    parser.add_argument("--data", default="data/shapes", help="a `shapes` data folder")
    parser.add_argument("--simple", action="store_true", help="one object, plain background")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument(
        "--lr", type=float, default=2e-4, help="Adam rate (the discriminator's too, without --lr-d)"
    )
    parser.add_argument(
        "--lr-d",
        type=float,
        default=0.0,
        help="the discriminator's own Adam rate (0: --lr; TTUR when they differ)",
    )
    parser.add_argument("--beta1", type=float, default=0.5, help="both players' Adam beta1")
    parser.add_argument("--gf", type=int, default=16)
    parser.add_argument("--df", type=int, default=16)
    parser.add_argument("--d-head", choices=("global", "patch"), default="global")
    parser.add_argument("--d-norm", choices=("batch", "none"), default="batch")
    parser.add_argument(
        "--d-recon",
        type=float,
        default=0.0,
        help="weight of the self-supervised discriminator's L1 (0: off)",
    )
    parser.add_argument(
        "--d-batch",
        choices=("separate", "joint"),
        default="separate",
        help="BatchNorm over reals and fakes apart (the release) or together",
    )
    parser.add_argument("--r1", type=float, default=0.0, help="R1 penalty weight gamma")
    parser.add_argument("--recon", type=float, default=0.0, help="cVAE-GAN's L1 weight (0: off)")
    parser.add_argument("--kl", type=float, default=0.01, help="cVAE-GAN's KL weight")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main() -> None:
    args = make_parser().parse_args()
    try:
        run(args)
    except AttnGANError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
