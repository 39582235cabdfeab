"""Training end to end on a tiny `shapes` set: DAMSM, GAN, generate, resume, crash, kill -9, a
full disk, Ctrl-C, NaN."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from attngan import cli
from attngan.checkpoints import load_model, read_model_info
from attngan.config import load_config
from attngan.data.shapes import build_shapes
from attngan.errors import ConfigError, TrainingError
from attngan.metrics import r_precision
from attngan.training import train_damsm, train_gan
from attngan.training.damsm import damsm_lr
from attngan.training.gan import ema_decay, ema_update
from attngan.training.loop import (
    epoch_batches,
    list_checkpoints,
    remove_partial_checkpoints,
    resolve_device,
    write_checkpoint_atomic,
)

TINY = [
    "model.base_size=16", "model.gf=4", "model.df=4", "model.embedding_dim=16",
    "model.word_dim=8", "model.cnn_channels=4", "model.z_dim=8", "model.condition_dim=8",
    "damsm.batch_size=4", "train.batch_size=4", "data.workers=0", "train.log_every=1",
    "train.sample_captions=4", "train.sample_every=2", "damsm.max_steps=2", "train.max_steps=2",
]  # fmt: skip


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "shapes"
    build_shapes(root, num_train=24, num_test=8, image_size=32, workers=1, progress=False)
    return root


def tiny(root: Path, *more: str):
    return load_config("shapes", [*TINY, f"data.root={root}", *more])


@pytest.fixture(scope="module")
def damsm_run(shapes_root, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("damsm-runs")
    result = train_damsm(tiny(shapes_root), runs=runs, device="cpu", progress=False)
    assert result.status == "finished"
    return result.run_dir


class Recorder:
    """``on_step`` callback keeping every step's losses."""

    def __init__(self) -> None:
        self.losses: dict[int, dict[str, float]] = {}

    def __call__(self, loop, step: int, losses: dict[str, float]) -> None:
        self.losses[step] = dict(losses)


# --- pieces ------------------------------------------------------------------------------------


def test_epoch_batches_are_a_seeded_permutation_without_the_last_partial_batch():
    plan = epoch_batches(10, 3, seed=1, epoch=0)
    assert [len(b) for b in plan] == [3, 3, 3]
    indices = [i for b in plan for i, _ in b]
    assert len(set(indices)) == 9 and set(indices) <= set(range(10))
    assert plan == epoch_batches(10, 3, seed=1, epoch=0)
    assert plan != epoch_batches(10, 3, seed=1, epoch=1)
    assert plan != epoch_batches(10, 3, seed=2, epoch=0)


def test_seeded_keys_fix_a_training_sample(shapes_root):
    from attngan.data.dataset import open_datasets

    dataset = open_datasets(tiny(shapes_root), ["train"], progress=False)["train"]
    a, b = dataset[(3, 123)], dataset[(3, 123)]
    assert torch.equal(a.images[-1], b.images[-1]) and torch.equal(a.tokens, b.tokens)
    others = [dataset[(3, s)] for s in range(8)]
    assert any(not torch.equal(o.images[-1], a.images[-1]) for o in others)


def test_checkpoints_are_renamed_into_place_and_pruned(tmp_path):
    def write(folder: Path) -> None:
        (folder / "model.json").write_text("{}")
        (folder / "train_state.pt").write_text("x")

    for step in (1, 2, 3, 4):
        write_checkpoint_atomic(tmp_path, step, write, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000003", "step-00000004"]

    def crash(folder: Path) -> None:
        (folder / "model.json").write_text("{}")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_checkpoint_atomic(tmp_path, 5, crash, keep=2)
    assert list_checkpoints(tmp_path)[-1].name == "step-00000004"
    assert remove_partial_checkpoints(tmp_path) == [".tmp-step-00000005"]


def test_damsm_learning_rate_follows_the_release_schedule():
    config = load_config("birds")
    assert damsm_lr(config, 0) == pytest.approx(0.002)
    assert damsm_lr(config, 1) == pytest.approx(0.002 * 0.98)
    assert damsm_lr(config, 1000) == pytest.approx(damsm_lr(config, 2000))
    assert 0.0002 * 0.98 <= damsm_lr(config, 1000) <= 0.0002


def test_ema_update_moves_parameters_and_copies_buffers():
    model, ema = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        model.weight.fill_(2.0)
        model.running_mean.fill_(5.0)
    ema_update(ema, model, decay=0.75)
    assert torch.allclose(ema.weight, torch.full((3,), 0.75 * 1.0 + 0.25 * 2.0))
    assert torch.equal(ema.running_mean, model.running_mean)


def test_ema_decay_warms_up_to_the_configured_decay():
    assert ema_decay(0.999, 0) == pytest.approx(0.1)
    assert ema_decay(0.999, 90) == pytest.approx(0.91)
    assert ema_decay(0.999, 10**6) == 0.999
    assert ema_decay(0.999, 0, warmup=False) == 0.999


def test_r_precision_of_perfect_and_of_random_features():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(300, 16, generator=gen)
    assert r_precision(feats, feats).mean == 1.0
    noise = r_precision(feats, torch.randn(300, 16, generator=gen))
    assert noise.mean < 0.1 and len(noise.folds) == 10
    with pytest.raises(ValueError, match="100"):
        r_precision(feats[:50], feats[:50])


# --- runs --------------------------------------------------------------------------------------


def test_damsm_run_writes_a_damsm_model(damsm_run):
    info = read_model_info(damsm_run / "model")
    assert info["kind"] == "damsm" and info["step"] == 2
    assert (damsm_run / "config.yaml").is_file() and (damsm_run / "log.txt").is_file()
    rows = [json.loads(line) for line in (damsm_run / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all("loss" in r for r in rows)
    assert list((damsm_run / "tensorboard").iterdir())
    assert [p.name for p in list_checkpoints(damsm_run)] == ["step-00000002"]


def test_damsm_hard_negatives_train_and_are_logged(shapes_root, tmp_path):
    from attngan.data.shapes import SHAPES

    swap = "damsm.swap_words=" + " ".join(SHAPES)
    recorder = Recorder()
    config = tiny(shapes_root, swap, "damsm.max_steps=3")
    result = train_damsm(config, runs=tmp_path, device="cpu", progress=False, on_step=recorder)
    assert result.status == "finished"
    losses = recorder.losses
    assert all(r["swap"] > 0 for r in losses.values())
    assert all(r["loss"] > r["word"] + r["sent"] for r in losses.values())  # counted in the total
    weightless = Recorder()
    config = tiny(shapes_root, swap, "damsm.max_steps=1", "damsm.swap_weight=0")
    train_damsm(config, runs=tmp_path, device="cpu", progress=False, on_step=weightless)
    assert "swap" not in weightless.losses[1]  # weight 0: the release's loss, no extra pass


def test_damsm_without_swappable_words_trains_without_hard_negatives(shapes_root, tmp_path, caplog):
    recorder = Recorder()
    config = tiny(shapes_root, "damsm.swap_words=zebra/horse lion", "damsm.max_steps=1")
    with caplog.at_level(logging.WARNING, logger="attngan"):
        train_damsm(config, runs=tmp_path, device="cpu", progress=False, on_step=recorder)
    assert "swap" not in recorder.losses[1]
    assert "training without hard negatives" in caplog.text


def test_gan_hard_negatives_are_part_of_the_generator_loss(shapes_root, damsm_run, tmp_path):
    from attngan.data.shapes import SHAPES

    swap = "damsm.swap_words=" + " ".join(SHAPES)
    recorder = Recorder()
    config = tiny(shapes_root, swap, "train.swap_weight=2")
    train_gan(config, damsm=damsm_run, runs=tmp_path, device="cpu", progress=False,
              on_step=recorder)  # fmt: skip
    for r in recorder.losses.values():
        assert r["swap"] > 0
        plain = r["g_adv"] + 5.0 * r["damsm"] + r["kl"]  # the shapes preset's lambda
        assert r["g"] == pytest.approx(plain + 2 * r["swap"], rel=1e-4)
    with pytest.raises(TrainingError, match="damsm.swap_words"):
        config = tiny(shapes_root, "train.swap_weight=1", "damsm.swap_words=")
        train_gan(config, damsm=damsm_run, runs=tmp_path,
                  device="cpu", progress=False)  # fmt: skip


def test_gan_r1_penalty_is_part_of_the_discriminator_loss(shapes_root, damsm_run, tmp_path):
    runs = {}
    for gamma in (0, 100):
        recorder = Recorder()
        config = tiny(shapes_root, f"train.r1_gamma={gamma}", "train.max_steps=1")
        train_gan(config, damsm=damsm_run, runs=tmp_path, device="cpu", progress=False,
                  on_step=recorder)  # fmt: skip
        runs[gamma] = recorder.losses[1]
    # the same seed, data and networks: the first step's D loss differs by the penalty alone
    assert runs[100]["d"] > runs[0]["d"] + 1e-3
    assert runs[100]["g_adv"] != runs[0]["g_adv"]  # the generator met differently updated Ds


def test_gan_run_writes_samples_checkpoints_and_a_model_that_generates(
    shapes_root, damsm_run, tmp_path, capsys
):
    result = train_gan(
        tiny(shapes_root), damsm=damsm_run, runs=tmp_path / "runs", device="cpu", progress=False
    )
    run = result.run_dir
    assert result.status == "finished" and result.step == 2
    for name in ("config.yaml", "log.txt", "stats.jsonl"):
        assert (run / name).is_file()
    samples = sorted(p.name for p in (run / "samples").iterdir())
    assert samples == ["reals.png", "step-00000002-attention.png", "step-00000002.png"]
    assert any(p.name.startswith("events.") for p in (run / "tensorboard").iterdir())
    checkpoint = list_checkpoints(run)[-1]
    assert {"discriminators", "generator"} <= set(read_model_info(checkpoint)["components"])
    model = load_model(run / "model", kind="attngan")
    assert "discriminators" not in model.modules and model.info["step"] == 2
    assert model.config.train.damsm_model == str(damsm_run / "model")

    out = tmp_path / "generated"
    code = cli.main(["generate", "--model", str(run / "model"), "a red circle", "--out", str(out)])
    assert code == 0
    names = {p.name for p in out.iterdir()}
    assert {"000-00-stage0-16px.png", "000-00-stage1-32px.png", "000-00-attention.png"} <= names


def _gan(shapes_root, damsm_run, runs, recorder, *more, resume=None):
    config = None if resume else tiny(shapes_root, "train.checkpoint_every=1", *more)
    return train_gan(
        config, damsm=None if resume else damsm_run, runs=runs, resume=resume,
        overrides=list(more) if resume else None, device="cpu", on_step=recorder, progress=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(shapes_root, damsm_run, tmp_path_factory):
    """Five GAN steps in one go (the epoch of 24 samples in batches of 4 has 6 steps)."""
    recorder = Recorder()
    result = _gan(
        shapes_root, damsm_run, tmp_path_factory.mktemp("full"), recorder, "train.max_steps=5"
    )
    return recorder.losses, result


def test_resumed_gan_run_repeats_the_uninterrupted_losses(
    shapes_root, damsm_run, uninterrupted, tmp_path
):
    losses, full = uninterrupted
    first = Recorder()
    part = _gan(shapes_root, damsm_run, tmp_path, first, "train.max_steps=2")
    assert part.step == 2 and first.losses == {k: losses[k] for k in (1, 2)}
    rest = Recorder()
    resumed = _gan(shapes_root, damsm_run, tmp_path, rest, "train.max_steps=5", resume=part.run_dir)
    assert resumed.step == 5
    assert rest.losses == {k: losses[k] for k in (3, 4, 5)}
    a = load_model(full.model, components=("generator",))["generator"].state_dict()
    b = load_model(resumed.model, components=("generator",))["generator"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_spectral_discriminators_and_r1_resume_exactly(shapes_root, damsm_run, tmp_path):
    # the power iteration's vectors live in the discriminators' checkpointed state
    more = ("model.d_norm=spectral", "train.r1_gamma=1")
    full = Recorder()
    _gan(shapes_root, damsm_run, tmp_path / "full", full, *more, "train.max_steps=3")
    part = _gan(shapes_root, damsm_run, tmp_path, Recorder(), *more, "train.max_steps=1")
    rest = Recorder()
    _gan(shapes_root, damsm_run, tmp_path, rest, "train.max_steps=3", resume=part.run_dir)
    assert rest.losses == {k: full.losses[k] for k in (2, 3)}
    assert all(math.isfinite(r["d"]) for r in full.losses.values())


def _resumes_exactly(shapes_root, damsm_run, tmp_path, *more: str):
    """A 3-step run with ``more``, and the same cut after step 1 and resumed: equal losses.
    Returns the cut run and a plain 1-step run (saved without ``more``)."""
    full, rest = Recorder(), Recorder()
    _gan(shapes_root, damsm_run, tmp_path / "full", full, *more, "train.max_steps=3")
    part = _gan(shapes_root, damsm_run, tmp_path, Recorder(), *more, "train.max_steps=1")
    _gan(shapes_root, damsm_run, tmp_path, rest, "train.max_steps=3", resume=part.run_dir)
    assert rest.losses == {k: full.losses[k] for k in (2, 3)}  # weights and Adam state
    plain = _gan(shapes_root, damsm_run, tmp_path / "plain", Recorder(), "train.max_steps=1")
    return part, plain, rest


def test_feature_critic_resumes_exactly_and_refuses_a_run_saved_without_it(
    shapes_root, damsm_run, tmp_path
):
    part, plain, _ = _resumes_exactly(shapes_root, damsm_run, tmp_path, "train.feature_critic=1")
    assert (list_checkpoints(part.run_dir)[-1] / "feature_critic.safetensors").is_file()
    with pytest.raises(TrainingError, match="saved without train.feature_critic"):
        _gan(shapes_root, damsm_run, tmp_path, Recorder(), "train.max_steps=2",
             "train.feature_critic=1", resume=plain.run_dir)  # fmt: skip


def test_contrastive_heads_resume_exactly_and_a_changed_setting_is_refused(
    shapes_root, damsm_run, tmp_path
):
    more = "train.d_contrastive=1"
    part, plain, rest = _resumes_exactly(shapes_root, damsm_run, tmp_path, more)
    assert "g_contrast" in rest.losses[3]
    # a checkpoint's model folder holds the heads too, and loads
    model = load_model(list_checkpoints(part.run_dir)[-1], components=("discriminators",))
    assert model["discriminators"][0].contrast is not None
    with pytest.raises(TrainingError, match="saved without train.d_contrastive"):
        _gan(shapes_root, damsm_run, tmp_path, Recorder(), "train.max_steps=2", more,
             resume=plain.run_dir)  # fmt: skip
    with pytest.raises(TrainingError, match="saved with train.d_contrastive"):
        _gan(shapes_root, damsm_run, tmp_path, Recorder(), "train.max_steps=2",
             "train.d_contrastive=0", resume=part.run_dir)  # fmt: skip


def test_resumed_damsm_run_repeats_the_uninterrupted_losses(shapes_root, tmp_path):
    config = tiny(shapes_root, "damsm.checkpoint_every=1")
    full, part, rest = Recorder(), Recorder(), Recorder()
    train_damsm(config, tmp_path / "a", device="cpu", on_step=full, progress=False)
    config = tiny(shapes_root, "damsm.max_steps=1")
    run = train_damsm(config, tmp_path / "b", device="cpu", on_step=part, progress=False).run_dir
    train_damsm(resume=run, overrides=["damsm.max_steps=2"], device="cpu", on_step=rest,
                progress=False)  # fmt: skip
    assert part.losses[1] == full.losses[1] and rest.losses == {2: full.losses[2]}


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import attngan.training.loop as loop
    from attngan.config import load_config
    from attngan.training import train_gan

    real = loop.save_train_state
    def save_then_die(path, state):
        if state["step"] == 3:  # die half-way through writing the third checkpoint
            path.write_bytes(b"partial")
            os.kill(os.getpid(), signal.SIGKILL)
        real(path, state)
    loop.save_train_state = save_then_die
    config = load_config("shapes", sys.argv[3:])
    train_gan(config, damsm=sys.argv[1], runs=sys.argv[2], device="cpu", progress=False)
    """
)


def test_sigkill_while_writing_a_checkpoint_resumes_from_the_last_complete_one(
    shapes_root, damsm_run, uninterrupted, tmp_path, caplog
):
    losses, _ = uninterrupted
    args = [*TINY, f"data.root={shapes_root}", "train.checkpoint_every=1", "train.max_steps=5"]
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(damsm_run), str(tmp_path), *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (run,) = tmp_path.iterdir()
    assert [p.name for p in list_checkpoints(run)] == ["step-00000001", "step-00000002"]
    assert (run / "checkpoints" / ".tmp-step-00000003").is_dir()
    rest = Recorder()
    with caplog.at_level(logging.INFO):
        result = _gan(shapes_root, damsm_run, tmp_path, rest, resume=run)
    assert "half-written" in caplog.text and "step-00000002" in caplog.text
    assert result.step == 5 and rest.losses == {k: losses[k] for k in (3, 4, 5)}
    assert not (run / "checkpoints" / ".tmp-step-00000003").exists()


# `attngan train` with a step and a checkpoint write slow enough to be killed inside: each step
# touches $ATTNGAN_TEST_MARKS/step-N as it starts
SLOWED = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import attngan.checkpoints as checkpoints
    from attngan import cli
    from attngan.training.gan import GANTrainer

    marks = Path(os.environ["ATTNGAN_TEST_MARKS"])
    step, save_file = GANTrainer.train_step, checkpoints.save_file

    def slow_step(self, batch):
        (marks / f"step-{self.step + 1}").touch()
        time.sleep(0.2)
        losses = step(self, batch)
        time.sleep(0.2)
        return losses

    def slow_save_file(*args, **kwargs):  # 5 files a checkpoint: 0.75 s or more
        time.sleep(0.15)
        save_file(*args, **kwargs)

    GANTrainer.train_step, checkpoints.save_file = slow_step, slow_save_file
    sys.exit(cli.main(sys.argv[1:]))
    """
)


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (the DataLoader's workers), from /proc."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _wait_for(path: Path, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert proc.poll() is None, f"ended before {path.name}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {path.name} in 120 s:\n{log.read_text()}"
        time.sleep(0.005)


def _weights(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    last = list_checkpoints(run)[-1]
    files = [last / f for f in ("generator.safetensors", "generator_live.safetensors",
                                "discriminators.safetensors")]  # fmt: skip
    return {str(f.relative_to(run)): load_file(f) for f in [run / "model" / files[0].name, *files]}


def _stats(run: Path) -> dict[int, set[str]]:
    """Every ``stats.jsonl`` row by step (a resumed run logs again the steps it repeats)."""
    rows: dict[int, set[str]] = {}
    for line in (run / "stats.jsonl").read_text().splitlines():
        rows.setdefault(json.loads(line)["step"], set()).add(line)
    return rows


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds workers through /proc")
def test_sigkill_at_five_random_moments_then_resume_gives_the_uninterrupted_weights(
    shapes_root, damsm_run, tmp_path
):
    """kill -9 inside steps, inside checkpoint writes and of the DataLoader worker (the run
    stops with one line), at moments drawn from a fixed seed; ``--resume`` after each. The
    weights and every logged loss end as those of a run never stopped."""
    # 8 steps: the 6 of epoch 0 and 2 of epoch 1 (another loader, another worker)
    sets = [*TINY, f"data.root={shapes_root}", "data.workers=1", "train.checkpoint_every=1",
            "train.max_steps=8"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = ["train", "--damsm", str(damsm_run), "--no-progress", "--set", *sets]

    log = tmp_path / "log.txt"  # the output of the latest command

    def attngan(argv: list[str], marks: Path | None = None) -> subprocess.Popen:
        code = ["-c", SLOWED] if marks else ["-m", "attngan"]
        more = {"ATTNGAN_TEST_MARKS": str(marks)} if marks else {}
        with log.open("w") as out:
            return subprocess.Popen([sys.executable, *code, *argv], env={**env, **more},
                                    stdout=out, stderr=out)  # fmt: skip

    reference = attngan([*start, "--runs", str(tmp_path / "reference")])
    assert reference.wait(timeout=300) == 0, log.read_text()
    (reference_run,) = (tmp_path / "reference").iterdir()

    rng = random.Random(17)
    steps = sorted(rng.sample(range(2, 8), 5))
    kinds = rng.sample(["step", "step", "checkpoint", "checkpoint", "worker"], 5)
    run = None
    for attempt, (step, kind) in enumerate(zip(steps, kinds, strict=True)):
        marks = tmp_path / f"marks-{attempt}"
        marks.mkdir()
        argv = ["train", "--resume", str(run), "--no-progress"] if run else [
            *start, "--runs", str(tmp_path / "runs")]  # fmt: skip
        proc = attngan(argv, marks)
        try:
            if run is None:
                _wait_for(marks / "step-1", proc, log)
                (run,) = (tmp_path / "runs").iterdir()
            partial = run / "checkpoints" / f".tmp-step-{step:08d}"
            _wait_for(partial if kind == "checkpoint" else marks / f"step-{step}", proc, log)
            time.sleep(rng.uniform(0, 0.3))  # a step lasts 0.4 s or more, a write 0.75 s
            if kind == "worker":
                (worker,) = _children(proc.pid)
                os.kill(worker, signal.SIGKILL)
                assert proc.wait(timeout=60) == 2, log.read_text()
            else:
                proc.send_signal(signal.SIGKILL)
                assert proc.wait(timeout=60) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
        done = [int(p.name.split("-")[1]) for p in list_checkpoints(run)]
        assert done[-1] == step - 1, (attempt, kind, done)  # the kill came before step's end
        if kind == "checkpoint":
            assert partial.is_dir()  # killed mid-write: the half-written folder is not listed
        if kind == "worker":
            err = log.read_text()
            assert "Traceback" not in err
            (line,) = [x for x in err.splitlines() if x.startswith("attngan: error:")]
            assert "data-loader worker process died" in line and f"--resume {run}" in line

    final = attngan(["train", "--resume", str(run), "--no-progress"])
    assert final.wait(timeout=300) == 0, log.read_text()
    want, got = _weights(reference_run), _weights(run)
    assert list(got) == list(want)
    for name, tensors in want.items():
        assert got[name].keys() == tensors.keys()
        assert all(torch.equal(got[name][k], tensors[k]) for k in tensors), name
    repeated, rows = _stats(run), _stats(reference_run)
    assert sorted(repeated) == list(range(1, 9))
    assert all(repeated[k] == rows[k] for k in rows)


def test_a_full_disk_while_writing_a_checkpoint_is_one_line_and_resume_goes_on(
    shapes_root, damsm_run, uninterrupted, tmp_path, monkeypatch, capsys
):
    import errno

    import attngan.checkpoints as checkpoints

    save_file, writes = checkpoints.save_file, []

    def full_disk(tensors, filename, metadata=None):  # the third file of checkpoint 3 fills it
        if ".tmp-step-00000003" in filename:
            writes.append(filename)
            if len(writes) == 3:
                Path(filename).write_bytes(b"\0" * 64)
                raise OSError(errno.ENOSPC, "No space left on device", filename)
        save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoints, "save_file", full_disk)
    sets = [*TINY, f"data.root={shapes_root}", "train.checkpoint_every=1", "train.max_steps=5"]
    argv = ["train", "--damsm", str(damsm_run), "--runs", str(tmp_path), "--no-progress"]
    assert cli.main([*argv, "--set", *sets]) == 2
    err = capsys.readouterr().err
    (run,) = tmp_path.iterdir()
    (line,) = [x for x in err.splitlines() if x.startswith("attngan: error:")]
    assert "Traceback" not in err and err.endswith(line + "\n")
    assert "checkpoints/step-00000003: no space left on device" in line.lower()
    assert f"the last complete checkpoint is {run}/checkpoints/step-00000002" in line
    assert line.endswith(f"continue with --resume {run}")
    # the previous checkpoint is intact and loads; the half-written one is gone
    assert sorted(os.listdir(run / "checkpoints")) == ["step-00000001", "step-00000002"]
    assert load_model(run / "checkpoints" / "step-00000002", kind="attngan").info["step"] == 2

    monkeypatch.setattr(checkpoints, "save_file", save_file)  # space freed
    assert cli.main(["train", "--resume", str(run), "--no-progress"]) == 0
    losses, full = uninterrupted
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 3, 4, 5]  # step 3 again, after the resume
    assert all(r["g"] == pytest.approx(losses[r["step"]]["g"], abs=1e-6) for r in rows)
    a = load_model(full.model, components=("generator",))["generator"].state_dict()
    b = load_model(run / "model", components=("generator",))["generator"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_full_disk_elsewhere_in_the_run_folder_is_one_line(
    shapes_root, damsm_run, tmp_path, monkeypatch
):
    import errno

    from attngan.errors import OutputError
    from attngan.training.loop import Stats

    def full(self, step, values, **extra):
        if step == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(Stats, "scalars", full)
    with pytest.raises(OutputError, match=r"stats.jsonl\).*step 2 .*step-00000001"):
        _gan(shapes_root, damsm_run, tmp_path, None, "train.max_steps=3")


@pytest.mark.parametrize(
    ("message", "said"),
    [
        ("DataLoader worker (pid 123) is killed by signal: Killed. ",
         "pid 123 killed by signal: Killed"),
        ("DataLoader worker (pid 7) exited unexpectedly with exit code 1. Details are lost due "
         "to multiprocessing.", "pid 7 exited unexpectedly with exit code 1"),
        ("DataLoader worker (pid(s) 8, 9) exited unexpectedly", "pid 8, 9 exited unexpectedly"),
        ("DataLoader timed out after 5 seconds", None),
    ],
)  # fmt: skip
def test_pytorch_messages_of_a_dead_worker_are_recognised(message, said):
    from attngan.training.loop import dead_worker

    assert dead_worker(RuntimeError(message)) == said
    assert dead_worker(ValueError(message)) is None


def test_ctrl_c_saves_a_checkpoint_and_stops(shapes_root, damsm_run, tmp_path):
    def interrupt(loop, step, losses):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)  # Python's default, unless an earlier test in this
    # process changed it
    result = _gan(shapes_root, damsm_run, tmp_path, interrupt, "train.max_steps=5")
    assert result.status == "interrupted" and result.step == 2
    assert list_checkpoints(result.run_dir)[-1].name == "step-00000002"
    assert not (result.run_dir / "model").exists()
    assert signal.getsignal(signal.SIGINT) is before  # the run gives the handler back


def test_ctrl_c_in_a_terminal_with_loader_workers_saves_and_exits_130(
    shapes_root, damsm_run, tmp_path
):
    """SIGINT to the whole process group, as a terminal sends it, reaches the workers too."""
    import time

    sets = [*TINY, f"data.root={shapes_root}", "data.workers=1", "train.max_steps=100000"]
    command = [sys.executable, "-m", "attngan.cli", "train", "--damsm", str(damsm_run),
               "--runs", str(tmp_path), "--no-progress", "--set", *sets]  # fmt: skip
    proc = subprocess.Popen(command, start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        stats = None
        while time.monotonic() < deadline and proc.poll() is None:
            runs = list(tmp_path.iterdir())
            stats = runs[0] / "stats.jsonl" if runs else None
            if stats is not None and stats.is_file() and len(stats.read_text().splitlines()) >= 3:
                break
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "continue with --resume" in err and "Traceback" not in err
    (run,) = tmp_path.iterdir()
    step = int(list_checkpoints(run)[-1].name.split("-")[1])
    assert step >= 3


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    shapes_root, damsm_run, tmp_path, monkeypatch
):
    import attngan.training.gan as gan

    calls = []

    def bad_kl(mu, logvar):
        calls.append(1)
        value = gan.__dict__["_real_kl"](mu, logvar)
        return value * float("nan") if len(calls) == 3 else value

    monkeypatch.setitem(gan.__dict__, "_real_kl", gan.kl_loss)
    monkeypatch.setattr(gan, "kl_loss", bad_kl)
    with pytest.raises(TrainingError, match=r"step 3: .*kl = nan.*step-00000002"):
        _gan(shapes_root, damsm_run, tmp_path, None, "train.max_steps=5")
    (run,) = tmp_path.iterdir()
    assert list_checkpoints(run)[-1].name == "step-00000002"


def test_log_lines_without_a_terminal(shapes_root, damsm_run, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        _gan(shapes_root, damsm_run, tmp_path, None, "train.max_steps=2")
    lines = [r.getMessage() for r in caplog.records if "steps/s" in r.getMessage()]
    assert len(lines) == 2 and "ETA" in lines[-1] and "step 2/2" in lines[-1]


# --- the command line --------------------------------------------------------------------------


def test_cli_trains_damsm_then_the_gan_then_resumes(shapes_root, tmp_path, capsys):
    runs = tmp_path / "runs"
    sets = ["--set", *TINY, "--data", str(shapes_root), "--runs", str(runs), "--no-progress"]
    assert cli.main(["train-damsm", *sets]) == 0
    damsm = Path(capsys.readouterr().out.strip())
    assert read_model_info(damsm)["kind"] == "damsm"
    assert cli.main(["train", "--damsm", str(damsm.parent), *sets]) == 0
    model = Path(capsys.readouterr().out.strip())
    assert read_model_info(model)["kind"] == "attngan"
    args = ["train", "--resume", str(model.parent), "--set", "train.max_steps=3", "--no-progress"]
    assert cli.main(args) == 0
    assert read_model_info(model)["step"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train"], "needs trained DAMSM encoders"),
        (["train", "--damsm", "/nonexistent/damsm"], "model not found"),
        (["train-damsm", "--data", "/nonexistent/shapes"], "/nonexistent/shapes"),
        (["train-damsm", "--set", "damsm.batch_size=x"], "damsm.batch_size"),
        (["train-damsm", "--set", "damsm.bach_size=4"], "did you mean"),
        (["train", "--resume", "/nonexistent/run"], "cannot resume"),
    ],
)
def test_cli_errors_are_one_line(args, message, capsys, tmp_path):
    code = cli.main([*args, "--runs", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("attngan: error:") and message in err[-1]


def test_gan_refuses_encoders_trained_at_a_larger_size(shapes_root, damsm_run, tmp_path, capsys):
    # one stage of 16 px, against the encoder's 32
    args = ["train", "--damsm", str(damsm_run), "--set", *TINY, "model.stages=1"]
    assert cli.main([*args, "--data", str(shapes_root), "--runs", str(tmp_path)]) == 2
    assert "trained on 32 px" in capsys.readouterr().err


def test_one_stage_gan_trains_and_writes_samples(shapes_root, damsm_run, tmp_path):
    """A generator of one stage (no refinement stage, so no word attention) trains, and its
    sample grids are written without an attention figure."""
    config = tiny(shapes_root, "model.stages=1", "model.base_size=32")
    result = train_gan(config, runs=tmp_path, damsm=damsm_run, device="cpu", progress=False)
    assert result.status == "finished"
    samples = sorted(p.name for p in (result.run_dir / "samples").iterdir())
    assert "step-00000002.png" in samples and not any("attention" in p for p in samples)


def test_gan_with_a_larger_last_stage_scores_it_averaged_down(
    shapes_root, damsm_run, tmp_path, caplog
):
    """Encoders trained at 32 px serve a generator of three stages (16, 32, 64 px): the DAMSM
    loss sees the 64 px images averaged down to 32 px."""
    config = tiny(shapes_root, "model.stages=3")
    with caplog.at_level("INFO", logger="attngan.training.gan"):
        result = train_gan(config, runs=tmp_path, damsm=damsm_run, device="cpu", progress=False)
    assert result.status == "finished"
    assert "64 px images averaged down to the CNN image encoder's 32 px" in caplog.text
    model = load_model(result.run_dir / "model")  # the image encoder too, at its own size
    assert model.config.model.image_sizes == [16, 32, 64] and model.config.model.cnn_size == 32
    assert model["image_encoder"](torch.zeros(2, 3, 64, 64)).regions.shape[-1] == 4  # 32 / 8


@pytest.mark.parametrize("layout", ["cub", "coco", "folder"])
def test_both_trainings_run_on_every_data_layout(layout, request, tmp_path):
    """A step of DAMSM then of the GAN on the release's CUB layout (class masking), COCO and an
    own-data folder, from their presets with tiny networks."""
    from .conftest import COCO_MINI

    if layout == "cub":
        root, preset, more = request.getfixturevalue("cub_layout")[0], "birds", ["data.limit=3"]
    elif layout == "coco":
        if not COCO_MINI.is_dir():
            pytest.skip("no ../shared/data/coco-mini")
        root, preset, more = COCO_MINI, "coco", []
    else:
        root, preset, more = (
            request.getfixturevalue("folder_data"),
            "shapes",
            ["data.captions_per_image=3"],
        )
    sets = [*TINY, f"data.root={root}", "model.image_encoder=cnn", "damsm.batch_size=2",
            "train.batch_size=2", "damsm.max_steps=1", "train.max_steps=1", *more]  # fmt: skip
    damsm = train_damsm(load_config(preset, sets), tmp_path, device="cpu", progress=False)
    gan = train_gan(load_config(preset, sets), damsm=damsm.model, runs=tmp_path, device="cpu",
                    progress=False)  # fmt: skip
    assert gan.status == "finished"
    assert load_model(gan.model, kind="attngan").config.name == preset


def test_progress_bar_on_a_terminal_shows_rate_eta_and_losses(capsys):
    from attngan.training.loop import Progress

    progress = Progress(total=4, start=1, every=1, desc="gan", bar=True)
    for step in (2, 3, 4):
        progress.update(step, {"d": 1.25, "g": 3.5}, epoch=0)
    progress.close()
    err = capsys.readouterr().err
    assert "gan" in err and "4/4" in err and "step/s" in err and "d=1.250" in err


def test_unconditional_gan_needs_no_caption_terms(shapes_root, damsm_run, tmp_path):
    with pytest.raises(TrainingError, match="damsm_lambda=0"):
        train_gan(tiny(shapes_root, "model.conditional=false"), damsm=damsm_run, runs=tmp_path,
                  device="cpu", progress=False)  # fmt: skip
    recorder = Recorder()
    config = tiny(shapes_root, "model.conditional=false", "train.damsm_lambda=0",
                  "train.max_steps=1")  # fmt: skip
    result = train_gan(config, damsm=damsm_run, runs=tmp_path, device="cpu", progress=False,
                       on_step=recorder)  # fmt: skip
    r = recorder.losses[1]
    assert r["g"] == pytest.approx(r["g_adv"] + r["kl"], rel=1e-5)  # no DAMSM term
    model = load_model(result.run_dir / "model", kind="attngan")
    assert model.config.model.conditional is False
    assert model["generator"].conditional is False


def test_discriminator_loss_without_the_mismatched_term():
    from attngan.losses import discriminator_scale_loss
    from attngan.models import Discriminator

    torch.manual_seed(0)
    disc = Discriminator(16, df=4, embedding_dim=8)
    real, fake, sentence = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16), torch.randn(4, 8)
    with_term = discriminator_scale_loss(disc, real, fake, sentence)
    without = discriminator_scale_loss(disc, real, fake, sentence, mismatch=False)
    # recomputed by hand: (real_u + real_c)/2 + (fake_u + fake_c)/2, no mismatched pairs
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    r, f = disc(real, sentence), disc(fake, sentence)
    expected = (bce(r.unconditional, torch.ones(4)) + bce(r.conditional, torch.ones(4))) / 2 + (
        bce(f.unconditional, torch.zeros(4)) + bce(f.conditional, torch.zeros(4))
    ) / 2
    torch.testing.assert_close(without, expected)
    assert not torch.allclose(with_term, without)


def test_gan_mode_seeking_cutout_and_magp_switches(shapes_root, damsm_run, tmp_path):
    base = ["train.max_steps=1"]
    runs = {}
    for name, extra in {
        "plain": [],
        "seek": ["train.mode_seeking=1"],
        "cutout": ["train.d_cutout=0.5"],
        "noise": ["train.d_noise=0.2"],
        "magp": ["train.magp_weight=2"],
        "stages": ["train.stage_consistency=3"],
        "paired": ["train.paired_l1=10"],
        "features": ["train.paired_features=10"],
        "no_adv": ["train.g_adversarial=0"],
        "d_swap": ["train.d_swap_weight=2", "damsm.swap_words=circle square triangle star"],
        "blur": ["train.d_blur_negatives=1"],
        "damsm_shift": ["train.damsm_shift=3"],
        "critic": ["train.feature_critic=2"],
        "contrast": ["train.d_contrastive=2", "train.d_contrastive_temperature=0.5"],
    }.items():
        recorder = Recorder()
        train_gan(tiny(shapes_root, *base, *extra), damsm=damsm_run, runs=tmp_path / name,
                  device="cpu", progress=False, on_step=recorder)  # fmt: skip
        runs[name] = recorder.losses[1]
    seek = runs["seek"]
    assert seek["mode_seeking"] > 0 and "mode_seeking" not in runs["plain"]
    plain_g = seek["g_adv"] + 5.0 * seek["damsm"] + seek["kl"]
    assert seek["g"] == pytest.approx(plain_g + seek["mode_seeking"], rel=1e-4)
    assert runs["cutout"]["d"] != pytest.approx(runs["plain"]["d"], rel=1e-6)
    for key in ("d", "g_adv"):  # instance noise changes both losses
        assert runs["noise"][key] != pytest.approx(runs["plain"][key], rel=1e-6)
    assert runs["magp"]["d"] > runs["plain"]["d"]  # the penalty is part of D's loss
    agree = runs["stages"]
    plain_g = agree["g_adv"] + 5.0 * agree["damsm"] + agree["kl"]
    assert agree["stages"] > 0 and agree["g"] == pytest.approx(
        plain_g + 3 * agree["stages"], rel=1e-4
    )
    paired = runs["paired"]  # the generator's loss gains 10x the term, D's loss is untouched
    plain_g = paired["g_adv"] + 5.0 * paired["damsm"] + paired["kl"]
    assert 0 < paired["paired_l1"] < 4 and "paired_l1" not in runs["plain"]
    assert paired["g"] == pytest.approx(plain_g + 10 * paired["paired_l1"], rel=1e-4)
    assert paired["d"] == pytest.approx(runs["plain"]["d"], rel=1e-6)
    feat = runs["features"]  # 1 - cosine per region: within [0, 2]
    plain_g = feat["g_adv"] + 5.0 * feat["damsm"] + feat["kl"]
    assert 0 < feat["paired_features"] < 2 and "paired_features" not in runs["plain"]
    assert feat["g"] == pytest.approx(plain_g + 10 * feat["paired_features"], rel=1e-4)
    no_adv = runs["no_adv"]  # the adversarial terms are logged but not in the loss
    assert no_adv["g_adv"] > 0
    assert no_adv["g"] == pytest.approx(5.0 * no_adv["damsm"] + no_adv["kl"], rel=1e-4)
    assert runs["d_swap"]["d"] != pytest.approx(runs["plain"]["d"], rel=1e-6)
    assert runs["blur"]["d"] > runs["plain"]["d"]  # one more fake term
    moved = runs["damsm_shift"]  # the DAMSM term reads moved images; the discriminators do not
    assert moved["damsm"] != pytest.approx(runs["plain"]["damsm"], rel=1e-6)
    assert moved["d"] == pytest.approx(runs["plain"]["d"], rel=1e-6)
    assert moved["g_adv"] == pytest.approx(runs["plain"]["g_adv"], rel=1e-6)
    assert runs["d_swap"]["g_adv"] != pytest.approx(runs["plain"]["g_adv"], rel=1e-6)
    critic = runs["critic"]  # its own D loss; the generator's loss gains 2x its verdict
    assert critic["d_critic"] > 0 and critic["g_critic"] > 0 and "d_critic" not in runs["plain"]
    plain_g = critic["g_adv"] + 5.0 * critic["damsm"] + critic["kl"]
    assert critic["g"] == pytest.approx(plain_g + 2 * critic["g_critic"], rel=1e-4)
    assert critic["d"] == pytest.approx(runs["plain"]["d"], rel=1e-6)  # the others' unchanged
    contrast = runs["contrast"]  # one term per stage, each between 0 and a few ln(batch)
    assert contrast["g_contrast"] > 0 and "g_contrast" not in runs["plain"]
    plain_g = contrast["g_adv"] + 5.0 * contrast["damsm"] + contrast["kl"]
    assert contrast["g"] == pytest.approx(plain_g + 2 * contrast["g_contrast"], rel=1e-4)
    with pytest.raises(TrainingError, match="train.d_swap_weight needs the words"):
        train_gan(tiny(shapes_root, "train.d_swap_weight=1"), damsm=damsm_run, runs=tmp_path,
                  device="cpu", progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="d_cutout"):
        tiny(shapes_root, "train.d_cutout=1.0")
    with pytest.raises(ConfigError, match="train.damsm_shift must be below half"):
        tiny(shapes_root, "train.damsm_shift=100")
    with pytest.raises(ConfigError, match="damsm_shift and train.paired_features"):
        tiny(shapes_root, "train.damsm_shift=2", "train.paired_features=1")
    for bad in (
        "train.d_noise=-0.1",
        "train.d_noise_until=-1",
        "train.paired_l1=-1",
        "train.paired_features=-1",
        "train.g_adversarial=-1",
        "train.feature_critic=-1",
        "train.feature_critic_width=0",
        "train.d_contrastive=-1",
        "train.d_contrastive_temperature=0",
    ):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            tiny(shapes_root, bad)


def test_paired_negatives_take_their_images_crop_and_flip(shapes_root, tmp_path):
    import shutil

    from attngan.data.dataset import open_datasets
    from attngan.errors import DataError

    copy = tmp_path / "same"
    shutil.copytree(shapes_root, copy)  # negatives identical to the images: same crop, same pixels
    config = tiny(shapes_root, f"data.negatives={copy}", "train.d_negatives=1", "data.flip=true")
    data = open_datasets(config, ["train", "test"], progress=False)
    train = data["train"]
    for key in [(0, 5), (3, 11), 1, 2, 7]:  # seeded keys and plain indices (global RNG)
        sample = train[key]
        assert len(sample.negatives) == len(sample.images)
        for image, negative in zip(sample.images, sample.negatives, strict=True):
            assert torch.equal(image, negative)
    assert data["test"][0].negatives == ()  # evaluation splits carry none
    crops = {tuple(train[(0, s)].images[-1].flatten()[:40].tolist()) for s in range(6)}
    assert len(crops) > 1  # the crops are random, so equality above is not trivial
    (copy / "train" / "images" / "000002.png").unlink()
    with pytest.raises(DataError, match="paired negative image not found: .*000002.png"):
        open_datasets(config, ["train"], progress=False)
    off = tiny(shapes_root, f"data.negatives={copy}")  # no weight: not loaded, not needed
    assert open_datasets(off, ["train"], progress=False)["train"][0].negatives == ()


def test_gan_trains_with_paired_blob_twins(shapes_root, damsm_run, tmp_path):
    from attngan.data.shapes import build_blob_twins

    twins = tmp_path / "twins"
    build_blob_twins(shapes_root, twins, progress=False)
    runs = {}
    negatives = [f"data.negatives={twins}", "train.d_negatives=2"]
    for name, extra in {"plain": [], "twins": negatives,
                        "later": [*negatives, "train.d_negatives_from=1"]}.items():  # fmt: skip
        recorder = Recorder()
        train_gan(tiny(shapes_root, "train.max_steps=1", *extra), damsm=damsm_run,
                  runs=tmp_path / name, device="cpu", progress=False, on_step=recorder)  # fmt: skip
        runs[name] = recorder.losses[1]
    assert runs["twins"]["d"] > runs["plain"]["d"]  # one more fake term
    assert runs["later"]["d"] == pytest.approx(runs["plain"]["d"], rel=1e-5)  # not yet at step 1
    # the same images drawn, so the same fakes: the terms D does not touch agree
    assert runs["twins"]["damsm"] == pytest.approx(runs["plain"]["damsm"], rel=1e-5)
    with pytest.raises(TrainingError, match="train.d_negatives needs the folder"):
        train_gan(tiny(shapes_root, "train.d_negatives=1"), damsm=damsm_run, runs=tmp_path,
                  device="cpu", progress=False)  # fmt: skip


def test_resolve_device_names_a_bad_device_in_one_line():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda"}
    with pytest.raises(TrainingError, match="unknown device 'foo'"):
        resolve_device("foo")
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="no CUDA device"):
            resolve_device("cuda")


def test_damsm_image_noise_and_adversarial_images_change_the_losses_and_repeat(
    shapes_root, tmp_path
):
    def first_losses(name: str, *more: str) -> dict:
        recorder = Recorder()
        config = tiny(shapes_root, "damsm.max_steps=2", *more)
        train_damsm(config, tmp_path / name, device="cpu", on_step=recorder, progress=False)
        return recorder.losses

    plain = first_losses("plain")
    noisy = first_losses("noisy", "damsm.image_noise=0.5")
    assert noisy == first_losses("again", "damsm.image_noise=0.5")  # drawn from (seed, step)
    assert noisy[1]["word"] != pytest.approx(plain[1]["word"], rel=1e-6)
    with pytest.raises(ConfigError, match="damsm.image_noise"):
        tiny(shapes_root, "damsm.image_noise=-0.1")
    # adversarial images: the worst nearby ones, so the loss they give is above the plain one
    moved = first_losses("adv", "damsm.adversarial=0.1")
    assert moved == first_losses("adv-again", "damsm.adversarial=0.1")
    assert moved[1]["word"] + moved[1]["sent"] > plain[1]["word"] + plain[1]["sent"]
    with pytest.raises(ConfigError, match="damsm.adversarial"):
        tiny(shapes_root, "damsm.adversarial=-0.1")


def test_damsm_adversarial_images_stay_within_their_distance(shapes_root, tmp_path):
    from attngan.training.damsm import DAMSMTrainer

    config = tiny(shapes_root, "damsm.adversarial=0.05")
    trainer = DAMSMTrainer(config, tmp_path, device="cpu", progress=False)
    images = torch.rand(4, 3, 64, 64) * 2 - 1
    tokens = torch.tensor([[5, 6, 7], [5, 8, 0], [9, 6, 7], [5, 6, 0]])
    lengths = torch.tensor([3, 2, 3, 2])
    moved = trainer._adversarial(images, tokens, lengths, torch.arange(4))
    assert (moved - images).abs().max() <= 0.05 + 1e-6 and moved.abs().max() <= 1
    assert (moved - images).abs().mean() > 0.01  # moved, mostly to the corners of the box
    assert not moved.requires_grad
    # PGD: several projected steps, each within the same box, to a worse place than the start
    pgd = DAMSMTrainer(
        tiny(shapes_root, "damsm.adversarial=0.05", "damsm.adversarial_steps=4"),
        tmp_path / "pgd", device="cpu", progress=False,
    )  # fmt: skip
    pgd.image_encoder.load_state_dict(trainer.image_encoder.state_dict())
    pgd.text_encoder.load_state_dict(trainer.text_encoder.state_dict())
    searched = pgd._adversarial(images, tokens, lengths, torch.arange(4))
    assert (searched - images).abs().max() <= 0.05 + 1e-6 and searched.abs().max() <= 1
    assert not torch.allclose(searched, moved)

    pgd.text_encoder.eval(), pgd.image_encoder.eval()  # no dropout, no batch statistics
    with torch.no_grad():
        text = pgd.text_encoder(tokens, lengths)

    def matching(x):
        with torch.no_grad():
            return pgd._matching_loss(x, text, lengths, torch.arange(4)).item()

    assert matching(searched) > matching(images)
    with pytest.raises(ConfigError, match="damsm.adversarial_steps"):
        tiny(shapes_root, "damsm.adversarial_steps=0")
