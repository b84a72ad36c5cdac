"""``jrnn.language_model``: embedding, network and readout against NumPy; step against apply; tying; errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

import jrnn

V, B, T = 7, 3, 5
TOL = dict(rtol=2e-5, atol=2e-5)

CONFIGS = {  # name -> (network, embed_size, tie, NumPy step of the network's params)
    "lstm_embedding": (jrnn.lstm(4), 3, False, lambda p: (lambda s, x: ref.lstm_step(p, s, x))),
    "gru_tied": (jrnn.gru(3), 3, True, lambda p: (lambda s, x: ref.gru_step(p, s, x))),
    "elman_one_hot": (jrnn.elman(4), None, False, lambda p: (lambda s, x: ref.elman_step(p, s, x))),
}


@functools.cache
def _model(name):
    network, embed_size, tie, _ = CONFIGS[name]
    model = jrnn.language_model(network, V, embed_size, tie=tie)
    return model, jax.jit(model.apply)


def _tokens(seed, lengths):
    """Random ids, with out-of-vocabulary garbage at the padded steps (which must never be read)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, V, (B, T))
    tokens[np.arange(T)[None, :] >= np.asarray(lengths)[:, None]] = -99
    return tokens


def _numpy_lm(name, params, tokens, lengths, s0):
    _, embed_size, tie, ref_step = CONFIGS[name]
    step = ref_step(params.network)
    E = None if params.embedding is None else ref.f64(params.embedding)
    Vm = E if tie else ref.f64(params.readout.V)
    b = ref.f64(params.readout.b)
    logits = np.zeros((B, T, V))
    finals = []
    for row, state in enumerate(ref.state_rows(s0, B)):
        for t in range(lengths[row]):
            x = np.eye(V)[tokens[row, t]] if E is None else E[tokens[row, t]]
            state, y = step(state, x)
            logits[row, t] = Vm @ y + b
        finals.append(state)
    return logits, ref.stack_states(finals)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_apply_is_embedding_then_network_then_readout_in_numpy(name):
    model, apply = _model(name)
    params = ref.random_params(_Init(model), 0, None)
    network, embed_size, tie, _ = CONFIGS[name]
    assert (params.embedding is None) == (embed_size is None)
    assert (params.readout.V is None) == tie
    s0 = ref.random_state(model, B, 1)
    lengths = np.array([T, 2, 4])
    tokens = _tokens(2, lengths)
    logits, final = apply(params, tokens, lengths=jnp.asarray(lengths), initial_state=s0)
    logits_np, final_np = _numpy_lm(name, params, tokens, lengths, s0)
    np.testing.assert_allclose(logits, logits_np, **TOL)  # zeros at the padded steps, too
    ref.assert_states_close(final, final_np, **TOL)


class _Init:
    """Adapts ``model.init(key)`` to ``reference.random_params``'s ``init(key, input_size)``."""

    def __init__(self, model):
        self.model = model

    def init(self, key, input_size):
        return self.model.init(key)


def test_step_scanned_in_a_python_loop_equals_apply_for_a_tied_stack_under_truncated_bptt():
    stack = jrnn.deep([jrnn.lstm(4), jrnn.gru(4)], residual=True)
    model = jrnn.language_model(jrnn.truncated_bptt(stack, 2), V, 4, tie=True)
    params = ref.random_params(_Init(model), 3, None)
    s0 = ref.random_state(model, B, 4)
    tokens = np.random.default_rng(5).integers(0, V, (B, T))
    logits, final = jax.jit(model.apply)(params, tokens, initial_state=s0)
    step, state = jax.jit(model.step), s0
    for t in range(T):
        state, step_logits = step(params, state, tokens[:, t])
        np.testing.assert_allclose(step_logits, logits[:, t], **TOL)
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(final), strict=True):
        np.testing.assert_allclose(a, b, **TOL)


def test_tied_gradient_is_the_sum_of_the_embedding_and_readout_gradients_of_the_untied_model():
    network = jrnn.gru(3)
    tied = jrnn.language_model(network, V, 3, tie=True)
    untied = jrnn.language_model(network, V, 3)
    params = ref.random_params(_Init(tied), 6, None)
    untied_params = params._replace(readout=params.readout._replace(V=params.embedding))
    tokens = np.random.default_rng(7).integers(0, V, (B, T + 1))
    lengths = jnp.array([T, 3, 1])

    def loss(model, params):
        logits, _ = model.apply(params, tokens[:, :-1], lengths=lengths)
        return jrnn.masked_cross_entropy(logits, tokens[:, 1:], lengths)

    g_tied, g_untied = jax.jit(lambda p, q: (jax.grad(functools.partial(loss, tied))(p),
                                             jax.grad(functools.partial(loss, untied))(q)))(params, untied_params)
    np.testing.assert_allclose(g_tied.embedding, g_untied.embedding + g_untied.readout.V, **TOL)
    np.testing.assert_allclose(g_tied.readout.b, g_untied.readout.b, **TOL)
    assert not np.allclose(g_untied.readout.V, 0.0)


def test_bad_arguments_name_what_was_expected():
    with pytest.raises(ValueError, match="pass embed_size=4"):
        jrnn.language_model(jrnn.lstm(4), V, tie=True)
    with pytest.raises(ValueError, match="embed_size D equal to the network's output size H = 4; got embed_size=3"):
        jrnn.language_model(jrnn.lstm(4), V, 3, tie=True)
    with pytest.raises(ValueError, match="vocab_size to be a positive int"):
        jrnn.language_model(jrnn.lstm(4), 0)
    with pytest.raises(ValueError, match="embed_size to be a positive int"):
        jrnn.language_model(jrnn.lstm(4), V, -2)
    with pytest.raises(ValueError, match="one-directional network.*bidirectional layer cannot step"):
        jrnn.language_model(jrnn.bidirectional(jrnn.lstm(4)), V)
    with pytest.raises(ValueError, match=r"one-directional network.*layer 2 \(RNN\) cannot step: a reverse RNN"):
        jrnn.language_model(jrnn.deep([jrnn.gru(3), jrnn.RNN(jrnn.gru(3), reverse=True)]), V)
    with pytest.raises(TypeError, match="expected network to be a jrnn cell"):
        jrnn.language_model("lstm", V)

    model, _ = _model("lstm_embedding")
    params = jax.eval_shape(model.init, jax.random.key(0))
    with pytest.raises(TypeError, match="expected integer tokens"):
        model.apply(params, jnp.zeros((B, T)))
    with pytest.raises(ValueError, match=r"expected tokens of shape \[batch, time\]"):
        model.apply(params, jnp.zeros((T,), jnp.int32))
    with pytest.raises(ValueError, match=r"tokens in the vocabulary \[0, 7\), got 1 outside it \(e.g. 7"):
        model.apply(params, _with(np.full((B, T), 3), (1, 2), 7))
    with pytest.raises(ValueError, match=r"token in the vocabulary \[0, 7\), got 1 outside it \(e.g. -1"):
        model.step(params, model.initial_state((B,)), np.array([0, -1, 2]))
    with pytest.raises(ValueError, match=r"expected token of shape \[batch\]"):
        model.step(params, model.initial_state((B,)), np.zeros((B, 1), np.int32))


def _with(a, index, value):
    a = a.copy()
    a[index] = value
    return a
