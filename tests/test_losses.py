"""Length-aware losses against NumPy loops over the valid steps only."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn

LENGTHS = np.array([5, 3, 0, 9])  # full, partial, empty, longer than T (counts as T)


def _data(seed=0, shape=(4, 5, 3)):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32)


def _mse_loop(p, y, lengths):
    total, count = 0.0, 0
    for b in range(p.shape[0]):
        for t in range(min(lengths[b], p.shape[1])):
            total += float(np.sum((np.float64(p[b, t]) - y[b, t]) ** 2))
            count += p[b, t].size
    return total / count


def _log_softmax(z):
    z = np.float64(z)
    return z - (np.max(z) + np.log(np.sum(np.exp(z - np.max(z)))))


def test_masked_mse_equals_loop_over_valid_steps():
    p, y = _data()
    got = jrnn.masked_mse(p, y, jnp.asarray(LENGTHS))
    np.testing.assert_allclose(float(got), _mse_loop(p, y, LENGTHS), rtol=1e-6)


def test_masked_mse_without_lengths_is_the_plain_mean_for_any_shape():
    p, y = _data(1, (4, 7))
    np.testing.assert_allclose(float(jrnn.masked_mse(p, y)), np.mean((np.float64(p) - y) ** 2), rtol=1e-6)


def test_padded_steps_change_neither_the_loss_nor_get_gradient():
    p, y = _data(2)
    lengths = jnp.asarray(LENGTHS)
    garbage = p.copy()
    garbage[1, 3:] = 1e6
    assert float(jrnn.masked_mse(garbage, y, lengths)) == pytest.approx(float(jrnn.masked_mse(p, y, lengths)))
    grad = jax.grad(jrnn.masked_mse)(jnp.asarray(p), jnp.asarray(y), lengths)
    mask = np.arange(5)[None, :] < LENGTHS[:, None]
    assert np.all(np.asarray(grad)[~mask] == 0)
    assert np.all(np.asarray(grad)[mask] != 0)


def test_all_padded_batch_gives_zero_not_nan():
    p, y = _data(3)
    assert float(jrnn.masked_mse(p, y, jnp.zeros(4, jnp.int32))) == 0.0
    logits = jnp.zeros((4, 5, 3))
    assert float(jrnn.masked_cross_entropy(logits, jnp.zeros((4, 5), jnp.int32), jnp.zeros(4, jnp.int32))) == 0.0


def test_masked_cross_entropy_with_integer_labels_equals_loop():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(4, 5, 6)).astype(np.float32)
    labels = rng.integers(0, 6, size=(4, 5))
    total, count = 0.0, 0
    for b in range(4):
        for t in range(min(LENGTHS[b], 5)):
            total -= _log_softmax(logits[b, t])[labels[b, t]]
            count += 1
    got = jrnn.masked_cross_entropy(logits, labels, jnp.asarray(LENGTHS))
    np.testing.assert_allclose(float(got), total / count, rtol=1e-6)


def test_masked_cross_entropy_with_probabilities_equals_loop():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(4, 5, 6)).astype(np.float32)
    probs = rng.dirichlet(np.ones(6), size=(4, 5)).astype(np.float32)
    total, count = 0.0, 0
    for b in range(4):
        for t in range(min(LENGTHS[b], 5)):
            total -= np.sum(probs[b, t] * _log_softmax(logits[b, t]))
            count += 1
    got = jrnn.masked_cross_entropy(logits, probs, jnp.asarray(LENGTHS))
    np.testing.assert_allclose(float(got), total / count, rtol=1e-5)


def test_uniform_logits_give_log_of_class_count():
    got = jrnn.masked_cross_entropy(jnp.zeros((2, 3, 10)), jnp.ones((2, 3), jnp.int32))
    np.testing.assert_allclose(float(got), np.log(10.0), rtol=1e-6)


def test_last_valid_picks_each_sequences_last_step():
    ys = np.arange(4 * 5 * 2, dtype=np.float32).reshape(4, 5, 2)
    got = np.asarray(jrnn.last_valid(ys, jnp.asarray(LENGTHS)))
    np.testing.assert_array_equal(got[0], ys[0, 4])
    np.testing.assert_array_equal(got[1], ys[1, 2])
    np.testing.assert_array_equal(got[2], np.zeros(2))  # length 0
    np.testing.assert_array_equal(got[3], ys[3, 4])  # length above T counts as T
    np.testing.assert_array_equal(np.asarray(jrnn.last_valid(ys)), ys[:, -1])


def test_last_valid_matches_the_final_state_of_a_length_aware_scan():
    cell = jrnn.elman(4)
    params = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (4, 5, 3))
    lengths = jnp.array([5, 3, 1, 2])
    ys, final = jrnn.scan(cell, params, xs, lengths=lengths)
    np.testing.assert_allclose(jrnn.last_valid(ys, lengths), final, rtol=1e-6)


def test_losses_reject_bad_input_with_clear_errors():
    p, y = _data()
    with pytest.raises(ValueError, match="same shape"):
        jrnn.masked_mse(p, y[:, :4])
    with pytest.raises(ValueError, match=r"lengths of shape \(4,\)"):
        jrnn.masked_mse(p, y, jnp.array([1, 2]))
    with pytest.raises(TypeError, match="integer lengths"):
        jrnn.masked_mse(p, y, jnp.ones(4))
    with pytest.raises(TypeError, match="integer class labels"):
        jrnn.masked_cross_entropy(jnp.zeros((4, 5, 3)), jnp.zeros((4, 5)))
    with pytest.raises(ValueError, match="expected labels of shape"):
        jrnn.masked_cross_entropy(jnp.zeros((4, 5, 3)), jnp.zeros((4, 4), jnp.int32))
    with pytest.raises(ValueError, match="batch-major"):
        jrnn.last_valid(jnp.zeros(3))
