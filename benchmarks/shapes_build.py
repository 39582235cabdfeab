"""Time the default `shapes` build (10,000 train + 1,000 test at 128 px) and report its size.

    python benchmarks/shapes_build.py [--workers N] [--out DIR]

Prints seconds, images/s and megabytes; the target is under 60 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from attngan.data.shapes import build_shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None, help="default: all cores")
    parser.add_argument("--out", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="shapes-bench-")) / "shapes"
    started = time.perf_counter()
    info = build_shapes(out, workers=args.workers, progress=False)
    seconds = time.perf_counter() - started
    megabytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    total = info.num_train + info.num_test
    print(
        f"shapes default build: {seconds:.1f} s, {total / seconds:.0f} images/s, "
        f"{megabytes:.1f} MB of files, target < 60 s: {'met' if seconds < 60 else 'MISSED'}"
    )
    if args.out is None:
        shutil.rmtree(out.parent)


if __name__ == "__main__":
    main()
