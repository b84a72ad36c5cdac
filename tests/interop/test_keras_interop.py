"""jrnn.from_keras / jrnn.to_keras against Keras 3 itself, on its JAX backend.

Each case builds a Keras layer with random weights and calls it with a mask that has every pattern Keras allows (a
full row, right padding, left padding, holes, an empty row) and a random initial state; jrnn's outputs and final
states must equal Keras's to 1e-5 in float32, and from → to → from must give back the same bits.

Keras itself broadcasts ranks implicitly (its biases onto a batch, its orthogonal initializer), which the suite's
strict ``jax_numpy_rank_promotion`` refuses: every Keras call runs inside ``keras_side()``; jrnn stays strict.
"""

import os
import re

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")
import jrnn  # noqa: E402

B, T, I, H = 5, 6, 3, 4
ATOL = 1e-5
MASK = np.array([[1, 1, 1, 1, 1, 1],   # full
                 [1, 1, 1, 0, 0, 0],   # right padding
                 [0, 0, 1, 1, 1, 1],   # left padding (Keras's pad_sequences default)
                 [0, 1, 0, 1, 1, 0],   # holes
                 [0, 0, 0, 0, 0, 0]],  # empty
                bool)
layers = keras.layers


def keras_side():
    return jax.numpy_rank_promotion("allow")


def call(layer, *args, **kwargs):
    """``layer(*args, **kwargs)`` on Keras's side."""
    with keras_side():
        return layer(*args, **kwargs)


def randomize(layer, seed):
    """Random weights (std 0.5, so that no gate saturates) in every variable of a built layer."""
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        variable.assign(0.5 * rng.standard_normal(variable.shape).astype(np.float32))
    return layer


def build(make, seed=0, batch=None):
    """``make()`` built for ``[batch, T, I]`` inputs, with random weights."""
    layer = make()
    inner = (layer.forward_layer, layer.backward_layer) if isinstance(layer, layers.Bidirectional) else (layer,)
    for sub in inner:  # the cheapest initializers (nothing to compile): randomize() draws every weight next
        sub.cell.kernel_initializer = sub.cell.recurrent_initializer = keras.initializers.Zeros()
    with keras_side():
        layer.build((batch, T, I))
    return randomize(layer, seed)


def num_states(layer):
    inner = layer.forward_layer if isinstance(layer, layers.Bidirectional) else layer
    per_layer = 2 if isinstance(inner.cell, layers.LSTMCell) else 1
    return per_layer * (2 if isinstance(layer, layers.Bidirectional) else 1)


def inputs(layer=None, seed=1):
    """``x`` ``[B, T, I]`` and a random initial state in Keras's list form for ``layer``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    states = [rng.standard_normal((B, H)).astype(np.float32) for _ in range(num_states(layer) if layer else 1)]
    return x, states


def random_params(kind, hidden=H, input_size=I, seed=3):
    """jrnn parameters with every entry drawn (both biases included), without jrnn's initializers."""
    rng = np.random.default_rng(seed)
    gates = {"elman": 1, "lstm": 4, "gru": 3}[kind]
    shapes = [(gates * hidden, input_size), (gates * hidden, hidden), (gates * hidden,), (gates * hidden,)]
    arrays = [jnp.asarray(0.5 * rng.standard_normal(shape).astype(np.float32)) for shape in shapes]
    return {"elman": jrnn.ElmanParams, "lstm": jrnn.LSTMParams, "gru": jrnn.GRUParams}[kind](*arrays)


def assert_tree_close(actual, expected, what):
    actual, expected = jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected)
    assert len(actual) == len(expected), f"{what}: {len(actual)} arrays, Keras returns {len(expected)}"
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert np.shape(a) == np.shape(e), f"{what}[{i}]: shape {np.shape(a)}, Keras {np.shape(e)}"
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), atol=ATOL, rtol=0, err_msg=f"{what}[{i}]")


def weights(layer):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in layer.weights]


def assert_round_trip_exact(layer, params, make):
    """to_keras(from_keras(layer)) writes the very bits Keras held, and from_keras of that gives them back."""
    fresh = build(make, seed=99)
    assert jrnn.to_keras(params, fresh) is fresh
    for a, e in zip(weights(fresh), weights(layer)):
        np.testing.assert_array_equal(a, e)
        assert a.tobytes() == e.tobytes()
    _, again = jrnn.from_keras(fresh)
    for a, e in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(params)):
        assert np.asarray(a).tobytes() == np.asarray(e).tobytes()


# name -> (layer factory, call with a mask?, call with an initial state?)
CASES = {
    "rnn-simple_rnn_cell": (lambda: layers.RNN(layers.SimpleRNNCell(H), return_sequences=True, return_state=True),
                            True, True),
    "simple_rnn-relu-backwards-last": (lambda: layers.SimpleRNN(H, activation="relu", go_backwards=True,
                                                                return_state=True), True, True),
    "lstm": (lambda: layers.LSTM(H, return_sequences=True, return_state=True), True, True),
    "simple_rnn-unroll-zero_output_for_mask": (lambda: layers.SimpleRNN(H, return_sequences=True, unroll=True,
                                                                        zero_output_for_mask=True), True, True),
    "gru-backwards-last": (lambda: layers.GRU(H, go_backwards=True, return_state=True), True, True),
    "gru-reset_before-backwards-nobias": (lambda: layers.GRU(H, reset_after=False, use_bias=False,
                                                             go_backwards=True, return_sequences=True), True, False),
    "bi-lstm-concat": (lambda: layers.Bidirectional(layers.LSTM(H, return_sequences=True, return_state=True)),
                       True, True),
    "bi-gru-sum-last": (lambda: layers.Bidirectional(layers.GRU(H, return_state=True), merge_mode="sum"),
                        True, True),
    "bi-simple_rnn-mul": (lambda: layers.Bidirectional(layers.SimpleRNN(H, return_sequences=True),
                                                       merge_mode="mul"), True, False),
    "bi-gru-reset_before-ave-unmasked": (lambda: layers.Bidirectional(
        layers.GRU(H, reset_after=False, return_sequences=True, return_state=True), merge_mode="ave"), False, True),
    "bi-lstm-none-last": (lambda: layers.Bidirectional(layers.LSTM(H, return_state=True), merge_mode=None),
                          True, True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_keras_and_round_trips_exactly(name):
    make, masked, with_state = CASES[name]
    layer = build(make)
    x, states = inputs(layer)
    kwargs = dict(mask=MASK if masked else None, initial_state=states if with_state else None)
    expected = call(layer, x, **kwargs)
    fn, params = jrnn.from_keras(layer)
    assert_tree_close(jax.jit(fn)(params, x, **kwargs), expected, name)
    assert_round_trip_exact(layer, params, make)


def test_lengths_mean_the_prefix_mask():
    layer = build(lambda: layers.Bidirectional(layers.GRU(H, return_sequences=True, return_state=True)))
    x, states = inputs(layer)
    lengths = np.array([6, 3, 0, 1, 5])
    expected = call(layer, x, mask=np.arange(T)[None, :] < lengths[:, None], initial_state=states)
    fn, params = jrnn.from_keras(layer)
    assert_tree_close(jax.jit(fn)(params, x, lengths=lengths, initial_state=states), expected, "with lengths")


def test_outputs_at_masked_steps_follow_keras_convention():
    """A single layer carries its last valid output forward through masked steps (its initial h before the first
    valid step); Bidirectional with return_sequences zeroes them. Checked on Keras itself, not only on jrnn."""
    x, (h0,) = inputs()
    single = build(lambda: layers.GRU(H, return_sequences=True))
    y = np.asarray(call(single, x, mask=MASK, initial_state=[h0]))
    np.testing.assert_array_equal(y[1, 3:], np.broadcast_to(y[1, 2], (3, H)))  # right padding: last output carried
    np.testing.assert_array_equal(y[2, :2], np.broadcast_to(h0[2], (2, H)))   # left padding: the initial h
    np.testing.assert_array_equal(y[3, 2], y[3, 1])                            # a hole
    bi = build(lambda: layers.Bidirectional(layers.GRU(H, return_sequences=True)))
    np.testing.assert_array_equal(np.asarray(call(bi, x, mask=MASK))[~MASK], 0.0)
    fn, params = jrnn.from_keras(single)
    np.testing.assert_allclose(jax.jit(fn)(params, x, mask=MASK, initial_state=[h0]), y, atol=ATOL, rtol=0)


def test_input_gradients_match_keras():
    """The compaction of masked steps and the gathering of Keras's outputs are differentiable, and correct."""
    layer = build(lambda: layers.Bidirectional(layers.LSTM(H, return_sequences=True), merge_mode="concat"))
    x, _ = inputs(layer)
    cotangent = np.random.default_rng(2).standard_normal((B, T, 2 * H)).astype(np.float32)
    fn, params = jrnn.from_keras(layer)
    with keras_side():
        expected = jax.jit(jax.grad(lambda x: jnp.sum(layer(x, mask=MASK) * cotangent)))(x)
    actual = jax.jit(jax.grad(lambda x: jnp.sum(fn(params, x, mask=MASK) * cotangent)))(x)
    np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", ["lstm", "gru-reset_before"])
def test_to_keras_folds_both_biases_into_an_equal_network(kind):
    """jrnn (and PyTorch) parameters with both b_U and b_W written into a Keras layer with one bias: Keras then
    computes what jrnn's cell computes on the original parameters."""
    if kind == "lstm":
        cell, layer = jrnn.lstm(H), build(lambda: layers.LSTM(H, return_sequences=True))
    else:
        cell, layer = jrnn.gru(H, reset_after=False), build(lambda: layers.GRU(H, reset_after=False,
                                                                               return_sequences=True))
    params = random_params(kind.split("-")[0])
    jrnn.to_keras(params, layer)
    x, _ = inputs()
    expected, _ = jrnn.scan(cell, params, jnp.asarray(x))
    np.testing.assert_allclose(call(layer, x), expected, atol=ATOL, rtol=0)


REFUSED = {
    "activation": (lambda: layers.LSTM(H, activation="relu"), "activation='relu'"),
    "recurrent_activation": (lambda: layers.GRU(H, recurrent_activation="hard_sigmoid"),
                             "recurrent_activation='hard_sigmoid'"),
    "simple_rnn activation": (lambda: layers.SimpleRNN(H, activation="gelu"), "activation='gelu'"),
    "stateful": (lambda: layers.GRU(H, stateful=True), "stateful=True"),
    "dropout": (lambda: layers.LSTM(H, dropout=0.2), "dropout=0.2"),
    "recurrent_dropout": (lambda: layers.Bidirectional(layers.GRU(H, recurrent_dropout=0.1)),
                          "recurrent_dropout=0.1"),
    "mixed precision": (lambda: layers.LSTM(H, dtype="mixed_bfloat16"), "dtype_policy='mixed_bfloat16'"),
}


@pytest.mark.parametrize("option", list(REFUSED))
def test_options_jrnn_cannot_represent_raise_naming_the_option(option):
    make, message = REFUSED[option]
    layer = build(make, batch=B)  # stateful layers need their batch size
    with pytest.raises(ValueError, match=re.escape(message)):
        jrnn.from_keras(layer)


def test_dropout_converts_for_inference_when_asked():
    layer = build(lambda: layers.LSTM(H, dropout=0.3, return_sequences=True))
    fn, params = jrnn.from_keras(layer, ignore_dropout=True)
    x, _ = inputs(layer)
    np.testing.assert_allclose(jax.jit(fn)(params, x, mask=MASK), call(layer, x, mask=MASK, training=False), atol=ATOL,
                               rtol=0)


def test_bad_layers_and_parameters_raise_clear_errors():
    with pytest.raises(TypeError, match="expected a Keras SimpleRNN, LSTM, GRU"):
        jrnn.from_keras(layers.Dense(3))
    with pytest.raises(ValueError, match="not built"):
        jrnn.from_keras(layers.LSTM(H))
    lstm = build(lambda: layers.LSTM(H))
    with pytest.raises(TypeError, match="expected LSTMParams"):
        jrnn.to_keras(random_params("gru"), lstm)
    with pytest.raises(ValueError, match="expected U.T"):
        jrnn.to_keras(random_params("lstm", input_size=I + 1), lstm)
    with pytest.raises(ValueError, match="projection"):
        jrnn.to_keras(random_params("lstm")._replace(R=jnp.ones((H - 1, H))), lstm)
    no_bias = build(lambda: layers.SimpleRNN(H, use_bias=False))
    with pytest.raises(ValueError, match="use_bias=False"):
        jrnn.to_keras(random_params("elman"), no_bias)
    fn, params = jrnn.from_keras(lstm)
    with pytest.raises(ValueError, match="mask or lengths, not both"):
        fn(params, np.zeros((B, T, I), np.float32), mask=MASK, lengths=np.full((B,), T))
    with pytest.raises(ValueError, match="list of 2 arrays"):
        fn(params, np.zeros((B, T, I), np.float32), initial_state=[np.zeros((B, H), np.float32)])
