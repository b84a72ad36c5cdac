"""The synthetic tasks of the classic RNN papers, and scikit-learn's digits as sequences.

Every generator is a pure function of a PRNG key (or a seed), so runs are reproducible.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Dataset(NamedTuple):
    """``xs[N, T, F]`` inputs, ``targets`` and optional ``lengths[N]``."""

    xs: jax.Array
    targets: jax.Array
    lengths: jax.Array | None = None


def adding_problem(key: jax.Array, n: int, T: int) -> Dataset:
    """The adding problem (Hochreiter & Schmidhuber 1997, in the form of Le, Jaitly & Hinton 2015).

    Each input step has two features: a value drawn from U[0, 1] and a marker, 1 at exactly two steps (one in
    the first half of the sequence, one in the second) and 0 elsewhere. The target is the sum of the two marked
    values. Predicting 1 for every sequence scores the MSE ``Var(u1 + u2) = 2/12 = 1/6 ≈ 0.167``.

    Returns:
      ``Dataset(xs[n, T, 2], targets[n, 1])``.
    """
    if T < 2:
        raise ValueError(f"adding_problem: expected T >= 2, got {T}")
    k_values, k_first, k_second = jax.random.split(key, 3)
    values = jax.random.uniform(k_values, (n, T))
    half = T // 2
    first = jax.random.randint(k_first, (n,), 0, half)
    second = jax.random.randint(k_second, (n,), half, T)
    steps = jnp.arange(T)[None, :]
    markers = ((steps == first[:, None]) | (steps == second[:, None])).astype(values.dtype)
    targets = jnp.sum(values * markers, axis=1, keepdims=True)
    return Dataset(jnp.stack([values, markers], axis=-1), targets)


ADDING_BASELINE_MSE = 1.0 / 6.0

COPY_SYMBOLS = 8  # symbols 1..8; 0 is the blank and 9 the delimiter
COPY_CLASSES = 10
COPY_LENGTH = 10


def copy_memory(key: jax.Array, n: int, T: int) -> Dataset:
    """The copy-memory task of Arjovsky, Shah & Bengio 2016 (after Hochreiter & Schmidhuber 1997).

    A sequence of ``T + 20`` symbols: 10 symbols drawn from {1..8}, ``T - 1`` blanks (0), the delimiter 9, then
    10 blanks. The target is ``T + 10`` blanks followed by the 10 symbols: after the delimiter, reproduce what
    was seen ``T`` steps before. Inputs are one-hot over 10 classes; targets are class indices at every step.

    Returns:
      ``Dataset(xs[n, T + 20, 10], targets[n, T + 20])`` with integer targets.
    """
    if T < 1:
        raise ValueError(f"copy_memory: expected T >= 1, got {T}")
    symbols = jax.random.randint(key, (n, COPY_LENGTH), 1, COPY_SYMBOLS + 1)
    blanks = jnp.zeros((n, T - 1), jnp.int32)
    tail = jnp.zeros((n, COPY_LENGTH), jnp.int32)
    delimiter = jnp.full((n, 1), COPY_CLASSES - 1, jnp.int32)
    inputs = jnp.concatenate([symbols, blanks, delimiter, tail], axis=1)
    targets = jnp.concatenate([jnp.zeros((n, T + COPY_LENGTH), jnp.int32), symbols], axis=1)
    return Dataset(jax.nn.one_hot(inputs, COPY_CLASSES), targets)


def copy_baseline_ce(T: int) -> float:
    """The memoryless strategy's cross-entropy per step, ``10 ln 8 / (T + 20)`` (Arjovsky et al. 2016).

    It predicts blank where the target is surely blank and a uniform guess over the 8 symbols for the last 10
    steps, so the mean over ``T + 20`` steps is ``10 · ln 8 / (T + 20)``.
    """
    return COPY_LENGTH * math.log(COPY_SYMBOLS) / (T + 2 * COPY_LENGTH)


# fill_blank's vocabulary: token 0 pads, 1 is the blank, then K verbs, K objects and F filler words.
FILL_PAD, FILL_BLANK = 0, 1


def fill_blank_vocab(num_answers: int, num_fillers: int) -> dict:
    """Token ids of :func:`fill_blank`: answers (verbs), the objects that select them, and fillers."""
    verbs = list(range(2, 2 + num_answers))
    objects = list(range(2 + num_answers, 2 + 2 * num_answers))
    fillers = list(range(2 + 2 * num_answers, 2 + 2 * num_answers + num_fillers))
    return {"size": 2 + 2 * num_answers + num_fillers, "verbs": verbs, "objects": objects, "fillers": fillers}


def fill_blank(key: jax.Array, n: int, T: int, *, num_answers: int = 4, num_fillers: int = 12,
               min_length: int | None = None) -> Dataset:
    """The seed's "my phone broke, I plan to ____ a new phone" as a synthetic task.

    A sentence of ``lengths[b]`` tokens (between ``min_length`` and ``T``) of filler words, with one blank
    (token 1) in its first half and one object word somewhere after the blank. Object ``k`` selects answer ``k``
    (a verb): the word that belongs in the blank depends only on a word that comes *after* it, so a network
    reading left to right sees nothing that predicts it (its best accuracy is ``1 / num_answers``), while a
    bidirectional one can read it from the future.

    Returns:
      ``Dataset(xs[n, T] int tokens, targets[n] answer index in [0, num_answers), lengths[n])``; the position of
      the blank is where ``xs == 1``.
    """
    min_length = min_length or max(4, T // 2)
    if not 4 <= min_length <= T:
        raise ValueError(f"fill_blank: expected 4 <= min_length <= T, got min_length={min_length}, T={T}")
    vocab = fill_blank_vocab(num_answers, num_fillers)
    k_len, k_words, k_blank, k_obj, k_ans = jax.random.split(key, 5)
    lengths = jax.random.randint(k_len, (n,), min_length, T + 1)
    fillers = jnp.asarray(vocab["fillers"])[jax.random.randint(k_words, (n, T), 0, num_fillers)]
    blank = (jax.random.uniform(k_blank, (n,)) * (lengths // 2)).astype(jnp.int32)
    # The object sits strictly after the blank, inside the valid prefix.
    obj = blank + 1 + (jax.random.uniform(k_obj, (n,)) * (lengths - blank - 1)).astype(jnp.int32)
    answers = jax.random.randint(k_ans, (n,), 0, num_answers)
    steps = jnp.arange(T)[None, :]
    tokens = jnp.where(steps == blank[:, None], FILL_BLANK, fillers)
    tokens = jnp.where(steps == obj[:, None], (vocab["objects"][0] + answers)[:, None], tokens)
    tokens = jnp.where(steps < lengths[:, None], tokens, FILL_PAD)
    return Dataset(tokens, answers, lengths)


def digits(seed: int = 0, test_fraction: float = 0.25) -> tuple[Dataset, Dataset]:
    """scikit-learn's handwritten digits (1797 images of 8×8), each image a sequence of 8 rows of 8 pixels.

    Pixels are scaled to [0, 1]. The split is stratified and seeded. Returns ``(train, test)`` with
    ``xs[N, 8, 8]`` and integer ``targets[N]``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(images, data.target, test_size=test_fraction, random_state=seed,
                                              stratify=data.target)
    return (Dataset(jnp.asarray(x_tr), jnp.asarray(y_tr, jnp.int32)),
            Dataset(jnp.asarray(x_te), jnp.asarray(y_te, jnp.int32)))
