"""Progress without a terminal: plain log lines, never a bar's carriage-return updates."""

from __future__ import annotations

import io
import logging

import pytest
from tqdm.auto import tqdm

from attngan import progress
from attngan.cli import main


def test_data_shapes_into_a_pipe_writes_no_bar(tmp_path, capsys):
    argv = ["data", "shapes", "--num-train", "60", "--num-test", "4", "--size", "32"]
    assert main([*argv, "--workers", "1", "--out", str(tmp_path / "shapes")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "it/s" not in err
    assert err.splitlines() == [err.splitlines()[-1]] and err.startswith("wrote 60 train")


def test_without_a_terminal_progress_is_periodic_log_lines(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "EVERY", 0.0)  # a line at every update
    argv = ["data", "shapes", "--num-train", "60", "--num-test", "4", "--size", "32"]
    assert main([*argv, "--workers", "1", "--out", str(tmp_path / "shapes")]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert "\r" not in "".join(lines)
    assert lines[0].startswith("shapes: ") and "/64 img (" in lines[0] and "img/s" in lines[0]
    assert lines[-3].startswith("shapes: 64/64 img (100 %)")
    assert lines[-2].startswith("shapes: done, 64 img in 0:00:")
    assert lines[-1].startswith("wrote 60 train")


def test_log_lines_follow_the_bar_interface(caplog):
    caplog.set_level(logging.INFO, logger="attngan")
    quick = progress.LogLines(total=10, desc="quick", unit="img", every=3600)
    for _ in range(10):
        quick.update()
    quick.close()
    assert caplog.messages == []  # done before the first line was due: nothing at all
    items = list(progress.LogLines(range(4), desc="items", every=0.0))
    assert items == [0, 1, 2, 3]
    assert caplog.messages[0].startswith("items: 1/4 it (25 %)")
    assert caplog.messages[-1].startswith("items: done, 4 it in ")
    caplog.clear()
    with progress.LogLines(total=2, desc="train", every=0.0) as bar:
        bar.set_postfix(loss="0.5", refresh=False)
        bar.update(2)
    assert caplog.messages[0].endswith(", loss=0.5")


@pytest.mark.parametrize("terminal", [True, False])
def test_a_bar_on_a_terminal_only(monkeypatch, terminal):
    stderr = io.StringIO()
    stderr.isatty = lambda: terminal  # type: ignore[method-assign]
    monkeypatch.setattr("sys.stderr", stderr)
    bar = progress.progress_bar(total=3, desc="x")
    assert isinstance(bar, tqdm) == terminal
    bar.close()
    assert isinstance(progress.progress_bar(total=3, disable=True), tqdm)  # silent either way
