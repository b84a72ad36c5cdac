"""A text corpus for character-level language models, and the compressor baselines a char-RNN is measured against.

The corpus is the Python standard library's own source, as the running interpreter has it: the top-level ``*.py``
files of ``sysconfig.get_paths()["stdlib"]`` in sorted order (packages such as ``test/``, ``idlelib/`` or
``email/`` are not top-level files, so the test suite is not in it; a top-level file whose name starts with
``test`` would be left out too). Each file goes whole into one split, chosen by a stable hash of its name::

    bucket = int(sha256(name).hexdigest(), 16) % 100      test: bucket < 5, valid: 5 <= bucket < 10, else train

and a split is its files' bytes concatenated in sorted order. The corpus differs between Python versions, so
:func:`describe` records the version, the file names, and the size and SHA-256 of each split.

The models read bytes (UTF-8), so every text is coded losslessly, exactly as the compressors code it; all the
numbers are bits per *character*: total bits over the number of characters (the standard library is ASCII but
for a few dozen characters, so bits per byte differ in the fourth digit).
"""

from __future__ import annotations

import bz2
import collections
import hashlib
import lzma
import math
import pathlib
import sys
import sysconfig
import zlib
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

SPLITS = ("train", "valid", "test")


class Corpus(NamedTuple):
    """The three splits as bytes, and the sorted file names in each."""

    train: bytes
    valid: bytes
    test: bytes
    files: dict


def split_of(name: str) -> str:
    """``'train'``, ``'valid'`` or ``'test'`` for a file name, by the first two digits of its SHA-256."""
    bucket = int(hashlib.sha256(name.encode("utf-8")).hexdigest(), 16) % 100
    return "test" if bucket < 5 else "valid" if bucket < 10 else "train"


def stdlib_files(root: pathlib.Path | None = None) -> list[pathlib.Path]:
    """The corpus' files: the sorted top-level ``*.py`` of the standard library, tests excluded."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"]) if root is None else root
    return sorted(path for path in root.glob("*.py") if not path.name.startswith("test"))


def stdlib_corpus(root: pathlib.Path | None = None, limit: int | None = None) -> Corpus:
    """The standard-library corpus; ``limit`` keeps only each split's first ``limit`` bytes (for smoke tests)."""
    parts: dict = {split: [] for split in SPLITS}
    files: dict = {split: [] for split in SPLITS}
    for path in stdlib_files(root):
        split = split_of(path.name)
        parts[split].append(path.read_bytes())
        files[split].append(path.name)
    texts = {split: b"".join(parts[split])[:limit] for split in SPLITS}
    return Corpus(texts["train"], texts["valid"], texts["test"], files)


def characters(text: bytes) -> int:
    """The number of characters of UTF-8 ``text`` (undecodable bytes count one each)."""
    return len(text.decode("utf-8", errors="replace"))


def describe(corpus: Corpus) -> dict:
    """What identifies the corpus: the Python version and, per split, its files, characters, bytes and SHA-256."""
    info = {"python": sys.version.split()[0], "stdlib": sysconfig.get_paths()["stdlib"]}
    for split in SPLITS:
        text = getattr(corpus, split)
        info[split] = {"files": corpus.files[split], "characters": characters(text), "bytes": len(text),
                       "sha256": hashlib.sha256(text).hexdigest()}
    return info


class Vocabulary(NamedTuple):
    """Token ids for bytes: the distinct bytes of the training text, then one escape id for every other byte.

    A held-out byte outside the training alphabet is read as the escape; a model codes it by the escape's
    probability followed by 8 bits for the byte itself (:func:`code_length_bits`).
    """

    ids: np.ndarray  # [256] int32: byte value -> token id
    symbols: bytes  # token id -> byte value, for ids below the escape

    @property
    def size(self) -> int:
        return len(self.symbols) + 1

    @property
    def escape(self) -> int:
        return len(self.symbols)

    def encode(self, text: bytes) -> np.ndarray:
        return self.ids[np.frombuffer(text, np.uint8)]

    def decode(self, tokens) -> str:
        return bytes(self.symbols[t] if t < self.escape else ord("?") for t in np.asarray(tokens).tolist()).decode(
            "utf-8", errors="replace")


def vocabulary(train: bytes) -> Vocabulary:
    symbols = bytes(sorted(set(train)))
    ids = np.full(256, len(symbols), np.int32)
    ids[np.frombuffer(symbols, np.uint8)] = np.arange(len(symbols), dtype=np.int32)
    return Vocabulary(ids, symbols)


def code_length_bits(bits_per_prediction: float, tokens: np.ndarray, vocab: Vocabulary) -> float:
    """The total code length of a token stream under a model, in bits.

    ``bits_per_prediction`` is the model's mean ``-log2 p`` over the ``n - 1`` predicted tokens
    (:func:`jrnn.bits_per_token`); the first token, which the model only reads, costs 8 bits, as does each
    escaped byte on top of the escape's own probability.
    """
    escapes = int(np.sum(tokens == vocab.escape))
    return bits_per_prediction * (len(tokens) - 1) + 8.0 * (1 + escapes)


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "zlib -9": lambda data: zlib.compress(data, 9),
    "bz2 -9": lambda data: bz2.compress(data, 9),
    "lzma -9e": lambda data: lzma.compress(data, preset=9 | lzma.PRESET_EXTREME),
}


def compressor_bpc(compress: Callable[[bytes], bytes], train: bytes, test: bytes,
                   train_size: int | None = None) -> dict:
    """A compressor's bits per character on ``test``, given the training text as context and alone::

        with_train = 8 · (|C(train + test)| − |C(train)|) / |test|        alone = 8 · |C(test)| / |test|

    with ``|test|`` in characters. ``with_train`` is what the compressor spends on the test text once it has seen
    the training text: the fair comparison for a model trained on it. ``train_size`` is ``|C(train)|`` if known.
    """
    chars = characters(test)
    base = len(compress(train)) if train_size is None else train_size
    return {"with_train": 8.0 * (len(compress(train + test)) - base) / chars,
            "alone": 8.0 * len(compress(test)) / chars}


def unigram_bpc(train: bytes, test: bytes) -> dict:
    """The order-0 baseline in bits per character: the byte frequencies of the training text (add-one smoothed
    over all 256 values) coding ``test`` (``with_train``), and the empirical entropy of ``test`` itself
    (``alone``)."""
    chars = characters(test)
    train_counts = np.bincount(np.frombuffer(train, np.uint8), minlength=256) + 1.0
    q = train_counts / train_counts.sum()
    test_counts = np.bincount(np.frombuffer(test, np.uint8), minlength=256)
    with_train = -float(np.sum(test_counts * np.log2(q))) / chars
    n = test_counts.sum()
    alone = -sum(c * math.log2(c / n) for c in collections.Counter(test).values()) / chars
    return {"with_train": with_train, "alone": alone}


def baselines(train: bytes, held_out: dict) -> dict:
    """Every baseline of :func:`unigram_bpc` and :data:`COMPRESSORS` on each held-out text, in bits per character:
    ``{name of the text: {baseline: {"with_train": ..., "alone": ...}}}``; ``|C(train)|`` is computed once."""
    out: dict = {name: {"unigram": unigram_bpc(train, heldout)} for name, heldout in held_out.items()}
    for compressor, compress in COMPRESSORS.items():
        train_size = len(compress(train))
        for name, heldout in held_out.items():
            out[name][compressor] = compressor_bpc(compress, train, heldout, train_size)
    return out
