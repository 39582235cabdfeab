"""Progress of long commands: a tqdm bar on a terminal; in a pipe or a log file, where a bar's
carriage-return updates pile up as one screen-wide line each, a plain log line now and then.

Training decides the same way (:class:`attngan.training.loop.Progress`).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm.auto import tqdm

log = logging.getLogger("attngan")

EVERY = 30.0  # seconds between log lines without a terminal


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    every: float | None = None,
) -> Any:
    """A tqdm bar (``update``, ``set_postfix``, ``close``, iteration, ``with``) when stderr is a
    terminal; otherwise a :class:`LogLines` with the same methods, which logs a line every
    ``every`` seconds (default :data:`EVERY`) and a last one if it logged any. ``disable``: a bar
    that shows nothing."""
    if disable or sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable)
    return LogLines(
        iterable, total=total, desc=desc, unit=unit, every=EVERY if every is None else every
    )


class LogLines:
    """What a bar shows, as log lines: ``desc: n/total unit (p %), rate, ETA`` at most every
    ``every`` seconds, then ``desc: done, n unit in t`` when closed (only after such a line)."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        every: float = EVERY,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit, self.every = (
            iterable, total, desc, unit, every,
        )  # fmt: skip
        self.n = 0
        self.postfix = ""
        self.began = self.last = time.perf_counter()
        self.logged = False
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        try:
            for item in self.iterable or ():
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LogLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            self.logged = True
            log.info("%s", self._line(now))

    def set_postfix(
        self, ordered_dict: dict | None = None, refresh: bool = True, **kw: Any
    ) -> None:
        values = {**(ordered_dict or {}), **kw}
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def write(self, message: str) -> None:
        log.info("%s", message)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.logged:
            seconds = time.perf_counter() - self.began
            log.info("%s: done, %d %s in %s", self.desc, self.n, self.unit, clock(seconds))

    def _line(self, now: float) -> str:
        elapsed = now - self.began
        rate = self.n / elapsed if elapsed > 0 else 0.0
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        share = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        eta = ""
        if self.total and rate > 0:
            eta = f", ETA {clock((self.total - self.n) / rate)}"
        post = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {done} {self.unit}{share}, {rate:.1f} {self.unit}/s{eta}{post}"


def clock(seconds: float) -> str:
    """``h:mm:ss``, or ``?`` for an unknown (infinite) time."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
