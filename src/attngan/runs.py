"""Run folders: one numbered folder per run with its resolved config and log."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from attngan.config import Config, save_config
from attngan.fileio import output_errors

_NUMBERED = re.compile(r"^(\d{5})-")


def new_run_dir(base: str | Path, description: str) -> Path:
    """Create ``base/NNNNN-description`` with the next free number (safe against a race)."""
    base = Path(base)
    description = re.sub(r"[^A-Za-z0-9_.-]+", "-", description).strip("-") or "run"
    with output_errors(base, "runs folder"):
        base.mkdir(parents=True, exist_ok=True)
        while True:
            numbers = [int(m.group(1)) for p in base.iterdir() if (m := _NUMBERED.match(p.name))]
            path = base / f"{max(numbers, default=-1) + 1:05d}-{description}"
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue


def start_run(
    base: str | Path,
    description: str,
    config: Config,
    earlier: Sequence[logging.LogRecord] = (),
) -> Path:
    """A new run folder holding ``config.yaml``, with the log also written to ``log.txt``
    (starting with ``earlier``: records kept by :func:`buffered_log` before the folder existed)."""
    run_dir = new_run_dir(base, description)
    save_config(config, run_dir / "config.yaml")
    handler = attach_log(run_dir)
    for record in earlier:
        handler.handle(record)
    logging.getLogger(__name__).info("run folder %s", run_dir)
    return run_dir


def attach_log(run_dir: str | Path) -> logging.Handler:
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
    return handler


class _Buffer(logging.Handler):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.limit = limit

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < self.limit:
            self.records.append(record)


@contextmanager
def buffered_log(limit: int = 10_000) -> Iterator[list[logging.LogRecord]]:
    """Keep this process's log records (the first ``limit``) while a run is checked, before its
    folder exists: :func:`start_run` writes them at the top of ``log.txt``."""
    buffer = _Buffer(limit)
    root = logging.getLogger()
    root.addHandler(buffer)
    try:
        yield buffer.records
    finally:
        root.removeHandler(buffer)
