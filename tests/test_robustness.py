"""Bad input a user can hand the ``attngan`` command: each is one line, ``attngan: error: ...``,
exit code 2, no traceback, nothing half-written, and never a hang."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attngan.config import load_config
from attngan.training.loop import epoch_batches, list_checkpoints

from .conftest import simple_rows, write_folder

ERROR = "attngan: error:"

# A tiny DAMSM run: 16 train images in batches of 4, a checkpoint after every step.
TINY_DAMSM = [
    "damsm.batch_size=4",
    "damsm.max_steps=4",
    "damsm.checkpoint_every=1",
    "data.captions_per_image=3",
    "data.workers=1",
    "model.embedding_dim=16",
    "model.word_dim=16",
    "model.cnn_channels=4",
]


def _attngan(
    *argv: str, cwd: Path, timeout: float = 60
) -> tuple[subprocess.CompletedProcess, float]:
    """Run the command in a fresh process; a hang fails the test instead of blocking it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "attngan", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done, time.perf_counter() - start


def _data_with_a_bad_image(root: Path, bad_step: int, content: bytes | None) -> Path:
    """16 train images; the one drawn in step ``bad_step`` of the first epoch is corrupt
    (``content``), or (``None``) its ``file_name`` names a file that is not an image."""
    rows = simple_rows(16)
    write_folder(root, {"train": rows, "test": simple_rows(4, prefix="t")}, image_size=32)
    seed = load_config("shapes").train.seed
    index = epoch_batches(16, 4, seed, 0)[bad_step - 1][0][0]
    name = rows[index]["file_name"]
    if content is None:
        lines = (root / "train" / "metadata.jsonl").read_text().replace(name, "metadata.jsonl")
        (root / "train" / "metadata.jsonl").write_text(lines)
        return root / "train" / "metadata.jsonl"
    (root / "train" / name).write_bytes(content)
    return root / "train" / name


@pytest.mark.parametrize(
    "content",
    [b"", os.urandom(300), None],
    ids=["zero-byte png", "random-bytes png", "file_name of a non-image"],
)
def test_a_corrupt_image_mid_training_is_one_line_and_exits(tmp_path, content):
    bad = _data_with_a_bad_image(tmp_path / "bad", bad_step=3, content=content)
    argv = ["train-damsm", "--data", "bad", "--no-progress", "--runs", "runs", "--set"]
    done, seconds = _attngan(*argv, *TINY_DAMSM, cwd=tmp_path)
    errors = [line for line in done.stderr.splitlines() if line.startswith(ERROR)]
    assert done.returncode == 2, done.stderr
    assert len(errors) == 1 and str(bad.relative_to(tmp_path)) in errors[0], done.stderr
    assert "Traceback" not in done.stderr and "worker" not in done.stderr
    assert seconds < 60
    (run,) = (tmp_path / "runs").iterdir()
    # the checkpoints of steps 1 and 2 are complete; nothing half-written is left
    assert [p.name for p in list_checkpoints(run)] == ["step-00000001", "step-00000002"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000001",
        "step-00000002",
    ]


def test_skip_bad_trains_past_a_corrupt_image(tmp_path):
    _data_with_a_bad_image(tmp_path / "bad", bad_step=1, content=b"")
    argv = ["-q", "train-damsm", "--data", "bad", "--no-progress", "--runs", "runs", "--set"]
    done, _ = _attngan(*argv, *TINY_DAMSM, "data.skip_bad=true", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "skipped 1 bad samples" in done.stderr
    assert Path(tmp_path, done.stdout.strip(), "model.json").is_file()
