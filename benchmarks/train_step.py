"""Time one GAN training iteration at the birds config (3 stages to 256 px, gf 32, df 64,
Inception-v3 image encoder, 5,450 words): text encoding, G forward, three D updates, the G update
with the DAMSM loss, EMA. Each variant runs in its own process (so peak memory is its own), the
variants alternate for ``--rounds`` rounds, and the best round counts.

    python benchmarks/train_step.py                       # CPU, batch 8: plain vs channels_last
    python benchmarks/train_step.py --device cuda --batch 20 --variants plain bf16 bf16_cl

Prints images/s, GFLOP per image (torch.utils.flop_counter), the share of the machine's float32
matmul peak, peak memory (resident set on the CPU, allocated on CUDA) and each variant's ratio
to ``plain``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    best_time,
    count_flops,
    matmul_peak,
    peak_rss_gb,
    preset_config,
    random_damsm,
    synthetic_dataset,
)

VARIANTS = {
    "plain": [],
    "channels_last": ["train.channels_last=true"],
    "bf16": ["train.precision=bf16"],
    "bf16_cl": ["train.precision=bf16", "train.channels_last=true"],
    "bf16_cl_compile": ["train.precision=bf16", "train.channels_last=true", "train.compile=true"],
}


def child(args: argparse.Namespace) -> dict:
    from attngan.training.gan import GANTrainer
    from attngan.training.loop import batch_loader, epoch_batches

    device = torch.device(args.device)
    work = Path(args.work)
    config = preset_config(
        work / "data", f"train.batch_size={args.batch}", *VARIANTS[args.child], preset=args.preset
    )
    damsm = random_damsm(work / f"damsm-{args.preset}", config)
    with tempfile.TemporaryDirectory() as run:
        trainer = GANTrainer(config, Path(run), damsm=damsm, device=args.device, progress=False)
        plan = epoch_batches(len(trainer.dataset), args.batch, 0, 0)[:1]
        batch = next(iter(batch_loader(trainer.dataset, plan, 0)))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        seconds = best_time(
            lambda: trainer.train_step(batch), args.repeats, warmup=args.warmup, device=device
        )
        memory = (  # before the FLOP count, whose bookkeeping is not the iteration's
            torch.cuda.max_memory_allocated() / 1024**3 if device.type == "cuda" else peak_rss_gb()
        )
        flops = count_flops(lambda: trainer.train_step(batch)) if args.flops else float("nan")
    return {"images_per_s": args.batch / seconds, "gflop_per_image": flops / args.batch / 1e9,
            "memory_gb": memory, "seconds": seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--preset", default="birds", choices=["birds", "coco"])
    parser.add_argument("--variants", nargs="+", default=["plain", "channels_last"],
                        choices=list(VARIANTS))  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per variant")
    parser.add_argument("--repeats", type=int, default=2, help="timed iterations per round")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "attngan-bench"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--flops", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    synthetic_dataset(Path(args.work) / "data", num_train=max(64, args.batch * 2))
    peak = matmul_peak(args.device)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    threads = torch.get_num_threads()
    print(f"GAN training iteration, {args.preset} config, batch {args.batch}, {args.device} "
          f"({name}), {threads} threads; float32 matmul peak {peak:.0f} GFLOP/s")  # fmt: skip
    best: dict[str, dict] = {}
    for r in range(args.rounds):
        for variant in args.variants:
            cmd = [sys.executable, __file__, "--child", variant, "--device", args.device,
                   "--batch", str(args.batch), "--repeats", str(args.repeats),
                   "--warmup", str(args.warmup), "--work", args.work,
                   "--preset", args.preset]  # fmt: skip
            if r == 0:
                cmd.append("--flops")
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                print(f"  {variant}: failed\n{out.stderr[-2000:]}")
                continue
            result = json.loads(out.stdout.strip().splitlines()[-1])
            keep = best.get(variant)
            if keep is None or result["images_per_s"] > keep["images_per_s"]:
                flops = keep["gflop_per_image"] if keep else result["gflop_per_image"]
                best[variant] = {**result, "gflop_per_image": flops}
            elif result["gflop_per_image"] == result["gflop_per_image"]:  # not NaN
                keep["gflop_per_image"] = result["gflop_per_image"]
    base = best.get("plain", {}).get("images_per_s")
    print(f"  {'variant':16} {'images/s':>9} {'GFLOP/img':>10} {'of peak':>8} {'memory':>9} "
          f"{'vs plain':>9}")  # fmt: skip
    for variant, r in best.items():
        share = r["images_per_s"] * r["gflop_per_image"] / peak
        ratio = f"{r['images_per_s'] / base:8.2f}x" if base else "        -"
        print(f"  {variant:16} {r['images_per_s']:9.2f} {r['gflop_per_image']:10.1f} "
              f"{share:8.0%} {r['memory_gb']:7.2f} GB {ratio}")  # fmt: skip
    both, forward = conv_rate(args.device, args.batch)
    print(f"  for scale: one 3x3 conv of the 128 px stage (64->128 channels, batch {args.batch}): "
          f"forward {forward:.0f} GFLOP/s ({forward / peak:.0%} of peak), forward+backward "
          f"{both:.0f} GFLOP/s ({both / peak:.0%})")  # fmt: skip


def conv_rate(device: str, batch: int) -> tuple[float, float]:
    """GFLOP/s of one 3x3 convolution like the generator's 128 px stage (64 -> 128 channels),
    forward and backward (input and weight gradients), and of its forward alone."""
    x = torch.randn(batch, 64, 128, 128, device=device, requires_grad=True)
    conv = torch.nn.Conv2d(64, 128, 3, padding=1, bias=False).to(device)
    flops = 2 * batch * 128 * 128 * 64 * 128 * 9
    forward = best_time(lambda: conv(x), 3, device=device)
    both = best_time(lambda: conv(x).sum().backward(), 3, device=device)
    return 3 * flops / both / 1e9, flops / forward / 1e9


if __name__ == "__main__":
    main()
