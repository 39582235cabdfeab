"""Time generation at the birds config (256 px, 3 stages, gf 32, 18-word captions): the plain
eval-mode generator under ``torch.no_grad`` against the fast paths, side by side in one run, at
batch 1 and 16, and check that every fast path gives the plain path's images.

    python benchmarks/generate.py [--device cpu] [--batches 1 16] [--rounds 3]

Variants: ``plain``; ``fast`` = ``torch.inference_mode`` + BatchNorm folded into the convolutions
(what ``Pipeline`` does); ``fast_cl`` = ``fast`` + channels-last memory format; on CUDA also
``fast_cl_bf16`` = ``fast_cl`` under bf16 autocast. Prints images/s,
GFLOP per image (torch.utils.flop_counter), the share of the machine's float32 matmul peak and the
ratio to ``plain``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import VOCAB_SIZE, best_time, count_flops, matmul_peak, preset_config  # noqa: E402


def build(device: torch.device):
    from attngan.checkpoints import build_component

    config = preset_config(Path("."))
    torch.manual_seed(0)
    generator = build_component("generator", config, VOCAB_SIZE).to(device).eval()
    text_encoder = build_component("text_encoder", config, VOCAB_SIZE).to(device).eval()
    with torch.no_grad():  # BatchNorm statistics like a trained model's, not 0 and 1
        for m in generator.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return config, generator, text_encoder


def main() -> None:
    from attngan.models.layers import fold_batchnorm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds")
    parser.add_argument("--calls", type=int, default=0, help="calls per round (default: 16/b)")
    args = parser.parse_args()
    device = torch.device(args.device)
    config, generator, text_encoder = build(device)
    folded = fold_batchnorm(generator)
    folded_cl = fold_batchnorm(generator).to(memory_format=torch.channels_last)
    peak = matmul_peak(device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"generation, birds config (256 px), {device} ({name}), {torch.get_num_threads()} "
          f"threads; float32 matmul peak {peak:.0f} GFLOP/s")  # fmt: skip

    variants = {"plain": (generator, torch.no_grad), "fast": (folded, torch.inference_mode),
                "fast_cl": (folded_cl, torch.inference_mode)}  # fmt: skip
    if device.type == "cuda":  # bf16 autocast pays on tensor cores only

        @contextlib.contextmanager
        def bf16():
            with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16):
                yield

        variants["fast_cl_bf16"] = (folded_cl, bf16)
    for batch in args.batches:
        measure(batch, args, config, device, peak, text_encoder, variants)


def measure(batch, args, config, device, peak, text_encoder, variants) -> None:
    """Check every variant against ``plain``, then time them side by side at one batch size."""
    gen = torch.Generator().manual_seed(batch)
    tokens = torch.randint(1, VOCAB_SIZE, (batch, 18), generator=gen).to(device)
    lengths = torch.full((batch,), 18, device=device)
    z = torch.randn(batch, config.model.z_dim, generator=gen).to(device)
    ca = torch.randn(batch, config.model.condition_dim, generator=gen).to(device)

    def run(name):
        g, mode = variants[name]
        with mode():
            text = text_encoder(tokens, lengths)
            return g(z, text.sentence, text.words, text.mask, ca_noise=ca).images[-1]

    reference = run("plain")
    for name in variants:
        # images in [-1, 1]; CUDA convolutions use TF32 by default, and bf16 keeps 8 bits
        tolerance = 0.1 if "bf16" in name else 1e-3 if device.type == "cpu" else 2e-2
        diff = (run(name).float() - reference).abs().max().item()
        assert diff < tolerance, f"{name} differs from plain by {diff}"
    flops = count_flops(lambda: run("plain")) / batch
    calls = args.calls or max(1, 16 // batch)
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(args.rounds):
        for name in variants:
            t = best_time(lambda name=name: [run(name) for _ in range(calls)], 1, device=device)
            best[name] = min(best[name], t / calls)
    print(f"  batch {batch}: {flops / 1e9:.1f} GFLOP per image (generator + text encoder)")
    for name, seconds in best.items():
        rate = batch / seconds
        print(f"    {name:8} {rate:7.2f} images/s   {rate * flops / 1e9 / peak:5.0%} of peak   "
              f"{best['plain'] / seconds:5.2f}x plain")  # fmt: skip


if __name__ == "__main__":
    main()
