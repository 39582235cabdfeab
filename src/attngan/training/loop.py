"""What every training run shares: the deterministic batch plan, checkpoints written atomically and
pruned, resume, RNG state, Ctrl-C, NaN checks, progress, ``stats.jsonl`` and TensorBoard.

A trainer subclasses :class:`Loop` and supplies ``train_step`` (one optimisation step on a batch,
returning its losses), ``state`` / ``load_state`` (everything a resume needs besides the RNG) and
``write_checkpoint`` (a model folder). :meth:`Loop.run` does the rest.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm.auto import tqdm

from attngan.errors import AttnGANError, OutputError, TrainingError
from attngan.progress import clock
from attngan.training import distributed

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
STATE_FILE = "train_state.pt"
_PREFIX = "step-"
_TMP = ".tmp-"


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TrainingError(f"unknown device {name!r} (cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} asked for, but PyTorch sees no CUDA device")
    return device


# --- the batch plan ----------------------------------------------------------------------------


def epoch_batches(
    num_items: int, batch_size: int, seed: int, epoch: int
) -> list[list[tuple[int, int]]]:
    """The batches of one epoch as ``(index, sample_seed)`` keys: a permutation and per-sample
    seeds drawn from ``(seed, epoch)`` alone, the last incomplete batch dropped. The same plan with
    any number of workers, and a resumed run can skip straight to any step."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(num_items, generator=gen).tolist()
    seeds = torch.randint(0, 2**62, (num_items,), generator=gen).tolist()
    count = num_items // batch_size
    return [
        [(order[k], seeds[k]) for k in range(b * batch_size, (b + 1) * batch_size)]
        for b in range(count)
    ]


def _ignore_interrupts(worker_id: int) -> None:
    """Ctrl-C in a terminal (or ``pkill``, ``kill -- -PGID``) reaches every process of the group:
    workers leave SIGINT and SIGTERM to the main process, which finishes its step and saves (see
    :class:`StopFlag`), then stops them itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def rank_batches(
    plan: list[list[tuple[int, int]]], rank: int, world_size: int
) -> list[list[tuple[int, int]]]:
    """Rank ``rank``'s equal share of each global batch: the distributed sampler of a fixed plan
    (global batches of ``world_size * b`` keys, each rank taking its contiguous ``b``)."""
    if world_size == 1:
        return plan
    size = len(plan[0]) // world_size if plan else 0
    return [batch[rank * size : (rank + 1) * size] for batch in plan]


class _Failed(NamedTuple):
    """A user error (a corrupt image, say) raised in a DataLoader worker, sent back as data: the
    main process raises it as itself, one line, instead of the loader's wrapped traceback."""

    error: AttnGANError


class _Guarded(Dataset):
    """``dataset`` as seen from a worker process: an :class:`AttnGANError` becomes a
    :class:`_Failed` item."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: Any) -> Any:
        try:
            return self.dataset[key]
        except AttnGANError as exc:
            return _Failed(exc)


def _collate(items: list[Any]) -> Any:
    """``default_collate``, or the first :class:`_Failed` of the batch."""
    for item in items:
        if isinstance(item, _Failed):
            return item
    return default_collate(items)


class BatchLoader:
    """A :class:`DataLoader` over a fixed batch plan whose iteration always stops its workers.

    Workers ignore SIGINT and SIGTERM (see :func:`_ignore_interrupts`), so a worker left running
    would block Python's exit for ever: ``multiprocessing`` terminates daemon processes with
    SIGTERM, then joins them. A loader iterator caught in a reference cycle (the traceback of an
    error re-raised from a worker holds the iterator's frames) is only freed by the garbage
    collector, after that join. So the workers are shut down as soon as iteration ends, however
    it ends, and a user error in a worker (a corrupt image) is raised here as itself.
    """

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        batches = iter(self.loader)
        try:
            for batch in batches:
                if isinstance(batch, _Failed):
                    raise batch.error
                yield batch
        finally:
            shutdown = getattr(batches, "_shutdown_workers", None)
            if shutdown is not None:  # a multi-process iterator
                shutdown()


def batch_loader(
    dataset: Dataset, batches: list[list[tuple[int, int]]], workers: int, pin: bool = False
) -> BatchLoader:
    """A loader over a fixed batch plan. Its own generator keeps it from consuming the global RNG,
    which the model's noise draws use. Iterate it with :func:`contextlib.closing` (or to the end)
    so that its workers stop when the loop is left early."""
    return BatchLoader(
        DataLoader(
            _Guarded(dataset) if workers else dataset,
            batch_sampler=batches,
            num_workers=workers,
            collate_fn=_collate if workers else None,
            pin_memory=pin,
            generator=torch.Generator().manual_seed(0),
            worker_init_fn=_ignore_interrupts if workers else None,
            persistent_workers=False,
        )
    )


_DEAD_WORKER = re.compile(r"DataLoader worker \(pids?(?:\(s\))? ([^)]*)\) (.*)", re.DOTALL)


def dead_worker(exc: BaseException) -> str | None:
    """What PyTorch says when a DataLoader worker process died (killed, say by the kernel's
    out-of-memory killer, or crashed), shortened to one clause: ``"pid 123 killed by signal:
    Killed"``; ``None`` for any other error. PyTorch raises it as a ``RuntimeError`` from its
    SIGCHLD handler, anywhere in the main process, or when it next waits for a batch."""
    if not isinstance(exc, RuntimeError):
        return None
    found = _DEAD_WORKER.match(str(exc))
    if found is None:
        return None
    what = found.group(2).split(". ")[0].strip().rstrip(".").removeprefix("is ")
    return f"pid {found.group(1)} {what}"


# --- RNG state ---------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


# --- checkpoints -------------------------------------------------------------------------------


def checkpoint_name(step: int) -> str:
    return f"{_PREFIX}{step:08d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The complete checkpoints of a run, oldest first (half-written ones are never listed)."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [
        p
        for p in folder.iterdir()
        if p.name.startswith(_PREFIX)
        and (p / STATE_FILE).is_file()
        and (p / "model.json").is_file()
    ]
    return sorted(found, key=lambda p: int(p.name[len(_PREFIX) :]))


def write_checkpoint_atomic(
    run_dir: str | Path, step: int, write: Callable[[Path], None], keep: int
) -> Path:
    """Let ``write`` fill a temporary folder, then rename it to ``checkpoints/step-N`` in one
    step: a crash leaves the previous checkpoints untouched. Keeps the newest ``keep``."""
    folder = Path(run_dir) / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / checkpoint_name(step)
    tmp = folder / f"{_TMP}{checkpoint_name(step)}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    _fsync_folder(tmp)
    if final.exists():  # the same step again (e.g. Ctrl-C right after a periodic checkpoint)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_folder(folder)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync(path: Path) -> None:
    """Flush one file or folder entry to disk (best effort: some file systems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_folder(path: Path) -> None:
    """Flush a folder's files, then its list of entries."""
    for file in path.iterdir():
        if file.is_file():
            _fsync(file)
    _fsync(path)


def remove_partial_checkpoints(run_dir: str | Path) -> list[str]:
    """Delete what a crash left half-written; returns the names removed."""
    folder = Path(run_dir) / CHECKPOINTS
    removed = []
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(_TMP):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
    return removed


def save_train_state(path: Path, state: dict[str, Any]) -> None:
    torch.save(state, path)


def load_train_state(path: Path) -> dict[str, Any]:
    """A checkpoint's optimizer, counter and RNG state, read with ``weights_only=True``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file
        from attngan.checkpoints import torch_load_failure

        reason = torch_load_failure(exc)
        raise TrainingError(f"{path}: cannot read the training state ({reason})") from None


# --- signals, NaN, progress, stats -------------------------------------------------------------


class StopFlag:
    """Set by Ctrl-C (SIGINT) or SIGTERM while training: the loop saves and returns at the end of
    the current step. A second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    @contextmanager
    def installed(self) -> Iterator[StopFlag]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, frame: Any) -> None:
            if self.signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.signal = signum
            log.warning(
                "%s: saving a checkpoint after this step, then stopping "
                "(press Ctrl-C again to stop at once)",
                signal.Signals(signum).name,
            )

        for s in previous:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def check_finite(losses: dict[str, float], step: int, last_checkpoint: Path | None) -> None:
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        names = ", ".join(f"{k} = {v}" for k, v in bad.items())
        kept = (
            f"the last good checkpoint is {last_checkpoint}"
            if last_checkpoint
            else "no checkpoint was written yet"
        )
        raise TrainingError(
            f"step {step}: {names}; training stopped ({kept}). Try a lower learning rate, "
            "then continue with --resume"
        )


class Stats:
    """``stats.jsonl`` rows and TensorBoard scalars and images (``RUN/tensorboard``)."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        """Disabled (a rank other than 0), it writes nothing."""
        self.enabled = enabled
        self.path = run_dir / "stats.jsonl"
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                log.warning("tensorboard is not installed: no TensorBoard events")

    def scalars(self, step: int, values: dict[str, float], **extra: Any) -> None:
        if not self.enabled:
            return
        row = {"step": step, **extra, **{k: round(float(v), 6) for k, v in values.items()}}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def image(self, tag: str, image, step: int) -> None:
        if self.writer is not None:
            import numpy as np

            self.writer.add_image(tag, np.asarray(image.convert("RGB")), step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Progress:
    """A tqdm bar (ETA, rate, losses) on a terminal; plain log lines every ``every`` steps
    otherwise."""

    def __init__(self, total: int, start: int, every: int, desc: str, bar: bool | None = None):
        self.total, self.every, self.start = total, every, start
        self.bar_on = sys.stderr.isatty() if bar is None else bar
        self.began = time.perf_counter()
        self.bar = (
            tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True, unit="step")
            if self.bar_on
            else None
        )

    def update(self, step: int, losses: dict[str, float], epoch: int) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
            return
        if step % self.every and step != self.total:
            return
        elapsed = time.perf_counter() - self.began
        rate = (step - self.start) / max(elapsed, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        text = " ".join(f"{k} {v:.3f}" for k, v in losses.items())
        log.info(
            "step %d/%d epoch %d | %.2f steps/s | ETA %s | %s",
            step,
            self.total,
            epoch,
            rate,
            clock(eta),
            text,
        )

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message)
        else:
            log.info(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- the loop ----------------------------------------------------------------------------------


@dataclass
class RunResult:
    """How a run ended: ``finished`` (all steps), ``interrupted`` (Ctrl-C or SIGTERM)."""

    run_dir: Path
    step: int
    status: str
    checkpoint: Path | None
    model: Path | None = None
    metrics: dict[str, float] | None = None


class Loop:
    """The step loop shared by DAMSM and GAN training.

    Subclasses set ``dataset``, ``batch_size``, ``epochs``, ``max_steps``, ``seed``,
    ``checkpoint_every``, ``keep``, ``workers``, ``log_every`` and implement the hooks below.
    ``on_step`` (optional, ``callable(loop, step, losses)``) is called after every step.
    """

    name = "train"
    dataset: Dataset
    batch_size: int
    epochs: int
    max_steps: int
    seed: int
    checkpoint_every: int
    keep: int
    workers: int
    log_every: int
    device: torch.device
    world: distributed.World = distributed.World()  # set by trainers that run under torchrun

    def __init__(
        self, run_dir: Path, on_step: Callable | None = None, progress: bool | None = None
    ):
        self.run_dir = Path(run_dir)
        self.on_step = on_step
        self.progress_bar = progress
        self.step = 0
        self.stop = StopFlag()
        self.last_checkpoint: Path | None = None
        self.stats: Stats | None = None

    # hooks
    def train_step(self, batch: Any) -> dict[str, float]:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state(self, state: dict[str, Any], folder: Path) -> None:
        """Restore from ``state`` (``train_state.pt``) and the model files in ``folder``."""
        raise NotImplementedError

    def write_model(self, folder: Path, final: bool) -> None:
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        """Called when the loop enters an epoch, at its start or mid-way after a resume."""

    def on_epoch_end(self, epoch: int) -> None:
        pass

    def periodic(self, step: int) -> None:
        """Called after every step (samples, metrics)."""

    def before_final_checkpoint(self) -> None:
        """Called when all steps are done, before the last checkpoint is written."""

    def finish(self) -> RunResult:
        raise NotImplementedError

    # plumbing
    @property
    def global_batch_size(self) -> int:
        """``batch_size`` per process, times the number of processes."""
        return self.batch_size * self.world.size

    @property
    def steps_per_epoch(self) -> int:
        return len(self.dataset) // self.global_batch_size

    @property
    def total_steps(self) -> int:
        total = self.steps_per_epoch * self.epochs
        return min(total, self.max_steps) if self.max_steps else total

    def save_checkpoint(self) -> Path:
        """Rank 0 writes; the other ranks wait until it has."""

        def write(folder: Path) -> None:
            self.write_model(folder, final=False)
            save_train_state(
                folder / STATE_FILE, {"step": self.step, "rng": rng_state(), **self.state()}
            )

        if self.world.main:
            try:
                self.last_checkpoint = write_checkpoint_atomic(
                    self.run_dir, self.step, write, self.keep
                )
            except OSError as exc:  # a full disk, say: the half-written folder goes, to free it
                shutil.rmtree(
                    Path(self.run_dir) / CHECKPOINTS / f"{_TMP}{checkpoint_name(self.step)}",
                    ignore_errors=True,
                )
                where = Path(self.run_dir) / CHECKPOINTS / checkpoint_name(self.step)
                raise self._write_failed(exc, f"the checkpoint {where}", file=False) from None
        else:
            self.last_checkpoint = Path(self.run_dir) / CHECKPOINTS / checkpoint_name(self.step)
        distributed.barrier()
        return self.last_checkpoint

    def _kept(self) -> str:
        if self.last_checkpoint is None:
            return "no checkpoint was written yet"
        return f"the last complete checkpoint is {self.last_checkpoint}"

    def _write_failed(self, exc: OSError, what: str, file: bool = True) -> OutputError:
        """A failed write (a full disk) as one line: what (and with ``file`` the file), why,
        and how to go on."""
        reason = exc.strerror or str(exc)
        name = f" ({exc.filename})" if exc.filename and file else ""
        return OutputError(
            f"cannot write {what}: {reason}{name}; training stopped at step {self.step} "
            f"({self._kept()}): free some space, then continue with --resume {self.run_dir}"
        )

    def resume(self) -> None:
        """Continue from the newest complete checkpoint of ``run_dir`` (if there is one)."""
        if self.world.main:
            removed = remove_partial_checkpoints(self.run_dir)
            if removed:
                log.warning(
                    "removed a checkpoint left half-written by a crash: %s", ", ".join(removed)
                )
        distributed.barrier()
        found = list_checkpoints(self.run_dir)
        if not found:
            log.warning("%s has no complete checkpoint: starting from step 0", self.run_dir)
            return
        state = load_train_state(found[-1] / STATE_FILE)
        self.load_state(state, found[-1])
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.last_checkpoint = found[-1]
        log.info("resuming from %s (step %d)", found[-1], self.step)

    def _step(self, batch: Any, epoch: int, total: int, progress: Progress) -> bool:
        """Train on one batch, then log, sample and checkpoint; True when the run must stop."""
        losses = self.train_step(batch)
        self.step += 1
        check_finite(losses, self.step, self.last_checkpoint)
        logged = self.step % self.log_every == 0 or self.step == total
        if logged:
            losses = distributed.mean_over_ranks(losses, self.device)
        if self.world.main:
            progress.update(self.step, losses, epoch)
            if logged:
                self.stats.scalars(self.step, losses, epoch=epoch)
        if self.on_step is not None:
            self.on_step(self, self.step, losses)
        self.periodic(self.step)
        if self.step % self.checkpoint_every == 0 and self.step < total:
            self.save_checkpoint()
        if distributed.any_rank(bool(self.stop), self.device):
            self.stop.signal = self.stop.signal or signal.SIGTERM
            return True
        return False

    def check(self) -> None:
        """Raise :class:`TrainingError` if the run cannot take a step (before its folder is
        made, see :func:`attngan.training.train_damsm`)."""
        if self.steps_per_epoch < 1:
            raise TrainingError(
                f"the training split has {len(self.dataset)} samples, fewer than one batch of "
                f"{self.global_batch_size}: lower the batch size"
            )

    def run(self) -> RunResult:
        """Train to the last step (or a Ctrl-C). A full disk, or a data-loader worker that died,
        stops the run with a one-line error naming the checkpoint to resume from."""
        try:
            return self._run()
        except OSError as exc:  # stats, samples or the model (checkpoints: save_checkpoint)
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise self._write_failed(exc, f"into the run folder {self.run_dir}") from None
        except RuntimeError as exc:
            worker = dead_worker(exc)
            if worker is None:
                raise
            raise TrainingError(
                f"a data-loader worker process died ({worker}; out of memory?) after step "
                f"{self.step}; training stopped ({self._kept()}): continue with --resume "
                f"{self.run_dir}, with data.workers=0 if it happens again"
            ) from None

    def _run(self) -> RunResult:
        self.check()
        total = self.total_steps
        main = self.world.main
        self.stats = Stats(self.run_dir, enabled=main)
        bar = self.progress_bar if main else False
        progress = Progress(total, self.step, self.log_every, self.name, bar)
        status = "finished"
        try:
            with self.stop.installed():
                while self.step < total and not self.stop:
                    epoch, offset = divmod(self.step, self.steps_per_epoch)
                    self.on_epoch_start(epoch)  # also when a resume enters mid-epoch
                    plan = epoch_batches(
                        len(self.dataset), self.global_batch_size, self.seed, epoch
                    )
                    plan = plan[offset : offset + total - self.step]
                    plan = rank_batches(plan, self.world.rank, self.world.size)
                    pin = self.device.type == "cuda"
                    loader = batch_loader(self.dataset, plan, self.workers, pin)
                    with closing(iter(loader)) as batches:  # stops the workers, always
                        for batch in batches:
                            if self._step(batch, epoch, total, progress):
                                break
                    if self.step % self.steps_per_epoch == 0:
                        self.on_epoch_end(epoch)
            if self.stop:
                status = "interrupted"
                progress.write(f"stopped at step {self.step}; saving a checkpoint")
            else:
                self.before_final_checkpoint()
            self.save_checkpoint()
        finally:
            progress.close()
            self.stats.close()
        result = self.finish() if status == "finished" else None
        if result is None:
            result = RunResult(self.run_dir, self.step, status, self.last_checkpoint)
            log.info("saved %s; continue with --resume %s", self.last_checkpoint, self.run_dir)
        return result
