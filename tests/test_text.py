import pickle
from pathlib import Path

import pytest

from attngan.errors import DataError, VocabularyError
from attngan.text import END_TOKEN, Vocabulary, load_plain_pickle, read_release_captions, tokenize

from .conftest import CUB, needs_cub


def test_tokenizer_follows_the_release():
    assert tokenize("A Bird, with a very-long wing_span!") == [
        "a",
        "bird",
        "with",
        "a",
        "very",
        "long",
        "wing_span",
    ]
    assert tokenize("café  naïve   ÉLAN") == ["caf", "nave", "lan"]  # non-ASCII dropped
    assert tokenize("日本 !!") == []
    assert tokenize("") == []


def test_vocabulary_builds_encodes_and_decodes():
    vocab = Vocabulary.build([tokenize("a red bird"), tokenize("a blue bird"), tokenize("a bird")])
    assert vocab.word(0) == END_TOKEN and len(vocab) == 5
    assert vocab.words[1:3] == ["a", "bird"]  # most frequent first
    encoded = vocab.encode("A red PLANE bird")
    assert encoded.unknown == ["plane"]
    assert encoded.tokens == ["a", "red", "bird"]
    assert vocab.decode(encoded.ids) == "a red bird"
    assert vocab.decode([*encoded.ids, 0, 3, 3]) == "a red bird"  # stops at <end>


def test_user_caption_errors_are_clear():
    vocab = Vocabulary.build([["a", "bird"]])
    with pytest.raises(VocabularyError, match="empty caption"):
        vocab.encode("   ")
    with pytest.raises(VocabularyError, match="empty caption"):
        vocab.encode("?!")
    with pytest.raises(VocabularyError, match="no known word.*zebra"):
        vocab.encode("zebra crossing")
    assert vocab.encode("zebra", strict=False).ids == []


def test_vocabulary_json_round_trip_and_errors(tmp_path: Path):
    vocab = Vocabulary.build([tokenize("the quick brown fox"), tokenize("the lazy dog")])
    path = vocab.save(tmp_path / "vocab.json")
    assert Vocabulary.load(path) == vocab
    path.write_text('{"format": "something-else"}')
    with pytest.raises(VocabularyError, match="not an attngan vocabulary"):
        Vocabulary.load(path)
    path.write_text("{truncated")
    with pytest.raises(VocabularyError, match="not valid JSON"):
        Vocabulary.load(path)
    with pytest.raises(VocabularyError, match="not found"):
        Vocabulary.load(tmp_path / "nope.json")
    with pytest.raises(VocabularyError, match="first word"):
        Vocabulary(["a", "b"])
    with pytest.raises(VocabularyError, match="twice"):
        Vocabulary([END_TOKEN, "a", "a"])


@needs_cub
def test_release_captions_pickle():
    release = read_release_captions(CUB / "captions.pickle")
    assert len(release.vocab) == 5450
    assert release.vocab.word(0) == "<end>" and release.vocab.id("<end>") == 0
    assert len(release.train) == 88550 and len(release.test) == 29330
    assert release.vocab.decode(release.train[0]) == (
        "a bird with a very long wing span and a long pointed beak"
    )


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_restricted_unpickler_refuses_objects(tmp_path: Path, capsys):
    path = tmp_path / "captions.pickle"
    path.write_bytes(pickle.dumps([[], [], {0: "<end>"}, _Evil()], protocol=2))
    with pytest.raises(DataError, match="refusing to load"):
        read_release_captions(path)
    assert "pwned" not in capsys.readouterr().out
    path.write_bytes(pickle.dumps([[[1, 2]], [], {0: "<end>", 1: "a", 2: "b"}, {}])[:20])
    with pytest.raises(DataError, match="truncated"):
        read_release_captions(path)
    path.write_bytes(pickle.dumps({"not": "a list"}))
    with pytest.raises(DataError, match="expected"):
        read_release_captions(path)
    with pytest.raises(DataError, match="not found"):
        load_plain_pickle(tmp_path / "missing.pickle")


def test_release_pickle_round_trip(tmp_path: Path):
    words = ["<end>", "a", "bird", "red"]
    caps = [[1, 3, 2], [1, 2]]
    path = tmp_path / "captions.pickle"
    path.write_bytes(
        pickle.dumps(
            [caps, caps[:1], dict(enumerate(words)), {w: i for i, w in enumerate(words)}],
            protocol=2,
        )
    )
    release = read_release_captions(path)
    assert release.vocab.words == words
    assert release.vocab.decode(release.train[0]) == "a red bird"


def test_word_swapper_swaps_one_word_for_another_class_of_its_family():
    import random

    from attngan.errors import ConfigError
    from attngan.text import WordSwapper

    vocab = Vocabulary.build([["a", "red", "circle", "disc", "square", "star", "blue", "on"]])
    swap = WordSwapper("circle/disc square star; red blue; nothing here", vocab)
    circle, disc = vocab.id("circle"), vocab.id("disc")
    assert len(swap.families) == 2  # the third family has no word in the vocabulary
    caption = vocab.encode("a red circle on").ids
    rng = random.Random(0)
    seen = set()
    for _ in range(200):
        (row, pad), flags = swap([caption + [0], [0, 0, 0, 0, 0]], [4, 0], rng)
        assert flags == [True, False] and pad == [0] * 5  # nothing to swap: copied unchanged
        changed = [k for k in range(5) if row[k] != (caption + [0])[k]]
        assert len(changed) == 1 and changed[0] in (1, 2) and row[4] == 0  # padding untouched
        new = vocab.word(row[changed[0]])
        seen.add(new)
        assert row[changed[0]] not in (circle, disc)  # never the word itself or its synonym
    assert seen == {"square", "star", "blue"}  # every other class of both families
    with pytest.raises(ConfigError, match="no family"):
        WordSwapper("zebra/horse; cat", vocab)


def test_shape_swap_words_cover_every_shape_of_the_shapes_vocabulary():
    from attngan.assets import bundled_model
    from attngan.data.shapes import SHAPE_SWAP_WORDS, SHAPE_WORDS
    from attngan.text import WordSwapper

    vocab = Vocabulary.load(bundled_model() / "vocab.json")
    swap = WordSwapper(SHAPE_SWAP_WORDS, vocab)
    assert len(swap.families) == 1
    # one class per shape, holding the first word of each of its synonyms
    classes = {frozenset(vocab.word(i) for i in c) for c in swap.families[0]}
    assert classes == {frozenset(w.split()[0] for w in words) for words in SHAPE_WORDS.values()}
    assert "cross/plus" in SHAPE_SWAP_WORDS.split()  # the spelling the docs give
