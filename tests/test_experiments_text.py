"""The char-LM corpus and baselines (experiments/text.py) against their definitions and hand-computed answers."""

import hashlib
import math
import zlib

import numpy as np

from experiments import text


def test_files_are_sorted_top_level_sources_without_tests_and_the_split_is_a_stable_hash(tmp_path):
    for name in ("a.py", "test_b.py", "c.py", "notes.txt", "testing.py"):
        (tmp_path / name).write_text("x = 1\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "d.py").write_text("y = 2\n")
    assert [p.name for p in text.stdlib_files(tmp_path)] == ["a.py", "c.py"]
    for name in ("os.py", "ast.py", "zipfile.py", "x" * 40 + ".py"):
        bucket = int.from_bytes(hashlib.sha256(name.encode()).digest(), "big") % 100
        assert text.split_of(name) == ("test" if bucket < 5 else "valid" if bucket < 10 else "train")


def test_the_stdlib_corpus_splits_by_file_about_90_5_5_and_records_what_identifies_it():
    corpus = text.stdlib_corpus(limit=1000)
    names = [p.name for p in text.stdlib_files()]
    assert sorted(sum(corpus.files.values(), [])) == names
    fractions = {split: len(corpus.files[split]) / len(names) for split in text.SPLITS}
    assert fractions["train"] > 0.8 and 0.01 < fractions["valid"] < 0.1 and 0.01 < fractions["test"] < 0.1
    info = text.describe(corpus)
    assert info["test"]["sha256"] == hashlib.sha256(corpus.test).hexdigest()
    assert info["test"]["bytes"] == 1000 and info["test"]["files"] == corpus.files["test"]


def test_characters_count_utf8_characters_not_bytes():
    assert text.characters("é = 'π'".encode()) == 7
    assert len("é = 'π'".encode()) == 9


def test_compressor_baseline_is_the_extra_bytes_for_the_test_text_in_bits_per_character():
    identity = bytes  # a "compressor" that stores its input: 8 bits per ASCII character, with or without context
    bpc = text.compressor_bpc(identity, b"abc" * 10, b"hello world")
    assert bpc == {"with_train": 8.0, "alone": 8.0}
    # zlib, with the test text already in the training text: almost free with the context, not alone.
    test = bytes(np.random.default_rng(0).integers(97, 123, 2000).astype(np.uint8))
    bpc = text.compressor_bpc(lambda b: zlib.compress(b, 9), test, test)
    assert bpc["with_train"] < 0.5 < 4.0 < bpc["alone"]
    expected = 8 * (len(zlib.compress(test + test, 9)) - len(zlib.compress(test, 9))) / 2000
    assert math.isclose(bpc["with_train"], expected)


def test_unigram_baseline_by_hand():
    # Training bytes: 'a' x 60, 'b' x 40; add-one over 256 values: q(a) = 61/356, q(b) = 41/356.
    bpc = text.unigram_bpc(b"a" * 60 + b"b" * 40, b"aab")
    expected = -(2 * math.log2(61 / 356) + math.log2(41 / 356)) / 3
    assert math.isclose(bpc["with_train"], expected)
    assert math.isclose(bpc["alone"], -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3)))


def test_vocabulary_round_trips_the_training_bytes_and_escapes_the_rest():
    vocab = text.vocabulary(b"def f(x):\n    return x\n")
    assert vocab.size == len(set(b"def f(x):\n    return x\n")) + 1
    tokens = vocab.encode(b"def g(x)")
    assert tokens.tolist().count(vocab.escape) == 1  # 'g' is not in the training text
    assert vocab.decode(tokens) == "def ?(x)"
    assert vocab.decode(vocab.encode(b"return x")) == "return x"
    # The code length: the model's bits for the 7 predictions, 8 bits for the first token and 8 for the escape.
    assert text.code_length_bits(2.0, tokens, vocab) == 2.0 * 7 + 8 + 8
