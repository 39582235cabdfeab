"""Data-parallel GAN training under torchrun: 2 CPU processes on gloo against one process."""
# ruff: noqa: F811 (the training tests' fixtures, imported)

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from attngan.training import distributed, train_gan
from attngan.training.loop import epoch_batches, rank_batches
from tests.test_training import TINY, damsm_run, shapes_root, tiny  # noqa: F401

WORKER = textwrap.dedent(
    """
    import sys
    import torch
    from attngan.config import load_config
    from attngan.training import train_gan

    out, damsm, runs, *overrides = sys.argv[1:]

    def on_step(loop, step, losses):
        state = {f"g.{k}": v.clone() for k, v in loop.generator.state_dict().items()}
        state.update({f"d.{k}": v.clone() for k, v in loop.discriminators.state_dict().items()})
        torch.save({"state": state, "losses": losses}, f"{out}/rank{loop.world.rank}-{step}.pt")

    train_gan(load_config("shapes", overrides), damsm=damsm, runs=runs, device="cpu",
              on_step=on_step, progress=False)
    """
)


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    return subprocess.run(
        [*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_rank_batches_split_each_global_batch_in_order():
    plan = epoch_batches(24, 6, seed=3, epoch=0)
    parts = [rank_batches(plan, r, 3) for r in range(3)]
    assert all(len(p) == len(plan) and all(len(b) == 2 for b in p) for p in parts)
    for i, batch in enumerate(plan):
        assert parts[0][i] + parts[1][i] + parts[2][i] == batch
    assert rank_batches(plan, 0, 1) is plan


def test_helpers_are_the_identity_in_a_world_of_one():
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.gather(x) is x
    assert distributed.rank() == 0 and not distributed.launched()
    assert distributed.mean_over_ranks({"a": 1.5}, torch.device("cpu")) == {"a": 1.5}
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    assert distributed.convert_sync_batchnorm(net, torch.device("cpu")) is net
    assert distributed.wrap(net, torch.device("cpu")) is net


@pytest.fixture(scope="module")
def two_ranks(shapes_root, damsm_run, tmp_path_factory):
    """3 steps at batch 2 per process on 2 processes, synchronised BatchNorm."""
    out = tmp_path_factory.mktemp("ddp")
    (out / "worker.py").write_text(WORKER)
    sets = [*TINY, f"data.root={shapes_root}", "train.batch_size=2", "train.max_steps=3",
            "train.sync_batchnorm=true", "train.checkpoint_every=2"]  # fmt: skip
    proc = _torchrun("worker.py", str(out), str(damsm_run), str(out / "runs"), *sets, cwd=out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _state(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_parameters_stay_identical_across_ranks(two_ranks):
    for step in (1, 2, 3):
        a, b = _state(two_ranks / f"rank0-{step}.pt"), _state(two_ranks / f"rank1-{step}.pt")
        assert a["state"].keys() == b["state"].keys()
        for key, value in a["state"].items():
            assert torch.equal(value, b["state"][key]), (step, key)
        assert a["losses"] == b["losses"]  # logged losses are the mean over ranks


def _assert_first_step_matches_one_process(two: dict, shapes_root, damsm_run, runs, *more):
    """``two``: rank 0's state after step 1 at batch 2; against 1 process at batch 4."""
    seen = {}

    def on_step(loop, step, losses):
        state = {f"g.{k}": v.clone() for k, v in loop.generator.state_dict().items()}
        state.update({f"d.{k}": v.clone() for k, v in loop.discriminators.state_dict().items()})
        seen[step] = {"state": state, "losses": dict(losses)}

    config = tiny(shapes_root, "train.batch_size=4", "train.max_steps=1", *more)
    train_gan(config, damsm=damsm_run, runs=runs, device="cpu", on_step=on_step,
              progress=False)  # fmt: skip
    one = seen[1]
    for key, value in two["losses"].items():
        assert one["losses"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    changed = 0
    for key, value in one["state"].items():
        other = two["state"][key]
        if value.is_floating_point():
            # atol: summation order differs between 1 and 2 processes; on some CPUs one weight
            # of 13,824 landed 1.8e-5 off after Adam's first step (lr 4e-4: a missing gradient
            # all-reduce moves weights by ~lr)
            torch.testing.assert_close(other, value, rtol=1e-4, atol=5e-5, msg=key)
        else:
            assert torch.equal(other, value), key
        changed += int(key.endswith("weight") and not torch.equal(value, value * 0))
    assert changed > 10


def test_two_processes_take_the_same_first_step_as_one_at_twice_the_batch(
    two_ranks, shapes_root, damsm_run, tmp_path
):
    two = _state(two_ranks / "rank0-1.pt")
    _assert_first_step_matches_one_process(two, shapes_root, damsm_run, tmp_path)


@pytest.mark.parametrize("d_norm", ["batch", "spectral"])
def test_r1_under_torchrun_takes_the_same_first_step_as_one_process(
    d_norm, shapes_root, damsm_run, tmp_path
):
    # batch: the penalty's gradient flows through the synchronised BatchNorm twice (double
    # backward); spectral: the power iteration's vectors stay the same on every rank
    (tmp_path / "worker.py").write_text(WORKER)
    more = ("train.r1_gamma=10", f"model.d_norm={d_norm}")
    sets = [*TINY, f"data.root={shapes_root}", "train.batch_size=2", "train.max_steps=1",
            "train.sync_batchnorm=true", *more]  # fmt: skip
    proc = _torchrun("worker.py", str(tmp_path), str(damsm_run), str(tmp_path / "runs"), *sets,
                     cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    two, other = _state(tmp_path / "rank0-1.pt"), _state(tmp_path / "rank1-1.pt")
    assert all(torch.equal(v, other["state"][k]) for k, v in two["state"].items())
    _assert_first_step_matches_one_process(two, shapes_root, damsm_run, tmp_path / "one", *more)


def test_rank_zero_alone_writes_the_run_folder(two_ranks):
    runs = list((two_ranks / "runs").iterdir())
    assert len(runs) == 1, runs  # one run folder, not one per rank
    run = runs[0]
    assert (run / "model" / "generator.safetensors").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000002",
        "step-00000003",
    ]
    rows = (run / "stats.jsonl").read_text().splitlines()
    assert len(rows) == 3  # one row per step (log_every=1), written once


def test_torchrun_runs_the_cli(shapes_root, damsm_run, tmp_path):
    sets = [*TINY, f"data.root={shapes_root}", "train.batch_size=2"]
    proc = _torchrun(
        "-m", "attngan", "train", "--damsm", str(damsm_run), "--runs", str(tmp_path / "runs"),
        "--device", "cpu", "--no-progress", "--set", *sets, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "model" / "model.json").is_file()
    assert proc.stderr.count("finished 2 steps") == 1  # rank 0 logs; rank 1 only warns
    proc = _torchrun(
        "-m", "attngan", "train", "--resume", str(run), "--device", "cpu", "--no-progress",
        "--set", "train.max_steps=3", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from" in proc.stderr and proc.stderr.count("finished 3 steps") == 1
    assert len(list((tmp_path / "runs").iterdir())) == 1


# --- the speed switches match the plain path ----------------------------------------------------


def _first_steps(shapes_root, damsm_run, runs, *more) -> dict[int, dict[str, float]]:
    seen: dict[int, dict[str, float]] = {}
    config = tiny(shapes_root, "train.max_steps=2", *more)
    train_gan(config, damsm=damsm_run, runs=runs, device="cpu", progress=False,
              on_step=lambda loop, step, losses: seen.__setitem__(step, dict(losses)))  # fmt: skip
    return seen


def _steps_and_gradients(shapes_root, damsm_run, run_dir, *more, steps=2):
    """The losses of the first ``steps`` steps, and the gradients each optimizer (G and every D)
    stepped with at the first (same weights, same batch: they differ by rounding alone)."""
    from attngan.training.gan import GANTrainer
    from attngan.training.loop import batch_loader

    config = tiny(shapes_root, *more)
    trainer = GANTrainer(config, run_dir, damsm=damsm_run, device="cpu", progress=False)
    grads: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(opt, args, kwargs):
            params = [p for group in opt.param_groups for p in group["params"]]
            if trainer.step == 0:
                grads.update({f"{name}.{i}": p.grad.clone() for i, p in enumerate(params)})

        return hook

    trainer.opt_g.register_step_pre_hook(keep("g"))
    for i, opt in enumerate(trainer.opt_d):
        opt.register_step_pre_hook(keep(f"d{i}"))
    plan = epoch_batches(len(trainer.dataset), config.train.batch_size, 0, 0)[:steps]
    losses = []
    for batch in batch_loader(trainer.dataset, plan, 0):
        losses.append(trainer.train_step(batch))
        trainer.step += 1
    return losses, grads


@pytest.mark.parametrize(
    "switches, rel",
    [
        (["train.fast_layers=true"], 1e-4),
        (["train.fast_layers=true", "train.channels_last=true"], 1e-4),
        (["train.channels_last=true"], 1e-4),
        (["train.precision=bf16"], 0.1),
    ],
    ids=["fast_layers", "fast_layers_channels_last", "channels_last", "bf16"],
)
def test_speed_switches_take_the_plain_paths_steps(
    shapes_root, damsm_run, tmp_path, monkeypatch, switches, rel
):
    from attngan.models import layers

    # the tiny discriminators' 4x4-output convolutions take the matrix-product path too
    monkeypatch.setattr(layers, "GEMM_MIN_WEIGHT", 0)
    plain, plain_grads = _steps_and_gradients(
        shapes_root, damsm_run, tmp_path / "a", "train.fast_layers=false"
    )
    fast, fast_grads = _steps_and_gradients(
        shapes_root, damsm_run, tmp_path / "b", "train.fast_layers=false", *switches
    )
    for step in (0, 1):
        assert fast[step].keys() == plain[step].keys()
        for key, value in plain[step].items():
            assert fast[step][key] == pytest.approx(value, rel=rel, abs=rel * 0.1), (step, key)
    if rel > 1e-3:
        return  # bf16: the losses to its rounding; its gradients are not compared
    assert fast_grads.keys() == plain_grads.keys() and len(plain_grads) > 40
    for key, grad in plain_grads.items():
        scale = grad.abs().max().item()
        torch.testing.assert_close(fast_grads[key], grad, rtol=1e-3, atol=1e-4 * scale + 1e-9,
                                   msg=lambda m, key=key: f"{key}: {m}")  # fmt: skip


@pytest.mark.slow
def test_compiled_steps_take_the_plain_paths_steps(shapes_root, damsm_run, tmp_path):
    plain = _first_steps(shapes_root, damsm_run, tmp_path / "a", "train.fast_layers=false")
    fast = _first_steps(shapes_root, damsm_run, tmp_path / "b", "train.compile=true",
                        "train.channels_last=true")  # fmt: skip
    for step in (1, 2):
        for key, value in plain[step].items():
            assert fast[step][key] == pytest.approx(value, rel=1e-4, abs=1e-5), (step, key)
