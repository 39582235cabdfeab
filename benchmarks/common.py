"""What the benchmark scripts share: the machine's float32 matmul peak, FLOP counts, best-of
timings, peak memory, and a synthetic CUB-sized data set with a random DAMSM model on disk (so the
real training code path runs with nothing downloaded)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

VOCAB_SIZE = 5450  # the release's birds vocabulary


def matmul_peak(device: torch.device | str = "cpu", size: int = 2048, repeats: int = 5) -> float:
    """Best float32 matrix-product rate, GFLOP/s: the yardstick for every "share of peak"."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    best = best_time(lambda: a @ b, repeats, device=device)
    return 2 * size**3 / best / 1e9


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def best_time(
    fn: Callable[[], object], repeats: int, warmup: int = 1, device: torch.device | str = "cpu"
) -> float:
    """The fastest of ``repeats`` timed calls after ``warmup`` untimed ones (seconds)."""
    for _ in range(warmup):
        fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def count_flops(fn: Callable[[], object]) -> float:
    """FLOPs of one call, from ``torch.utils.flop_counter`` (matrix products and convolutions,
    forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def peak_rss_gb() -> float:
    """This process's peak resident memory so far (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def smooth_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A photo-like image (smooth colour fields with some texture), so JPEG sizes and decode
    times are those of real photographs rather than of noise."""
    low = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(low).resize((width, height), Image.BICUBIC)
    grain = rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image) + grain, 0, 255).astype(np.uint8))


def synthetic_dataset(root: Path, num_train: int, num_test: int = 8, seed: int = 0) -> Path:
    """An image-caption folder of CUB-sized JPEGs (500x375, quality 90) with captions over a
    5,450-word vocabulary; reused when it is already there."""
    root = Path(root)
    if (root / "test" / "metadata.jsonl").is_file():
        return root
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(VOCAB_SIZE - 1)]
    for split, count in (("train", num_train), ("test", num_test)):
        folder = root / split / "images"
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(count):
            name = f"images/{i:06d}.jpg"
            smooth_image(rng, 500, 375).save(root / split / name, quality=90)
            text = [" ".join(rng.choice(words, rng.integers(8, 25))) for _ in range(10)]
            rows.append({"file_name": name, "text": text})
        with (root / split / "metadata.jsonl").open("w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return root


def preset_config(root: Path, *overrides: str, preset: str = "birds"):
    """A preset (birds or coco: the release's networks and settings) on a synthetic folder data
    set of 10 captions per image."""
    from attngan.config import load_config

    return load_config(
        preset,
        ["data.format=folder", f"data.root={root}", "data.workers=0", *overrides],
    )


def random_damsm(folder: Path, config) -> Path:
    """A DAMSM model folder with random weights over the 5,450-word vocabulary (reused)."""
    from attngan.checkpoints import build_component, save_model
    from attngan.text import Vocabulary

    if (folder / "model.json").is_file():
        return folder
    vocab = Vocabulary.build([[f"w{i}" for i in range(VOCAB_SIZE - 1)]])
    torch.manual_seed(0)
    modules = {
        "text_encoder": build_component("text_encoder", config, len(vocab)),
        "image_encoder": build_component("image_encoder", config, len(vocab)),
    }
    return save_model(folder, "damsm", config, vocab, modules)


def padded_ids(ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of captions of any lengths -> ``tokens`` ``[B, T]`` (zero-padded) and their
    ``lengths`` ``[B]``, a text encoder's input."""
    width = max(map(len, ids))
    tokens = torch.tensor([i + [0] * (width - len(i)) for i in ids])
    return tokens, torch.tensor([len(i) for i in ids])


# --- two code versions side by side: a baseline commit's attngan in worker processes ------------


def extract(rev: str, folder: Path) -> Path:
    """``src/attngan`` of commit ``rev`` under ``folder/src``."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "src/attngan"], cwd=ROOT, capture_output=True
    )
    if archive.returncode:
        raise SystemExit(
            f"git archive {rev}: {archive.stderr.decode().strip()} (without git: --baseline-src, "
            f"a folder made by `git archive {rev} src/attngan | tar -x`, then its src)"
        )
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "src"


class WorkerProcess:
    """A worker process (``command``, run from the repository root) answering one JSON line per
    JSON request line: ``worker("op", key=value)`` calls ``op(key=value)`` in it (see
    :func:`serve`). ``send`` and ``receive`` split a call, so that several workers can work at
    once."""

    def __init__(self, name: str, command: list[str], threads: int = 0) -> None:
        self.name = name
        env = {**os.environ, "OMP_NUM_THREADS": str(threads or os.cpu_count())}
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )

    def send(self, op: str, **kwargs) -> None:
        self.proc.stdin.write(json.dumps({"op": op, **kwargs}) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the {self.name} worker died (see its error above)")
        return json.loads(line)

    def __call__(self, op: str, **kwargs) -> dict:
        self.send(op, **kwargs)
        return self.receive()

    def close(self, kill: bool = False) -> None:
        if kill:  # stopped midway: do not wait for the worker's current job
            self.proc.kill()
        self.proc.stdin.close()
        self.proc.wait()


def serve(worker: object, src: str, threads: int) -> None:
    """The worker's side of :class:`WorkerProcess`: import attngan from ``src`` (a baseline's
    copy, or this checkout's), then answer requests with ``worker``'s methods until stdin ends.
    ``worker`` is a class, instantiated here after the import."""
    sys.path.insert(0, src)  # the code to measure, before this checkout's src
    import torch

    if threads:
        torch.set_num_threads(threads)
    instance = worker()
    out = sys.stdout
    sys.stdout = sys.stderr  # only replies on the pipe
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        out.write(json.dumps(getattr(instance, op)(**request)) + "\n")
        out.flush()
