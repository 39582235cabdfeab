"""Bad input a user can hand the ``attngan`` command: each is one line, ``attngan: error: ...``,
exit code 2, no traceback, nothing half-written, and never a hang."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

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


# --- the table: bad input to every command, in-process ------------------------------------------

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "attngan" / "assets" / "shapes-model"
OWN = ["--set", "data.captions_per_image=3"]  # the own-data folder's rows have 3 captions


def _rows(n: int, prefix: str = "img") -> list[dict]:
    """Rows with 3 captions in words the bundled model knows."""
    colours = ["red", "green", "blue", "yellow"]
    templates = ["a {} square on a plain background", "a small {} square", "there is a {} square"]
    return [
        {
            "file_name": f"images/{prefix}{i}.png",
            "text": [t.format(colours[i % 4]) for t in templates],
        }
        for i in range(n)
    ]


def _own_data(tmp: Path) -> Path:
    """A small good own-data folder (6 train, 3 test images, 3 captions each)."""
    return write_folder(tmp / "data", {"train": _rows(6), "test": _rows(3, "t")}, image_size=32)


def _edit_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def _bad_metadata(text: str):
    """A data folder whose train/metadata.jsonl line 2 is ``text``."""

    def make(tmp: Path) -> Path:
        root = _own_data(tmp)
        _edit_line(root / "train" / "metadata.jsonl", 2, text)
        return root

    return make


def _corrupt_image(tmp: Path) -> Path:
    root = _own_data(tmp)
    (root / "train" / "images" / "img0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 40)
    return root


def _missing_image(tmp: Path) -> Path:
    root = _own_data(tmp)
    (root / "train" / "images" / "img0.png").unlink()
    return root


def _empty_folder(tmp: Path, name: str = "data") -> Path:
    (tmp / name).mkdir()
    return tmp / name


def _model_copy(tmp: Path) -> Path:
    """A copy of the bundled model to break."""
    import shutil

    return Path(shutil.copytree(BUNDLED, tmp / "model"))


def _truncated_weights(tmp: Path) -> Path:
    model = _model_copy(tmp)
    path = model / "generator.safetensors"
    path.write_bytes(path.read_bytes()[:5000])
    return model


def _garbage_weights(tmp: Path) -> Path:
    model = _model_copy(tmp)
    (model / "text_encoder.safetensors").write_bytes(os.urandom(2000))
    return model


def _bad_model_json(tmp: Path) -> Path:
    model = _model_copy(tmp)
    (model / "model.json").write_text('{"format": "attngan-model", "version": 1, "kind"')
    return model


def _damsm_model(tmp: Path) -> Path:
    """A DAMSM model (no generator): the wrong kind for generate."""
    import json

    model = _model_copy(tmp)
    meta = json.loads((model / "model.json").read_text())
    meta.update(kind="damsm", components=["image_encoder", "text_encoder"])
    (model / "model.json").write_text(json.dumps(meta))
    (model / "generator.safetensors").unlink()
    return model


def _file(tmp: Path, name: str = "a-file", content: bytes = b"not a folder\n") -> Path:
    (tmp / name).write_bytes(content)
    return tmp / name


def _release_files(tmp: Path) -> list[str]:
    """Arguments naming release files: a text encoder (garbage) and captions.pickle."""
    return [
        "--text-encoder",
        str(_file(tmp, "text_encoder200.pth", os.urandom(500))),
        "--captions",
        str(_file(tmp, "captions.pickle", b"\x80\x04K\x01.")),
    ]


def _run_with_corrupt_state(tmp: Path) -> Path:
    """A train-damsm run folder whose only checkpoint's ``train_state.pt`` is garbage."""
    from attngan.config import save_config

    data = _own_data(tmp)
    run = tmp / "runs" / "00000-shapes-damsm"
    state = run / "checkpoints" / "step-00000001"
    state.mkdir(parents=True)
    config = load_config("shapes", [f"data.root={data}", "data.captions_per_image=3"])
    save_config(config, run / "config.yaml")
    (run / "log.txt").write_text("")
    (state / "model.json").write_text("{}")
    (state / "train_state.pt").write_bytes(os.urandom(300))
    return run


def _pickled_object(tmp: Path) -> Path:
    """A .pth file holding a Python object besides tensors (never unpickled)."""
    import torch

    path = tmp / "netG.pth"
    torch.save({"w": torch.zeros(1), "where": PurePosixPath("x")}, path)
    return path


def _train_damsm(data) -> callable:
    return lambda tmp: ["train-damsm", "--data", str(data(tmp)), "--runs", str(tmp / "runs"), *OWN]


def _train_gan(data) -> callable:
    return lambda tmp: [
        "train", "--data", str(data(tmp)), "--damsm", str(BUNDLED), "--runs", str(tmp / "runs"),
        *OWN,
    ]  # fmt: skip


def _preview(data) -> callable:
    return lambda tmp: [
        "data",
        "preview",
        "--data",
        str(data(tmp)),
        "--out",
        str(tmp / "runs"),
        *OWN,
    ]


def _generate(*argv: str, model=None) -> callable:
    def make(tmp: Path) -> list[str]:
        chosen = ["--model", str(model(tmp))] if model else []
        return ["generate", *argv, *chosen, "--out", str(tmp / "out")]

    return make


CASES = {
    # data folders
    "train-damsm: missing data folder": (
        _train_damsm(lambda tmp: tmp / "nowhere"), "data folder not found"),
    "train-damsm: empty data folder": (_train_damsm(_empty_folder), "no metadata.jsonl"),
    "train-damsm: malformed metadata line": (
        _train_damsm(_bad_metadata('{"file_name": "images/img1.png", "text": [')),
        "metadata.jsonl:2: not valid JSON"),
    "train-damsm: metadata line not an object": (
        _train_damsm(_bad_metadata("[1, 2]")), "metadata.jsonl:2: each line must be a JSON object"),
    "train-damsm: metadata line without file_name": (
        _train_damsm(_bad_metadata('{"text": "a red square"}')), "needs a 'file_name' string"),
    "train-damsm: missing image": (_train_damsm(_missing_image), "image file not found"),
    "train-damsm: one image, batch of 32": (
        _train_damsm(lambda tmp: write_folder(tmp / "data", {"train": _rows(1), "test": _rows(1)})),
        "fewer than one batch"),
    "train: malformed metadata line": (
        _train_gan(_bad_metadata("{oops")), "metadata.jsonl:2: not valid JSON"),
    "train: missing image": (_train_gan(_missing_image), "image file not found"),
    "data preview: corrupt image": (_preview(_corrupt_image), "corrupt or truncated image"),
    "data preview: missing image": (_preview(_missing_image), "image file not found"),
    "data preview: class_id not an integer": (
        _preview(_bad_metadata('{"file_name": "a.png", "text": ["a", "b", "c"], "class_id": 1.5}')),
        "'class_id' must be an integer"),
    "data preview: too few captions": (
        lambda tmp: [*_preview(_own_data)(tmp), "data.captions_per_image=5"], "5 needed"),
    "data vocab: empty caption": (
        lambda tmp: ["data", "vocab", "--data", str(_bad_metadata(
            '{"file_name": "images/img1.png", "text": ["  "]}')(tmp)), "--out",
            str(tmp / "vocab.json"), *OWN],
        "caption 1 is empty"),
    # captions
    "generate: empty caption": (_generate(""), "empty"),
    "generate: unknown words only": (_generate("zorblax quux"), "no known word"),
    "generate: no caption": (_generate(), "no caption"),
    "generate: missing captions file": (
        lambda tmp: [*_generate()(tmp), "--captions-file", str(tmp / "nope.txt")],
        "captions file not found"),
    "generate: captions file not UTF-8": (
        lambda tmp: [*_generate()(tmp), "--captions-file", str(_file(tmp, "c", b"\xff\xfe"))],
        "cannot read captions file"),
    # configuration
    "config: unknown key": (lambda tmp: ["config", "--set", "model.gff=3"], "did you mean"),
    "config: wrong type": (lambda tmp: ["config", "--set", "train.epochs=many"], "expects int"),
    "config: bad preset": (lambda tmp: ["config", "--config", "bird"], "no preset or config"),
    "config: not key=value": (lambda tmp: ["config", "--set", "train.epochs"], "key=value"),
    "config: YAML file that is not YAML": (
        lambda tmp: ["config", "--config", str(_file(tmp, "c.yaml", b"a: [1, 2\n"))],
        "not valid YAML"),
    "config: out-of-range value": (
        lambda tmp: ["config", "--set", "model.base_size=20"], "power of two"),
    "train-damsm: unknown key": (
        lambda tmp: [*_train_damsm(_own_data)(tmp), "damsm.batchsize=2"], "unknown config key"),
    "train-damsm: unknown data format": (
        lambda tmp: [*_train_damsm(_own_data)(tmp), "data.format=zip"], "data.format must be"),
    # checkpoints and model folders
    "generate: missing model": (
        _generate("a red circle", model=lambda tmp: tmp / "nope"), "model not found"),
    "generate: a file as the model": (
        _generate("a red circle", model=_file), "is a file"),
    "generate: a DAMSM model": (
        _generate("a red circle", model=_damsm_model), "not an AttnGAN generator model"),
    "generate: truncated safetensors": (
        _generate("a red circle", model=_truncated_weights), "generator.safetensors"),
    "generate: garbage safetensors": (
        _generate("a red circle", model=_garbage_weights), "text_encoder.safetensors"),
    "generate: malformed model.json": (
        _generate("a red circle", model=_bad_model_json), "not valid JSON"),
    "train: missing DAMSM": (
        lambda tmp: ["train", "--data", str(_own_data(tmp)), "--damsm", str(tmp / "nope"),
                     "--runs", str(tmp / "runs"), *OWN],
        "model not found"),
    "train: resume a folder that is not a run": (
        lambda tmp: ["train", "--resume", str(_empty_folder(tmp))], "not a run folder"),
    "train-damsm: resume from a corrupt train_state.pt": (
        lambda tmp: ["train-damsm", "--resume", str(_run_with_corrupt_state(tmp)), "--set",
                     "data.workers=0"],
        "cannot read the training state (not a PyTorch file"),
    "evaluate: missing model": (
        lambda tmp: ["evaluate", "--model", str(tmp / "nope"), "--data", str(_own_data(tmp))],
        "model not found"),
    "evaluate: missing data": (
        lambda tmp: ["evaluate", "--data", str(tmp / "nope"), "--metrics", "r_precision"],
        "data folder not found"),
    "import-release: missing text encoder": (
        lambda tmp: ["import-release", "--text-encoder", str(tmp / "t.pth"), "--captions",
                     str(tmp / "c.pickle"), "--generator", str(tmp / "g.pth"), "--out",
                     str(tmp / "out")],
        "not found"),
    "import-release: garbage checkpoint": (
        lambda tmp: ["import-release", "--generator", str(_file(tmp, "g.pth", os.urandom(700))),
                     *_release_files(tmp), "--out", str(tmp / "out")],
        "g.pth as a PyTorch state dict: not a PyTorch file"),
    "import-release: a pickled object": (
        lambda tmp: ["import-release", "--generator", str(_pickled_object(tmp)),
                     *_release_files(tmp), "--out", str(tmp / "out")],
        "holds a pickled Python object (pathlib.PurePosixPath)"),
    # output paths that cannot be written
    "generate: --out under a file": (
        lambda tmp: ["generate", "a red circle", "--out", str(_file(tmp) / "out")], "not a folder"),
    "data shapes: --out under a file": (
        lambda tmp: ["data", "shapes", "--out", str(_file(tmp) / "s"), "--num-train", "2"],
        "not a folder"),
    "data vocab: --out under a file": (
        lambda tmp: ["data", "vocab", "--data", str(_own_data(tmp)), "--out",
                     str(_file(tmp) / "v.json"), *OWN],
        "not a folder"),
    "data preview: --out under a file": (
        lambda tmp: ["data", "preview", "--data", str(_own_data(tmp)), "--out",
                     str(_file(tmp) / "runs"), *OWN],
        "not a folder"),
    "train-damsm: --runs under a file": (
        lambda tmp: ["train-damsm", "--data", str(_own_data(tmp)), "--runs",
                     str(_file(tmp) / "runs"), *OWN],
        "not a folder"),
    "evaluate: --out is a folder": (
        lambda tmp: ["evaluate", "--data", str(_own_data(tmp)), "--out",
                     str(_empty_folder(tmp, "out"))],
        "is a folder"),
    "import-release: --out under a file": (
        lambda tmp: ["import-release", "--generator", str(_file(tmp, "g.pth", os.urandom(700))),
                     *_release_files(tmp), "--out", str(_file(tmp) / "model")],
        "not a folder"),
}  # fmt: skip


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_leaves_nothing(name, tmp_path, capsys, monkeypatch):
    make, message = CASES[name]
    monkeypatch.chdir(tmp_path)
    argv = make(tmp_path)
    before = _tree(tmp_path)
    start = time.perf_counter()
    from attngan.cli import main

    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count(ERROR) == 1 and err.startswith(ERROR) and err.count("\n") == 1, err
    assert message in err, err
    assert "Traceback" not in err
    assert _tree(tmp_path) == before  # no run folder, no output, nothing half-written
    assert time.perf_counter() - start < 5


def test_a_write_that_fails_late_is_one_line(tmp_path, capsys, monkeypatch):
    """The output folder passed the check, but writing fails (a full disk, say)."""
    import errno

    from attngan.cli import main
    from attngan.pipeline import GenerationOutput

    def full(self, out_dir):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(out_dir) / "x.png"))

    monkeypatch.setattr(GenerationOutput, "save", full)
    assert main(["generate", "a red circle", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"{ERROR} cannot write the output folder")
    assert "No space left on device" in err[0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder(tmp_path, capsys):
    from attngan.cli import main

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert main(["generate", "a red circle", "--out", str(locked / "out")]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_a_new_run_logs_what_happened_before_its_folder_existed(tmp_path):
    """The run folder is made after the data checks; their warnings still reach its log.txt."""
    from attngan.cli import main

    data = _own_data(tmp_path)
    (data / "train" / "images" / "img0.png").write_bytes(b"")
    argv = ["-q", "train-damsm", "--data", str(data), "--runs", str(tmp_path / "runs"), *OWN]
    tiny = ["damsm.batch_size=2", "damsm.max_steps=1", "data.workers=0", "model.cnn_channels=4"]
    assert main([*argv, "data.skip_bad=true", *tiny]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    log = (run / "log.txt").read_text()
    assert "skipped 1 bad samples" in log and "img0.png" in log
