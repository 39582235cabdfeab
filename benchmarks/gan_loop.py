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
W, KL weight ``--kl``; with ``--labels`` that half is drawn with its real image's label),
``--d-recon W`` (FastGAN's self-supervised discriminator), ``--d-batch joint`` (BatchNorm over
reals and fakes as one batch), ``--lr-d`` (the discriminator's own
rate), ``--n-dis K`` (K discriminator steps per generator step), ``--ema D`` (also score a
moving average of the generator's weights, decay D; ``--ema-standing N`` also scores it with
its BatchNorm statistics measured again over N batches), ``--labels --ac W`` (AC-GAN's auxiliary
shape classifier in the discriminator, weight W; ``--ac-g`` the generator's own weight on it;
``--ac W`` without ``--labels``: an unconditional game whose discriminator also learns to name
the real images' shapes), ``--ms W`` (MSGAN's mode-seeking term).
``--g-norm pixel`` (the generator's BatchNorm replaced by ProGAN's pixelwise normalisation),
``--g-coord`` (CoordConv in the generator).
``--imle W`` adds conditional IMLE's term (Li & Malik 2018; Li, Zhang & Malik 2019): for each real
image the nearest (mean squared difference) of ``--imle-pool`` fresh samples is pulled to it by
L1, weight W (with ``--labels`` the samples are drawn with the image's label; ``--imle-loss lap``
matches and pulls by the Laplacian pyramid's L1 instead); ``--gan 0`` takes the game away (no
discriminator at all). ``--d-adv E`` trains the discriminator on FGSM-perturbed images (Rob-GAN).
``--simple`` keeps the images with one object on a plain background. A run is deterministic for
its arguments; ``--every`` is one of them (scoring draws the generator's conditioning noise from
torch's global generator, which training draws from too).

    python benchmarks/gan_loop.py OUT [--data data/shapes] [--simple] [--steps 3000] [--every 500]
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from standing_stats import remeasure_batchnorm
from torch import Tensor, nn
from torchvision.transforms import functional as TF
from torchvision.utils import save_image

from attngan.data.records import read_records
from attngan.data.shapes import SHAPES
from attngan.errors import AttnGANError
from attngan.evaluation import inception
from attngan.evaluation.evaluate import shape_confidences
from attngan.evaluation.shapes_classifier import _predict, load_shapes_classifier
from attngan.losses import mode_seeking_loss, r1_penalty
from attngan.models.discriminator import Discriminator
from attngan.models.generator import Generator
from attngan.models.layers import UpBlock
from attngan.training.gan import ema_decay, ema_update
from attngan.training.loop import resolve_device

SIZE, Z_DIM, TEXT_DIM = 64, 100, 128


def _records(root: Path, simple: bool) -> list:
    records = read_records("folder", root, 1, False).records["train"]
    if simple:
        records = [
            r for r in records
            if len(r.attributes["objects"]) == 1 and r.attributes["background"]["kind"] == "plain"
        ]  # fmt: skip
    if not records:
        raise AttnGANError(f"no training images to use in {root}")
    return records


def shape_labels(root: Path) -> Tensor:
    """The shape of the one object of each ``simple`` training image (index into ``SHAPES``),
    in ``load_images(root, simple=True)``'s order."""
    return torch.tensor([SHAPES.index(r.attributes["objects"][0]["shape"])
                         for r in _records(root, True)])  # fmt: skip


def load_images(root: Path, simple: bool, zoom: bool = False) -> Tensor:
    """The training split's images at 64 px (bicubic), uint8 ``[N, 3, 64, 64]``; with ``simple``
    only those with one object on a plain background. With ``zoom`` (a control for the objects'
    size in pixels) each image is instead the 64 px window of the image at its own size centred
    on the object: the object keeps its full-size pixels and loses its position."""
    records = _records(root, simple)
    if zoom:
        arrays = [_window(np.asarray(Image.open(r.image).convert("RGB")), r) for r in records]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    arrays = [
        np.asarray(Image.open(r.image).convert("RGB").resize((SIZE, SIZE), Image.BICUBIC))
        for r in records
    ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _window(image: np.ndarray, record) -> np.ndarray:
    """The ``SIZE`` px window of ``image`` centred on the record's first object; the plain
    background (its corner's colour) extends the image where the window leaves it."""
    pad = SIZE // 2
    side = image.shape[0]
    canvas = np.empty((side + 2 * pad, side + 2 * pad, 3), image.dtype)
    canvas[...] = image[0, 0]
    canvas[pad : pad + side, pad : pad + side] = image
    x0, y0, x1, y1 = record.attributes["objects"][0]["bbox"]  # in the image's pixels
    x, y = (x0 + x1) // 2, (y0 + y1) // 2  # the object's centre, the window's corner in canvas
    return canvas[y : y + SIZE, x : x + SIZE]


def unzoom(images: Tensor) -> Tensor:
    """``--zoom``'s images (uint8, object near the centre) -> the classifier's scale: each pasted
    in the middle of a canvas twice its side filled with its border's median colour (the plain
    background), then halved (bicubic, antialiased)."""
    x = images.float()
    border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], 2)
    canvas = border.median(2).values[:, :, None, None].repeat(1, 1, 2 * SIZE, 2 * SIZE)
    canvas[:, :, SIZE // 2 : SIZE // 2 + SIZE, SIZE // 2 : SIZE // 2 + SIZE] = x
    small = F.interpolate(canvas, size=SIZE, mode="bicubic", antialias=True)
    return small.clamp(0, 255).round().to(torch.uint8)


class PixelNorm(nn.Module):
    """ProGAN's pixelwise feature normalisation (Karras et al. 2018), with a BatchNorm's affine
    parameters: each position's feature vector divided by its root mean square over channels,
    then scaled and shifted per channel. No batch statistics, so every sample is drawn alone."""

    def __init__(self, channels: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        x = x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + self.eps)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight.view(shape) + self.bias.view(shape)


def swap_modules(module: nn.Module, swap: Callable[[nn.Module], nn.Module | None]) -> nn.Module:
    """In place: every submodule of ``module`` for which ``swap(child)`` gives a module is
    replaced by it (and not searched further); the others are searched in turn."""
    for name, child in module.named_children():
        new = swap(child)
        if new is None:
            swap_modules(child, swap)
        else:
            setattr(module, name, new)
    return module


def replace_batchnorm(module: nn.Module, norm: str) -> nn.Module:
    """Every BatchNorm in ``module`` (in place) -> :class:`PixelNorm` (``"pixel"``) or nothing
    (``"none"``); ``"batch"`` keeps them."""
    if norm == "batch":
        return module

    def swap(child: nn.Module) -> nn.Module | None:
        if not isinstance(child, nn.modules.batchnorm._BatchNorm):
            return None
        return PixelNorm(child.num_features) if norm == "pixel" else nn.Identity()

    return swap_modules(module, swap)


class CoordConv2d(nn.Module):
    """CoordConv (Liu et al. 2018): ``conv`` with two more input channels, each position's x and
    y in [-1, 1], so a convolution knows where it is; it starts as ``conv`` (the new input
    channels' weights zero)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = nn.Conv2d(conv.in_channels + 2, conv.out_channels, conv.kernel_size,
                              conv.stride, conv.padding, bias=conv.bias is not None)  # fmt: skip
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, : conv.in_channels] = conv.weight
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"))[None].expand(b, -1, -1, -1)
        return self.conv(torch.cat([x, grid], 1))


def add_coords(module: nn.Module) -> nn.Module:
    """Every 3x3 or larger convolution in ``module`` (in place) -> :class:`CoordConv2d`."""
    return swap_modules(
        module,
        lambda c: CoordConv2d(c) if isinstance(c, nn.Conv2d) and c.kernel_size[0] > 1 else None,
    )


class UncondGenerator(nn.Module):
    """The preset's generator, one stage at 64 px, fed a zero sentence and one zero word; with
    ``classes`` the sentence is instead a learnt embedding of the label ``y``, taken at the
    conditioning's mean (no CA noise)."""

    def __init__(self, gf: int, classes: int = 0, ca_sample: bool = True) -> None:
        super().__init__()
        self.net = Generator(stages=1, base_size=SIZE, gf=gf, residual_blocks=1,
                             embedding_dim=TEXT_DIM, conditional=classes > 0,
                             ca_sample=ca_sample and classes == 0)  # fmt: skip
        self.embed = nn.Embedding(classes, TEXT_DIM) if classes else None

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        b = z.size(0)
        mask = torch.zeros(b, 1, dtype=torch.bool, device=z.device)
        if self.embed is not None:
            sentence = self.embed(y)
        else:
            sentence = torch.zeros(b, TEXT_DIM, device=z.device)
        words = torch.zeros(b, TEXT_DIM, 1, device=z.device)
        return self.net(z, sentence, words, mask).images[-1]


class UncondDiscriminator(nn.Module):
    """The preset's 64 px discriminator: its unconditional head (``head="global"``), or one logit
    per cell of its 8x8 map (``"patch"``); ``norm="none"`` drops its BatchNorm."""

    def __init__(
        self, df: int, head: str = "global", norm: str = "batch", classes: int = 0
    ) -> None:
        super().__init__()
        if classes and head == "patch":
            raise AttnGANError("--labels needs --d-head global")
        self.net = Discriminator(SIZE, df, TEXT_DIM)
        # projection discriminator (Miyato & Koyama 2018): + <embed(y), pooled features>
        self.embed = nn.Embedding(classes, 8 * df) if classes else None
        if self.embed is not None:  # starts as the unconditional head (BatchNorm'd features
            nn.init.zeros_(self.embed.weight)  # summed over 4x4 would swamp its logits)
        if norm == "none":
            for block in [*self.net.down, *self.net.squeeze, self.net.cond_joint]:
                block.bn = None
        self.patch = nn.Conv2d(4 * df, 1, 3, 1, 1) if head == "patch" else None

    def forward(
        self, x: Tensor, y: Tensor | None = None, map8: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Logits (for labels ``y`` with ``classes``); with ``map8`` also the 8x8 feature map."""
        for block in self.net.down[:3]:  # 64 -> 8 px
            x = block(x)
        h8 = x
        if self.patch is None:
            x = self.net.down[3](x)
            logits = self.net.unconditional(x)
            if self.embed is not None:
                logits = logits + (self.embed(y) * x.sum((2, 3))).sum(1)
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


def _sn(module: nn.Module, on: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(module) if on else module


class ResUp(nn.Module):
    """SNGAN's generator block: BN, ReLU, nearest x2, 3x3 conv, BN, ReLU, 3x3 conv, plus the
    upsampled input through a 1x1 conv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
        self.c1, self.c2 = nn.Conv2d(cin, cout, 3, 1, 1), nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2.0)
        h = self.c2(F.relu(self.bn2(self.c1(h))))
        return h + self.skip(F.interpolate(x, scale_factor=2.0))


class ResDown(nn.Module):
    """SNGAN's discriminator block: (ReLU,) 3x3 conv, ReLU, 3x3 conv, 2x2 average pool, plus the
    pooled input through a 1x1 conv; spectral norm on every layer with ``sn``."""

    def __init__(self, cin: int, cout: int, sn: bool, first: bool = False) -> None:
        super().__init__()
        self.first = first
        self.c1 = _sn(nn.Conv2d(cin, cout, 3, 1, 1), sn)
        self.c2 = _sn(nn.Conv2d(cout, cout, 3, 1, 1), sn)
        self.skip = _sn(nn.Conv2d(cin, cout, 1), sn)

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.first else F.relu(x)
        h = F.avg_pool2d(self.c2(F.relu(self.c1(h))), 2)
        return h + self.skip(F.avg_pool2d(x, 2))


class ResNetGenerator(nn.Module):
    """SNGAN's ResNet generator at 64 px: z -> 4x4 map of ``16 ch`` channels -> four ResUp
    blocks halving the width (to ``ch`` at 64 px) -> BN, ReLU, 3x3 conv, tanh."""

    def __init__(self, ch: int, classes: int = 0) -> None:
        super().__init__()
        widths = [16 * ch, 8 * ch, 4 * ch, 2 * ch, ch]
        self.embed = nn.Embedding(classes, TEXT_DIM) if classes else None  # joins z, with y
        self.fc = nn.Linear(Z_DIM + (TEXT_DIM if classes else 0), 16 * widths[0])
        self.blocks = nn.Sequential(*(ResUp(widths[i], widths[i + 1]) for i in range(4)))
        self.out = nn.Sequential(nn.BatchNorm2d(ch), nn.ReLU(), nn.Conv2d(ch, 3, 3, 1, 1))

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], 1)
        return torch.tanh(self.out(self.blocks(self.fc(z).view(z.size(0), -1, 4, 4))))


def _four_blocks(blocks: nn.ModuleList, x: Tensor) -> tuple[Tensor, Tensor]:
    """A 64 px discriminator's four halving blocks: (the 8x8 map, the 4x4 map)."""
    for block in blocks[:3]:
        x = block(x)
    return x, blocks[3](x)


class ResNetDiscriminator(nn.Module):
    """SNGAN's ResNet discriminator at 64 px: four ResDown blocks (64 -> 4 px, ``ch`` to
    ``8 ch`` channels), ReLU, a sum over positions, a linear logit; spectral norm with ``sn``."""

    def __init__(self, ch: int, sn: bool = True, classes: int = 0) -> None:
        super().__init__()
        widths = [3, ch, 2 * ch, 4 * ch, 8 * ch]
        self.embed = _sn(nn.Embedding(classes, 8 * ch), sn) if classes else None
        self.blocks = nn.ModuleList(
            ResDown(widths[i], widths[i + 1], sn, first=i == 0) for i in range(4)
        )
        self.fc = _sn(nn.Linear(8 * ch, 1), sn)

    def forward(
        self, x: Tensor, y: Tensor | None = None, map8: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        h8, h4 = _four_blocks(self.blocks, x)
        pooled = F.relu(h4).sum((2, 3))
        logits = self.fc(pooled).flatten()
        if self.embed is not None:  # projection
            logits = logits + (self.embed(y) * pooled).sum(1)
        return (logits, h8) if map8 else logits


class FeatureCritic(nn.Module):
    """A second discriminator that sees images through a trained DAMSM's frozen CNN image
    encoder (eval mode; gradients reach the images): the encoder's 8x8 map (``8 c`` channels),
    then a trainable 3x3 conv, LeakyReLU, a 4x4 stride-2 conv, LeakyReLU and a linear logit,
    spectral norm on each. Its features already tell what the captions name (shape included,
    for a DAMSM that learnt it), like a Projected GAN's (Sauer et al. 2021) pretrained network."""

    def __init__(self, damsm: str, width: int = 64, scales: str = "last") -> None:
        super().__init__()
        from attngan.checkpoints import load_model

        encoder = load_model(damsm, components=("image_encoder",))  # a DAMSM or an AttnGAN
        self.encoder = encoder.modules["image_encoder"]
        if not hasattr(self.encoder, "down"):
            raise AttnGANError(f"{damsm}: --d-features needs a DAMSM with the CNN image encoder")
        self.encoder.requires_grad_(False)
        channels = self.encoder.region_proj.in_channels
        self.scales = scales
        if scales == "all":
            # Projected GAN's multi-scale reading: one small patch critic on each of the
            # encoder's four maps (the stem's, then each down-step's), their logits averaged
            # over patches and summed over scales; the fine maps keep the outline's pixels
            widths = [self.encoder.stem.conv.out_channels]
            widths += [block.conv.out_channels for block in self.encoder.down]
            self.head = nn.ModuleList(
                nn.Sequential(
                    _sn(nn.Conv2d(w, width, 4, 2, 1), True), nn.LeakyReLU(0.2),
                    _sn(nn.Conv2d(width, 1, 3, 1, 1), True),
                )
                for w in widths
            )  # fmt: skip
            return
        self.head = nn.Sequential(
            _sn(nn.Conv2d(channels, width, 3, 1, 1), True), nn.LeakyReLU(0.2),
            _sn(nn.Conv2d(width, width, 4, 2, 1), True), nn.LeakyReLU(0.2),
            nn.Flatten(), _sn(nn.Linear(width * 16, 1), True),
        )  # fmt: skip

    def train(self, mode: bool = True) -> FeatureCritic:
        super().train(mode)
        self.encoder.eval()  # frozen, BatchNorm on its running statistics always
        return self

    def forward(self, images: Tensor) -> Tensor:
        enc = self.encoder
        if images.shape[-1] != enc.input_size:
            images = F.interpolate(images, size=enc.input_size, mode="bilinear")
        if self.scales == "all":
            maps = enc.feature_maps(images)
            return sum(head(m).mean((1, 2, 3)) for head, m in zip(self.head, maps, strict=True))
        return self.head(enc.down(enc.stem(images))).flatten()


def pair_loss(real_logits: Tensor, fake_logits: Tensor, hinge: bool) -> Tensor:
    """The discriminator's loss: hinge, or the non-saturating BCE."""
    if hinge:
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: Tensor, hinge: bool) -> Tensor:
    return -fake_logits.mean() if hinge else F.softplus(-fake_logits).mean()


def blur(images: Tensor, sigma: float) -> Tensor:
    """A Gaussian blur of standard deviation ``sigma`` px (kernel out to 3 sigma), reflecting
    at the borders. The kernel of the trainer's ``losses.blur_images``, but through
    torchvision's v1 functional, which the runs in docs/evaluation.md used (v2's output differs
    by float rounding, up to 5e-7 on random images, so those runs might not reproduce)."""
    radius = max(1, math.ceil(3 * sigma))
    return TF.gaussian_blur(images, [2 * radius + 1] * 2, [sigma, sigma])


def _dcgan_init(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(nn.Module):
    """DCGAN's generator (Radford et al. 2016) at 64 px: z as a 1x1 map, 4x4 transposed convs
    (stride 2 after the first), BatchNorm and ReLU, ``8 ch`` channels at 4x4 down to ``ch`` at
    32 px, tanh; N(0, 0.02) weights. With ``classes`` a label embedding joins z."""

    def __init__(self, ch: int, classes: int = 0) -> None:
        super().__init__()
        self.embed = nn.Embedding(classes, TEXT_DIM) if classes else None
        widths = [Z_DIM + (TEXT_DIM if classes else 0), 8 * ch, 4 * ch, 2 * ch, ch]
        layers: list[nn.Module] = []
        for i in range(4):
            stride, pad = (1, 0) if i == 0 else (2, 1)
            layers += [nn.ConvTranspose2d(widths[i], widths[i + 1], 4, stride, pad, bias=False),
                       nn.BatchNorm2d(widths[i + 1]), nn.ReLU()]  # fmt: skip
        self.net = nn.Sequential(*layers, nn.ConvTranspose2d(ch, 3, 4, 2, 1, bias=False), nn.Tanh())
        self.apply(_dcgan_init)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], 1)
        return self.net(z[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    """DCGAN's discriminator at 64 px: 4x4 stride-2 convs, ``ch`` to ``8 ch`` channels,
    BatchNorm after all but the first, LeakyReLU 0.2, a 4x4 conv to one logit. With ``classes``
    a projection term on the pooled 4x4 features (its embedding starts at zero)."""

    def __init__(self, ch: int, classes: int = 0) -> None:
        super().__init__()
        widths = [3, ch, 2 * ch, 4 * ch, 8 * ch]
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1, bias=False),
                nn.BatchNorm2d(widths[i + 1]) if i else nn.Identity(),
                nn.LeakyReLU(0.2),
            )  # fmt: skip
            for i in range(4)
        )
        self.out = nn.Conv2d(8 * ch, 1, 4, 1, 0, bias=False)
        self.apply(_dcgan_init)
        self.embed = nn.Embedding(classes, 8 * ch) if classes else None
        if self.embed is not None:
            nn.init.zeros_(self.embed.weight)

    def forward(
        self, x: Tensor, y: Tensor | None = None, map8: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        h8, x = _four_blocks(self.blocks, x)
        logits = self.out(x).flatten()
        if self.embed is not None:
            logits = logits + (self.embed(y) * x.mean((2, 3))).sum(1)
        return (logits, h8) if map8 else logits


def crispness(
    classifier: nn.Module, images: Tensor, labels: Tensor | None = None
) -> dict[str, float]:
    """uint8 images -> objects per image, mean top-shape confidence at the occupied cells, and
    the share of those above 0.9; with ``labels`` (each image's shape) also ``right``, the share
    of objects whose top shape is their image's."""
    preds = _predict(classifier, images)
    occupied = preds.occupancy > 0
    cells = [row.nonzero().flatten().tolist() for row in occupied]
    top = shape_confidences(preds.shape, cells)
    if not top.numel():
        empty = {"objects": 0.0, "realism": float("nan"), "crisp": float("nan")}
        return empty if labels is None else {**empty, "right": float("nan")}
    row = {"objects": occupied.sum(1).float().mean().item(), "realism": top.mean().item(),
           "crisp": (top > 0.9).float().mean().item()}  # fmt: skip
    if labels is not None:
        picked = preds.shape.argmax(-1)[occupied]  # row-major, as the cells above
        row["right"] = (
            (picked == labels[:, None].expand_as(occupied)[occupied]).float().mean().item()
        )
    return row


def laplacian_l1(a: Tensor, b: Tensor, levels: int = 4) -> Tensor:
    """Per image, the L1 distance of two images' Laplacian pyramids (GLO's Lap1, Bojanowski et
    al. 2018): at each of ``levels`` band-pass levels and the last low-pass one, the mean absolute
    difference, summed over the levels, so fine detail (outlines) weighs as much as the coarse
    picture (the background's tone), which dominates a plain L1. (Fewer levels for images too
    small for ``levels``.)"""
    total = a.new_zeros(a.size(0))
    for _ in range(min(levels, int(math.log2(min(a.shape[-2:]))))):  # down to 1 px at most
        low_a, low_b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        band_a = a - F.interpolate(low_a, scale_factor=2, mode="nearest")
        band_b = b - F.interpolate(low_b, scale_factor=2, mode="nearest")
        total = total + (band_a - band_b).abs().flatten(1).mean(1)
        a, b = low_a, low_b
    return total + (a - b).abs().flatten(1).mean(1)


def image_distance(a: Tensor, b: Tensor, kind: str) -> Tensor:
    """Per image: mean squared difference (``l2``), mean absolute (``l1``) or ``laplacian_l1``."""
    if kind == "lap":
        return laplacian_l1(a, b)
    diff = (a - b).flatten(1)
    return diff.pow(2).mean(1) if kind == "l2" else diff.abs().mean(1)


@torch.no_grad()
def imle_pick(
    g: nn.Module,
    real: Tensor,
    y: Tensor | None,
    pool: int,
    gen: torch.Generator,
    kind: str = "l2",
) -> Tensor:
    """Conditional IMLE's matching: for each real image, of ``pool`` fresh z (each drawn in a
    batch of one z per real image, so BatchNorm sees batches like the training step's), the one
    whose sample (with the image's label ``y``) is nearest to it by ``image_distance``."""
    b = real.size(0)
    zs = torch.randn(pool, b, Z_DIM, generator=gen).to(real.device)
    best = torch.full((b,), float("inf"), device=real.device)
    pick = zs[0].clone()
    for z in zs:
        dist = image_distance(g(z, y), real, kind)
        nearer = dist < best
        best = torch.where(nearer, dist, best)
        pick[nearer] = z[nearer]
    return pick


def adversarial(
    d: nn.Module, images: Tensor, y: Tensor | None, towards: float, eps: float
) -> Tensor:
    """One FGSM step of size ``eps`` on ``images`` (detached) that moves the discriminator's
    logit up (``towards`` = 1: fakes made to look real) or down (-1: reals made to look fake),
    clamped to [-1, 1]: the examples an adversarially trained discriminator learns on (Rob-GAN,
    Liu & Hsieh 2019), so that small changes, which the generator could otherwise use to fool
    it, no longer move its verdict."""
    x = images.detach().requires_grad_(True)
    d.requires_grad_(False)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(d(x, y).sum(), x)
    d.requires_grad_(True)
    return (x + towards * eps * grad.sign()).clamp(-1, 1).detach()


def to_uint8(images: Tensor) -> Tensor:
    """Images in [-1, 1] -> the uint8 tensor that the classifier reads as pixels."""
    return inception.to_uint8(images).to(torch.uint8)


def fmt(stats: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.3f}" for k, v in stats.items())


def calibrate(root: Path, simple: bool, count: int = 480, seed: int = 0) -> dict[str, dict]:
    """``crispness`` (and ``right``, with ``simple``) of ``count`` real training images as they
    are and degraded: Gaussian noise, blur, or through a smaller image and back (bilinear):
    what a score of the samples means in pixels."""
    images = load_images(root, simple)[:count]
    labels = shape_labels(root)[:count] if simple else None
    x = images.float() / 127.5 - 1
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))

    def via(side: int) -> Tensor:
        small = F.interpolate(x, size=side, mode="bilinear", antialias=True)
        return F.interpolate(small, size=SIZE, mode="bilinear")

    cases = {"as they are": x, "noise 0.05": x + 0.05 * noise, "noise 0.15": x + 0.15 * noise,
             "blur 1 px": blur(x, 1.0), "blur 2 px": blur(x, 2.0), "via 32 px": via(32),
             "via 16 px": via(16)}  # fmt: skip
    classifier = load_shapes_classifier(None)
    return {name: crispness(classifier, to_uint8(v), labels) for name, v in cases.items()}


@torch.no_grad()
def overfitting(
    d: nn.Module,
    train: Tensor,
    held: Tensor,
    train_labels: Tensor | None,
    held_labels: Tensor | None,
    classes: int,
    sigma: float = 0.0,
) -> dict[str, float]:
    """The discriminator's mean logit on training and on held-out real images (uint8, in batches
    of 60, by their own batch statistics as its step sees reals, through ``--d-blur``'s
    ``sigma`` when it has one; a throwaway copy, so its running statistics stay as they were),
    and their difference: near 0 while it judges unseen real images as the ones it learns from,
    large when it has learnt those by heart."""
    d = copy.deepcopy(d).train()
    dev = next(d.parameters()).device

    def mean_logit(images: Tensor, labels: Tensor | None) -> float:
        x = images.to(dev).float() / 127.5 - 1
        x = blur(x, sigma) if sigma > 0 else x
        y = labels[: len(x)].to(dev) if classes else None  # (labels come with classes)
        logits = [d(x[i : i + 60], None if y is None else y[i : i + 60])
                  for i in range(0, len(x), 60)]  # fmt: skip
        return torch.cat(logits).mean().item()

    seen, unseen = mean_logit(train, train_labels), mean_logit(held, held_labels)
    return {"d_train": seen, "d_held": unseen, "d_gap": seen - unseen}


def readout(h8: Tensor, pool: str) -> Tensor:
    """The discriminator's 8x8 map -> one vector per image: the mean or the max over positions."""
    return h8.mean((2, 3)) if pool == "mean" else h8.amax((2, 3))


def probe_d(args: argparse.Namespace, held: int = 500) -> list[tuple[int, float, float]]:
    """No game: the preset's discriminator (``--df``) and a linear head on its pooled 8x8 map
    (``args.probe_d``: mean or max), trained together to name the shape of real simple images
    (cross-entropy, Adam at ``--lr-d`` or ``--lr``, ``--beta1``/``--beta2``, ``--batch``); every
    ``--every`` steps ``(step, batch loss, accuracy on the last held images)``. Can the
    discriminator tell shapes apart, and how fast, when that is all it is asked?"""
    torch.manual_seed(args.seed)
    root = Path(args.data)
    images, labels = load_images(root, True), shape_labels(root)
    if len(images) <= held:
        raise AttnGANError(f"--probe-d needs more than {held} simple images in {root}")
    test_x, test_y = images[-held:].float() / 127.5 - 1, labels[-held:]
    images, labels = images[:-held], labels[:-held]
    d, head = UncondDiscriminator(args.df), nn.Linear(4 * args.df, len(SHAPES))
    params = list(d.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, args.lr_d or args.lr, betas=(args.beta1, args.beta2))
    gen, rows = torch.Generator().manual_seed(args.seed + 1), []
    for step in range(1, args.steps + 1):
        pick = torch.randint(0, len(images), (args.batch,), generator=gen)
        _, h8 = d(images[pick].float() / 127.5 - 1, map8=True)
        loss = F.cross_entropy(head(readout(h8, args.probe_d)), labels[pick])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % args.every == 0 or step == args.steps:
            d.eval()
            with torch.no_grad():
                _, h8 = d(test_x, map8=True)
                right = (head(readout(h8, args.probe_d)).argmax(1) == test_y).float().mean()
            d.train()
            rows.append((step, loss.item(), right.item()))
            print(f"step {step}: loss {loss.item():.3f} held-out shape accuracy {right:.3f}",
                  flush=True)  # fmt: skip
    return rows


def run(args: argparse.Namespace) -> list[dict[str, float]]:
    """Train; every ``args.every`` steps (and at the end) a row of ``crispness`` for the samples
    (and, with ``--recon``, ``recon_*`` for the reconstructions of 240 real images)."""
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.n_dis < 1 or not 0 <= args.ema < 1:
        raise AttnGANError("--n-dis must be at least 1 and --ema in [0, 1)")
    if args.ema_standing and not args.ema:
        raise AttnGANError("--ema-standing needs --ema")
    if args.zoom and not args.simple:
        raise AttnGANError("--zoom needs --simple (one object per image)")
    if args.labels and not args.simple or args.labels and args.d_batch == "joint":
        raise AttnGANError("--labels needs --simple, and works without joint batches")
    if args.ac and not args.simple:
        raise AttnGANError("--ac needs --simple (each image's one shape is its label)")
    if args.ac_g and not (args.ac and args.labels):
        raise AttnGANError("--ac-g needs --ac and --labels (a shape to ask the generator for)")
    dev = resolve_device(args.device)  # a bad --device fails before the data is read
    images = load_images(Path(args.data), args.simple, args.zoom)
    classes = len(SHAPES) if args.labels else 0
    # the real images' shapes: the generator's and discriminator's labels with --labels, and
    # (with --ac alone) only the auxiliary classifier's, the game itself unconditional
    labels = shape_labels(Path(args.data)) if classes or args.ac else None
    held = held_labels = None
    if args.held_out:  # real images the discriminator never learns from
        if not Path(args.held_out).is_dir():  # (the data reader's message would name --data)
            raise AttnGANError(f"--held-out folder not found: {args.held_out}")
        held = load_images(Path(args.held_out), args.simple, args.zoom)[:240]
        held_labels = shape_labels(Path(args.held_out))[:240] if classes else None
    generators = {"attngan": UncondGenerator, "resnet": ResNetGenerator, "dcgan": DCGANGenerator}
    if args.imle < 0 or args.imle_pool < 1 or args.gan < 0:
        raise AttnGANError("--imle and --gan must be >= 0 and --imle-pool at least 1")
    if args.gan == 0 and (args.imle == 0 or args.d_features or args.ac or args.d_recon
                          or args.n_dis > 1):  # fmt: skip
        raise AttnGANError(
            "--gan 0 takes the discriminators away: it needs --imle and no discriminator switches"
        )
    if args.imle and args.recon:
        raise AttnGANError("--imle and --recon are two reconstruction terms: pick one")
    if args.g_arch == "attngan":  # with IMLE its sample must be a function of z alone
        g = UncondGenerator(args.gf, classes, ca_sample=not args.imle)
    else:
        g = generators[args.g_arch](args.gf, classes)
    g = replace_batchnorm(g, args.g_norm)
    if args.g_coord:
        add_coords(g)
    if args.d_arch == "resnet":
        d = ResNetDiscriminator(args.df, sn=args.d_norm != "none", classes=classes)
    elif args.d_arch == "dcgan":
        d = DCGANDiscriminator(args.df, classes)
    else:
        d = UncondDiscriminator(args.df, args.d_head, args.d_norm, classes)
    selfsup = SelfSupervised(args.df) if args.d_recon > 0 else None
    critic = None
    if args.d_features:
        critic = FeatureCritic(args.d_features, scales=args.d_features_scales).train()
    enc = Encoder(args.df) if args.recon > 0 else None
    g_params = list(g.parameters()) + (list(enc.parameters()) if enc else [])
    betas = (args.beta1, args.beta2)
    opt_g = torch.optim.Adam(g_params, args.lr, betas=betas)
    d_params = list(d.parameters()) + (list(selfsup.parameters()) if selfsup else [])
    d_params += list(critic.head.parameters()) if critic else []
    # AC-GAN's auxiliary classifier (Odena et al. 2017): the shape from D's 8x8 map, pooled by
    # its max over positions (the mean hides the small object: --probe-d)
    ac = nn.Linear(4 * args.df, len(SHAPES)) if args.ac else None
    d_params += list(ac.parameters()) if ac else []
    opt_d = torch.optim.Adam(d_params, args.lr_d or args.lr, betas=betas)
    # the generator's weight on the classifier's verdict: AC-GAN's (--ac) unless --ac-g says;
    # none without labels (nothing to ask for): then the classifier only shapes D's features
    ac_g = (args.ac_g if args.ac_g is not None else args.ac) if args.labels else 0.0
    classifier = load_shapes_classifier(None)
    fixed = torch.randn(64, Z_DIM, generator=torch.Generator().manual_seed(args.seed + 7))
    scored = torch.randn(240, Z_DIM, generator=torch.Generator().manual_seed(args.seed + 8))
    if classes:  # each shape in turn
        fixed, scored = (fixed, torch.arange(64) % classes), (scored, torch.arange(240) % classes)
    else:
        fixed, scored = (fixed, None), (scored, None)
    real_stats = crispness(classifier, unzoom(images[:240]) if args.zoom else images[:240],
                           None if labels is None else labels[:240])  # fmt: skip
    print(f"{len(images)} images; real: {fmt(real_stats)}", flush=True)
    for module in (g, d, selfsup, critic, enc, ac):
        if module is not None:
            module.to(dev)
    images = images.to(dev)
    labels = None if labels is None else labels.to(dev)
    fixed = tuple(None if t is None else t.to(dev) for t in fixed)
    scored = tuple(None if t is None else t.to(dev) for t in scored)
    gen, rows, start = torch.Generator().manual_seed(args.seed + 1), [], time.time()
    hinge = args.loss == "hinge"
    g_ema = copy.deepcopy(g).eval().requires_grad_(False) if args.ema else None

    def batch() -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        pick = torch.randint(0, len(images), (args.batch,), generator=gen).to(dev)
        real = images[pick].float() / 127.5 - 1
        z = torch.randn(args.batch, Z_DIM, generator=gen).to(dev)
        y_real = y_fake = None
        if classes:
            y_fake = torch.randint(0, classes, (args.batch,), generator=gen).to(dev)
        if labels is not None:
            y_real = labels[pick]
        return real, z, y_real, y_fake

    def seen(real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        if args.d_blur > 0:  # the discriminator sees both through the same low-pass filter
            return blur(real, args.d_blur), blur(fake, args.d_blur)
        return real, fake

    def d_update(real: Tensor, fake_seen: Tensor, y_real, y_fake) -> Tensor:
        """One step of the discriminator(s) on these reals and (detached) fakes."""
        if args.d_adv > 0:  # Rob-GAN: the discriminator learns on its own worst small changes
            real = adversarial(d, real, y_real, -1.0, args.d_adv)
            fake_seen = adversarial(d, fake_seen, y_fake, 1.0, args.d_adv)
        if args.r1 > 0:
            real.requires_grad_(True)
        if args.d_batch == "joint":  # one BatchNorm batch of reals and fakes
            logits, h8 = d(torch.cat([real, fake_seen.detach()]), map8=True)
            real_logits, fake_logits, h8 = logits[: len(real)], logits[len(real) :], h8[: len(real)]
        else:  # the release's: reals and fakes normalised each by their own statistics
            real_logits, h8 = d(real, y_real, map8=True)
            fake_logits = d(fake_seen.detach(), y_fake)
        d_loss = pair_loss(real_logits, fake_logits, hinge)
        if ac is not None:  # the classifier learns the shapes of real images only
            d_loss = d_loss + args.ac * F.cross_entropy(ac(readout(h8, args.ac_pool)), y_real)
        if selfsup is not None:
            d_loss = d_loss + args.d_recon * selfsup.loss(h8, real.detach(), gen)
        if critic is not None:  # the same loss for the second discriminator
            d_loss = d_loss + pair_loss(critic(real.detach()), critic(fake_seen.detach()), hinge)
        if args.r1 > 0:
            d_loss = d_loss + 0.5 * args.r1 * r1_penalty(real_logits, real)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        return d_loss

    for step in range(1, args.steps + 1):
        for _ in range(args.n_dis - 1):  # the discriminator's extra steps, on batches of their own
            real, z, y_real, y_fake = batch()
            with torch.no_grad():
                fake = g(z, y_fake)
            d_update(*seen(real, fake), y_real, y_fake)
        real, z, y_real, y_fake = batch()
        if enc is not None:  # the first half reconstructs its real image from the encoder's z
            half = args.batch // 2
            mu, logvar = enc(real[:half])
            eps = torch.randn(half, Z_DIM, generator=gen).to(dev)
            z = torch.cat([mu + eps * (0.5 * logvar).exp(), z[half:]])
            if classes:  # ... and with its real image's label: the shape to draw is given
                y_fake = torch.cat([y_real[:half], y_fake[half:]])
        if args.ms > 0:  # MSGAN: half the batch drawn again with other z (the same labels)
            k = args.batch // 2
            z2 = torch.randn(k, Z_DIM, generator=gen).to(dev)
            both = g(
                torch.cat([z, z2]), None if y_fake is None else torch.cat([y_fake, y_fake[:k]])
            )
            fake = both[: args.batch]
            seeking = mode_seeking_loss(both[:k], both[args.batch :], z[:k], z2)
        else:  # (no game: no sample of a random z is needed)
            fake = g(z, y_fake) if args.gan > 0 else None
        target = real.detach()  # IMLE's target: the real image as it is (``seen`` may blur it)
        if args.gan > 0:
            real, fake_seen = seen(real, fake)
            d_loss = d_update(real, fake_seen, y_real, y_fake)
            d.requires_grad_(False)  # the generator's step leaves the discriminator's gradients out
            if args.d_batch == "joint":
                fake_logits = d(torch.cat([real.detach(), fake_seen]))[len(real) :]
            elif ac_g:  # and the generator is rewarded for the shape it was asked for
                fake_logits, fake_h8 = d(fake_seen, y_fake, map8=True)
            else:
                fake_logits = d(fake_seen, y_fake)
            g_loss = args.gan * generator_loss(fake_logits, hinge)
        else:  # no game: the generator learns from IMLE's term alone
            d_loss = g_loss = torch.zeros((), device=dev)
        if args.imle > 0:  # each real image pulls the nearest of its pool's samples to itself
            match, pull = ("lap", "lap") if args.imle_loss == "lap" else ("l2", "l1")
            z_near = imle_pick(g, target, y_real if classes else None, args.imle_pool, gen, match)
            near = g(z_near, y_real if classes else None)
            g_loss = g_loss + args.imle * image_distance(near, target, pull).mean()
        if args.ms > 0:
            g_loss = g_loss + args.ms * seeking
        if ac_g:
            g_loss = g_loss + ac_g * F.cross_entropy(ac(readout(fake_h8, args.ac_pool)), y_fake)
        if critic is not None:
            critic.head.requires_grad_(False)
            g_loss = g_loss + generator_loss(critic(fake_seen), hinge)
            critic.head.requires_grad_(True)
        if enc is not None:
            rec = (fake[:half] - real[:half].detach()).abs().mean()
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
            g_loss = g_loss + args.recon * rec + args.kl * kl
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        d.requires_grad_(True)
        if g_ema is not None:
            ema_update(g_ema, g, ema_decay(args.ema, step))  # as the trainer's EMA
        if step % args.every == 0 or step == args.steps:
            row = {"step": step, **score(g, enc, images, classifier, fixed, scored, out, step,
                                         args.zoom, args.score_train, labels=labels)}  # fmt: skip
            if g_ema is not None:  # the average's samples, in eval mode
                ema = score(g_ema, None, images, classifier, fixed, scored, out, step, args.zoom,
                            name="ema")  # fmt: skip
                row.update({f"ema_{k}": v for k, v in ema.items()})
                if args.ema_standing:
                    standing = standing_copy(g_ema, args.ema_standing, args.batch, classes, dev)
                    emas = score(standing, None, images, classifier, fixed, scored, out, step,
                                 args.zoom, name="emas")  # fmt: skip
                    row.update({f"emas_{k}": v for k, v in emas.items()})
            if held is not None:
                row.update(
                    overfitting(d, images[:240], held, labels, held_labels, classes, args.d_blur)
                )
            rows.append(row)
            stats = fmt({k: v for k, v in row.items() if k != "step"})
            print(f"step {step} ({time.time() - start:.0f} s): d {d_loss.item():.3f} "
                  f"g {g_loss.item():.3f} {stats}", flush=True)  # fmt: skip
    return rows


@torch.no_grad()
def standing_copy(g: nn.Module, batches: int, batch: int, classes: int, dev) -> nn.Module:
    """A copy of ``g`` whose BatchNorm running statistics are the plain average of its batch
    statistics over ``batches`` training-mode batches of fresh z (and random labels), in eval
    mode: the statistics of its own weights (``benchmarks/standing_stats.py`` for the trainer's
    models). Its z and labels come from a generator of their own; its conditioning noise, as in
    scoring, from torch's global one."""
    g = copy.deepcopy(g)
    gen = torch.Generator().manual_seed(12345)

    def forward() -> None:
        z = torch.randn(batch, Z_DIM, generator=gen).to(dev)
        g(z, torch.randint(0, classes, (batch,), generator=gen).to(dev) if classes else None)

    return remeasure_batchnorm(g, forward, batches)


@torch.no_grad()
def score(g, enc, images, classifier, fixed, scored, out: Path, step: int,
          zoom: bool = False, batch_stats: bool = False, name: str = "step",
          labels: Tensor | None = None) -> dict[str, float]:  # fmt: skip
    """``crispness`` of the samples from ``scored`` (through :func:`unzoom` with ``zoom``), drawn
    in eval mode or, with ``batch_stats``, in training mode (batches of 60); the grid of the
    ``fixed`` samples goes to ``out/{name}-{step}.png``; with ``enc``, the same for the
    reconstructions of the first 240 images (drawn with their ``labels``, when given)."""
    prep = unzoom if zoom else (lambda x: x)  # noqa: E731
    was_training = g.training
    if batch_stats:  # a throwaway copy in training mode: BatchNorm by each batch's statistics
        g = copy.deepcopy(g).train()
    else:
        g.eval()
    save_image(g(*fixed) * 0.5 + 0.5, out / f"{name}-{step:05d}.png", nrow=8)
    z, y = scored
    samples = torch.cat([g(z[i : i + 60], None if y is None else y[i : i + 60])
                         for i in range(0, len(z), 60)]).cpu()  # fmt: skip
    row = crispness(classifier, prep(to_uint8(samples)), None if y is None else y.cpu())
    if enc is not None:
        enc.eval()
        real = images[:240].float() / 127.5 - 1
        y = None if labels is None else labels[:240]
        rec = torch.cat([g(enc(real[i : i + 60])[0], None if y is None else y[i : i + 60])
                         for i in range(0, len(real), 60)]).cpu()  # fmt: skip
        recs = crispness(classifier, prep(to_uint8(rec)), None if y is None else y.cpu())
        row.update({f"recon_{k}": v for k, v in recs.items()})
        pair = torch.cat([real[:32].cpu(), rec[:32]])
        save_image(pair * 0.5 + 0.5, out / f"recon-{step:05d}.png")
        enc.train()
    g.train(was_training)
    return row


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder for the sample grids")
    parser.add_argument("--data", default="data/shapes", help="a `shapes` data folder")
    parser.add_argument("--simple", action="store_true", help="one object, plain background")
    parser.add_argument(
        "--zoom",
        action="store_true",
        help="with --simple: 64 px windows of the full-size images (objects twice as large)",
    )
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
    parser.add_argument("--beta2", type=float, default=0.999, help="both players' Adam beta2")
    parser.add_argument(
        "--loss", choices=("ns", "hinge"), default="ns", help="non-saturating BCE or hinge"
    )
    parser.add_argument(
        "--g-arch",
        choices=("attngan", "resnet", "dcgan"),
        default="attngan",
        help="the preset's generator, SNGAN's ResNet (width --gf at 64 px) or DCGAN's (--gf at "
        "32 px)",
    )
    parser.add_argument(
        "--d-arch",
        choices=("attngan", "resnet", "dcgan"),
        default="attngan",
        help="the preset's discriminator, SNGAN's ResNet (width --df at 32 px; spectral "
        "norm unless --d-norm none) or DCGAN's (--df at 32 px)",
    )
    parser.add_argument("--gf", type=int, default=16)
    parser.add_argument("--df", type=int, default=16)
    parser.add_argument(
        "--g-norm",
        choices=("batch", "pixel", "none"),
        default="batch",
        help="the generator's normalisation: BatchNorm (every architecture's own), ProGAN's "
        "pixelwise normalisation in its place, or none",
    )
    parser.add_argument(
        "--g-coord",
        action="store_true",
        help="CoordConv: every convolution of the generator also sees its x and y",
    )
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
    parser.add_argument(
        "--d-blur",
        type=float,
        default=0.0,
        help="blur what the discriminator sees, reals and fakes alike (Gaussian sigma in px; "
        "0: off): it can no longer tell fakes by pixel-level texture",
    )
    parser.add_argument(
        "--d-features",
        default="",
        metavar="DAMSM",
        help="add a second discriminator on the frozen CNN image encoder of this DAMSM (or "
        "AttnGAN) model folder ('': off)",
    )
    parser.add_argument("--r1", type=float, default=0.0, help="R1 penalty weight gamma")
    parser.add_argument("--recon", type=float, default=0.0, help="cVAE-GAN's L1 weight (0: off)")
    parser.add_argument("--kl", type=float, default=0.01, help="cVAE-GAN's KL weight")
    parser.add_argument(
        "--labels",
        action="store_true",
        help="with --simple: a class-conditional GAN on the object's shape (the generator's "
        "input, a projection discriminator); scores add `right`, the share drawn as asked",
    )
    parser.add_argument(
        "--ac",
        type=float,
        default=0.0,
        help="with --simple: weight of AC-GAN's auxiliary classifier (the shape from the "
        "discriminator's 8x8 map; it learns on real images; with --labels the generator is "
        "scored by it too, without them it only teaches the discriminator shapes; 0: off)",
    )
    parser.add_argument(
        "--ac-g",
        type=float,
        default=None,
        help="with --ac --labels: the generator's weight on the classifier (default: --ac's; "
        "0: the classifier teaches only the discriminator)",
    )
    parser.add_argument(
        "--ac-pool",
        choices=("max", "mean"),
        default="max",
        help="how --ac's classifier pools the 8x8 map over positions",
    )
    parser.add_argument(
        "--score-train",
        action="store_true",
        help="draw the scored samples in training mode (each batch's BatchNorm statistics) "
        "instead of eval mode (the running ones)",
    )
    parser.add_argument(
        "--ms",
        type=float,
        default=0.0,
        help="weight of MSGAN's mode-seeking term (the trainer's train.mode_seeking; 0: off): "
        "different z must give different images, of the same label with --labels",
    )
    parser.add_argument(
        "--n-dis", type=int, default=1, help="discriminator steps per generator step (SNGAN: 5)"
    )
    parser.add_argument(
        "--ema",
        type=float,
        default=0.0,
        help="also score an exponential moving average of the generator's weights with this "
        "decay (0: off; the trainer's is 0.999, with its warm-up), as ema_* columns and "
        "ema-*.png grids",
    )
    parser.add_argument(
        "--ema-standing",
        type=int,
        default=0,
        help="with --ema: also score the average after measuring its BatchNorm statistics again "
        "over this many training-mode batches of fresh z (BigGAN's standing statistics; the "
        "average otherwise holds the live generator's), as emas_* columns (0: off)",
    )
    parser.add_argument(
        "--d-features-scales",
        choices=("last", "all"),
        default="last",
        help="which of --d-features' encoder maps its critic reads: the last (8x8) alone, or "
        "all four (64 to 8 px) through one patch critic each, Projected GAN's multi-scale heads",
    )
    parser.add_argument(
        "--imle",
        type=float,
        default=0.0,
        help="weight of conditional IMLE's term (0: off): each real image's nearest of "
        "--imle-pool samples is pulled to it by L1 (the generator's CA noise is then off, so a "
        "sample is a function of z)",
    )
    parser.add_argument("--imle-pool", type=int, default=8, help="--imle's samples per real image")
    parser.add_argument(
        "--imle-loss",
        choices=("pixel", "lap"),
        default="pixel",
        help="--imle's distances: pixel (matched by mean squared difference, pulled by L1) or "
        "lap (both by the Laplacian pyramid's L1, GLO's Lap1: outlines weigh as much as tones)",
    )
    parser.add_argument(
        "--gan",
        type=float,
        default=1.0,
        help="weight of the generator's adversarial loss; 0 plays no game at all (no "
        "discriminator steps; needs --imle)",
    )
    parser.add_argument(
        "--d-adv",
        type=float,
        default=0.0,
        help="train the discriminator on FGSM-perturbed reals and fakes of this size (of the "
        "[-1, 1] range; Rob-GAN's adversarial training; 0: off)",
    )
    parser.add_argument(
        "--held-out",
        default="",
        help="another `shapes` data folder (the same --simple / --zoom selection) whose images "
        "the game never sees: each reading adds d_train and d_held, the discriminator's mean "
        "logit on 240 training and 240 held-out real images, and d_gap, their difference (its "
        "overfitting to the training images, as ADA's heuristic reads it; '': off)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="train nothing: score real images as they are and degraded (noise, blur, a "
        "smaller image), to read the samples' scores against",
    )
    parser.add_argument(
        "--probe-d",
        choices=("mean", "max"),
        default="",
        help="train no GAN: the discriminator and a linear head on its 8x8 map, pooled so, to "
        "name real simple images' shapes; print the held-out accuracy every --every steps",
    )
    parser.add_argument(
        "--device", default="cpu", help="where the networks train (cpu, cuda); scores on the CPU"
    )
    return parser


def main() -> None:
    args = make_parser().parse_args()
    try:
        if args.probe_d:
            probe_d(args)
            return
        if args.calibrate:
            for name, row in calibrate(Path(args.data), args.simple).items():
                print(f"real images, {name}: {fmt(row)}")
            return
        run(args)
    except AttnGANError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
