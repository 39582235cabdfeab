"""How much of each attribute the generator's first stage is told: for single-object `shapes` test
captions, a linear probe (multinomial logistic regression) reads colour, shape, size and
position back from the text encoder's sentence vector and, for a GAN model, from the
conditioning mean mu that stage 1 receives; trained on the captions of half the images, scored on
the other half. Also prints the share of mu's variance each attribute explains and the mean
conditioning noise sigma beside mu's spread (the issue's probe: chance is 1 / the number of
values).

    python benchmarks/conditioning_probe.py MODEL [MODEL ...]    # GAN or DAMSM model folders
    python benchmarks/conditioning_probe.py MODEL --near center  # which cells' captions it merges
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from attngan.checkpoints import load_model, read_model_info
from attngan.errors import AttnGANError

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import padded_ids  # noqa: E402

ATTRIBUTES = ("colour", "shape", "size", "position")


def single_object_rows(data: Path) -> list[dict]:
    metadata = data / "test" / "metadata.jsonl"
    if not metadata.is_file():
        raise AttnGANError(f"{metadata} not found: build the set with `attngan data shapes`")
    rows = [json.loads(line) for line in metadata.open()]
    rows = [row for row in rows if len(row["objects"]) == 1]
    if len(rows) < 2:
        raise AttnGANError(f"{metadata}: fewer than 2 single-object scenes to probe with")
    return rows


def features(path: str, rows: list[dict]) -> dict[str, torch.Tensor]:
    """Per caption: the sentence vector, and mu and sigma for a GAN model."""
    kind = read_model_info(Path(path))["kind"]
    wanted = ("text_encoder", "generator") if kind == "attngan" else ("text_encoder",)
    model = load_model(path, components=wanted)
    encoder = model["text_encoder"].eval()
    generator = model["generator"].eval() if kind == "attngan" else None
    captions = [caption for row in rows for caption in row["text"]]
    out: dict[str, list[torch.Tensor]] = {"sentence": [], "mu": [], "sigma": []}
    with torch.no_grad():
        for start in range(0, len(captions), 256):
            ids = [model.vocab.encode(c).ids for c in captions[start : start + 256]]
            sentence = encoder(*padded_ids(ids)).sentence
            out["sentence"].append(sentence)
            if generator is not None:
                cond = generator.ca(sentence, use_mean=True)
                out["mu"].append(cond.mu)
                out["sigma"].append(torch.exp(0.5 * cond.logvar))
    return {k: torch.cat(v) for k, v in out.items() if v}


def probe(x: torch.Tensor, labels: torch.Tensor, train: torch.Tensor, steps: int = 300) -> float:
    """Held-out accuracy of a logistic regression (standardised inputs, L2 1e-3, L-BFGS)."""
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    x = (x - mean) / std
    classes = int(labels.max()) + 1
    linear = torch.nn.Linear(x.shape[1], classes)
    optimiser = torch.optim.LBFGS(
        linear.parameters(), max_iter=steps, line_search_fn="strong_wolfe"
    )

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x[train]), labels[train])
        loss = loss + 1e-3 * linear.weight.square().sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        return (linear(x[~train]).argmax(1) == labels[~train]).float().mean().item()


def explained(x: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of x's total variance that the attribute's group means explain."""
    total = (x - x.mean(0)).square().sum()
    between = sum(
        (labels == v).sum() * (x[labels == v].mean(0) - x.mean(0)).square().sum()
        for v in labels.unique()
    )
    return (between / total).item()


def centroid_cosines(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[K, K]`` cosines between the K label groups' mean vectors of ``x`` (each dimension
    standardised over all rows first): which groups a representation keeps close together."""
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    centroids = torch.stack([x[labels == k].mean(0) for k in range(int(labels.max()) + 1)])
    unit = torch.nn.functional.normalize(centroids, dim=1)
    return unit @ unit.t()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="GAN or DAMSM model folders (or checkpoints)")
    parser.add_argument("--data", default="data/shapes")
    parser.add_argument("--near", metavar="POSITION",
                        help="also print how close this position's captions sit to each other "
                        "position's (centroid cosines), e.g. center")  # fmt: skip
    args = parser.parse_args()
    torch.manual_seed(0)
    try:
        rows = single_object_rows(Path(args.data))
        per_row = len(rows[0]["text"])
        labels, values = {}, {}
        for key in ATTRIBUTES:
            values[key] = sorted({row["objects"][0][key] for row in rows})
            labels[key] = torch.tensor(
                [values[key].index(row["objects"][0][key]) for row in rows for _ in row["text"]]
            )
        cells = values["position"]
        if args.near and args.near not in cells:
            raise AttnGANError(f"--near {args.near!r}: one of {', '.join(cells)}")
        # split by image, so that no image's captions are on both sides
        train = (torch.randperm(len(rows)) < len(rows) // 2).repeat_interleave(per_row)
        chance = ", ".join(f"{k} {1 / (int(v.max()) + 1):.1%}" for k, v in labels.items())
        print(f"{len(rows)} single-object test images x {per_row} captions; chance: {chance}")
        for path in args.models:
            feats = features(path, rows)
            for name in ("sentence", "mu"):
                if name not in feats:
                    continue
                read = ", ".join(
                    f"{k} {probe(feats[name], labels[k], train):.1%}" for k in ATTRIBUTES
                )
                print(f"{path}  {name:8}  read back: {read}")
                if args.near:
                    row = centroid_cosines(feats[name], labels["position"])[cells.index(args.near)]
                    near = ", ".join(f"{c} {row[k]:+.2f}" for k, c in enumerate(cells)
                                     if c != args.near)  # fmt: skip
                    print(f"{path}  {name:8}  {args.near} captions' centroid, cosine to: {near}")
            if "mu" in feats:
                mu = feats["mu"]
                shares = ", ".join(f"{k} {explained(mu, labels[k]):.1%}" for k in ATTRIBUTES)
                spread = (mu - mu.mean(0)).norm(dim=1).mean().item() / mu.shape[1] ** 0.5
                sigma = feats["sigma"].mean()
                print(f"{path}  mu variance explained: {shares}; mean sigma {sigma:.2f}, "
                      f"mu's spread {spread:.2f} (RMS per dimension)")  # fmt: skip
    except AttnGANError as exc:
        raise SystemExit(f"conditioning_probe: error: {exc}") from None


if __name__ == "__main__":
    main()
