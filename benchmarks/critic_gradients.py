"""Do the generator's critics point towards shapes? Start from the blob twins of single-object
`shapes` test scenes (each object a soft blob of its colour, place and size), and follow a
critic's gradient on the pixels themselves, as the generator's loss would pull its image: the
DAMSM term (the bundled encoders' word + sentence loss over the batch), or the adversarial term of
a GAN checkpoint's last discriminator or of its feature critic (``train.feature_critic``). Every
few steps the shapes classifier reads the images: how often the object's top shape is the
caption's (the right shape), beside the blob twins and the real images. A critic whose gradient
is aligned with what people see turns blobs into the named outlines; one that is not raises its
score with changes the classifier does not read as shapes. ``--noise S`` averages each step's
gradient over Gaussian noise of that spread added to the image (randomised smoothing), which
tends to align a network's gradient with what it sees.

    python benchmarks/critic_gradients.py [--critic damsm|d|f] [--checkpoint RUN/checkpoints/step-N]
        [--model src/attngan/assets/shapes-model] [--scenes 96] [--steps 300] [--noise 0 0.1 0.2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from d_shape_probe import scenes

from attngan.checkpoints import load_model, load_weights
from attngan.data.shapes import SHAPES
from attngan.errors import AttnGANError
from attngan.evaluation.shapes_classifier import _predict, load_shapes_classifier
from attngan.losses import generator_scale_loss
from attngan.models.discriminator import FeatureDiscriminator
from attngan.training.gan import CRITIC_FILE, damsm_loss

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "attngan" / "assets" / "shapes-model"


def single_objects(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """Sharp and blob 64 px images in [-1, 1] and records of the first ``count`` single-object
    test scenes (of the first ``4 * count`` scenes)."""
    sharp, blob, records = scenes(4 * count, [64], seed)
    keep = [i for i, r in enumerate(records) if len(r["objects"]) == 1][:count]
    if not keep:
        raise AttnGANError("no single-object scenes among the first test scenes")
    return sharp[0][keep], blob[0][keep], [records[i] for i in keep]


@torch.no_grad()
def read_shapes(classifier, images: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """The share of images whose most confident object's top shape is the target, and the mean
    confidence in the target shape there."""
    preds = _predict(classifier, images)
    cells = preds.occupancy.argmax(1)
    logits = preds.shape[torch.arange(len(images)), cells].float()
    right = (logits.argmax(-1) == targets).float().mean().item()
    return right, logits.softmax(-1)[torch.arange(len(images)), targets].mean().item()


def make_critic(kind: str, model_path: str, checkpoint: str | None, text):
    """The loss a generator's image would get: ``fn(images) -> scalar``."""
    if kind == "damsm":
        model = load_model(model_path, components=("image_encoder",))
        encoder, d = model["image_encoder"].eval().requires_grad_(False), model.config.damsm
        classes = torch.arange(text.sentence.size(0))  # every caption its own class

        def damsm(images: torch.Tensor) -> torch.Tensor:
            f = encoder(images)
            return damsm_loss(f.regions, f.image, text.words, text.sentence, text.lengths,
                              classes, d.gamma1, d.gamma2, d.gamma3)  # fmt: skip

        return damsm
    if not checkpoint:
        raise AttnGANError(f"--critic {kind} needs --checkpoint (a GAN checkpoint folder)")
    if kind == "f":  # train.feature_critic's critic, on the run's own frozen image encoder
        if not (Path(checkpoint) / CRITIC_FILE).is_file():
            raise AttnGANError(f"{checkpoint} has no feature critic ({CRITIC_FILE})")
        model = load_model(checkpoint, components=("image_encoder",))
        disc = FeatureDiscriminator(model["image_encoder"].eval().requires_grad_(False),
                                    model.config.model.embedding_dim,
                                    model.config.train.feature_critic_width)  # fmt: skip
        load_weights(disc, Path(checkpoint) / CRITIC_FILE)
    else:
        disc = load_model(checkpoint, components=("discriminators",))["discriminators"][-1]
    disc.train().requires_grad_(False)  # batch statistics, as in the generator's step
    return lambda images: generator_scale_loss(disc, images, text.sentence)


def run(args: argparse.Namespace) -> list[dict[str, float]]:
    torch.manual_seed(args.seed)
    sharp, blob, records = single_objects(args.scenes)
    targets = torch.tensor([SHAPES.index(r["objects"][0]["shape"]) for r in records])
    text_model = load_model(args.model, components=("text_encoder",))
    encoder = text_model["text_encoder"].eval()
    rows = [text_model.vocab.encode(r["text"][0], strict=True).ids for r in records]
    width = max(map(len, rows))
    tokens = torch.tensor([row + [0] * (width - len(row)) for row in rows])
    lengths = torch.tensor([len(row) for row in rows])
    with torch.no_grad():
        feats = encoder(tokens, lengths)
    text = argparse.Namespace(words=feats.words, sentence=feats.sentence, lengths=lengths)
    critic = make_critic(args.critic, args.model, args.checkpoint, text)
    classifier = load_shapes_classifier(None).eval()
    real, start = read_shapes(classifier, sharp, targets), read_shapes(classifier, blob, targets)
    print(f"{len(records)} single-object scenes: real images right shape {real[0]:.3f} "
          f"(confidence {real[1]:.3f}); blob twins {start[0]:.3f} ({start[1]:.3f})")  # fmt: skip
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    out = []
    for noise in args.noise:
        x = blob.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=args.lr)
        gen = torch.Generator().manual_seed(args.seed)
        first = None
        for step in range(1, args.steps + 1):
            seen = x + noise * torch.randn(x.shape, generator=gen) if noise > 0 else x
            loss = critic(seen)
            first = loss.item() if first is None else first
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(-1, 1)
            if step % args.every == 0 or step == args.steps:
                right, conf = read_shapes(classifier, x.detach(), targets)
                moved = (x.detach() - blob).abs().mean().item()
                row = {"noise": noise, "step": step, "loss": loss.item(), "right": right,
                       "confidence": conf, "moved": moved}  # fmt: skip
                out.append(row)
                print(f"{args.critic} noise {noise:g} step {step}: loss {first:.3f} -> "
                      f"{loss.item():.3f}, right shape {right:.3f} (confidence {conf:.3f}), "
                      f"mean |change| {moved:.3f}", flush=True)  # fmt: skip
        if args.out:
            from torchvision.utils import save_image

            grid = torch.cat([blob[:16], x.detach()[:16], sharp[:16]]) * 0.5 + 0.5
            save_image(grid, Path(args.out) / f"{args.critic}-noise{noise:g}.png", nrow=16)
    return out


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--critic",
        choices=("damsm", "d", "f"),
        default="damsm",
        help="the DAMSM term, the last discriminator's adversarial term, or the feature critic's "
        "(train.feature_critic; d and f read --checkpoint)",
    )
    parser.add_argument("--model", default=str(BUNDLED), help="the DAMSM (text, image encoders)")
    parser.add_argument("--checkpoint", help="with --critic d: a GAN checkpoint folder")
    parser.add_argument("--scenes", type=int, default=96)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.01, help="Adam's rate on the pixels")
    parser.add_argument(
        "--noise",
        type=float,
        nargs="+",
        default=[0.0],
        help="Gaussian noise spreads to smooth the gradient over (0: none)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="", help="folder for blob / result / real grids")
    return parser


def main() -> None:
    args = make_parser().parse_args()
    try:
        run(args)
    except AttnGANError as err:
        raise SystemExit(f"critic_gradients: error: {err}") from None


if __name__ == "__main__":
    main()
