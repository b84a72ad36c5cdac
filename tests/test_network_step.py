"""Every one-directional network is a cell: ``step`` scanned in a Python loop equals ``apply``; what cannot step
says why; anything that takes a cell (``jrnn.scan``, ``jrnn.bidirectional``) takes a stack."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

import jrnn

B, T, I = 3, 6, 3
TOL = dict(rtol=2e-5, atol=2e-5)

NETWORKS = {
    "rnn": lambda: jrnn.RNN(jrnn.lstm(5, proj_size=3)),
    # Residual from layer 2 on, a nested stack in the middle, dropout (off in step and in apply without a key),
    # and an RNN layer that takes the plain path.
    "deep": lambda: jrnn.deep([jrnn.lstm(4), jrnn.deep([jrnn.gru(4), jrnn.elman(4)]),
                               jrnn.RNN(jrnn.gru(4, reset_after=False), solver=jrnn.sequential())],
                              dropout=0.5, residual=True),
}


@functools.cache
def _network(name):
    """The network, its jitted ``apply``, its jitted ``step`` and its plain-path ``jrnn.scan``, built once."""
    net = NETWORKS[name]()
    scan = jax.jit(functools.partial(jrnn.scan, net, solver=jrnn.sequential()), static_argnames="reverse")
    fused = jax.jit(functools.partial(jrnn.scan, net), static_argnames="reverse")
    return net, jax.jit(net.apply), jax.jit(net.step), scan, fused


def _python_loop(step, params, xs, lengths, s0, output_size, reverse=False):
    """Each sequence alone (batch 1), ``step`` over its own valid steps, forwards or backwards; zeros elsewhere.

    Everything is sliced on the host (NumPy), so that the loop runs one compiled program: ``step``.
    """
    xs = np.asarray(xs)
    s0 = jax.tree_util.tree_map(np.asarray, s0)
    ys, finals = np.zeros(xs.shape[:2] + (output_size,)), []
    for b in range(xs.shape[0]):
        state = jax.tree_util.tree_map(lambda a, b=b: a[b:b + 1], s0)
        order = range(lengths[b] - 1, -1, -1) if reverse else range(lengths[b])
        for t in order:
            state, y = step(params, state, xs[b:b + 1, t])
            ys[b, t] = np.asarray(y[0])
        finals.append(jax.tree_util.tree_map(np.asarray, state))
    return ys, jax.tree_util.tree_map(lambda *rows: np.concatenate(rows), *finals)


def _assert_trees_close(actual, expected):
    for a, e in zip(jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected), strict=True):
        np.testing.assert_allclose(a, e, **TOL)


@pytest.mark.parametrize("name", list(NETWORKS))
@settings(max_examples=8, deadline=None, database=None)
@given(lengths=st.lists(st.integers(1, T), min_size=B, max_size=B), seed=st.integers(0, 2 ** 16))
def test_step_scanned_in_a_python_loop_equals_apply_with_lengths_and_initial_states(name, lengths, seed):
    net, apply, step, _, _ = _network(name)
    params = ref.random_params(net, seed, I)
    s0 = ref.random_state(net, B, seed + 1)
    xs = ref.device(np.random.default_rng(seed + 2).standard_normal((B, T, I)))
    lengths = np.array(lengths)
    ys, final = apply(params, xs, lengths=jnp.asarray(lengths), initial_state=s0)
    ys_loop, final_loop = _python_loop(step, params, xs, lengths, s0, net.output_size)
    np.testing.assert_allclose(ys, ys_loop, **TOL)
    _assert_trees_close(final, final_loop)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_scan_of_a_network_both_paths_forwards_and_backwards_equal_the_step_loop(name):
    net, _, step, plain_scan, fused_scan = _network(name)
    params = ref.random_params(net, 3, I)
    s0 = ref.random_state(net, B, 4)
    xs = ref.device(np.random.default_rng(5).standard_normal((B, T, I)))
    lengths = np.array([T, 2, 4])
    for reverse in (False, True):
        expected = _python_loop(step, params, xs, lengths, s0, net.output_size, reverse=reverse)
        for scan in (plain_scan, fused_scan):  # lax.scan over net.step; the network's own apply (flipped)
            ys, final = scan(params, xs, lengths=jnp.asarray(lengths), initial_state=s0, reverse=reverse)
            np.testing.assert_allclose(ys, expected[0], **TOL)
            _assert_trees_close(final, expected[1])


def test_a_network_is_a_cell_and_a_cell_is_a_network_layer():
    net, *_ = _network("deep")
    assert isinstance(net, jrnn.Cell) and isinstance(net, jrnn.SequenceLayer)
    params = ref.random_params(net, 0, I)
    assert net.input_size(params) == I
    assert net.hidden_size == 4 + (4 + 4) + 4 and net.output_size == 4
    # jrnn.deep keeps a network as it is (it is a sequence layer) rather than wrapping it in an RNN.
    assert jrnn.deep([net, jrnn.lstm(2)]).layers[0] is net


def test_bidirectional_of_two_stacks_is_the_forward_stack_merged_with_the_flipped_backward_stack():
    fwd = jrnn.deep([jrnn.gru(4), jrnn.lstm(3)])
    bwd = jrnn.deep([jrnn.elman(2), jrnn.elman(2)])
    layer = jrnn.bidirectional(fwd, bwd)
    params = ref.random_params(layer, 6, I)
    xs = ref.device(np.random.default_rng(7).standard_normal((B, T, I)))
    lengths = jnp.array([T, 1, 3])

    @jax.jit
    def both(params, xs):
        by_hand_fwd, _ = fwd.apply(params.forward, xs, lengths=lengths)
        flipped, _ = bwd.apply(params.backward, jrnn.reverse_sequences(xs, lengths), lengths=lengths)
        by_hand = jnp.concatenate([by_hand_fwd, jrnn.reverse_sequences(flipped, lengths)], axis=-1)
        return layer.apply(params, xs, lengths=lengths)[0], by_hand

    ys, by_hand = both(params, xs)
    np.testing.assert_allclose(ys, by_hand, **TOL)
    assert ys.shape == (B, T, 3 + 2)


def _shapes(layer):
    """Parameters and a state as shapes only: the errors below are raised while tracing, nothing is compiled."""
    return jax.eval_shape(lambda: layer.init(jax.random.key(0), I)), layer.initial_state((B,))


def test_what_cannot_step_says_why():
    x = jnp.zeros((B, I))
    bidir = jrnn.bidirectional(jrnn.gru(2))
    with pytest.raises(ValueError, match="bidirectional layer cannot step.*inputs after t"):
        jax.eval_shape(bidir.step, *_shapes(bidir), x)
    reverse = jrnn.RNN(jrnn.gru(2), reverse=True)
    with pytest.raises(ValueError, match="reverse RNN cannot step.*not seen yet"):
        jax.eval_shape(reverse.step, *_shapes(reverse), x)
    stack = jrnn.deep([jrnn.gru(2), jrnn.deep([jrnn.elman(2), bidir])])
    with pytest.raises(ValueError, match=r"layer 2 \(Deep\) cannot step: layer 2 \(Bidirectional\) cannot step"):
        jax.eval_shape(stack.step, *_shapes(stack), x)
    # jrnn.scan and jrnn.bidirectional run a network only if it can step.
    xs = jnp.zeros((B, T, I))
    with_reverse = jrnn.deep([jrnn.gru(2), reverse])
    with pytest.raises(ValueError, match="reverse RNN cannot step"):
        jax.eval_shape(functools.partial(jrnn.scan, with_reverse), _shapes(with_reverse)[0], xs)
    bidir_of_stack = jrnn.bidirectional(stack)
    with pytest.raises(ValueError, match="cannot step"):
        jax.eval_shape(bidir_of_stack.apply, _shapes(bidir_of_stack)[0], xs)
    rnn = jrnn.RNN(jrnn.gru(2))
    with pytest.raises(ValueError, match="a network has no fused form of its own; its layers choose"):
        jax.eval_shape(functools.partial(jrnn.scan, rnn, solver=jrnn.fused(jnp.bfloat16)), _shapes(rnn)[0], xs)


class _NoStep:
    """A sequence layer without a step."""

    output_size = hidden_size = I

    def init(self, key, input_size):
        return ()

    def initial_state(self, batch_shape=(), dtype=None):
        return ()

    def apply(self, params, xs, *, lengths=None, initial_state=None, key=None):
        return xs, ()


def test_a_stack_with_a_layer_without_step_names_it_and_bad_trees_are_refused():
    stack = jrnn.deep([jrnn.elman(I), _NoStep()])
    params, state = _shapes(stack)
    with pytest.raises(TypeError, match=r"layer 2 \(_NoStep\) has no step"):
        jax.eval_shape(stack.step, params, state, jnp.zeros((B, I)))
    with pytest.raises(ValueError, match="expected state for 2 layers"):
        jax.eval_shape(stack.step, params, state[0], jnp.zeros((B, I)))
