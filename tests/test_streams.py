"""Stateful training on one long stream: ``jrnn.stream_windows`` against its formula, the carried state against
one pass over the whole stream, a train loop that learns, and ``jrnn.bits_per_token`` against a step loop."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference as ref

import jrnn

V = 5


def test_stream_windows_follow_the_formula_and_leave_out_only_the_tail():
    tokens = np.arange(1, 48)  # n = 47: S = 3 streams of L = 15 pairs, N = 3 windows of W = 4, 3 pairs left out each
    inputs, targets = jrnn.stream_windows(tokens, num_streams=3, window=4)
    assert inputs.shape == targets.shape == (3, 3, 4)
    for i in range(3):
        for s in range(3):
            for t in range(4):
                assert inputs[i, s, t] == tokens[s * 15 + i * 4 + t]
                assert targets[i, s, t] == tokens[s * 15 + i * 4 + t + 1]
    with pytest.raises(ValueError, match=r"at least num_streams \* window \+ 1 = 13 tokens"):
        jrnn.stream_windows(tokens[:12], num_streams=3, window=4)
    with pytest.raises(ValueError, match="1-D integer array"):
        jrnn.stream_windows(tokens.reshape(1, -1), num_streams=1, window=4)
    with pytest.raises(ValueError, match="num_streams to be a positive int"):
        jrnn.stream_windows(tokens, num_streams=0, window=4)


@functools.cache
def _model():
    model = jrnn.language_model(jrnn.deep([jrnn.lstm(6), jrnn.elman(5)]), V, 3)
    return model, ref.random_params(_Init(model), 0, None, scale=0.5)


class _Init:
    def __init__(self, model):
        self.model = model

    def init(self, key, input_size):
        return self.model.init(key)


def test_carrying_the_final_state_across_windows_is_one_pass_over_each_stream():
    model, params = _model()
    tokens = np.random.default_rng(1).integers(0, V, 3 * 4 * 5 + 1)
    inputs, _ = jrnn.stream_windows(tokens, num_streams=3, window=4)  # [5, 3, 4]
    apply = jax.jit(model.apply)
    state, pieces = model.initial_state((3,)), []
    for window in inputs:
        logits, state = apply(params, window, initial_state=state)
        pieces.append(logits)
    whole, whole_state = apply(params, np.concatenate(list(inputs), axis=1))  # each stream in one pass
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole, rtol=2e-5, atol=2e-5)
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(whole_state), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_a_stateful_train_loop_learns_a_pattern_longer_than_its_window():
    # The stream repeats the period-7 pattern below; windows hold 2 tokens. After "1 2" comes 3 or 4, which only
    # the token before (0 or 3) decides, so a model that sees at most 2 tokens of context cannot do better than
    # 2/7 = 0.29 bits per token (measured: 0.287 when the state is reset every window); carrying the state
    # across windows lets it see the whole past.
    pattern = np.array([0, 1, 2, 3, 1, 2, 4])
    inputs, targets = jrnn.stream_windows(np.tile(pattern, 500), num_streams=8, window=2)
    model = jrnn.language_model(jrnn.lstm(16), V, 8)
    params = model.init(jax.random.key(0))
    trainer = jrnn.train_step(jrnn.supervised_loss(model.apply, jrnn.masked_cross_entropy), optax.adam(3e-2),
                              max_norm=5.0)
    opt_state, state = trainer.init(params), model.initial_state((8,))
    for i in range(len(inputs)):
        batch = jrnn.Batch(inputs[i], targets[i], initial_state=state)
        params, opt_state, metrics = trainer.step(params, opt_state, batch, None)
        state = metrics["aux"]["final_state"]  # its gradient is stopped: one update per window
    assert jrnn.bits_per_token(model, params, np.tile(pattern, 20), window=7) < 0.15  # measured 0.077


def _step_loop_bits(model, params, tokens):
    """-log2 p(w_t | w_<t) summed in float64 over a Python loop of ``model.step`` (batch 1), from the zero state."""
    step = jax.jit(model.step)
    state, total = model.initial_state((1,)), 0.0
    for t in range(len(tokens) - 1):
        state, logits = step(params, state, tokens[t:t + 1])
        logits = np.asarray(logits[0], np.float64)
        log_z = logits.max() + math.log(np.exp(logits - logits.max()).sum())
        total += (log_z - logits[tokens[t + 1]]) / math.log(2.0)
    return total


def test_bits_per_token_equals_a_step_loop_over_the_stream_and_over_each_part():
    model, params = _model()
    tokens = np.random.default_rng(2).integers(0, V, 40)
    n = len(tokens)
    one = jrnn.bits_per_token(model, params, tokens, window=6)  # 6 does not divide the 39 predictions
    np.testing.assert_allclose(one, _step_loop_bits(model, params, tokens) / (n - 1), rtol=1e-5)
    # Three parts of ceil(39 / 3) = 13 predictions, each from the zero state; part s starts at token 13 s.
    three = jrnn.bits_per_token(model, params, tokens, num_streams=3, window=5)
    parts = sum(_step_loop_bits(model, params, tokens[13 * s:13 * s + 14]) for s in range(3))
    np.testing.assert_allclose(three, parts / (n - 1), rtol=1e-5)


def test_bits_per_token_of_a_constant_model_is_the_cross_entropy_of_its_bias():
    model = jrnn.language_model(jrnn.gru(3), V, 2)
    params = jax.tree_util.tree_map(jnp.zeros_like, model.init(jax.random.key(0)))
    b = np.log(np.array([0.5, 0.2, 0.1, 0.1, 0.1]))
    params = params._replace(readout=params.readout._replace(b=jnp.asarray(b, jnp.float32)))
    tokens = np.array([0, 0, 1, 2, 3, 4, 0, 1, 1, 0, 4])
    expected = -np.mean(b[tokens[1:]]) / math.log(2.0)  # the first token is context only
    np.testing.assert_allclose(jrnn.bits_per_token(model, params, tokens, num_streams=2, window=3), expected,
                               rtol=1e-6)
    with pytest.raises(ValueError, match=r"tokens in the vocabulary \[0, 5\), got min 0, max 5"):
        jrnn.bits_per_token(model, params, np.r_[tokens, 5])
    with pytest.raises(ValueError, match="at least 2 tokens"):
        jrnn.bits_per_token(model, params, tokens[:1])
