"""Readers that turn a data set on disk into :class:`Record` lists, one reader per layout.

Every layout ends in the same records (image path, tokenized captions, class id, optional box), so
one :class:`~attngan.data.dataset.TextImageDataset` serves them all:

- ``cub``: CUB-200-2011 in the release's layout (SPEC §7), captions from ``text/`` or, when present,
  the release's ``captions.pickle`` with its vocabulary;
- ``coco``: COCO's official layout (``annotations/captions_*.json``) or the release's layout;
- ``folder``: the user's images with ``metadata.jsonl`` (Hugging Face ImageFolder convention).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attngan.errors import DataError
from attngan.text import (
    ReleaseCaptions,
    Vocabulary,
    load_plain_pickle,
    read_release_captions,
    tokenize,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "test")


@dataclass
class Record:
    """One image and its captions, before any pixels are read."""

    key: str
    image: Path
    captions: list[list[str]]  # tokenized; never empty
    class_id: int  # samples of one class are not used as each other's negatives (CUB species)
    bbox: tuple[float, float, float, float] | None = None  # x, y, width, height in pixels
    attributes: dict[str, Any] = field(default_factory=dict)  # extra metadata (e.g. shapes truth)


@dataclass
class SplitRecords:
    """A reader's result: each split's records, and the data set's own vocabulary if it has one."""

    records: dict[str, list[Record]]
    vocab: Vocabulary | None = None  # the release's captions.pickle vocabulary, when used
    skipped: list[str] = field(default_factory=list)  # one message per dropped sample

    def vocabulary(self) -> Vocabulary:
        """The data set's own vocabulary, else every word of every split's captions (as the
        release builds it)."""
        if self.vocab is not None:
            return self.vocab
        return Vocabulary.build(t for rs in self.records.values() for r in rs for t in r.captions)


class BadSamples:
    """Collects problems with single samples: raises at once, or (``skip``) keeps a message."""

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.messages: list[str] = []

    def report(self, message: str) -> None:
        if not self.skip:
            raise DataError(message)
        self.messages.append(message)


def caption_tokens(
    texts: Sequence[str | list[str]], needed: int, source: str, bad: BadSamples
) -> list[list[str]] | None:
    """Tokenize the first ``needed`` captions (strings, or word lists already tokenized);
    ``None`` (after reporting) if they are unusable."""
    tokenized = []
    for k, text in enumerate(texts):
        tokens = (
            tokenize(text) if isinstance(text, str) else text if isinstance(text, list) else None
        )
        if not tokens:
            bad.report(f"{source}: caption {k + 1} is empty or has no words ({text!r})")
            return None
        tokenized.append(tokens)
    if len(tokenized) < needed:
        bad.report(
            f"{source}: {len(tokenized)} captions, {needed} needed "
            f"(lower data.captions_per_image or fix the file)"
        )
        return None
    return tokenized[:needed]


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    return path


def _read_table(path: Path) -> dict[str, list[str]]:
    """A CUB table: lines ``<id> <values...>`` keyed by id."""
    _require_file(path, "CUB table")
    rows = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise DataError(f"{path}:{number}: expected '<id> <value>...', got {line!r}")
        rows[parts[0]] = parts[1:]
    return rows


def _filenames(root: Path, split: str) -> list[str]:
    path = _require_file(root / split / "filenames.pickle", f"{split} file list")
    keys = load_plain_pickle(path)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise DataError(f"{path}: expected a list of file keys")
    return keys


# --- the release's layout (CUB and COCO)


def _release_layout(
    root: Path,
    image_path: Callable[[str], Path],
    class_id: Callable[[int, str], int],
    bbox: Callable[[str], tuple[float, float, float, float] | None],
    captions_per_image: int,
    bad: BadSamples,
) -> SplitRecords:
    """``root/{train,test}/filenames.pickle`` + ``root/captions.pickle`` or ``root/text/*.txt``."""
    keys = {split: _filenames(root, split) for split in SPLITS}
    pickle_path = root / "captions.pickle"
    release = read_release_captions(pickle_path) if pickle_path.is_file() else None
    records: dict[str, list[Record]] = {}
    for split in SPLITS:
        if release is None:
            captions = _text_folder_captions(root / "text", keys[split], bad)
        else:
            captions = _pickle_captions(pickle_path, keys[split], getattr(release, split), release)
        records[split] = []
        for i, (key, (source, texts)) in enumerate(zip(keys[split], captions, strict=True)):
            tokens = caption_tokens(texts, captions_per_image, source, bad)
            if tokens is not None:
                records[split].append(
                    Record(key, image_path(key), tokens, class_id(i, key), bbox(key))
                )
    return SplitRecords(records, release.vocab if release else None)


def _text_folder_captions(
    folder: Path, keys: list[str], bad: BadSamples
) -> Iterator[tuple[str, list[str]]]:
    """``(file, captions)`` of ``folder/<key>.txt`` for each key (none for a missing file)."""
    for key in keys:
        path = folder / f"{key}.txt"
        if path.is_file():
            text = path.read_bytes().decode("utf-8", errors="replace")
            yield str(path), [line for line in text.splitlines() if line.strip()]
        else:
            bad.report(f"caption file not found: {path}")
            yield str(path), []


def _pickle_captions(
    path: Path, keys: list[str], captions: list[list[int]], release: ReleaseCaptions
) -> Iterator[tuple[str, list[list[str]]]]:
    """``(source, word lists)`` per key: the release stores ``N`` captions per image, image
    ``i``'s at ``i*N .. i*N+N-1``."""
    if not keys or len(captions) % len(keys):
        raise DataError(f"{path}: {len(captions)} captions do not divide among {len(keys)} images")
    per_image = len(captions) // len(keys)
    words = release.vocab.words
    for i, key in enumerate(keys):
        group = captions[i * per_image : (i + 1) * per_image]
        yield f"{path}[{key}]", [[words[w] for w in c] for c in group]


def read_cub(root: Path, captions_per_image: int, bad: BadSamples) -> SplitRecords:
    """CUB-200-2011 in the release's layout; class id = the species number before the key's dot."""
    cub = root / "CUB_200_2011"
    paths = _read_table(cub / "images.txt")
    boxes = _read_table(cub / "bounding_boxes.txt")
    box_of_key = {}
    for image_id, values in paths.items():
        rel = values[0]
        if image_id not in boxes or len(boxes[image_id]) != 4:
            raise DataError(f"{cub / 'bounding_boxes.txt'}: no box for image id {image_id}")
        try:
            box_of_key[rel.rsplit(".", 1)[0]] = tuple(float(v) for v in boxes[image_id])
        except ValueError:
            raise DataError(
                f"{cub / 'bounding_boxes.txt'}: bad box for image id {image_id}"
            ) from None

    def species(_i: int, key: str) -> int:
        try:
            return int(key.split(".", 1)[0])
        except ValueError:
            raise DataError(f"CUB key {key!r} does not start with a species number") from None

    def bbox(key: str) -> tuple[float, float, float, float]:
        if key not in box_of_key:
            raise DataError(f"{cub / 'images.txt'}: no entry for {key}")
        return box_of_key[key]

    return _release_layout(
        root, lambda key: cub / "images" / f"{key}.jpg", species, bbox, captions_per_image, bad
    )


# --- COCO


def _coco_annotation_file(root: Path, split: str) -> tuple[Path, Path]:
    """``annotations/captions_<name><year>.json`` and its image folder; test is COCO's val."""
    name = "train" if split == "train" else "val"
    for year in ("2017", "2014"):
        ann = root / "annotations" / f"captions_{name}{year}.json"
        if ann.is_file():
            return ann, root / f"{name}{year}"
    raise DataError(
        f"no {root}/annotations/captions_{name}2017.json (or 2014) for the {split} split"
    )


def _read_coco_json(path: Path) -> tuple[list[tuple[int, str]], dict[int, list[str]]]:
    """The images ``(id, file_name)`` by id, and each image's captions in annotation order."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images = sorted((int(im["id"]), str(im["file_name"])) for im in data["images"])
        pairs = sorted(
            (int(a.get("id", 0)), int(a["image_id"]), str(a["caption"]))
            for a in data["annotations"]
        )
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{path}: not a COCO captions file (images need 'id' and 'file_name', annotations "
            f"'image_id' and 'caption'; problem: {exc.__class__.__name__} {exc})"
        ) from None
    captions: dict[int, list[str]] = {}
    for _, image_id, caption in pairs:
        captions.setdefault(image_id, []).append(caption)
    return images, captions


def read_coco(root: Path, captions_per_image: int, bad: BadSamples) -> SplitRecords:
    """COCO: the official layout when ``root/annotations`` exists, else the release's layout."""
    if not (root / "annotations").is_dir():
        return _release_layout(
            root,
            lambda key: root / "images" / f"{key}.jpg",
            lambda i, _key: i,
            lambda _key: None,
            captions_per_image,
            bad,
        )
    records: dict[str, list[Record]] = {}
    offset = 0
    for split in SPLITS:
        ann_path, image_dir = _coco_annotation_file(root, split)
        images, captions = _read_coco_json(ann_path)
        records[split] = []
        for image_id, file_name in images:
            source = f"{ann_path} (image {file_name})"
            tokens = caption_tokens(captions.get(image_id, []), captions_per_image, source, bad)
            if tokens is not None:
                key = Path(file_name).stem
                # Class ids are unique per image: COCO has no species to mask (as in the release).
                class_id = offset + len(records[split])
                records[split].append(Record(key, image_dir / file_name, tokens, class_id))
        offset += len(records[split])
    return SplitRecords(records)


# --- the user's own folder


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: each line must be a JSON object")
        rows.append((number, row))
    return rows


def _folder_split_rows(root: Path, split: str) -> tuple[Path, list[tuple[int, dict]]]:
    """``root/<split>/metadata.jsonl``, else ``root/metadata.jsonl`` (filtered by its ``split``)."""
    own = root / split / "metadata.jsonl"
    if own.is_file():
        return own, _read_jsonl(own)
    shared = root / "metadata.jsonl"
    if not shared.is_file():
        raise DataError(f"no metadata.jsonl in {root / split} or {root}")
    rows = _read_jsonl(shared)
    if any("split" in row for _, row in rows):
        rows = [(n, row) for n, row in rows if row.get("split") == split]
    return shared, rows


def read_folder(root: Path, captions_per_image: int, bad: BadSamples) -> SplitRecords:
    """Images with ``metadata.jsonl``: ``file_name`` (relative to the jsonl's folder), ``text``
    (a caption or a list of captions), optional ``class_id``; other fields are kept as attributes.

    Without split folders or a ``split`` field, the same images serve as train and test.
    """
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    records: dict[str, list[Record]] = {}
    for split in SPLITS:
        path, rows = _folder_split_rows(root, split)
        records[split] = []
        for number, row in rows:
            where = f"{path}:{number}"
            name, text = row.get("file_name"), row.get("text")
            if not isinstance(name, str) or not name:
                raise DataError(f"{where}: needs a 'file_name' string")
            texts = [text] if isinstance(text, str) else text
            if not isinstance(texts, list) or not texts:
                bad.report(f"{where}: needs 'text', a caption or a list of captions")
                continue
            tokens = caption_tokens(texts, captions_per_image, where, bad)
            if tokens is None:
                continue
            class_id = row.get("class_id", len(records[split]))
            if not isinstance(class_id, int):
                raise DataError(f"{where}: 'class_id' must be an integer")
            extra = {k: v for k, v in row.items() if k not in ("file_name", "text", "class_id")}
            key = str(Path(name).with_suffix(""))
            records[split].append(Record(key, path.parent / name, tokens, class_id, None, extra))
    return SplitRecords(records)


READERS: dict[str, Callable[[Path, int, BadSamples], SplitRecords]] = {
    "cub": read_cub,
    "coco": read_coco,
    "folder": read_folder,
}


def read_records(
    fmt: str, root: str | Path, captions_per_image: int, skip_bad: bool
) -> SplitRecords:
    """Read both splits of a data set in layout ``fmt`` (see :data:`READERS`)."""
    root = Path(root)
    if not root.exists():
        hint = "build it with `attngan data shapes --out DIR`" if root.name == "shapes" else ""
        raise DataError(f"data folder not found: {root} ({hint or 'give it with --data DIR'})")
    if fmt not in READERS:
        raise DataError(f"unknown data format {fmt!r} (one of {', '.join(READERS)})")
    bad = BadSamples(skip_bad)
    result = READERS[fmt](root, captions_per_image, bad)
    result.skipped += bad.messages
    return result
