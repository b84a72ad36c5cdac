"""``jrnn.deep``: stacks against layers composed by hand in NumPy; dropout and residual connections."""

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
TOL = dict(rtol=3e-5, atol=3e-5)
I, B, T = 3, 3, 5


class Identity:
    """A parameter-free sequence layer ``ys = xs``: it shows exactly what a deep stack feeds each layer."""

    def __init__(self, size):
        self.output_size = size

    def init(self, key, input_size):
        return ()

    def initial_state(self, batch_shape=(), dtype=None):
        return ()

    def apply(self, params, xs, *, lengths=None, initial_state=None, key=None):
        return xs, ()


def _xs(seed, shape=(B, T, I)):
    return ref.device(np.random.default_rng(seed).standard_normal(shape))


def _numpy_layer(name, params, xs, lengths, s0):
    """One forward-scanned cell layer in NumPy; returns ``(ys, final_state)``."""
    ys, finals = ref.run_batch(CASES[name].ref_step(params), ref.state_rows(s0, xs.shape[0]), xs, lengths)
    return ys, ref.stack_states(finals)


# The two-layer stack: elman(4) on 3 features, then an LSTM with projection (5 -> 3).
TWO = ("elman_tanh", "lstm_proj")


@functools.cache
def _two_layer(dropout=0.0):
    net = jrnn.deep([CASES[n].cell for n in TWO], dropout=dropout)
    return net, jax.jit(net.apply)


def test_two_layer_stack_equals_layers_composed_by_hand_with_per_layer_states():
    net, apply = _two_layer(dropout=0.5)  # dropout is off without a key
    params = ref.random_params(net, 0, I)
    s0 = (ref.random_state(CASES[TWO[0]].cell, B, 1), ref.random_state(CASES[TWO[1]].cell, B, 2))
    xs, lengths = _xs(3), np.array([5, 3, 1])
    ys, finals = apply(params, xs, lengths=jnp.asarray(lengths), initial_state=s0)

    h1, final1 = _numpy_layer(TWO[0], params[0], xs, lengths, s0[0])
    h2, final2 = _numpy_layer(TWO[1], params[1], h1, lengths, s0[1])
    np.testing.assert_allclose(ys, h2, **TOL)
    assert len(finals) == 2
    ref.assert_states_close(finals[0], final1, **TOL)
    ref.assert_states_close(finals[1], final2, **TOL)
    for b, n in enumerate(lengths):
        np.testing.assert_array_equal(np.asarray(ys)[b, n:], 0.0)


def test_per_layer_initial_state_none_means_zeros():
    net, apply = _two_layer()
    params = ref.random_params(net, 4, I)
    xs = _xs(5)
    s1 = ref.random_state(CASES[TWO[1]].cell, B, 6)
    ys, finals = apply(params, xs, initial_state=(None, s1))
    h1, final1 = _numpy_layer(TWO[0], params[0], xs, None, CASES[TWO[0]].cell.initial_state((B,)))
    h2, final2 = _numpy_layer(TWO[1], params[1], h1, None, s1)
    np.testing.assert_allclose(ys, h2, **TOL)
    ref.assert_states_close(finals[0], final1, **TOL)
    ref.assert_states_close(finals[1], final2, **TOL)


# The three-layer stack: gru(4) -> bidirectional(elman(4), lstm(4), sum) -> lstm(5, proj 3).
@functools.cache
def _three_layer():
    bidir = jrnn.bidirectional(CASES["elman_tanh"].cell, CASES["lstm"].cell, merge="sum")
    net = jrnn.deep([CASES["gru_reset_after"].cell, bidir, CASES["lstm_proj"].cell])
    return net, jax.jit(net.apply)


def _numpy_three_layer(params, xs, lengths):
    zeros = lambda name: CASES[name].cell.initial_state((xs.shape[0],))  # noqa: E731
    h1, f1 = _numpy_layer("gru_reset_after", params[0], xs, lengths, zeros("gru_reset_after"))
    p = params[1]
    h2, f2_fwd, f2_bwd = ref.run_bidirectional(
        CASES["elman_tanh"].ref_step(p.forward), CASES["lstm"].ref_step(p.backward), lambda a, b: a + b, h1,
        lengths, ref.state_rows(zeros("elman_tanh"), xs.shape[0]), ref.state_rows(zeros("lstm"), xs.shape[0]))
    h3, f3 = _numpy_layer("lstm_proj", params[2], h2, lengths, zeros("lstm_proj"))
    return h3, (f1, (ref.stack_states(f2_fwd), ref.stack_states(f2_bwd)), f3)


@settings(max_examples=15, deadline=None, database=None)
@given(lengths=st.lists(st.integers(0, T), min_size=B, max_size=B), seed=st.integers(0, 2 ** 16))
def test_three_layer_stack_with_bidirectional_middle_matches_numpy_and_padding_never_leaks(lengths, seed):
    net, apply = _three_layer()
    params = ref.random_params(net, seed, I)
    xs, lengths = _xs(seed + 1), np.array(lengths)
    ys, finals = apply(params, xs, lengths=jnp.asarray(lengths))

    ys_np, (f1, (f2_fwd, f2_bwd), f3) = _numpy_three_layer(params, xs, lengths)
    np.testing.assert_allclose(ys, ys_np, **TOL)
    ref.assert_states_close(finals[0], f1, **TOL)
    ref.assert_states_close(finals[1].forward, f2_fwd, **TOL)
    ref.assert_states_close(finals[1].backward, f2_bwd, **TOL)
    ref.assert_states_close(finals[2], f3, **TOL)

    x = np.array(xs)
    pad = np.arange(T)[None, :] >= lengths[:, None]
    x[pad] = 1e3 * np.random.default_rng(seed).standard_normal(x.shape)[pad]
    ys2, finals2 = apply(params, jnp.asarray(x), lengths=jnp.asarray(lengths))
    np.testing.assert_array_equal(ys2, ys)
    for a, b in zip(jax.tree_util.tree_leaves(finals2), jax.tree_util.tree_leaves(finals), strict=True):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------------------------------------
# Dropout
# ----------------------------------------------------------------------------------------------------------------

def test_dropout_is_off_without_a_key_and_changes_outputs_with_one():
    net, apply = _two_layer(dropout=0.5)
    net0, apply0 = _two_layer(dropout=0.0)
    params = ref.random_params(net, 7, I)
    xs = _xs(8)
    no_key = apply(params, xs)[0]
    np.testing.assert_array_equal(no_key, apply0(params, xs)[0])
    np.testing.assert_array_equal(apply0(params, xs, key=jax.random.key(1))[0], no_key)  # rate 0: a key is a no-op

    k1 = apply(params, xs, key=jax.random.key(1))[0]
    k1_again = apply(params, xs, key=jax.random.key(1))[0]
    k2 = apply(params, xs, key=jax.random.key(2))[0]
    np.testing.assert_array_equal(k1, k1_again)
    assert not np.allclose(k1, no_key, atol=1e-3)
    assert not np.allclose(k1, k2, atol=1e-3)
    # The first layer's input is never dropped: layer 1's final state is the same with and without a key.
    np.testing.assert_array_equal(apply(params, xs, key=jax.random.key(1))[1][0], apply(params, xs)[1][0])


def test_the_stacks_input_is_never_dropped_only_the_inputs_of_layers_two_on():
    # Dropout is between layers (PyTorch's nn.LSTM(dropout=p)): at rate 0.99 any mask on x would zero ~99 % of it.
    xs = _xs(13, shape=(4, 10, 6))
    key = jax.random.key(5, impl="rbg")
    one = jrnn.deep([Identity(6)], dropout=0.99)
    np.testing.assert_array_equal(one.apply(((),), xs, key=key)[0], xs)  # training output = evaluation output
    cell = CASES[TWO[0]].cell
    two = jrnn.deep([cell, jrnn.lstm(3)], dropout=0.99)
    params = ref.random_params(two, 14, I)
    xs = _xs(15)
    train, finals = two.apply(params, xs, key=key)
    evaluation, eval_finals = two.apply(params, xs)
    ref.assert_states_close(finals[0], eval_finals[0], rtol=0, atol=0)  # layer 1 read x untouched
    assert not np.allclose(train, evaluation, atol=1e-3)  # layer 2's input was dropped


# The statistical tests use the "rbg" PRNG: the same dropout code, but it compiles in a fraction of threefry's time.
@pytest.mark.parametrize("rate", [0.25, 0.6])
def test_dropout_keeps_each_input_scaled_by_one_over_one_minus_p_or_zeroes_it(rate):
    xs = _xs(9, shape=(8, 50, 6))
    x = np.asarray(xs, np.float64)
    two = jrnn.deep([Identity(6), Identity(6)], dropout=rate)
    ys = np.asarray(jax.jit(two.apply)((((), ())), xs, key=jax.random.key(3, impl="rbg"))[0], np.float64)
    kept = ys != 0.0
    # Deterministic: every entry is either 0 or x / (1 - p), i.e. exactly one mask (the first layer's input is not
    # dropped), with the inverted-dropout scale.
    np.testing.assert_allclose(ys[kept], x[kept] / (1.0 - rate), rtol=1e-6)
    # Statistical: the kept fraction is 1 - p and the expectation is preserved (E[ys] = x); N = 2400 entries.
    assert abs(kept.mean() - (1.0 - rate)) < 0.05
    np.testing.assert_allclose((ys / x).mean(), 1.0, atol=0.1)

    three = jrnn.deep([Identity(6)] * 3, dropout=rate)
    ys3 = np.asarray(jax.jit(three.apply)(((), (), ()), xs, key=jax.random.key(3, impl="rbg"))[0], np.float64)
    kept3 = ys3 != 0.0
    np.testing.assert_allclose(ys3[kept3], x[kept3] / (1.0 - rate) ** 2, rtol=1e-6)  # two masks, layers 2 and 3
    assert abs(kept3.mean() - (1.0 - rate) ** 2) < 0.05


# ----------------------------------------------------------------------------------------------------------------
# Residual connections
# ----------------------------------------------------------------------------------------------------------------

def test_residual_adds_each_layers_input_from_layer_two_on():
    names = ("elman_tanh", "gru_reset_before", "elman_relu")  # 3 -> 4 -> 4 -> 4: layer 1 cannot be residual
    net = jrnn.deep([CASES[n].cell for n in names], residual=True)
    params = ref.random_params(net, 10, I)
    xs, lengths = _xs(11), np.array([5, 0, 2])
    ys, _ = jax.jit(net.apply)(params, xs, lengths=jnp.asarray(lengths))

    zeros = lambda name: CASES[name].cell.initial_state((B,))  # noqa: E731
    h1, _ = _numpy_layer(names[0], params[0], xs, lengths, zeros(names[0]))
    out2, _ = _numpy_layer(names[1], params[1], h1, lengths, zeros(names[1]))
    h2 = out2 + h1
    out3, _ = _numpy_layer(names[2], params[2], h2, lengths, zeros(names[2]))
    np.testing.assert_allclose(ys, out3 + h2, **TOL)
    for b, n in enumerate(lengths):
        np.testing.assert_array_equal(np.asarray(ys)[b, n:], 0.0)


def test_residual_adds_the_undropped_input():
    xs = _xs(12, shape=(4, 10, 6))
    x = np.asarray(xs, np.float64)
    net = jrnn.deep([Identity(6), Identity(6)], dropout=0.5, residual=True)
    ys = np.asarray(jax.jit(net.apply)(((), ()), xs, key=jax.random.key(0, impl="rbg"))[0], np.float64)
    dropped = ys - x  # = dropout(x): 0 or 2 x
    is_zero = np.isclose(dropped, 0.0, atol=1e-6)
    np.testing.assert_allclose(dropped[~is_zero], 2.0 * x[~is_zero], rtol=1e-5)
    assert 0.3 < is_zero.mean() < 0.7
