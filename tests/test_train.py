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


# ----------------------------------------------------------------------------------------------------------------
# Hyperparameters in opt_state: a learning-rate sweep under jax.vmap
# ----------------------------------------------------------------------------------------------------------------

def test_a_vmapped_learning_rate_sweep_matches_separate_runs():
    cell, params, batch = _problem()
    loss_fn = jrnn.supervised_loss(jrnn.RNN(cell).apply)
    lrs = jnp.array([1e-3, 3e-2, 3e-1])  # the largest clips (max_norm=1): the sweep must respect clipping too
    swept = jrnn.train_step(loss_fn, optax.inject_hyperparams(optax.adam)(learning_rate=1.0))
    opt_states = jax.vmap(lambda lr: swept.set_hyperparams(swept.init(params), learning_rate=lr))(lrs)
    runs = jax.tree_util.tree_map(lambda p: jnp.stack([p] * 3), params)
    step = jax.jit(jax.vmap(swept.step, in_axes=(0, 0, None, None)))
    for i in range(5):
        runs, opt_states, metrics = step(runs, opt_states, batch, jax.random.key(i))
    np.testing.assert_array_equal(swept.hyperparams(opt_states)["learning_rate"], lrs)

    for r, lr in enumerate(np.asarray(lrs)):  # the same runs one by one, with a plain optax.adam(lr)
        alone = jrnn.train_step(loss_fn, optax.adam(float(lr)))
        p, s = params, alone.init(params)
        for i in range(5):
            p, s, m = alone.step(p, s, batch, jax.random.key(i))
        for got, want in zip(runs, p):
            # Adam moves each entry by about lr a step; float32 round-off (vmap batches the matmuls) is ~1e-5 of it.
            np.testing.assert_allclose(got[r], want, rtol=1e-5, atol=2e-4 * lr)
        np.testing.assert_allclose(metrics["loss"][r], m["loss"], rtol=1e-4)
        assert bool(metrics["clipped"][r]) == bool(m["clipped"])
    assert bool(metrics["clipped"][2]) and not bool(metrics["clipped"][0])


def test_set_hyperparams_between_steps_and_its_errors():
    cell, params, batch = _problem()
    loss_fn = jrnn.supervised_loss(jrnn.RNN(cell).apply)
    trainer = jrnn.train_step(loss_fn, optax.inject_hyperparams(optax.sgd)(learning_rate=0.1), max_norm=None)
    opt_state = trainer.set_hyperparams(trainer.init(params), learning_rate=0.0)  # a zero rate: nothing moves
    new, opt_state, _ = trainer.step(params, opt_state, batch, None)
    for got, p in zip(new, params):
        np.testing.assert_array_equal(got, p)
    assert trainer.hyperparams(opt_state)["learning_rate"].dtype == jnp.float32
    with pytest.raises(ValueError, match=r"no injected hyperparameter 'lr'; it has \['learning_rate'\]"):
        trainer.set_hyperparams(opt_state, lr=0.1)
    with pytest.raises(ValueError, match=r"expected learning_rate of shape \(\)"):
        trainer.set_hyperparams(opt_state, learning_rate=jnp.ones(3))
    plain = jrnn.train_step(loss_fn, optax.sgd(0.1))
    with pytest.raises(ValueError, match=r"optax.inject_hyperparams\(optax.adam\)\(learning_rate=1e-3\)"):
        plain.set_hyperparams(plain.init(params), learning_rate=0.1)
    scheduled = jrnn.train_step(loss_fn, optax.inject_hyperparams(optax.sgd)(
        learning_rate=optax.linear_schedule(0.1, 0.0, 10)))
    with pytest.raises(ValueError, match="learning_rate is a schedule"):
        scheduled.set_hyperparams(scheduled.init(params), learning_rate=0.1)


# ----------------------------------------------------------------------------------------------------------------
# Metrics print readably and stay a dict (and a pytree) under jit and vmap
# ----------------------------------------------------------------------------------------------------------------

def test_metrics_print_scalars_and_shapes_and_index_like_a_dict():
    cell, params, batch = _problem()
    trainer = jrnn.train_step(jrnn.supervised_loss(jrnn.RNN(cell).apply), optax.sgd(0.1), max_norm=1e6)
    _, _, metrics = trainer.step(params, trainer.init(params), batch, None)
    assert isinstance(metrics, dict)
    assert metrics["aux"]["final_state"].shape == (B, H)
    loss = float(metrics["loss"])
    assert repr(metrics) == (f"Report(loss={loss:.4g}, grad_norm={float(metrics['grad_norm']):.4g}, clipped=False, "
                             f"skipped=False, num_skipped=0, aux={{'final_state': f32[{B},{H}]}})")
    assert str(metrics) == repr(metrics) and "Array(" not in repr(metrics)
    # A pytree like a dict: through jit, tree_map and vmap (the learning-rate sweep returns one per run).
    again = jax.jit(lambda m: m)(metrics)
    assert type(again) is type(metrics) and list(again) == list(metrics)
    assert [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_flatten_with_path(metrics)[0]][:2] == [
        "['loss']", "['grad_norm']"]
    batched = jax.vmap(lambda m: m, axis_size=2)(jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), metrics))
    assert "loss=f32[2], grad_norm=f32[2], clipped=bool[2]" in repr(batched)
