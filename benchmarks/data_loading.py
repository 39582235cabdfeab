"""Time the training data path at the birds config: JPEG decode, resize, random crop and flip to
the 64/128/256 px pyramid, caption draw, collation. Reports images/s in the main process (one
worker's rate) and with 1, 2, ... worker processes, over a synthetic folder of CUB-sized JPEGs.

    python benchmarks/data_loading.py [--workers 0 1 2] [--images 256] [--batch 20]
    python benchmarks/data_loading.py --train-rate 0.6   # also: how many times training's rate
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import preset_config, random_damsm, synthetic_dataset  # noqa: E402


def main() -> None:
    from attngan.checkpoints import load_model
    from attngan.data.dataset import open_datasets
    from attngan.training.loop import batch_loader, epoch_batches

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--images", type=int, default=256, help="images per measurement")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--train-rate", type=float, help="training images/s to compare with")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "attngan-bench"))
    args = parser.parse_args()
    work = Path(args.work)
    synthetic_dataset(work / "data", num_train=max(64, args.batch * 2))
    config = preset_config(work / "data")
    vocab = load_model(random_damsm(work / "damsm", config), components=()).vocab
    dataset = open_datasets(config, ("train",), vocab=vocab, progress=False)["train"]
    n = len(dataset)
    print(f"data loading, birds config (64/128/256 px pyramid), {n} JPEGs of 500x375, "
          f"batch {args.batch}, {os.cpu_count()} CPUs")  # fmt: skip
    steps = max(1, args.images // args.batch)
    for workers in args.workers:
        plans = [b for e in range(100) for b in epoch_batches(n, args.batch, 0, e)][: steps + 1]
        loader = iter(batch_loader(dataset, plans, workers))
        next(loader)  # start-up (worker processes) not counted
        start = time.perf_counter()
        for _ in range(steps):
            next(loader)
        rate = steps * args.batch / (time.perf_counter() - start)
        label = "main process" if workers == 0 else f"{workers} workers"
        per = rate / max(workers, 1)
        line = f"  {label:13} {rate:8.1f} images/s   {per:7.1f} per worker"
        if args.train_rate:
            line += f"   {rate / args.train_rate:7.1f}x training's {args.train_rate} images/s"
        print(line)


if __name__ == "__main__":
    main()
