"""Truncated BPTT: k >= T is full BPTT; k < T equals a chunk loop and, for k = 1, an analytic gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn

B, T, I, H = 3, 7, 2, 4
LENGTHS = jnp.array([7, 5, 2])


def _data(seed=1):
    return jax.random.normal(jax.random.key(seed), (B, T, I))


def _loss_of(apply):
    def loss(params, xs, lengths):
        ys, _ = apply(params, xs, lengths=lengths)
        return jnp.sum(ys ** 2) + jnp.sum(jnp.cos(ys))
    return loss


def _grad(apply):
    return jax.jit(jax.grad(_loss_of(apply)))


def test_truncated_bptt_with_k_at_least_T_equals_full_bptt():
    net = jrnn.deep([jrnn.elman(H), jrnn.elman(3)])
    params = net.init(jax.random.key(0), I)
    xs = _data()
    g_trunc = _grad(jrnn.truncated_bptt(net, T + 3).apply)(params, xs, LENGTHS)
    g_full = _grad(net.apply)(params, xs, LENGTHS)
    for a, b in zip(jax.tree_util.tree_leaves(g_trunc), jax.tree_util.tree_leaves(g_full)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def _chunk_loop_apply(cell, k):
    """The docstring's loop, written out: slice, scan, stop the state's gradient, repeat."""
    def apply(params, xs, lengths):
        state, outs = None, []
        for c, start in enumerate(range(0, xs.shape[1], k)):
            if c > 0:
                state = jax.lax.stop_gradient(state)
            chunk = xs[:, start:start + k]
            ys, state = jrnn.scan(cell, params, chunk, lengths=jnp.clip(lengths - start, 0, chunk.shape[1]),
                                  initial_state=state)
            outs.append(ys)
        return jnp.concatenate(outs, axis=1), state
    return apply


def test_truncated_bptt_gradient_equals_a_loop_over_chunks_and_forward_is_unchanged():
    k = 3  # does not divide T = 7: the last chunk is padded
    cell = jrnn.lstm(H)
    params = cell.init(jax.random.key(0), I)
    xs = _data(2)
    truncated = jrnn.truncated_bptt(cell, k)
    reference = _chunk_loop_apply(cell, k)

    @jax.jit
    def grads(params, xs, lengths):
        def with_outputs(apply):
            return jax.grad(lambda p: (_loss_of(apply)(p, xs, lengths), apply(p, xs, lengths=lengths)),
                            has_aux=True)(params)
        return (with_outputs(truncated.apply), with_outputs(lambda p, x, lengths: reference(p, x, lengths)),
                with_outputs(jrnn.RNN(cell).apply))

    (g, out), (g_ref, out_ref), (g_full, out_full) = grads(params, xs, LENGTHS)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(out_full)):  # same (ys, final)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.allclose(g.W, g_full.W, rtol=1e-3)  # truncation does cut something


def test_truncated_bptt_with_k_1_gives_the_one_step_analytic_gradient():
    # L = sum_t <r, s_t>, s_t = tanh(U x_t + W s_{t-1} + b). With k = 1 the gradient does not flow into
    # s_{t-1}, so dL/dW = sum_t (r * (1 - s_t^2)) s_{t-1}^T exactly, s_{t-1} treated as a constant.
    cell = jrnn.elman(H)
    params = cell.init(jax.random.key(0), I)
    xs = np.asarray(_data(4), np.float64)
    r = np.linspace(-1.0, 1.0, H)

    def loss(p):
        ys, _ = jrnn.truncated_bptt(cell, 1).apply(p, jnp.asarray(xs, jnp.float32))
        return jnp.sum(ys * r[None, None, :])

    g = jax.jit(jax.grad(loss))(params)
    U, W, b = (np.asarray(a, np.float64) for a in (params.U, params.W, params.b_U + params.b_W))
    dW = np.zeros((H, H))
    for seq in range(B):
        s_prev = np.zeros(H)
        for t in range(T):
            s = np.tanh(U @ xs[seq, t] + W @ s_prev + b)
            dW += np.outer(r * (1 - s ** 2), s_prev)
            s_prev = s
    np.testing.assert_allclose(g.W, dW, rtol=1e-4, atol=1e-5)


def test_truncated_bptt_gives_chunk_c_the_key_folded_with_c():
    net = jrnn.deep([jrnn.elman(H), jrnn.elman(H)], dropout=0.5)
    params = net.init(jax.random.key(0), I)
    xs, key = jax.random.normal(jax.random.key(5), (B, 8, I)), jax.random.key(7)
    ys, _ = jax.jit(jrnn.truncated_bptt(net, 4).apply)(params, xs, key=key)
    @jax.jit
    def by_hand(params, xs, key):
        first, state = net.apply(params, xs[:, :4], key=key)
        second, _ = net.apply(params, xs[:, 4:], initial_state=state, key=jax.random.fold_in(key, 1))
        return first, second

    first, second = by_hand(params, xs, key)
    np.testing.assert_allclose(ys, jnp.concatenate([first, second], axis=1), rtol=1e-6, atol=1e-7)


def test_truncated_bptt_refuses_models_that_look_ahead_and_bad_k():
    with pytest.raises(ValueError, match="forward-in-time"):
        jrnn.truncated_bptt(jrnn.bidirectional(jrnn.gru(H)), 3)
    with pytest.raises(ValueError, match="forward-in-time"):
        jrnn.truncated_bptt(jrnn.RNN(jrnn.gru(H), reverse=True), 3)
    with pytest.raises(ValueError, match="forward-in-time"):
        jrnn.truncated_bptt(jrnn.deep([jrnn.gru(H), jrnn.bidirectional(jrnn.gru(H))]), 3)
    with pytest.raises(ValueError, match="positive int"):
        jrnn.truncated_bptt(jrnn.gru(H), 0)
    with pytest.raises(TypeError, match="positive int"):
        jrnn.truncated_bptt(jrnn.gru(H), 2.5)
    layer = jrnn.truncated_bptt(jrnn.gru(H), 2)
    with pytest.raises(ValueError, match=r"\[batch, time, features\]"):
        layer.apply(layer.init(jax.random.key(0), I), jnp.zeros((T, I)))
