"""jrnn.from_flax / jrnn.to_flax against Flax's own nn.RNN and nn.Bidirectional, in Linen and in NNX.

Each case gives a Flax module random weights and calls it with seq_lengths that include a full row, short rows
and an empty one (Flax's outputs at padded steps are not zeroed, and a length of 0 selects the carry after all T
steps) and a random initial carry; jrnn's outputs and carries must equal Flax's to 1e-5 in float32, and
from → to → from must give back the same bits.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jrnn

B, T, I, H = 4, 6, 3, 5
ATOL = 1e-5
LENGTHS = np.array([6, 2, 0, 4])


def randomized(tree, seed=0):
    """Arrays of the shapes and dtypes in ``tree`` drawn with std 0.5 (no gate saturates, no bias is zero). NumPy
    draws them: the tests' time is compilation, and NumPy compiles nothing."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda leaf: jnp.asarray(0.5 * rng.standard_normal(leaf.shape), leaf.dtype), tree)


def carry(cell_name, bidirectional, seed=1):
    """A random initial carry in Flax's form: (c, h) for the LSTM cells, h otherwise."""
    rng = np.random.default_rng(seed)

    def one():
        c, h = (jnp.asarray(rng.standard_normal((B, H)), jnp.float32) for _ in range(2))
        return (c, h) if "LSTM" in cell_name else h

    return (one(), one()) if bidirectional else one()


def linen_module(cell_name, bidirectional, **options):
    cell = getattr(nn, cell_name)
    if bidirectional:
        return nn.Bidirectional(nn.RNN(cell(H)), nn.RNN(cell(H)), **options)
    return nn.RNN(cell(H), **options)


def nnx_module(cell_name, bidirectional, seed=0, **options):
    zeros = nnx.initializers.zeros_init()  # the cheapest initializer: random weights come next

    def cell(key):
        return getattr(nnx, cell_name)(I, H, kernel_init=zeros, recurrent_kernel_init=zeros, bias_init=zeros,
                                       rngs=nnx.Rngs(key))

    module = nnx.Bidirectional(nnx.RNN(cell(0)), nnx.RNN(cell(1)), **options) if bidirectional else \
        nnx.RNN(cell(0), **options)
    nnx.update(module, randomized(nnx.state(module, nnx.Param), seed))
    return module


def assert_tree_close(actual, expected, what):
    actual_leaves, expected_leaves = jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected)
    assert jax.tree_util.tree_structure(actual) == jax.tree_util.tree_structure(expected), what
    for i, (a, e) in enumerate(zip(actual_leaves, expected_leaves)):
        assert a.shape == e.shape, f"{what}[{i}]: shape {a.shape}, Flax {e.shape}"
        np.testing.assert_allclose(a, e, atol=ATOL, rtol=0, err_msg=f"{what}[{i}]")


def assert_bits_equal(actual, expected):
    actual_leaves, expected_leaves = jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected)
    assert jax.tree_util.tree_structure(actual) == jax.tree_util.tree_structure(expected)
    for a, e in zip(actual_leaves, expected_leaves):
        assert np.asarray(a).dtype == np.asarray(e).dtype and np.asarray(a).tobytes() == np.asarray(e).tobytes()


# name -> (cell, bidirectional, module options, pass seq_lengths, pass an initial carry)
CASES = {
    "lstm": ("LSTMCell", False, dict(return_carry=True), True, True),
    "optimized_lstm-reverse": ("OptimizedLSTMCell", False, dict(return_carry=True, reverse=True), True, True),
    "gru-reverse-keep_order": ("GRUCell", False, dict(return_carry=True, reverse=True, keep_order=True), True, True),
    "simple-time_major-full": ("SimpleCell", False, dict(return_carry=True, time_major=True), False, False),
    "bi-lstm": ("LSTMCell", True, dict(return_carry=True), True, True),
    "bi-gru-sum-outputs_only": ("GRUCell", True, dict(merge_fn=jnp.add), True, False),
}


def call_kwargs(cell_name, bidirectional, with_lengths, with_carry):
    kwargs = {}
    if with_lengths:
        kwargs["seq_lengths"] = jnp.asarray(LENGTHS)
    if with_carry:
        kwargs["initial_carry"] = carry(cell_name, bidirectional)
    return kwargs


def inputs(options):
    x = jnp.asarray(np.random.default_rng(2).standard_normal((B, T, I)), jnp.float32)
    return jnp.swapaxes(x, 0, 1) if options.get("time_major") else x


@pytest.mark.parametrize("name", list(CASES))
def test_linen_matches_flax_and_round_trips_exactly(name):
    cell_name, bidirectional, options, with_lengths, with_carry = CASES[name]
    module = linen_module(cell_name, bidirectional, **options)
    x = inputs(options)
    variables = randomized(jax.eval_shape(module.init, jax.random.key(0), x))
    kwargs = call_kwargs(cell_name, bidirectional, with_lengths, with_carry)
    fn, params = jrnn.from_flax(module, variables)
    assert_tree_close(jax.jit(fn)(params, x, **kwargs), module.apply(variables, x, **kwargs), name)
    assert_bits_equal(jrnn.to_flax(params, module), variables)
    assert_bits_equal(jrnn.from_flax(module, jrnn.to_flax(params, module))[1], params)


NNX_CASES = {
    "lstm-reverse-keep_order": ("LSTMCell", False, dict(return_carry=True, reverse=True, keep_order=True), True,
                                True),
    "optimized_lstm": ("OptimizedLSTMCell", False, dict(return_carry=True), True, True),
    "simple": ("SimpleCell", False, {}, True, False),
    "bi-gru-time_major": ("GRUCell", True, dict(return_carry=True, time_major=True), True, True),
}


@pytest.mark.parametrize("name", list(NNX_CASES))
def test_nnx_matches_flax_and_round_trips_exactly(name):
    cell_name, bidirectional, options, with_lengths, with_carry = NNX_CASES[name]
    module = nnx_module(cell_name, bidirectional, **options)
    x = inputs(options)
    kwargs = call_kwargs(cell_name, bidirectional, with_lengths, with_carry)
    fn, params = jrnn.from_flax(module)
    assert_tree_close(jax.jit(fn)(params, x, **kwargs), module(x, **kwargs), name)
    fresh = nnx_module(cell_name, bidirectional, seed=1, **options)  # other weights
    assert jrnn.to_flax(params, fresh) is fresh
    assert_bits_equal(nnx.state(fresh, nnx.Param), nnx.state(module, nnx.Param))
    assert_bits_equal(jrnn.from_flax(fresh)[1], params)


def test_padded_outputs_follow_flax_convention():
    """Flax runs the cell over the padding (outputs there are not 0, and not the last valid output), and its
    carry for a length of 0 is the one after all T steps; checked on Flax itself, then on jrnn."""
    module = linen_module("GRUCell", False, return_carry=True)
    x = inputs({})
    variables = randomized(jax.eval_shape(module.init, jax.random.key(0), x))
    lengths = jnp.asarray(LENGTHS)
    final, y = module.apply(variables, x, seq_lengths=lengths)
    unpadded = module.apply(variables, x)[1]
    np.testing.assert_array_equal(y, unpadded)  # seq_lengths changes no output
    np.testing.assert_array_equal(final[1], y[1, 1])  # the carry after step seq_lengths - 1
    np.testing.assert_array_equal(final[2], y[2, -1])  # length 0: the carry after all T steps
    fn, params = jrnn.from_flax(module, variables)
    jrnn_final, jrnn_y = jax.jit(fn)(params, x, seq_lengths=lengths)
    np.testing.assert_allclose(jrnn_y, y, atol=ATOL, rtol=0)
    np.testing.assert_allclose(jrnn_final, final, atol=ATOL, rtol=0)


def test_to_flax_folds_both_biases_into_an_equal_network():
    """jrnn (and PyTorch) GRU parameters with both b_U and b_W written into Linen's GRUCell (input biases on
    r, z, n and hn's bias): Flax then computes what jrnn's cell computes on the original parameters."""
    cell = jrnn.gru(H)
    params = randomized(jrnn.GRUParams(*(jax.ShapeDtypeStruct(s, jnp.float32)
                                         for s in [(3 * H, I), (3 * H, H), (3 * H,), (3 * H,)])), seed=4)
    module = linen_module("GRUCell", False)
    x = inputs({})
    expected, _ = jrnn.scan(cell, params, x)
    np.testing.assert_allclose(module.apply(jrnn.to_flax(params, module), x), expected, atol=ATOL, rtol=0)


def test_options_jrnn_cannot_represent_raise_naming_the_option():
    x = inputs({})

    def convert(module):
        return jrnn.from_flax(module, randomized(jax.eval_shape(module.init, jax.random.key(0), x)))

    with pytest.raises(ValueError, match="gate_fn"):
        convert(nn.RNN(nn.LSTMCell(H, gate_fn=jax.nn.hard_sigmoid)))
    with pytest.raises(ValueError, match="activation_fn"):
        convert(nn.RNN(nn.GRUCell(H, activation_fn=jax.nn.relu)))
    with pytest.raises(ValueError, match="residual=True"):
        convert(nn.RNN(nn.SimpleCell(H, residual=True)))
    with pytest.raises(ValueError, match="dtype"):
        convert(nn.RNN(nn.GRUCell(H, dtype=jnp.bfloat16)))
    with pytest.raises(ValueError, match="carry_init"):
        convert(nn.RNN(nn.GRUCell(H, carry_init=nn.initializers.ones)))
    with pytest.raises(TypeError, match="MGUCell"):
        convert(nn.RNN(nn.MGUCell(H)))
    with pytest.raises(ValueError, match="b_hn"):  # NNX's GRU has no b_hn (flax#5594)
        params = jrnn.GRUParams(jnp.zeros((3 * H, I)), jnp.zeros((3 * H, H)), None, jnp.ones((3 * H,)))
        jrnn.to_flax(params, nnx_module("GRUCell", False))


def test_simple_cell_keeps_its_activation():
    module = nn.RNN(nn.SimpleCell(H, activation_fn=jax.nn.relu))
    x = inputs({})
    variables = randomized(jax.eval_shape(module.init, jax.random.key(0), x))
    fn, params = jrnn.from_flax(module, variables)
    np.testing.assert_allclose(jax.jit(fn)(params, x), module.apply(variables, x), atol=ATOL, rtol=0)
