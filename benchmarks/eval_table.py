"""Print a Markdown table row per `attngan evaluate --out` JSON file (for the docs' tables).

python benchmarks/eval_table.py docs/results/*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def row(path: Path) -> str:
    r = json.loads(path.read_text())
    m = r["metrics"]
    sem, held = m.get("semantic", {}).get("all", {}), m.get("semantic", {}).get("held_out", {})
    rp = m.get("r_precision")
    cells = [
        path.stem,
        f"{m['fid']:.2f}" if "fid" in m else "–",
        f"{1000 * m['kid']['mean']:.2f}" if "kid" in m else "–",
        f"{m['is']['mean']:.2f} ± {m['is']['std']:.2f}" if "is" in m else "–",
        f"{100 * rp['mean']:.1f} ± {100 * rp['std']:.1f}" if rp else "–",
        *(pct(sem.get(a)) for a in ("colour", "shape", "size", "position", "all_correct")),
        *(pct(held.get(a)) for a in ("colour", "shape", "all_correct")),
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| model | FID ↓ | KID×1000 ↓ | IS (shapes) | R-precision % | colour % | shape % | size % "
    "| position % | all % | held-out colour % | held-out shape % | held-out all % |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)

if __name__ == "__main__":
    print(HEADER)
    for name in sys.argv[1:]:
        print(row(Path(name)))
