"""Bad arguments raise ValueError/TypeError naming what was expected and what was received, eagerly and under jit.

Every case is a function of one array ``x`` of shape ``[2, 5, 3]`` (B=2, T=5, three features), so that it can be
run as is and through ``jax.jit``, where the error must come at trace time.
"""

import jax
import jax.numpy as jnp
import pytest
import reference as ref

import jrnn

B, T, I = 2, 5, 3
LSTM = jrnn.lstm(4)
LSTM_P = ref.random_params(LSTM, 0, I)
ELMAN = jrnn.elman(4)
ELMAN_P = ref.random_params(ELMAN, 1, I)


def _int_lengths(x, shape):
    return jnp.zeros(shape, jnp.int32) + x[0, 0, 0].astype(jnp.int32)


# (function of x, exception type, regex naming what was expected ... and what was received)
CASES = {
    # inputs
    "xs_wrong_feature_size": (
        lambda x: jrnn.scan(LSTM, LSTM_P, x[..., :2]), ValueError,
        r"expected xs with 3 input features \(shape \[batch, time, 3\]\), got shape \(2, 5, 2\)"),
    "xs_not_batch_time_features": (
        lambda x: jrnn.scan(LSTM, LSTM_P, x[:, 0]), ValueError,
        r"expected xs of shape \[batch, time, 3\], got shape \(2, 3\)"),
    "bidirectional_xs_wrong_feature_size": (
        lambda x: jrnn.bidirectional(ELMAN).apply(
            jrnn.BidirectionalParams(ELMAN_P, ELMAN_P), jnp.concatenate([x, x], -1)), ValueError,
        r"expected xs with 3 input features .*got shape \(2, 5, 6\)"),
    "deep_xs_wrong_feature_size": (
        lambda x: jrnn.deep([ELMAN, LSTM]).apply((ELMAN_P, ref.random_params(LSTM, 2, 4)), x[..., :1]),
        ValueError, r"expected xs with 3 input features .*got shape \(2, 5, 1\)"),
    "readout_wrong_feature_size": (
        lambda x: jrnn.readout(2).apply(jrnn.ReadoutParams(jnp.ones((2, 4)), None), x), ValueError,
        r"expected inputs with 4 features, got shape \(2, 5, 3\)"),
    # initial states
    "initial_state_wrong_shape": (
        lambda x: jrnn.scan(ELMAN, ELMAN_P, x, initial_state=jnp.zeros((B, 5))), ValueError,
        r"expected initial_state structured as \(2, 4\), got \(2, 5\)"),
    "initial_state_wrong_batch": (
        lambda x: jrnn.scan(ELMAN, ELMAN_P, x, initial_state=jnp.zeros((3, 4))), ValueError,
        r"expected initial_state structured as \(2, 4\), got \(3, 4\)"),
    "lstm_initial_state_bare_array": (
        lambda x: jrnn.scan(LSTM, LSTM_P, x, initial_state=jnp.zeros((B, 4))), ValueError,
        r"expected initial_state structured as LSTMState\(h=\(2, 4\), c=\(2, 4\)\), got \(2, 4\)"),
    "lstm_initial_state_wrong_c": (
        lambda x: jrnn.scan(LSTM, LSTM_P, x, initial_state=jrnn.LSTMState(jnp.zeros((B, 4)), jnp.zeros((B, 2)))),
        ValueError, r"expected initial_state structured as LSTMState\(h=\(2, 4\), c=\(2, 4\)\), "
                    r"got LSTMState\(h=\(2, 4\), c=\(2, 2\)\)"),
    "bidirectional_initial_state_not_a_bidirectional_state": (
        lambda x: jrnn.bidirectional(ELMAN).apply(jrnn.BidirectionalParams(ELMAN_P, ELMAN_P), x,
                                                  initial_state=(None, None)), TypeError,
        r"expected initial_state to be a BidirectionalState\(forward, backward\), got tuple"),
    "deep_initial_state_wrong_count": (
        lambda x: jrnn.deep([ELMAN, ELMAN]).apply((ELMAN_P, ref.random_params(ELMAN, 3, 4)), x,
                                                  initial_state=(None,)), ValueError,
        r"expected initial_state to be None or a tuple of 2 per-layer states, got tuple"),
    "deep_params_wrong_count": (
        lambda x: jrnn.deep([ELMAN, ELMAN]).apply((ELMAN_P,), x), ValueError,
        r"expected params for 2 layers \(a tuple\), got tuple of length 1"),
    # lengths
    "lengths_too_many": (
        lambda x: jrnn.scan(LSTM, LSTM_P, x, lengths=_int_lengths(x, (3,))), ValueError,
        r"expected lengths of shape \(2,\), one per sequence, got shape \(3,\)"),
    "lengths_2d": (
        lambda x: jrnn.scan(LSTM, LSTM_P, x, lengths=_int_lengths(x, (B, T))), ValueError,
        r"expected lengths of shape \(2,\), one per sequence, got shape \(2, 5\)"),
    "lengths_float": (
        lambda x: jrnn.scan(LSTM, LSTM_P, x, lengths=x[:, 0, 0]), TypeError,
        r"expected integer lengths, got dtype float32"),
    "bidirectional_lengths_float": (
        lambda x: jrnn.bidirectional(ELMAN).apply(jrnn.BidirectionalParams(ELMAN_P, ELMAN_P), x,
                                                  lengths=x[:, 0, 0]), TypeError,
        r"expected integer lengths, got dtype float32"),
    # merges
    "unknown_merge": (
        lambda x: jrnn.bidirectional(ELMAN, merge="max"), ValueError,
        r"expected merge to be one of \['concat', 'mean', 'product', 'sum'\].*got 'max'"),
    "merge_not_callable": (
        lambda x: jrnn.bidirectional(ELMAN, merge=3), TypeError,
        r"expected merge to be a string, a merge or a callable, got 3"),
    "bidirectional_of_a_non_cell": (
        lambda x: jrnn.bidirectional("lstm"), TypeError, r"expected forward to be a jrnn cell, got 'lstm'"),
    # sizes
    **{f"{name}_hidden_size_{bad}": (
        lambda x, factory=factory, bad=bad: factory(bad), ValueError if isinstance(bad, int) else TypeError,
        rf"jrnn\.{name}: expected hidden_size to be a positive int, got {bad}")
       for name, factory in (("elman", jrnn.elman), ("lstm", jrnn.lstm), ("gru", jrnn.gru))
       for bad in (0, -1, 2.5)},
    "lstm_proj_size_not_below_hidden": (
        lambda x: jrnn.lstm(4, proj_size=4), ValueError, r"expected proj_size < hidden_size \(4\), got 4"),
    "lstm_proj_size_negative": (
        lambda x: jrnn.lstm(4, proj_size=-2), ValueError, r"expected proj_size to be a positive int, got -2"),
    "seed_merge_output_size_0": (
        lambda x: jrnn.seed_merge(0), ValueError, r"expected output_size to be a positive int, got 0"),
    "readout_output_size_float": (
        lambda x: jrnn.readout(1.5), TypeError, r"expected output_size to be a positive int, got 1\.5"),
    "init_input_size_0": (
        lambda x: jrnn.gru(3).init(jax.random.key(0), 0), ValueError,
        r"expected input_size to be a positive int, got 0"),
    "pytorch_uniform_hidden_size_0": (
        lambda x: jrnn.init.pytorch_uniform(0), ValueError, r"expected a positive int hidden_size, got 0"),
    # deep
    "residual_mismatched_sizes": (
        lambda x: jrnn.deep([jrnn.elman(4), jrnn.elman(5)], residual=True), ValueError,
        r"residual connections need layer 2's input size \(4\) to equal its output size \(5\)"),
    "residual_after_concat_bidirectional": (
        lambda x: jrnn.deep([jrnn.bidirectional(jrnn.elman(4)), jrnn.elman(4)], residual=True), ValueError,
        r"layer 2's input size \(8\) to equal its output size \(4\)"),
    **{f"dropout_{bad}": (
        lambda x, bad=bad: jrnn.deep([ELMAN, ELMAN], dropout=bad), ValueError,
        rf"expected 0 <= dropout < 1, got {bad}") for bad in (-0.1, 1.0, 1.5)},
    "deep_no_layers": (lambda x: jrnn.deep([]), ValueError, r"expected at least one layer, got none"),
    "deep_layer_not_a_layer": (
        lambda x: jrnn.deep([ELMAN, 3]), TypeError,
        r"expected each layer to be a jrnn cell or sequence layer, got 3"),
}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("name", list(CASES))
def test_bad_argument_error_names_expected_and_received(name, jit):
    fn, exc, match = CASES[name]
    x = jnp.ones((B, T, I), jnp.float32)
    with pytest.raises(exc, match=match):
        (jax.jit(fn) if jit else fn)(x)
