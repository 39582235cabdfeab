"""One data set interface for every layout: a sample is the image pyramid, the caption's token ids,
its length, a class id and the key (SPEC §2, §7)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from attngan.config import Config
from attngan.data.records import Record, read_records
from attngan.data.transforms import PyramidTransform
from attngan.errors import DataError
from attngan.progress import progress_bar
from attngan.text import Vocabulary

log = logging.getLogger(__name__)


class Sample(NamedTuple):
    """One drawn sample; ``torch.utils.data.default_collate`` batches it field by field."""

    images: list[torch.Tensor]  # one [3, s, s] per stage, smallest first, in [-1, 1]
    tokens: torch.Tensor  # [max_words] int64 word ids, 0-padded
    length: int  # number of real words, 1..max_words
    class_id: int
    key: str
    caption_index: int  # which of the image's captions was drawn
    # the image's paired negative (``data.negatives``), one tensor per stage, the same crop and
    # flip; empty without negatives
    negatives: list[torch.Tensor] | tuple = ()


def load_image(path: Path) -> Image.Image:
    """Open and fully decode an RGB image; a missing, corrupt or truncated file is a DataError."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"corrupt or truncated image: {path} ({exc})") from None


def _require_files(paths: Sequence[Path], what: str) -> None:
    """DataError naming the first of ``paths`` that is not a file, and how many more are not."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{what} not found: {missing[0]}{more}")


def select_words(
    ids: Sequence[int], max_words: int, generator: torch.Generator | None
) -> list[int]:
    """Keep at most ``max_words`` ids: a random ordered subset if a generator is given, else the
    first ``max_words`` (SPEC §2)."""
    if len(ids) <= max_words:
        return list(ids)
    if generator is None:
        return list(ids[:max_words])
    keep = torch.randperm(len(ids), generator=generator)[:max_words].sort().values
    return [ids[int(k)] for k in keep]


class TextImageDataset(Dataset):
    """Images with captions as model input.

    Args:
        records: what a reader of :mod:`attngan.data.records` returned for one split.
        vocab: encodes the captions; words it lacks are dropped (and counted in the log).
        image_sizes: the side of each stage's image, smallest first, e.g. ``[64, 128, 256]``.
        max_words: caption length cap (random ordered subset in training, truncation otherwise).
        train: random caption, crop and flip per draw; otherwise a fixed caption per item
            (chosen from ``seed``) and a centre crop.
        flip: random horizontal flips in training (off for captions that name left and right).
        crop: random crops in training (off: resize and centre crop, as in evaluation).
        shift: random shifts of up to this many pixels in training (:class:`PyramidTransform`).
        negatives: ``(root, negatives_root)``: each sample also carries the image at the same
            path relative to ``negatives_root`` as its own has to ``root``, cropped and flipped
            alike (paired negatives for the discriminators, ``train.d_negatives``).
        skip_bad: check every image once now and drop unreadable ones (their messages are in
            ``skipped``); at draw time a bad image is then replaced by the next good one.
            Otherwise a bad image raises :class:`DataError` naming the file.
    """

    def __init__(
        self,
        records: list[Record],
        vocab: Vocabulary,
        image_sizes: Sequence[int],
        max_words: int,
        *,
        train: bool,
        skip_bad: bool = False,
        seed: int = 0,
        progress: bool = True,
        flip: bool = True,
        crop: bool = True,
        shift: int = 0,
        negatives: tuple[str | Path, str | Path] | None = None,
    ) -> None:
        self.vocab = vocab
        self.max_words = max_words
        self.train = train
        self.skip_bad = skip_bad
        self.seed = seed
        self.transform = PyramidTransform(list(image_sizes), train, flip, crop, shift)
        self.skipped: list[str] = []
        self.records, self.captions = self._encode(records)
        self.negatives = None if negatives is None else (Path(negatives[0]), Path(negatives[1]))
        if skip_bad:
            self._drop_unreadable(progress)
        else:
            self._require_images()
        if not self.records:
            raise DataError("no usable samples in this split")
        if self.negatives is not None:
            self._require_negatives()

    def _encode(self, records: list[Record]) -> tuple[list[Record], list[list[np.ndarray]]]:
        kept, captions, unknown = [], [], 0
        for record in records:
            encoded = [self.vocab.encode_tokens(tokens) for tokens in record.captions]
            unknown += sum(len(e.unknown) for e in encoded)
            if any(not e.ids for e in encoded):
                message = f"{record.key}: a caption has no word the vocabulary knows"
                if not self.skip_bad:
                    raise DataError(message)
                self.skipped.append(message)
                continue
            kept.append(record)
            captions.append([np.asarray(e.ids, dtype=np.int64) for e in encoded])
        if unknown:
            log.warning("%d caption words are not in the vocabulary and were dropped", unknown)
        return kept, captions

    def _require_images(self) -> None:
        _require_files([r.image for r in self.records], "image file")

    def negative_path(self, record: Record) -> Path:
        """The paired negative of ``record``'s image (needs ``negatives``)."""
        assert self.negatives is not None
        root, negatives_root = self.negatives
        try:
            relative = record.image.resolve().relative_to(root.resolve())
        except ValueError:
            raise DataError(f"{record.image} is not inside the data folder {root}") from None
        return negatives_root / relative

    def _require_negatives(self) -> None:
        _require_files([self.negative_path(r) for r in self.records], "paired negative image")

    def _drop_unreadable(self, progress: bool) -> None:
        keep = []
        bar = progress_bar(range(len(self.records)), desc="checking images", disable=not progress)
        for i in bar:
            try:
                load_image(self.records[i].image)
                keep.append(i)
            except DataError as exc:
                self.skipped.append(str(exc))
        self.records = [self.records[i] for i in keep]
        self.captions = [self.captions[i] for i in keep]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def image_sizes(self) -> list[int]:
        return self.transform.sizes

    def caption_texts(self, index: int) -> list[str]:
        """The captions of item ``index`` as the model sees them (known words only)."""
        return [self.vocab.decode(ids) for ids in self.captions[index]]

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        """Item ``key``, or ``(index, seed)``: in training, the seed then fixes the caption, word,
        crop and flip draws, so a batch plan of seeded keys gives the same samples with any number
        of workers and after a resume (see :func:`attngan.training.loop.epoch_batches`)."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        for attempt in range(len(self.records)):
            record = self.records[(index + attempt) % len(self.records)]
            try:
                image = load_image(record.image)
            except DataError as exc:
                if not self.skip_bad:
                    raise
                log.warning("skipping %s", exc)
                continue
            return self._sample((index + attempt) % len(self.records), record, image, seed)
        raise DataError("no readable image left in this split")

    def _sample(
        self, index: int, record: Record, image: Image.Image, seed: int | None = None
    ) -> Sample:
        captions = self.captions[index]
        if self.train:
            # a seeded key fixes every draw; a plain index uses the global RNG (seeded per worker)
            generator = None if seed is None else torch.Generator().manual_seed(seed)
            choice = int(torch.randint(len(captions), (), generator=generator))
            ids = select_words(
                captions[choice].tolist(), self.max_words, generator or torch.default_generator
            )
        else:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
            choice = int(torch.randint(len(captions), (), generator=generator))
            ids = select_words(captions[choice].tolist(), self.max_words, None)
        tokens = torch.zeros(self.max_words, dtype=torch.int64)
        tokens[: len(ids)] = torch.as_tensor(ids, dtype=torch.int64)
        if self.negatives is None:
            images = self.transform(image, record.bbox, generator)
            return Sample(images, tokens, len(ids), record.class_id, record.key, choice)
        # the negative takes the same crop and flip: replay the generator's draws
        if generator is None:
            seed = int(torch.randint(2**62, ())) if self.train else 0
            generator = torch.Generator().manual_seed(seed)
        state = generator.get_state()
        images = self.transform(image, record.bbox, generator)
        generator.set_state(state)
        negative = load_image(self.negative_path(record))
        if negative.size != image.size:
            raise DataError(
                f"paired negative {self.negative_path(record)} is {negative.size[0]}x"
                f"{negative.size[1]} px, its image {record.image} {image.size[0]}x{image.size[1]}"
            )
        negatives = self.transform(negative, record.bbox, generator)
        return Sample(images, tokens, len(ids), record.class_id, record.key, choice, negatives)


@dataclass
class Datasets:
    """The vocabulary and one data set per split, as :func:`open_datasets` returns them."""

    vocab: Vocabulary
    splits: dict[str, TextImageDataset] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def __getitem__(self, split: str) -> TextImageDataset:
        return self.splits[split]


def open_datasets(
    config: Config,
    splits: Sequence[str] = ("train", "test"),
    vocab: Vocabulary | None = None,
    *,
    train: bool | None = None,
    progress: bool = True,
) -> Datasets:
    """Read ``config.data`` and build a :class:`TextImageDataset` per split.

    The vocabulary is, in order: ``vocab`` if given (a trained or imported model's), the release's
    ``captions.pickle`` if the data set has one, else every word of both splits' captions (as the
    release does). ``data.limit`` keeps the first N samples of each split after that, so a limited
    run has the same vocabulary as a full one. ``train`` defaults to ``split == "train"``.
    """
    data = config.data
    read = read_records(data.format, data.root, data.captions_per_image, data.skip_bad)
    if vocab is None:
        vocab = read.vocabulary()
    result = Datasets(vocab, skipped=list(read.skipped))
    for split in splits:
        if split not in read.records:
            raise DataError(f"unknown split {split!r} (one of {', '.join(read.records)})")
        records = read.records[split]
        if data.limit:
            records = records[: data.limit]
        result.splits[split] = TextImageDataset(
            records,
            vocab,
            config.model.image_sizes,
            data.max_words,
            train=split == "train" if train is None else train,
            skip_bad=data.skip_bad,
            seed=config.train.seed,
            progress=progress,
            flip=config.data.flip,
            crop=config.data.random_crop,
            shift=config.data.random_shift,
            negatives=(data.root, data.negatives)
            if data.negatives and split == "train" and config.train.d_negatives > 0
            else None,
        )
        result.skipped += result.splits[split].skipped
    if result.skipped:
        log.warning("skipped %d bad samples (first: %s)", len(result.skipped), result.skipped[0])
    return result
