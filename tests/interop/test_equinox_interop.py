"""jrnn.from_equinox / jrnn.to_equinox against Equinox's own eqx.nn.LSTMCell and eqx.nn.GRUCell.

The reference is Equinox's cell driven step by step, one example at a time, over each sequence's own valid steps
(forwards, or backwards from its last valid step) from a random initial state; the converted cell under
jrnn.scan (lengths, reverse, initial_state) must match it to 1e-5 in float32, and from → to → from must give back
the same bits.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn

B, T, I, H = 3, 6, 3, 5
ATOL = 1e-5
LENGTHS = np.array([6, 2, 0])


def random_like(tree, seed):
    """Arrays of the shapes in ``tree`` drawn by NumPy with std 0.5 (NumPy compiles nothing)."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda a: jnp.asarray(0.5 * rng.standard_normal(a.shape), jnp.float32), tree)


def make(kind, use_bias=True, seed=0):
    """An Equinox cell with random weights (larger than Equinox's U(±1/sqrt(H)), so that every gate leaves its
    linear range)."""
    cls = eqx.nn.LSTMCell if kind == "lstm" else eqx.nn.GRUCell
    return random_like(eqx.filter_eval_shape(cls, I, H, use_bias=use_bias, key=jax.random.key(0)), seed)


def reference(cell, xs, lengths, hidden0, reverse):
    """Equinox's cell over each sequence's valid steps, in plain Python: ``(outputs [B, T, H], finals)`` with
    outputs 0 at padded steps."""
    outputs, finals = np.zeros((B, T, H), np.float32), []
    for b in range(B):
        hidden = jax.tree_util.tree_map(lambda s, b=b: s[b], hidden0)
        steps = range(lengths[b] - 1, -1, -1) if reverse else range(lengths[b])
        for t in steps:
            hidden = cell(xs[b, t], hidden)
            outputs[b, t] = hidden[0] if isinstance(hidden, tuple) else hidden
        finals.append(hidden)
    return outputs, jax.tree_util.tree_map(lambda *s: np.stack(s), *finals)


@pytest.mark.parametrize("kind,use_bias,reverse", [("lstm", True, False), ("lstm", False, True),
                                                   ("gru", True, True), ("gru", False, False)])
def test_matches_equinox_and_round_trips_exactly(kind, use_bias, reverse):
    cell = make(kind, use_bias)
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((B, T, I)).astype(np.float32)
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    hidden0 = (h0, rng.standard_normal((B, H)).astype(np.float32)) if kind == "lstm" else h0
    expected_ys, expected_final = reference(cell, xs, LENGTHS, hidden0, reverse)

    fn, params = jrnn.from_equinox(cell)
    state0 = jrnn.LSTMState(*hidden0) if kind == "lstm" else hidden0
    run = jax.jit(lambda p, xs, s0: jrnn.scan(fn.cell, p, xs, lengths=jnp.asarray(LENGTHS), initial_state=s0,
                                             reverse=reverse))
    ys, final = run(params, xs, state0)
    np.testing.assert_allclose(ys, expected_ys, atol=ATOL, rtol=0)
    for a, e in zip(jax.tree_util.tree_leaves(final), jax.tree_util.tree_leaves(expected_final)):
        np.testing.assert_allclose(a, e, atol=ATOL, rtol=0)
    # the step itself, in Equinox's own convention (hidden = (h, c) for the LSTM), batched and not
    one = jax.tree_util.tree_map(lambda s: s[0], hidden0)
    for a, e in zip(jax.tree_util.tree_leaves(fn(params, xs[0, 0], one)),
                    jax.tree_util.tree_leaves(cell(xs[0, 0], one))):
        np.testing.assert_allclose(a, e, atol=ATOL, rtol=0)

    back = jrnn.to_equinox(params, make(kind, use_bias, seed=7))
    for a, e in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(cell)):
        assert np.asarray(a).tobytes() == np.asarray(e).tobytes()
    for a, e in zip(jax.tree_util.tree_leaves(jrnn.from_equinox(back)[1]), jax.tree_util.tree_leaves(params)):
        assert np.asarray(a).tobytes() == np.asarray(e).tobytes()


def test_to_equinox_folds_both_biases_into_an_equal_cell():
    """PyTorch-style GRU parameters (b_U and b_W both non-zero) written into Equinox's one bias and bias_n."""
    params = random_like(jrnn.GRUParams(*(np.zeros(s) for s in [(3 * H, I), (3 * H, H), (3 * H,), (3 * H,)])), 3)
    cell = jrnn.to_equinox(params, make("gru"))
    x, h = random_like((np.zeros(I), np.zeros(H)), 4)
    np.testing.assert_allclose(cell(x, h), jrnn.gru(H).step(params, h, x)[0], atol=ATOL, rtol=0)


def test_bad_cells_and_parameters_raise_clear_errors():
    with pytest.raises(TypeError, match="eqx.nn.LSTMCell or eqx.nn.GRUCell"):
        jrnn.from_equinox(eqx.nn.Linear(2, 3, key=jax.random.key(0)))
    _, params = jrnn.from_equinox(make("gru"))
    with pytest.raises(TypeError, match="expected LSTMParams"):
        jrnn.to_equinox(params, make("lstm"))
    with pytest.raises(ValueError, match="use_bias=False"):
        jrnn.to_equinox(params, make("gru", use_bias=False))
    with pytest.raises(ValueError, match="weight_ih"):
        jrnn.to_equinox(params._replace(U=params.U[:, :2]), make("gru"))
