"""Time one GAN training iteration at the birds config (3 stages to 256 px, gf 32, df 64,
Inception-v3 image encoder, 5,450 words) against the plain step of a baseline commit (default
a65b752), side by side in one run: text encoding, G forward, three D updates, the G update with
the DAMSM loss, EMA.

    python benchmarks/train_step.py                          # CPU, batch 8, all threads
    python benchmarks/train_step.py --threads 1 --rounds 5   # a loaded machine: 1 thread each
    python benchmarks/train_step.py --device cuda --batch 20 --variants plain fast_cl bf16_cl
    python benchmarks/train_step.py --quick                  # a dry run: batch 2, one round

The baseline's ``src/attngan`` comes out of git (``git archive``) into a temporary folder. Each
row is its own worker process (so its peak memory is its own): the baseline's plain step, then
this checkout's variants (``VARIANTS``: ``plain`` is every speed switch off). All build the same
networks from the same seed and train on the same batch; the workers take turns, in an order
reversed every round, each timing ``--repeats`` steps per round and keeping its fastest. Prints
per row the median over rounds of images/s and of the per-round ratios to the baseline's step
("vs BASE"), the peak memory (resident set on the CPU, ``max_memory_allocated`` on CUDA, after
the warm-up), and how far its first step's losses are from the baseline's (the same weights and
batch, so rounding alone: every speed switch must give the plain step's losses). The GFLOP per
image come from ``torch.utils.flop_counter`` (one more step of the first row of this checkout),
"of peak" is against the machine's float32 matmul rate.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ROOT,
    WorkerProcess,
    best_time,
    count_flops,
    extract,
    matmul_peak,
    peak_rss_gb,
    preset_config,
    random_damsm,
    serve,
    synthetic_dataset,
)

# this checkout's variants, as config overrides (docs/performance.md, "Switches")
COMPILED = ["train.compile=true"]
GRAPHS = ["train.compile=true", "train.compile_mode=reduce-overhead"]
VARIANTS = {
    "plain": ["train.fast_layers=false"],  # every speed switch off
    "fast": [],  # train.fast_layers, the default
    "fast_cl": ["train.channels_last=true"],
    "fast_compile": COMPILED,
    "fast_cl_compile": ["train.channels_last=true", *COMPILED],
    "channels_last": ["train.fast_layers=false", "train.channels_last=true"],
    "bf16": ["train.precision=bf16"],
    "bf16_cl": ["train.precision=bf16", "train.channels_last=true"],
    "bf16_cl_compile": ["train.precision=bf16", "train.channels_last=true", *COMPILED],
    "bf16_cl_graphs": ["train.precision=bf16", "train.channels_last=true", *GRAPHS],
    "fast_cl_graphs": ["train.channels_last=true", *GRAPHS],
}
LOSS_TOLERANCE = {"fp32": 1e-3, "bf16": 0.1}  # relative, the first step's losses


# --- the worker: one code version, one variant, driven over stdin/stdout ------------------------


class Worker:
    """One trainer (built by ``setup``) stepping on one batch."""

    def setup(self, data: str, damsm: str, run: str, preset: str, batch: int, device: str,
              overrides: list[str], warmup: int) -> dict:  # fmt: skip
        from attngan.training.gan import GANTrainer
        from attngan.training.loop import batch_loader, epoch_batches

        start = time.perf_counter()
        self.device, self.batch_size = torch.device(device), batch
        Path(run).mkdir(parents=True, exist_ok=True)
        config = preset_config(Path(data), f"train.batch_size={batch}", *overrides, preset=preset)
        damsm = random_damsm(Path(damsm), config)  # each code version saves its own config
        self.trainer = GANTrainer(config, Path(run), damsm=damsm, device=device, progress=False)
        plan = epoch_batches(len(self.trainer.dataset), batch, 0, 0)[:1]
        self.batch = next(iter(batch_loader(self.trainer.dataset, plan, 0)))
        losses = self.trainer.train_step(self.batch)  # the first step: the same weights for all
        for _ in range(warmup - 1):
            self.trainer.train_step(self.batch)
        self._sync()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        return {"losses": losses, "seconds": time.perf_counter() - start,
                "threads": torch.get_num_threads()}  # fmt: skip

    def time(self, repeats: int) -> dict:
        seconds = best_time(lambda: self.trainer.train_step(self.batch), repeats, warmup=0,
                            device=self.device)  # fmt: skip
        memory = (
            torch.cuda.max_memory_allocated() / 1024**3
            if self.device.type == "cuda"
            else peak_rss_gb()
        )
        return {"seconds": seconds, "memory_gb": memory}

    def flops(self) -> dict:
        return {"flops": count_flops(lambda: self.trainer.train_step(self.batch))}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


# --- the driver ---------------------------------------------------------------------------------


def start(name: str, src: Path, args: argparse.Namespace) -> WorkerProcess:
    command = [sys.executable, __file__, "--worker", str(src), "--threads", str(args.threads)]
    return WorkerProcess(name, command, args.threads)


def loss_gap(losses: dict, reference: dict) -> float:
    """The largest relative difference of the losses both report."""
    keys = reference.keys() & losses.keys()
    return max(abs(losses[k] - reference[k]) / max(abs(reference[k]), 1e-3) for k in keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="a65b752", help="commit to compare with")
    parser.add_argument(
        "--baseline-src", type=Path, help="a src folder holding that commit's attngan (no git)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: all)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--preset", default="birds", choices=["birds", "coco"])
    parser.add_argument("--variants", nargs="+", default=["plain", "fast", "fast_cl"],
                        choices=list(VARIANTS))  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds")
    parser.add_argument("--repeats", type=int, default=2, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for every row (the baseline's too)")  # fmt: skip
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    parser.add_argument("--quick", action="store_true", help="dry run: batch 2, 1 round")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "attngan-bench"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return serve(Worker, args.worker, args.threads)
    if args.quick:
        args.batch, args.rounds, args.repeats, args.warmup = 2, 1, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    data = synthetic_dataset(work / "data", num_train=max(64, args.batch * 2))
    damsm = random_damsm(work / f"damsm-{args.preset}", preset_config(data, preset=args.preset))
    base_damsm = work / f"damsm-{args.preset}-{args.baseline}"  # made by the baseline's worker
    cuda = args.device.startswith("cuda")
    peak = matmul_peak(args.device)
    name = torch.cuda.get_device_name() if cuda else "CPU"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base = args.baseline
        rows = {base: (args.baseline_src or extract(base, folder / "baseline"), [])}
        rows.update({v: (ROOT / "src", VARIANTS[v]) for v in args.variants})
        workers = {row: start(row, src, args) for row, (src, _) in rows.items()}
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on `kill` too
        finished = False
        try:
            print(f"GAN training iteration, {args.preset} config, batch {args.batch}, "
                  f"{args.device} ({name}); float32 matmul peak {peak:.0f} GFLOP/s; load "
                  f"average {os.getloadavg()[0]:.1f}")  # fmt: skip
            run(workers, rows, folder, data, (damsm, base_damsm), peak, args)
            finished = True
        finally:
            for worker in workers.values():
                worker.close(kill=not finished)
    if not cuda and args.batch >= 4:
        both, forward = conv_rate(args.device, args.batch)
        print(f"  for scale: one 3x3 conv of the 128 px stage (64->128 channels, batch "
              f"{args.batch}): forward {forward:.0f} GFLOP/s ({forward / peak:.0%} of peak), "
              f"forward+backward {both:.0f} GFLOP/s ({both / peak:.0%})")  # fmt: skip


def run(workers: dict, rows: dict, folder: Path, data: Path, damsm: tuple, peak: float,
        args: argparse.Namespace) -> None:  # fmt: skip
    base = args.baseline
    setup = {}
    # on a GPU the workers set up (and compile) at once; on the CPU one after another, so that
    # at most one warm-up step's memory is on top of the others' resident training state
    order = list(workers) if args.device.startswith("cuda") else []
    for row in order:
        workers[row].send("setup", **setup_args(row, rows, folder, data, damsm, args))
    for row, worker in workers.items():
        if row not in order:
            worker.send("setup", **setup_args(row, rows, folder, data, damsm, args))
        setup[row] = worker.receive()
        print(f"  {row}: set up in {setup[row]['seconds']:.0f} s "
              f"({setup[row]['threads']} threads)", flush=True)  # fmt: skip
    results: dict[str, list[dict]] = {row: [] for row in workers}
    names = list(workers)
    for r in range(args.rounds):
        for row in names if r % 2 == 0 else names[::-1]:
            results[row].append(workers[row]("time", repeats=args.repeats))
    flops = float("nan")
    if not args.no_flops and len(names) > 1:
        flops = workers[names[1]]("flops")["flops"] / args.batch
    reference = setup[base]["losses"]
    counted = f"{flops / 1e9:.1f} GFLOP per image ({names[1]}'s count)" if flops == flops else ""
    print(f"\n{args.rounds} rounds x {args.repeats} steps (the fastest of each round), medians; "
          f"vs {base} = images/s against {base}'s plain step in the same round; {counted}; "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"  {'variant':16} {'images/s':>9} {'vs ' + base:>11} {'of peak':>8} {'memory':>9} "
          f"{'loss gap':>9}")  # fmt: skip
    for row in names:
        rate = statistics.median(args.batch / x["seconds"] for x in results[row])
        ratio = statistics.median(
            b["seconds"] / x["seconds"] for b, x in zip(results[base], results[row], strict=True)
        )
        memory = max(x["memory_gb"] for x in results[row])
        gap = loss_gap(setup[row]["losses"], reference)
        precision = "bf16" if "train.precision=bf16" in rows[row][1] else "fp32"
        flag = "" if gap <= LOSS_TOLERANCE[precision] else "  (losses differ!)"
        share = f"{rate * flops / 1e9 / peak:8.0%}" if flops == flops else f"{'-':>8}"
        print(f"  {row:16} {rate:9.3f} {ratio:10.2f}x {share} "
              f"{memory:6.2f} GB {gap:9.1e}{flag}")  # fmt: skip


def setup_args(row: str, rows: dict, folder: Path, data: Path, damsm: tuple,
               args: argparse.Namespace) -> dict:  # fmt: skip
    damsm = damsm[row == args.baseline]
    return {"data": str(data), "damsm": str(damsm), "run": str(folder / f"run-{row}"),
            "preset": args.preset, "batch": args.batch, "device": args.device,
            "overrides": [*args.set, *rows[row][1]], "warmup": args.warmup}  # fmt: skip


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
