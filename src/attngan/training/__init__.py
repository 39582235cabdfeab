"""Training: DAMSM encoder pre-training and attentional GAN training, sharing one step loop.

``train_damsm`` and ``train_gan`` start a run folder (or continue one with ``resume=RUN_DIR``) and
return a :class:`~attngan.training.loop.RunResult`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

from attngan.config import Config, load_config
from attngan.errors import TrainingError
from attngan.runs import attach_log, buffered_log, start_run
from attngan.training.loop import RunResult

log = logging.getLogger(__name__)

# the run folder a new run's trainer is built with: its folder is made once the trainer's checks
# have passed (see _run), so trainers write nothing into run_dir while they are built
PENDING = Path("(run folder not made yet)")

__all__ = ["RunResult", "resume_config", "train_damsm", "train_gan"]


def resume_config(run_dir: str | Path, overrides: list[str] | None = None) -> Config:
    """The resolved config of a run folder, plus ``overrides`` (e.g. more steps)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise TrainingError(f"cannot resume {run_dir}: it has no config.yaml (not a run folder?)")
    return load_config(str(path), overrides)


def _prepare(
    config: Config | None, resume: str | Path | None, overrides: list[str] | None
) -> tuple[Config, Path | None]:
    """The config, and a resumed run's folder. A new run's folder is made by :func:`_run` once
    its trainer is built: a run whose data, encoders or device fail their checks leaves none."""
    from attngan.config import save_config
    from attngan.training import distributed

    if resume is not None:
        config = resume_config(resume, overrides)
        run_dir = Path(resume)
        if distributed.rank() == 0:
            attach_log(run_dir)
            save_config(config, run_dir / "config.yaml")
        distributed.barrier()
        return config, run_dir
    if config is None:
        raise ValueError("a config or a run folder to resume is needed")
    return config, None


def _join_world(device: str) -> None:
    """Under torchrun: join the process group before the run folder is chosen; ranks other than
    0 log warnings only."""
    from attngan.training import distributed
    from attngan.training.loop import resolve_device

    if distributed.launched():
        world = distributed.setup(resolve_device(device))
        if not world.main:
            logging.getLogger().setLevel(logging.WARNING)


def train_damsm(
    config: Config | None = None,
    runs: str | Path = "runs",
    resume: str | Path | None = None,
    overrides: list[str] | None = None,
    device: str = "auto",
    on_step: Callable | None = None,
    progress: bool | None = None,
) -> RunResult:
    """Pre-train the DAMSM text and image encoders; the model is written to ``RUN/model``."""
    from attngan.training import distributed
    from attngan.training.damsm import DAMSMTrainer

    if distributed.launched():
        raise TrainingError(
            "train-damsm runs in one process (it trains in minutes to hours on one GPU): start it "
            "without torchrun; `attngan train` (the GAN) runs under torchrun"
        )
    config, run_dir = _prepare(config, resume, overrides)
    trainer = partial(DAMSMTrainer, config, device=device, on_step=on_step, progress=progress)
    return _run(trainer, run_dir, runs, "damsm")


def train_gan(
    config: Config | None = None,
    damsm: str | Path | None = None,
    runs: str | Path = "runs",
    resume: str | Path | None = None,
    overrides: list[str] | None = None,
    device: str = "auto",
    on_step: Callable | None = None,
    progress: bool | None = None,
) -> RunResult:
    """Train the attentional GAN on frozen DAMSM encoders (``damsm``: a DAMSM model or run folder,
    else ``train.damsm_model``); the EMA generator model is written to ``RUN/model``."""
    from attngan.training.gan import GANTrainer

    if config is not None and damsm is not None:
        config.train.damsm_model = str(damsm)
    _join_world(device)
    config, run_dir = _prepare(config, resume, overrides)
    trainer = partial(GANTrainer, config, device=device, on_step=on_step, progress=progress)
    return _run(trainer, run_dir, runs, "gan")


def _run(make: Callable, run_dir: Path | None, runs: str | Path, kind: str) -> RunResult:
    """Build the trainer (``make(run_dir)``), then resume ``run_dir``; or (``None``) check the
    trainer's batch plan, then make the new run's folder, with the trainer's resolved config (a
    GAN's holds its DAMSM's encoder settings) and the log so far. Then train."""
    from attngan.training import distributed

    with buffered_log() as early:
        trainer = make(run_dir or PENDING)
        if run_dir is not None:
            trainer.resume()
        else:
            trainer.check()
            config = trainer.config
            name = f"{config.name}-{kind}"
            made = start_run(runs, name, config, early) if trainer.world.main else None
            trainer.run_dir = Path(distributed.broadcast_object(str(made) if made else None))
    return trainer.run()
