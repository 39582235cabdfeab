"""Print a Markdown table row per `attngan evaluate --out` JSON file (for the docs' tables).

python benchmarks/eval_table.py docs/results/*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def pair(measure: dict | None) -> str:
    """A measure's generated and real values, e.g. "0.412 / 0.995"."""
    if not measure:
        return "–"
    return " / ".join(
        "–" if v is None else f"{v:.3f}" for v in (measure["generated"], measure["real"])
    )


def ratios(stages: dict | None) -> str:
    """Stage agreement's generated / real ratio at each earlier stage, e.g. "32 px: 150"."""
    if not stages:
        return "–"
    cells = []
    for size, stage in stages.items():
        ratio = stage["ratio"]
        cells.append(f"{size} px: " + ("–" if ratio is None else f"{ratio:.0f}"))
    return ", ".join(cells)


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
        pair(m.get("shape_realism")),
        pair(m.get("variety")),
        ratios(m.get("stage_agreement")),
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| model | FID ↓ | KID×1000 ↓ | IS (shapes) | R-precision % | colour % | shape % | size % "
    "| position % | all % | held-out colour % | held-out shape % | held-out all % "
    "| shape realism: generated / real | variety: generated / real | stage agreement ratio |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)

if __name__ == "__main__":
    print(HEADER)
    for name in sys.argv[1:]:
        print(row(Path(name)))
