"""Run folders: one numbered folder per run with its resolved config and log."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from attngan.config import Config, save_config

_NUMBERED = re.compile(r"^(\d{5})-")


def new_run_dir(base: str | Path, description: str) -> Path:
    """Create ``base/NNNNN-description`` with the next free number (safe against a race)."""
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    description = re.sub(r"[^A-Za-z0-9_.-]+", "-", description).strip("-") or "run"
    while True:
        numbers = [int(m.group(1)) for p in base.iterdir() if (m := _NUMBERED.match(p.name))]
        path = base / f"{max(numbers, default=-1) + 1:05d}-{description}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def start_run(base: str | Path, description: str, config: Config) -> Path:
    """A new run folder holding ``config.yaml``, with the log also written to ``log.txt``."""
    run_dir = new_run_dir(base, description)
    save_config(config, run_dir / "config.yaml")
    attach_log(run_dir)
    logging.getLogger(__name__).info("run folder %s", run_dir)
    return run_dir


def attach_log(run_dir: str | Path) -> None:
    """Append this process's log records to ``run_dir/log.txt`` (one handler per file)."""
    path = (Path(run_dir) / "log.txt").resolve()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and handler.baseFilename.endswith("log.txt"):
            root.removeHandler(handler)  # an earlier run's folder in this process
            handler.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
