"""``jrnn.bidirectional``: every merge against a NumPy forward loop, a NumPy-reversed backward loop and the merge."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

import jrnn

CASES = {c.name: c for c in ref.cell_cases()}
TOL = dict(rtol=2e-5, atol=2e-5)
I = 3


def _custom(a, b):
    return jnp.concatenate([a - b, 2.0 * a * b], axis=-1)


def _custom_np(a, b):
    return np.concatenate([a - b, 2.0 * a * b], axis=-1)


MERGES = {  # name -> (merge argument for jrnn.bidirectional, NumPy merge(a, a_rev, merge_params))
    "concat": ("concat", lambda a, b, p: ref.merge("concat", a, b)),
    "sum": ("sum", lambda a, b, p: ref.merge("sum", a, b)),
    "mean": ("mean", lambda a, b, p: ref.merge("mean", a, b)),
    "product": ("product", lambda a, b, p: ref.merge("product", a, b)),
    "seed_merge_tanh": (jrnn.seed_merge(3, jnp.tanh), lambda a, b, p: ref.merge("seed", a, b, p, np.tanh)),
    "seed_merge_linear_nobias": (jrnn.seed_merge(2, bias=False), lambda a, b, p: ref.merge("seed", a, b, p)),
    "callable": (_custom, lambda a, b, p: _custom_np(a, b)),
}


def numpy_bidirectional(fwd, bwd, params, merge_np, xs, lengths, s0):
    B = xs.shape[0]
    ys, fwd_finals, bwd_finals = ref.run_bidirectional(
        fwd.ref_step(params.forward), bwd.ref_step(params.backward), lambda a, b: merge_np(a, b, params.merge),
        xs, lengths, ref.state_rows(s0.forward, B), ref.state_rows(s0.backward, B))
    return ys, ref.stack_states(fwd_finals), ref.stack_states(bwd_finals)


@functools.cache
def _layer(fwd_name, bwd_name, merge_name):
    """The layer and its compiled ``apply``, built once per configuration."""
    layer = jrnn.bidirectional(CASES[fwd_name].cell, CASES[bwd_name].cell, merge=MERGES[merge_name][0])
    return layer, jax.jit(layer.apply)


def _setup(fwd_name, bwd_name, merge_name, seed=0, B=3, T=5):
    fwd, bwd = CASES[fwd_name], CASES[bwd_name]
    merge_np = MERGES[merge_name][1]
    layer, _ = _layer(fwd_name, bwd_name, merge_name)
    params = ref.random_params(layer, seed, I)
    s0 = jrnn.BidirectionalState(ref.random_state(fwd.cell, B, seed + 1), ref.random_state(bwd.cell, B, seed + 2))
    xs = ref.device(np.random.default_rng(seed + 3).standard_normal((B, T, I)))
    return fwd, bwd, merge_np, layer, params, s0, xs


# (forward cell, backward cell) per merge: elementwise merges need equal output sizes (here 4 and 4).
PAIRS = {"concat": ("lstm_proj", "elman_tanh"), "sum": ("lstm", "gru_reset_after"),
         "mean": ("elman_relu", "lstm"), "product": ("gru_reset_before", "elman_tanh"),
         "seed_merge_tanh": ("lstm_proj", "gru_reset_after"), "seed_merge_linear_nobias": ("elman_tanh", "lstm_proj"),
         "callable": ("lstm", "gru_reset_before")}


@pytest.mark.parametrize("merge", list(MERGES))
def test_each_merge_equals_numpy_forward_backward_and_merge(merge):
    fwd, bwd, merge_np, layer, params, s0, xs = _setup(*PAIRS[merge], merge)
    lengths = np.array([5, 2, 0])
    ys, final = _layer(*PAIRS[merge], merge)[1](params, xs, lengths=jnp.asarray(lengths), initial_state=s0)

    ys_np, fwd_final, bwd_final = numpy_bidirectional(fwd, bwd, params, merge_np, xs, lengths, s0)
    np.testing.assert_allclose(ys, ys_np, **TOL)
    ref.assert_states_close(final.forward, fwd_final, **TOL)   # after each sequence's last valid step
    ref.assert_states_close(final.backward, bwd_final, **TOL)  # after step 0
    for b, n in enumerate(lengths):
        np.testing.assert_array_equal(np.asarray(ys)[b, n:], 0.0)
    assert ys.shape[-1] == layer.output_size


def test_seed_merge_gives_the_seeds_y_1_from_A_1_and_A_rev_1():
    """The seed's y_1 = g(V A_1 + V' A'_1 + b), with A_1 = f(U x_1 + W A_0) and A'_1 = f(U' x_1 + W' A'_2)."""
    fwd, bwd, _, layer, params, s0, xs = _setup("elman_tanh", "elman_tanh", "seed_merge_tanh", seed=4)
    ys, _ = _layer("elman_tanh", "elman_tanh", "seed_merge_tanh")[1](params, xs, initial_state=s0)
    ys, x, A0, A_rev0 = np.asarray(ys), ref.f64(xs), ref.f64(s0.forward), ref.f64(s0.backward)
    V, V_rev, c = ref.f64(params.merge.V), ref.f64(params.merge.V_rev), ref.f64(params.merge.b)
    for b in range(xs.shape[0]):
        A1, _ = ref.elman_step(params.forward, A0[b], x[b, 0])
        A_rev = A_rev0[b]
        for t in range(xs.shape[1] - 1, -1, -1):  # A'_T, ..., A'_2, A'_1
            A_rev, _ = ref.elman_step(params.backward, A_rev, x[b, t])
        np.testing.assert_allclose(ys[b, 0], np.tanh(V @ A1 + V_rev @ A_rev + c), **TOL)


@settings(max_examples=15, deadline=None, database=None)
@given(lengths=st.lists(st.integers(0, 6), min_size=3, max_size=3), seed=st.integers(0, 2 ** 16))
def test_bidirectional_with_any_lengths_matches_numpy_and_padding_never_leaks(lengths, seed):
    fwd, bwd, merge_np, layer, params, s0, xs = _setup("gru_reset_before", "lstm", "concat", seed=seed)
    lengths = np.array(lengths)
    apply = _layer("gru_reset_before", "lstm", "concat")[1]
    ys, final = apply(params, xs, lengths=jnp.asarray(lengths), initial_state=s0)
    ys_np, fwd_final, bwd_final = numpy_bidirectional(fwd, bwd, params, merge_np, xs, np.minimum(lengths, 5), s0)
    np.testing.assert_allclose(ys, ys_np, **TOL)
    ref.assert_states_close(final.forward, fwd_final, **TOL)
    ref.assert_states_close(final.backward, bwd_final, **TOL)

    x = np.array(xs)
    pad = np.arange(5)[None, :] >= lengths[:, None]
    x[pad] = 1e3 * np.random.default_rng(seed).standard_normal(x.shape)[pad]
    ys2, final2 = apply(params, jnp.asarray(x), lengths=jnp.asarray(lengths), initial_state=s0)
    np.testing.assert_array_equal(ys2, ys)
    for a, b in zip(jax.tree_util.tree_leaves(final2), jax.tree_util.tree_leaves(final), strict=True):
        np.testing.assert_array_equal(a, b)


def test_default_backward_cell_has_its_own_parameters_and_runs_backwards():
    layer = jrnn.bidirectional(jrnn.elman(4), merge="concat")
    params = layer.init(jax.random.key(0), I)
    assert not np.allclose(params.forward.W, params.backward.W)
    xs = ref.device(np.random.default_rng(1).standard_normal((2, 4, I)))
    ys, _ = jax.jit(layer.apply)(params, xs)
    step_f = lambda s, x: ref.elman_step(params.forward, s, x)  # noqa: E731
    step_b = lambda s, x: ref.elman_step(params.backward, s, x)  # noqa: E731
    a, _ = ref.run_batch(step_f, [np.zeros(4)] * 2, xs)
    a_rev, _ = ref.run_batch(step_b, [np.zeros(4)] * 2, xs, reverse=True)
    np.testing.assert_allclose(ys, np.concatenate([a, a_rev], -1), **TOL)
