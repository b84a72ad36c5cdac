"""The experiments' data generators, against their definitions in the papers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import data


def test_adding_targets_are_the_sums_of_the_two_marked_values():
    ds = data.adding_problem(jax.random.key(0), 64, 30)
    values, markers = np.asarray(ds.xs[..., 0]), np.asarray(ds.xs[..., 1])
    assert np.all(markers.sum(axis=1) == 2)
    first, second = np.argmax(markers[:, :15], axis=1), 15 + np.argmax(markers[:, 15:], axis=1)
    assert np.all(markers[np.arange(64), first] == 1) and np.all(markers[np.arange(64), second] == 1)
    expected = values[np.arange(64), first] + values[np.arange(64), second]
    np.testing.assert_allclose(np.asarray(ds.targets[:, 0]), expected, rtol=1e-6)
    assert values.min() >= 0.0 and values.max() <= 1.0


def test_adding_baseline_of_predicting_one_is_one_sixth():
    ds = data.adding_problem(jax.random.key(1), 50_000, 10)
    mse = float(jnp.mean((ds.targets - 1.0) ** 2))
    assert abs(mse - data.ADDING_BASELINE_MSE) < 0.005


def test_copy_memory_layout_and_targets():
    T = 25
    ds = data.copy_memory(jax.random.key(0), 8, T)
    tokens = np.asarray(jnp.argmax(ds.xs, -1))
    targets = np.asarray(ds.targets)
    assert tokens.shape == targets.shape == (8, T + 20)
    symbols = tokens[:, :10]
    assert symbols.min() >= 1 and symbols.max() <= 8
    assert np.all(tokens[:, 10:T + 9] == 0) and np.all(tokens[:, T + 9] == 9) and np.all(tokens[:, T + 10:] == 0)
    assert np.all(targets[:, :T + 10] == 0)
    np.testing.assert_array_equal(targets[:, T + 10:], symbols)


@pytest.mark.parametrize("T, published", [(100, 0.173), (200, 0.0945), (300, 0.065), (500, 0.040)])
def test_copy_baseline_formula_matches_the_published_numbers(T, published):
    assert data.copy_baseline_ce(T) == pytest.approx(10 * math.log(8) / (T + 20))
    assert abs(data.copy_baseline_ce(T) - published) < 0.0015


def test_copy_baseline_is_the_cross_entropy_of_the_memoryless_strategy():
    T = 40
    ds = data.copy_memory(jax.random.key(2), 16, T)
    # Blank (class 0) with certainty for the first T + 10 steps, uniform over the 8 symbols for the last 10.
    log_probs = np.full((T + 20, 10), -np.inf)
    log_probs[:T + 10, 0] = 0.0
    log_probs[T + 10:, 1:9] = -math.log(8)
    targets = np.asarray(ds.targets)
    ce = -np.mean(log_probs[np.arange(T + 20)[None, :], targets])
    assert ce == pytest.approx(data.copy_baseline_ce(T))


def test_fill_blank_answer_depends_only_on_a_word_after_the_blank():
    ds = data.fill_blank(jax.random.key(0), 256, 20)
    vocab = data.fill_blank_vocab(4, 12)
    tokens, lengths, answers = np.asarray(ds.xs), np.asarray(ds.lengths), np.asarray(ds.targets)
    for b in range(256):
        seq = tokens[b, :lengths[b]]
        blank = np.flatnonzero(seq == data.FILL_BLANK)
        assert blank.size == 1
        objects = np.flatnonzero(np.isin(seq, vocab["objects"]))
        assert objects.size == 1 and objects[0] > blank[0], "the object word comes after the blank"
        assert seq[objects[0]] - vocab["objects"][0] == answers[b]
        assert np.all(tokens[b, lengths[b]:] == data.FILL_PAD)
        # Everything before the blank is filler: nothing there predicts the answer.
        assert np.all(np.isin(seq[:blank[0]], vocab["fillers"]))


def test_fill_blank_prefix_carries_no_information_about_the_answer():
    ds = data.fill_blank(jax.random.key(3), 4000, 16)
    tokens, answers = np.asarray(ds.xs), np.asarray(ds.targets)
    blank = np.argmax(tokens == data.FILL_BLANK, axis=1)
    # The best left-to-right guess: the majority answer for each (blank position, token before it).
    prev = np.where(blank > 0, tokens[np.arange(4000), np.maximum(blank - 1, 0)], -1)
    keys = blank * 100 + prev
    best = sum(np.bincount(answers[keys == k], minlength=4).max() for k in np.unique(keys))
    assert best / 4000 < 0.25 + 0.08


def test_digits_are_eight_rows_of_eight_pixels_in_unit_range():
    train, test = data.digits(seed=0)
    assert train.xs.shape[1:] == (8, 8) and test.xs.shape[1:] == (8, 8)
    assert train.xs.shape[0] + test.xs.shape[0] == 1797
    assert float(train.xs.min()) == 0.0 and float(train.xs.max()) == 1.0
    assert set(np.unique(np.asarray(test.targets))) == set(range(10))
