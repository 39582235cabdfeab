"""Time the DAMSM word loss, forward and backward: the batched pass (eager, and compiled with
torch.compile as ``train.compile`` does) against the release's per-caption loop
(tests/reference.py), side by side in one run, and check they agree.

    python benchmarks/word_loss.py [--batch 48] [--repeats 3]

Birds shapes: 17x17 regions, 256-d, captions of 5..18 words, CUB-like class masking.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.reference

from tests.reference import word_loss_loop  # noqa: E402

from attngan.losses import word_loss  # noqa: E402


def best_time(fn, regions, words, repeats: int) -> tuple[float, float]:
    best, value = float("inf"), 0.0
    for _ in range(repeats):
        regions.grad = words.grad = None
        start = time.perf_counter()
        loss = fn()
        loss.backward()
        best = min(best, time.perf_counter() - start)
        value = loss.item()
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    b, steps = args.batch, 18
    regions = torch.randn(b, 256, 17, 17, generator=gen).requires_grad_()
    words = torch.randn(b, 256, steps, generator=gen).requires_grad_()
    lengths = torch.randint(5, steps + 1, (b,), generator=gen)
    lengths[0] = steps
    classes = torch.randint(0, 20, (b,), generator=gen)

    def batched():
        return word_loss(regions, words, lengths, classes).total()

    def loop():
        loss0, loss1, _ = word_loss_loop(regions, words, lengths, classes)
        return loss0 + loss1

    compiled_loss = torch.compile(word_loss, dynamic=True)

    def compiled():
        return compiled_loss(regions, words, lengths, classes).total()

    start = time.perf_counter()
    best_time(compiled, regions, words, 1)
    t_compile = time.perf_counter() - start
    t_batched, v_batched = best_time(batched, regions, words, args.repeats)
    t_compiled, v_compiled = best_time(compiled, regions, words, args.repeats)
    t_loop, v_loop = best_time(loop, regions, words, args.repeats)
    print(f"word loss, batch {b}, forward + backward, best of {args.repeats}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"  per-caption loop  {t_loop:7.3f} s   loss {v_loop:.6f}")
    print(f"  batched           {t_batched:7.3f} s   loss {v_batched:.6f}")
    print(f"  speed-up          {t_loop / t_batched:7.2f}x   "
          f"relative difference {abs(v_batched - v_loop) / abs(v_loop):.1e}")  # fmt: skip
    print(f"  batched, compiled {t_compiled:7.3f} s   loss {v_compiled:.6f}   (torch.compile, "
          f"first call {t_compile:.0f} s; train.compile uses it)")  # fmt: skip
    print(f"  speed-up          {t_loop / t_compiled:7.2f}x   "
          f"relative difference {abs(v_compiled - v_loop) / abs(v_loop):.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
