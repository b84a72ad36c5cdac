"""The optax train step: its update against jax.grad of an independently written loss, clipping, metrics."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jrnn

B, T, I, H = 3, 6, 2, 4
LENGTHS_NP = np.array([6, 4, 1])
LENGTHS = jnp.asarray(LENGTHS_NP)


@functools.cache
def _problem(seed=0):
    cell = jrnn.elman(H)
    params = cell.init(jax.random.key(seed), I)
    xs = jax.random.normal(jax.random.key(seed + 1), (B, T, I))
    targets = jax.random.normal(jax.random.key(seed + 2), (B, T, H))
    return cell, params, jrnn.Batch(xs, targets, LENGTHS)


@jax.jit
def _loop_loss(params, batch):
    """The masked MSE written out: a Python loop over steps and sequences, no jrnn.scan, no jrnn losses."""
    total, count = 0.0, 0
    for b in range(B):
        s = jnp.zeros(H)
        for t in range(int(LENGTHS_NP[b])):
            s = jnp.tanh(params.U @ batch.xs[b, t] + params.b_U + params.W @ s + params.b_W)
            total = total + jnp.sum((s - batch.targets[b, t]) ** 2)
            count += H
    return total / count


_loop_value_and_grad = jax.jit(jax.value_and_grad(_loop_loss))


def test_train_step_applies_sgd_to_the_exact_bptt_gradient_below_the_clipping_threshold():
    cell, params, batch = _problem()
    trainer = jrnn.train_step(jrnn.supervised_loss(jrnn.RNN(cell).apply), optax.sgd(0.1), max_norm=1e6)
    new, _, metrics = trainer.step(params, trainer.init(params), batch, jax.random.key(0))
    loss, grads = _loop_value_and_grad(params, batch)
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(metrics["grad_norm"], np.sqrt(sum(np.sum(np.square(g)) for g in grads)), rtol=1e-5)
    for got, p, g in zip(new, params, grads):
        np.testing.assert_allclose(got, p - 0.1 * g, rtol=1e-5, atol=1e-7)
    assert not metrics["clipped"] and not metrics["skipped"]


def test_train_step_clips_by_global_norm_as_pascanu():
    cell, params, batch = _problem()
    _, grads = _loop_value_and_grad(params, batch)
    norm = float(np.sqrt(sum(np.sum(np.square(g)) for g in grads)))
    max_norm = norm / 4
    trainer = jrnn.train_step(jrnn.supervised_loss(jrnn.RNN(cell).apply), optax.sgd(1.0), max_norm=max_norm)
    new, _, metrics = trainer.step(params, trainer.init(params), batch, jax.random.key(0))
    for got, p, g in zip(new, params, grads):  # g <- theta g / ||g||
        np.testing.assert_allclose(got, p - g * (max_norm / norm), rtol=1e-5, atol=1e-7)
    assert bool(metrics["clipped"])
    np.testing.assert_allclose(metrics["grad_norm"], norm, rtol=1e-5)  # the norm before clipping


def test_train_step_with_adam_matches_a_hand_written_optax_chain():
    cell, params, batch = _problem(3)
    trainer = jrnn.train_step(jrnn.supervised_loss(jrnn.RNN(cell).apply), optax.adam(1e-2), max_norm=0.05)
    reference = optax.chain(optax.clip_by_global_norm(0.05), optax.adam(1e-2))
    p, s = params, trainer.init(params)
    q, r = params, reference.init(params)
    for _ in range(3):
        p, s, _ = trainer.step(p, s, batch, jax.random.key(0))
        _, grads = _loop_value_and_grad(q, batch)
        updates, r = reference.update(grads, r, q)
        q = optax.apply_updates(q, updates)
    for a, b in zip(p, q):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_supervised_loss_last_step_scores_each_sequences_last_valid_output():
    cell, params, batch = _problem()
    targets = jax.random.normal(jax.random.key(9), (B, H))
    loss_fn = jrnn.supervised_loss(jrnn.RNN(cell).apply, last_step=True)
    loss, aux = loss_fn(params, batch._replace(targets=targets), None)
    expected = 0.0
    for b in range(B):  # the Elman output at step lengths[b] - 1, by a Python loop
        s = jnp.zeros(H)
        for t in range(int(LENGTHS[b])):
            s = jnp.tanh(params.U @ batch.xs[b, t] + params.b_U + params.W @ s + params.b_W)
        expected += float(jnp.mean((s - targets[b]) ** 2)) / B
        np.testing.assert_allclose(aux["final_state"][b], s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_train_step_traces_once_and_reduces_the_loss():
    traces = []
    cell, params, batch = _problem()
    apply = jrnn.RNN(cell).apply

    def loss_fn(p, batch, key):
        traces.append(1)
        return jrnn.supervised_loss(apply)(p, batch, key)

    trainer = jrnn.train_step(loss_fn, optax.adam(3e-2), max_norm=None)  # no clipping at all
    opt_state = trainer.init(params)
    first = None
    for i in range(40):
        params, opt_state, metrics = trainer.step(params, opt_state, batch, jax.random.key(i))
        first = float(metrics["loss"]) if first is None else first
        assert not bool(metrics["clipped"])
    assert len(traces) == 1
    assert float(metrics["loss"]) < 0.8 * first


def test_train_step_rejects_bad_arguments():
    cell, params, batch = _problem()
    loss_fn = jrnn.supervised_loss(jrnn.RNN(cell).apply)
    with pytest.raises(TypeError, match="optax.GradientTransformation"):
        jrnn.train_step(loss_fn, "adam")
    with pytest.raises(ValueError, match="max_norm"):
        jrnn.train_step(loss_fn, optax.sgd(0.1), max_norm=-1.0)
    with pytest.raises(TypeError, match="loss_fn"):
        jrnn.train_step(None, optax.sgd(0.1))
    trainer = jrnn.train_step(loss_fn, optax.sgd(0.1))
    with pytest.raises(TypeError, match=r"trainer.init\(params\)"):
        trainer.step(params, optax.sgd(0.1).init(params), batch, None)
    with pytest.raises(TypeError, match="jrnn.Batch"):
        trainer.step(params, trainer.init(params), (batch.xs, batch.targets), None)
    with pytest.raises(TypeError, match="apply"):
        jrnn.supervised_loss(42)
