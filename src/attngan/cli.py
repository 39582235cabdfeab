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
from attngan.errors import AttnGANError

log = logging.getLogger("attngan")

EXAMPLES = {
    "config": """example:
  attngan config --config birds --set train.batch_size=8   # print the resolved config""",
    "shapes": """example:
  attngan data shapes --out data/shapes                    # 10,000 train + 1,000 test, 128 px
  attngan data shapes --out /tmp/tiny --num-train 64 --num-test 16 --size 64""",
    "data": """examples:
  attngan data shapes --out data/shapes && attngan data preview
  attngan data preview --config birds --data ~/data/birds      # check a CUB folder loads""",
    "preview": """examples:
  attngan data preview                                     # the shapes preset, data/shapes
  attngan data preview --config birds --data ~/data/birds --split test --num 8
  attngan data preview --config coco --data ~/coco --set data.skip_bad=true""",
    "import-release": """examples:
  # the release's pretrained birds model (DAMSMencoders/bird + bird_AttnGAN2.pth)
  attngan import-release --generator bird_AttnGAN2.pth \
      --text-encoder text_encoder200.pth --image-encoder image_encoder200.pth \
      --captions data/birds/captions.pickle --out models/bird_attngan2
  # a COCO model (config picked from the generator's size; --config coco to be explicit)
  attngan import-release --generator coco_AttnGAN2.pth --text-encoder text_encoder100.pth \
      --captions data/coco/captions.pickle --out models/coco_attngan2""",
    "vocab": """examples:
  attngan data vocab --config birds --data ~/data/birds --out birds_vocab.json
  attngan data vocab --config shapes --out shapes_vocab.json""",
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


def cmd_data_preview(args: argparse.Namespace) -> int:
    from attngan.data.dataset import open_datasets
    from attngan.runs import start_run
    from attngan.visualize import captioned_grid, to_pil

    config = _config_from(args)
    data = open_datasets(config, [args.split], train=args.augment, progress=not args.quiet)
    dataset = data[args.split]
    run_dir = start_run(args.out, f"{config.name}-preview", config)
    data.vocab.save(run_dir / "vocab.json")
    count = min(args.num, len(dataset))
    samples = [dataset[i * len(dataset) // count] for i in range(count)]
    sheet = captioned_grid(
        [to_pil(s.images[-1]) for s in samples],
        [data.vocab.decode(s.tokens) for s in samples],
        columns=args.columns,
    )
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

    config = _config_from(args)
    data = config.data
    read = read_records(data.format, data.root, data.captions_per_image, data.skip_bad)
    vocab = read.vocabulary()
    vocab.save(args.out)
    source = "the release's captions.pickle" if read.vocab else "the captions of both splits"
    log.info("wrote %d words from %s to %s", len(vocab), source, args.out)
    return 0


def cmd_import_release(args: argparse.Namespace) -> int:
    from attngan.legacy import import_release

    out = import_release(
        args.out,
        generator=args.generator,
        text_encoder=args.text_encoder,
        captions=args.captions,
        image_encoder=args.image_encoder,
        discriminators=args.discriminators,
        config=args.config,
        overrides=_overrides(args),
        legacy_mask_order=not args.fix_mask,
    )
    log.info("wrote the imported model to %s", out)
    return 0


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
    files.add_argument("--generator", type=Path, required=True, help="netG_epoch_N.pth")
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
        "mask order (taoxugit/AttnGAN#93); outputs then differ from the release's",
    )
    p.set_defaults(func=cmd_import_release)

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
    log.debug("done in %.1f s", time.perf_counter() - start)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
