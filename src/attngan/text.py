"""Tokenizer, vocabulary and the reader of the release's ``captions.pickle`` (SPEC §2, §9)."""

from __future__ import annotations

import json
import pickle
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from attngan.errors import ConfigError, DataError, VocabularyError
from attngan.fileio import write_text_atomic

END_TOKEN = "<end>"  # index 0: end of caption and padding
_WORD = re.compile(r"\w+")
VOCAB_FORMAT = "attngan-vocabulary"


def tokenize(text: str) -> list[str]:
    """Lower-case ``\\w+`` tokens with non-ASCII characters dropped (the release's tokenizer)."""
    tokens = _WORD.findall(text.lower())
    if text.isascii():
        return tokens
    ascii_only = (t.encode("ascii", "ignore").decode("ascii") for t in tokens)
    return [t for t in ascii_only if t]


@dataclass(frozen=True)
class EncodedCaption:
    """A caption as vocabulary ids, with the words the vocabulary does not know."""

    ids: list[int]
    tokens: list[str]  # the known words, in order: ``tokens[k]`` has id ``ids[k]``
    unknown: list[str]


class Vocabulary:
    """Words ↔ ids with ``<end>`` = 0 (also the padding id).

    Build one from captions with :meth:`build`, read the release's with
    :func:`read_release_captions`, and keep it beside a model as JSON (:meth:`save`, :meth:`load`).
    """

    def __init__(self, words: Sequence[str]) -> None:
        words = list(words)
        if not words or words[0] != END_TOKEN:
            raise VocabularyError(f"a vocabulary's first word must be {END_TOKEN!r}")
        index = {w: i for i, w in enumerate(words)}
        if len(index) != len(words):
            dup = next(w for w, c in Counter(words).items() if c > 1)
            raise VocabularyError(f"word {dup!r} appears twice in the vocabulary")
        self._words = words
        self._index = index

    @classmethod
    def build(cls, captions: Iterable[Sequence[str]]) -> Vocabulary:
        """Every word of the tokenized captions, most frequent first (ties alphabetical).

        The release kept every word (no frequency threshold); so does this.
        """
        counts: Counter[str] = Counter()
        for tokens in captions:
            counts.update(tokens)
        counts.pop(END_TOKEN, None)
        words = sorted(counts, key=lambda w: (-counts[w], w))
        return cls([END_TOKEN, *words])

    def __len__(self) -> int:
        return len(self._words)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._words == other._words

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words)"

    @property
    def words(self) -> list[str]:
        """The words in id order (a copy)."""
        return list(self._words)

    def id(self, word: str) -> int | None:
        return self._index.get(word)

    def word(self, index: int) -> str:
        if not 0 <= index < len(self._words):
            raise VocabularyError(f"id {index} is outside the vocabulary of {len(self)} words")
        return self._words[index]

    def encode_tokens(self, tokens: Sequence[str]) -> EncodedCaption:
        """Ids of the known tokens; unknown ones are dropped and listed."""
        ids = [self._index.get(t) or 0 for t in tokens]
        if all(ids):
            return EncodedCaption(ids, list(tokens), [])
        known = [t for t, i in zip(tokens, ids, strict=True) if i]
        unknown = [t for t, i in zip(tokens, ids, strict=True) if not i]
        return EncodedCaption([i for i in ids if i], known, unknown)

    def encode(self, text: str, *, strict: bool = True) -> EncodedCaption:
        """Tokenize and encode a caption.

        With ``strict`` (the default, as for user captions at inference), a caption with no word or
        no known word raises :class:`VocabularyError` with a message a user can act on.
        """
        tokens = tokenize(text)
        if strict and not tokens:
            raise VocabularyError(f"empty caption: {text!r} has no words")
        encoded = self.encode_tokens(tokens)
        if strict and not encoded.ids:
            raise VocabularyError(
                f"no known word in caption {text!r} "
                f"(unknown: {', '.join(encoded.unknown)}; the vocabulary has {len(self)} words)"
            )
        return encoded

    def decode(self, ids: Iterable[int]) -> str:
        """Words of the ids, stopping at the first ``<end>`` (0)."""
        words = []
        for index in ids:
            index = int(index)
            if index == 0:
                break
            words.append(self.word(index))
        return " ".join(words)

    # --- JSON ------------------------------------------------------------------------------------

    def to_json(self) -> dict:
        return {"format": VOCAB_FORMAT, "version": 1, "words": self._words}

    @classmethod
    def from_json(cls, data: object, source: str = "vocabulary") -> Vocabulary:
        if not isinstance(data, dict) or data.get("format") != VOCAB_FORMAT:
            raise VocabularyError(f"{source}: not an attngan vocabulary file")
        words = data.get("words")
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise VocabularyError(f"{source}: 'words' must be a list of strings")
        return cls(words)

    def save(self, path: str | Path) -> Path:
        return write_text_atomic(path, json.dumps(self.to_json(), ensure_ascii=True))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        path = Path(path)
        if not path.is_file():
            raise VocabularyError(f"vocabulary file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise VocabularyError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_json(data, str(path))


# --- the release's pickles


class _DataOnlyUnpickler(pickle.Unpickler):
    """Unpickles lists, dicts, tuples, numbers and strings; refuses any class or function."""

    def find_class(self, module: str, name: str):  # noqa: ANN201 - signature from pickle
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: only plain data is allowed"
        )


def load_plain_pickle(path: str | Path) -> object:
    """Read a (Python 2 or 3) pickle of plain data safely; anything else is a :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        with path.open("rb") as f:
            return _DataOnlyUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{path}: {exc}") from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise DataError(f"{path}: truncated or not a pickle ({exc.__class__.__name__})") from None


@dataclass
class ReleaseCaptions:
    """The content of the release's ``captions.pickle``: encoded captions and their vocabulary."""

    train: list[list[int]]
    test: list[list[int]]
    vocab: Vocabulary


def read_release_captions(path: str | Path) -> ReleaseCaptions:
    """Read ``[train_captions, test_captions, ixtoword, wordtoix]`` (SPEC §9).

    The word order came from Python 2 dict iteration, so this vocabulary, not a rebuilt one, is the
    one the release's weights index.
    """
    data = load_plain_pickle(path)
    if not (isinstance(data, list) and len(data) == 4):
        raise DataError(
            f"{path}: expected [train, test, ixtoword, wordtoix], got {type(data).__name__}"
        )
    train, test, ixtoword, wordtoix = data
    if not isinstance(ixtoword, dict) or not isinstance(wordtoix, dict):
        raise DataError(f"{path}: ixtoword and wordtoix must be dicts")
    n = len(ixtoword)
    if sorted(ixtoword) != list(range(n)):
        raise DataError(f"{path}: ixtoword ids are not 0..{n - 1}")
    words = [ixtoword[i] for i in range(n)]
    if any(wordtoix.get(w) != i for i, w in enumerate(words)):
        raise DataError(f"{path}: ixtoword and wordtoix disagree")
    vocab = Vocabulary(words)
    for name, caps in (("train", train), ("test", test)):
        if not isinstance(caps, list) or any(not isinstance(c, list) for c in caps):
            raise DataError(f"{path}: {name} captions must be lists of word ids")
    return ReleaseCaptions(train=train, test=test, vocab=vocab)


class WordSwapper:
    """Hard negative captions: each caption with one word swapped for a word of another meaning
    from the same family (``damsm.swap_words``), e.g. "a red circle" -> "a red star".

    ``spec`` lists families separated by ``;``; a family lists its classes separated by spaces;
    a class lists its synonyms separated by ``/``. ``"circle/disc square star; red blue"`` has
    two families: three shape classes (circle and disc mean the same) and two colours. A word is
    only ever replaced by a word of another class of its family, never by a synonym.
    Words the vocabulary lacks are ignored; a spec with no swappable family is a ConfigError.
    """

    def __init__(self, spec: str, vocab: Vocabulary) -> None:
        self.families: list[list[list[int]]] = []  # family -> class -> word ids
        self.lookup: dict[int, tuple[int, int]] = {}  # word id -> (family, class)
        for text in spec.split(";"):
            classes = [
                [i for w in c.split("/") if (i := vocab.id(w.strip().lower()))]
                for c in text.split()
            ]
            classes = [c for c in classes if c]
            if len(classes) < 2:
                continue
            f = len(self.families)
            self.families.append(classes)
            for k, ids in enumerate(classes):
                for i in ids:
                    self.lookup[i] = (f, k)
        if not self.families:
            raise ConfigError(
                f"damsm.swap_words {spec!r}: no family has two classes of words in the vocabulary"
            )

    def __call__(
        self, tokens: Sequence[Sequence[int]], lengths: Sequence[int], rng: random.Random
    ) -> tuple[list[list[int]], list[bool]]:
        """Each caption's swapped copy (a caption with no swappable word is copied unchanged)
        and whether it was swapped. One word is swapped, at a position drawn from ``rng``."""
        out: list[list[int]] = []
        swapped: list[bool] = []
        for row, n in zip(tokens, lengths, strict=True):
            row = list(row)
            where = [p for p in range(int(n)) if row[p] in self.lookup]
            if where:
                p = rng.choice(where)
                f, k = self.lookup[row[p]]
                others = [c for j, c in enumerate(self.families[f]) if j != k]
                row[p] = rng.choice(rng.choice(others))
            out.append(row)
            swapped.append(bool(where))
        return out, swapped
