"""File writing that never leaves a half-written file behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from attngan.errors import OutputError


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename (creating parents)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be written or created, or ``None``."""
    found = _nearest_existing(folder)
    if not found.is_dir():
        return f"{found} is not a folder"
    if not os.access(found, os.W_OK | os.X_OK):
        return f"{found} is not writable"
    return None


def check_writable_folder(path: str | Path, what: str = "output folder") -> Path:
    """Raise :class:`OutputError` (one line, naming the path) unless ``path`` is a folder that
    can be written, or can be created. Creates nothing, so a command can check its output before
    the work and still leave nothing behind when the work fails."""
    path = Path(path)
    problem = _folder_problem(path)
    if problem:
        raise OutputError(f"cannot write the {what} {path}: {problem}")
    return path


def check_writable_file(path: str | Path, what: str = "output file") -> Path:
    """Like :func:`check_writable_folder`, for a file: ``path`` must not be a folder and its
    folder must be writable, or creatable."""
    path = Path(path)
    problem = "it is a folder" if path.is_dir() else _folder_problem(path.parent)
    if problem:
        raise OutputError(f"cannot write the {what} {path}: {problem}")
    return path


@contextmanager
def output_errors(path: str | Path, what: str = "output") -> Iterator[None]:
    """Turn an :class:`OSError` of writing ``path`` (a full disk, a folder made read-only
    meanwhile) into a one-line :class:`OutputError`."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        name = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise OutputError(f"cannot write the {what} {path}: {reason}{name}") from None


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it is renamed to ``path``,
    when it fails it is removed, so ``path`` is either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
