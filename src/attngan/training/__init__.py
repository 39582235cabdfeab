"""Training: DAMSM encoder pre-training and attentional GAN training, sharing one step loop.

``train_damsm`` and ``train_gan`` start a run folder (or continue one with ``resume=RUN_DIR``) and
return a :class:`~attngan.training.loop.RunResult`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from attngan.config import Config, load_config
from attngan.errors import TrainingError
from attngan.runs import attach_log, start_run
from attngan.training.loop import RunResult

log = logging.getLogger(__name__)

__all__ = ["RunResult", "resume_config", "train_damsm", "train_gan"]


def resume_config(run_dir: str | Path, overrides: list[str] | None = None) -> Config:
    """The resolved config of a run folder, plus ``overrides`` (e.g. more steps)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise TrainingError(f"cannot resume {run_dir}: it has no config.yaml (not a run folder?)")
    return load_config(str(path), overrides)


def _prepare(
    config: Config | None, kind: str, runs: str | Path, resume: str | Path | None,
    overrides: list[str] | None,
) -> tuple[Config, Path]:  # fmt: skip
    """The config and run folder; under torchrun rank 0 makes the folder and tells the others."""
    from attngan.config import save_config
    from attngan.training import distributed

    main = distributed.rank() == 0
    if resume is not None:
        config = resume_config(resume, overrides)
        run_dir = Path(resume)
        if main:
            attach_log(run_dir)
            save_config(config, run_dir / "config.yaml")
        distributed.barrier()
        return config, run_dir
    if config is None:
        raise ValueError("a config or a run folder to resume is needed")
    run_dir = start_run(runs, f"{config.name}-{kind}", config) if main else None
    return config, Path(distributed.broadcast_object(str(run_dir) if run_dir else None))


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
    config, run_dir = _prepare(config, "damsm", runs, resume, overrides)
    trainer = DAMSMTrainer(config, run_dir, device=device, on_step=on_step, progress=progress)
    return _start(trainer, run_dir, resume)


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
    config, run_dir = _prepare(config, "gan", runs, resume, overrides)
    trainer = GANTrainer(config, run_dir, device=device, on_step=on_step, progress=progress)
    return _start(trainer, run_dir, resume)


def _start(trainer, run_dir: Path, resume: str | Path | None) -> RunResult:
    """Resume, or record the trainer's resolved config (a GAN's holds its DAMSM's encoder
    settings), then run."""
    from attngan.config import save_config

    if resume is not None:
        trainer.resume()
    elif trainer.world.main:
        save_config(trainer.config, run_dir / "config.yaml")
    return trainer.run()
