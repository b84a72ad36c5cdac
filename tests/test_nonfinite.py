"""The non-finite guard: a step whose loss or gradient is NaN or Inf is skipped (bit for bit) and counted."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jrnn

B, T, I, H = 2, 5, 2, 3


@functools.cache
def _setup():
    cell = jrnn.lstm(H)
    params = cell.init(jax.random.key(0), I)
    rng = np.random.default_rng(0)
    good = [jrnn.Batch(jnp.asarray(rng.normal(size=(B, T, I)), jnp.float32),
                       jnp.asarray(rng.normal(size=(B, T, H)), jnp.float32), jnp.array([5, 3])) for _ in range(3)]
    trainer = jrnn.train_step(jrnn.supervised_loss(jrnn.RNN(cell).apply), optax.adam(1e-2), max_norm=1.0)
    return params, good, trainer


def _bitwise_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(la, lb))


def _poisoned(batch, value):
    return batch._replace(xs=batch.xs.at[0, 1, 0].set(value))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nonfinite_gradient_step_is_skipped_counted_and_changes_nothing(value):
    params, good, trainer = _setup()
    p1, s1, _ = trainer.step(params, trainer.init(params), good[0], jax.random.key(0))
    p2, s2, metrics = trainer.step(p1, s1, _poisoned(good[1], value), jax.random.key(1))
    assert bool(metrics["skipped"]) and int(metrics["num_skipped"]) == 1
    # NaN input: NaN loss and gradient. Inf input: tanh saturates, so the loss is finite but dU = 0 * inf = NaN.
    assert not np.isfinite(float(metrics["grad_norm"]))
    assert _bitwise_equal(p2, p1)
    assert _bitwise_equal(s2.inner_state, s1.inner_state)  # Adam's moments and count untouched
    # A run that meets the bad batch ends exactly where a run that never saw it ends.
    p3, s3, _ = trainer.step(p2, s2, good[2], jax.random.key(2))
    q3, _, _ = trainer.step(p1, s1, good[2], jax.random.key(2))
    assert _bitwise_equal(p3, q3)
    assert int(s3.num_skipped) == 1 and bool(s3.last_finite)


def test_nonfinite_loss_with_finite_gradient_is_skipped():
    params, good, _ = _setup()
    apply = jrnn.RNN(jrnn.lstm(H)).apply
    base = jrnn.supervised_loss(apply)

    def loss_fn(p, batch, key):  # an Inf in the loss that the gradient cannot see
        loss, aux = base(p, batch, key)
        return loss + jax.lax.stop_gradient(jnp.where(batch.targets[0, 0, 0] > 100.0, jnp.inf, 0.0)), aux

    trainer = jrnn.train_step(loss_fn, optax.sgd(0.1))
    state = trainer.init(params)
    bad = good[0]._replace(targets=good[0].targets.at[0, 0, 0].set(1000.0))
    new, state, metrics = trainer.step(params, state, bad, None)
    assert np.isfinite(float(metrics["grad_norm"])) and bool(metrics["skipped"])
    assert _bitwise_equal(new, params) and int(state.num_skipped) == 1


def test_nonfinite_steps_are_counted_across_many_consecutive_bad_steps():
    params, good, trainer = _setup()
    state = trainer.init(params)
    p = params
    for i in range(4):
        p, state, metrics = trainer.step(p, state, _poisoned(good[0], np.nan), jax.random.key(i))
    assert int(state.num_skipped) == 4 and _bitwise_equal(p, params)
    p, state, metrics = trainer.step(p, state, good[0], jax.random.key(9))
    assert not bool(metrics["skipped"]) and int(metrics["num_skipped"]) == 4 and not _bitwise_equal(p, params)


def test_nonfinite_guard_as_an_optax_transformation_never_gives_up():
    # optax.apply_if_finite(inner, max_consecutive_errors=2) applies the third NaN step; skip_nonfinite never does.
    params = {"w": jnp.ones(3)}
    nan = {"w": jnp.array([1.0, jnp.nan, 0.0])}
    tx = jrnn.skip_nonfinite(optax.sgd(1.0))
    state = tx.init(params)
    for _ in range(3):
        updates, state = tx.update(nan, state, params)
        np.testing.assert_array_equal(updates["w"], np.zeros(3))
    assert int(state.num_skipped) == 3 and not bool(state.last_finite)
    updates, state = tx.update({"w": jnp.array([1.0, 2.0, 3.0])}, state, params)
    np.testing.assert_array_equal(updates["w"], [-1.0, -2.0, -3.0])
    updates, state = tx.update({"w": jnp.ones(3)}, state, params, loss=jnp.array(jnp.inf))
    np.testing.assert_array_equal(updates["w"], np.zeros(3))
    assert int(state.num_skipped) == 4
    with pytest.raises(TypeError, match="GradientTransformation"):
        jrnn.skip_nonfinite(lambda g: g)
