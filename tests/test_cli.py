import pytest
import yaml

from attngan.cli import build_parser, main


def _subcommands(parser=None, prefix=()):
    """Every command and nested action, e.g. ["config"], ["data"], ["data", "shapes"]."""
    parser = parser or build_parser()
    found = []
    for action in parser._actions:
        if isinstance(action.choices, dict) and action.dest.endswith("command"):
            for name, sub in action.choices.items():
                found.append([*prefix, name])
                found.extend(_subcommands(sub, (*prefix, name)))
    return found


def test_the_command_list_is_complete():
    names = [" ".join(c) for c in _subcommands()]
    assert {"config", "data", "data shapes", "import-release", "demo"} <= set(names)


def test_top_level_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "config" in out and "data" in out


@pytest.mark.parametrize("command", _subcommands(), ids=" ".join)
def test_every_subcommand_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    assert "example" in capsys.readouterr().out


def test_config_prints_resolved_yaml(capsys):
    assert main(["config", "--config", "coco", "--set", "train.batch_size=3", "train.seed=5"]) == 0
    values = yaml.safe_load(capsys.readouterr().out)
    assert values["train"]["batch_size"] == 3 and values["train"]["seed"] == 5
    assert values["model"]["gf"] == 48


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["config", "--set", "train.batchsize=8"], "unknown config key 'train.batchsize'"),
        (["config", "--set", "train.batch_size=x"], "expects int"),
        (["config", "--config", "nowhere.yaml"], "no preset or config file"),
        (["data", "preview", "--data", "/no/such/folder"], "data folder not found"),
    ],
)
def test_bad_input_is_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("attngan: error:") and len(err.splitlines()) == 1


def test_preview_writes_a_run_folder(folder_data, tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = [
        "-q",
        "data",
        "preview",
        "--data",
        str(folder_data),
        "--set",
        "data.captions_per_image=3",
        "--num",
        "4",
        "--out",
        str(runs),
    ]
    assert main(argv) == 0
    assert main(argv) == 0
    first, second = sorted(runs.iterdir())
    assert first.name == "00000-shapes-preview" and second.name == "00001-shapes-preview"
    for name in ("config.yaml", "vocab.json", "preview.png", "log.txt"):
        assert (first / name).is_file()
    resolved = yaml.safe_load((first / "config.yaml").read_text())
    assert resolved["data"]["root"] == str(folder_data)
    assert resolved["data"]["captions_per_image"] == 3


def test_preview_reports_a_corrupt_image(folder_data, tmp_path, capsys):
    path = folder_data / "train" / "images" / "img0.png"
    path.write_bytes(path.read_bytes()[:100])
    argv = [
        "data",
        "preview",
        "--data",
        str(folder_data),
        "--set",
        "data.captions_per_image=3",
        "--out",
        str(tmp_path / "runs"),
    ]
    assert main(argv) == 2
    assert "corrupt or truncated image" in capsys.readouterr().err
    assert main([*argv, "--set", "data.skip_bad=true"]) == 0


def test_vocab_export(folder_data, tmp_path):
    out = tmp_path / "vocab.json"
    assert (
        main(
            [
                "data",
                "vocab",
                "--data",
                str(folder_data),
                "--set",
                "data.captions_per_image=3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    from attngan.text import Vocabulary

    vocab = Vocabulary.load(out)
    assert "square" in vocab and vocab.word(0) == "<end>"


def test_shapes_builds_and_loads_through_the_folder_path(tmp_path, capsys):
    out = tmp_path / "shapes"
    build = ["-q", "data", "shapes", "--out", str(out), "--num-train", "24", "--num-test", "8"]
    assert main([*build, "--size", "64", "--workers", "1"]) == 0
    from attngan.config import load_config
    from attngan.data import open_datasets

    data = open_datasets(load_config("shapes", [f"data.root={out}"]), progress=False)
    assert len(data["train"]) == 24 and len(data["test"]) == 8
    record = data["test"].records[0]
    assert {"objects", "relation", "background", "held_out"} <= set(record.attributes)
    sample = data["train"][3]
    assert [tuple(im.shape) for im in sample.images] == [(3, 32, 32), (3, 64, 64)]
    colours = {o["colour"] for r in data["train"].records for o in r.attributes["objects"]}
    assert colours <= set(data.vocab.words)  # every colour word made it into the vocabulary
    runs = tmp_path / "runs"
    assert main(["-q", "data", "preview", "--data", str(out), "--out", str(runs)]) == 0
    assert (runs / "00000-shapes-preview" / "preview.png").is_file()
    # a different size into the same folder is refused with a clear message
    assert main([*build, "--size", "32", "--workers", "1"]) == 2
    assert "another output folder" in capsys.readouterr().err
