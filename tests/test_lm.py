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


# ----------------------------------------------------------------------------------------------------------------
# Embedding and output dropout (PyTorch's word_language_model RNNModel)
# ----------------------------------------------------------------------------------------------------------------

def test_without_a_key_dropout_is_exactly_the_model_without_it():
    stack = jrnn.deep([jrnn.lstm(4), jrnn.gru(4)], dropout=0.5)
    plain = jrnn.language_model(stack, V, 4, tie=True)
    dropped = jrnn.language_model(stack, V, 4, tie=True, embed_dropout=0.5, output_dropout=0.3)
    params = ref.random_params(_Init(plain), 8, None)
    tokens = np.random.default_rng(9).integers(0, V, (B, T))
    lengths = jnp.array([T, 2, 4])
    for a, b in zip(jax.tree_util.tree_leaves(plain.apply(params, tokens, lengths=lengths)),
                    jax.tree_util.tree_leaves(dropped.apply(params, tokens, lengths=lengths)), strict=True):
        np.testing.assert_array_equal(a, b)
    state = plain.initial_state((B,))
    for a, b in zip(jax.tree_util.tree_leaves(plain.step(params, state, tokens[:, 0])),
                    jax.tree_util.tree_leaves(dropped.step(params, state, tokens[:, 0])), strict=True):
        np.testing.assert_array_equal(a, b)  # generation never drops


def _see_through_model(embed_dropout, output_dropout, width=32):
    """A model whose logits are its dropped inputs: ``E = 1``, an identity Elman (``U = I``, ``W = 0``, no bias, no
    activation) and an identity readout, so ``logits = drop_o(drop_e(1))``: the masks made visible."""
    network = jrnn.elman(width, lambda x: x, bias=False)
    model = jrnn.language_model(network, width, width, embed_dropout=embed_dropout, output_dropout=output_dropout)
    eye = jnp.eye(width)
    params = jrnn.LanguageModelParams(jnp.ones((width, width)), jrnn.ElmanParams(eye, jnp.zeros_like(eye), None, None),
                                      jrnn.ReadoutParams(eye, jnp.zeros((width,))))
    return model, params


@pytest.mark.parametrize("p_e, p_o", [(0.3, 0.0), (0.0, 0.6), (0.25, 0.5)])
def test_dropout_masks_have_the_rate_and_kept_entries_are_scaled_exactly(p_e, p_o):
    model, params = _see_through_model(p_e, p_o)
    tokens = np.random.default_rng(10).integers(0, 32, (64, 64))
    logits, _ = jax.jit(model.apply)(params, tokens, key=jax.random.key(11))  # 131,072 entries
    logits = np.asarray(logits)
    keep = 1.0 - (1.0 - p_e) * (1.0 - p_o)
    dropped = np.mean(logits == 0)
    sigma = np.sqrt(keep * (1 - keep) / logits.size)
    assert abs(dropped - keep) < 5 * sigma, (dropped, keep)
    scale = np.float32(1.0)
    for p in (p_e, p_o):
        if p:
            scale = scale / np.float32(1.0 - p)
    np.testing.assert_array_equal(logits[logits != 0], scale)  # inverted dropout, exactly 1 / (1 - p)
    # A fresh mask at every step and feature (as torch.nn.Dropout), not one per sequence.
    assert np.mean((logits[:, 1:] == 0) == (logits[:, :-1] == 0)) < 0.9


def test_different_keys_give_different_outputs_and_equal_keys_equal_ones():
    model = jrnn.language_model(jrnn.lstm(4), V, 4, tie=True, embed_dropout=0.3, output_dropout=0.3)
    params = model.init(jax.random.key(0))
    tokens = np.random.default_rng(12).integers(0, V, (B, T))
    a, _ = model.apply(params, tokens, key=jax.random.key(1))
    b, _ = model.apply(params, tokens, key=jax.random.key(2))
    c, _ = model.apply(params, tokens, key=jax.random.key(1))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, c)


def _torch_rnn_model(torch, ntoken, nhid, nlayers, dropout):
    """PyTorch's examples/word_language_model ``RNNModel`` (LSTM, tied), written with torch.nn."""

    class RNNModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = torch.nn.Dropout(dropout)
            self.encoder = torch.nn.Embedding(ntoken, nhid)
            self.rnn = torch.nn.LSTM(nhid, nhid, nlayers, dropout=dropout)
            self.decoder = torch.nn.Linear(nhid, ntoken)
            self.decoder.weight = self.encoder.weight  # tied

        def forward(self, input, hidden):  # input [T, B]
            emb = self.drop(self.encoder(input))
            output, hidden = self.rnn(emb, hidden)
            output = self.drop(output)
            return self.decoder(output), hidden

    torch.manual_seed(0)
    return RNNModel()


def _jrnn_rnn_model(module, dropout):
    """The same model in jrnn, the weights copied: ``E`` (= the tied decoder weight), the LSTM via from_torch."""
    fn, network_params = jrnn.from_torch(module.rnn)
    ntoken, nhid = module.encoder.weight.shape
    model = jrnn.language_model(fn.network, ntoken, nhid, tie=True, embed_dropout=dropout, output_dropout=dropout)
    E = jnp.asarray(module.encoder.weight.detach().numpy())
    b = jnp.asarray(module.decoder.bias.detach().numpy())
    return model, jrnn.LanguageModelParams(E, network_params, jrnn.ReadoutParams(None, b))


def test_eval_mode_equals_pytorch_word_language_model_with_tied_weights():
    torch = pytest.importorskip("torch")
    ntoken, nhid, nlayers, p = 11, 6, 2, 0.5
    module = _torch_rnn_model(torch, ntoken, nhid, nlayers, p).eval()
    model, params = _jrnn_rnn_model(module, p)
    assert model.network.dropout == p and params.readout.V is None
    tokens = np.random.default_rng(13).integers(0, ntoken, (B, T))
    h0 = np.random.default_rng(14).normal(size=(2, nlayers, B, nhid)).astype(np.float32)
    with torch.no_grad():
        logits_t, (h_n, c_n) = module(torch.as_tensor(tokens.T), (torch.as_tensor(h0[0]), torch.as_tensor(h0[1])))
    s0 = tuple(jrnn.LSTMState(jnp.asarray(h0[0, l]), jnp.asarray(h0[1, l])) for l in range(nlayers))
    logits, final = model.apply(params, tokens, initial_state=s0)  # no key: evaluation
    np.testing.assert_allclose(logits, logits_t.numpy().transpose(1, 0, 2), rtol=1e-5, atol=1e-5)
    for l in range(nlayers):
        np.testing.assert_allclose(final[l].h, h_n[l].numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(final[l].c, c_n[l].numpy(), rtol=1e-5, atol=1e-5)


def test_train_mode_equals_the_written_formula_with_the_masks_of_the_documented_key_split():
    # logits = E (m_o ⊙ LSTM_2(m_h ⊙ LSTM_1(m_e ⊙ E[w] / (1-p)) / (1-p)) / (1-p)) + b, in PyTorch, with jrnn's
    # masks drawn from the key as documented: k_e, k_network, k_o = split(key, 3) (LanguageModel.apply), then
    # Deep's k_l = split(k_network, L)[l], (k_drop, k_layer) = split(k_l).
    torch = pytest.importorskip("torch")
    ntoken, nhid, nlayers, p = 11, 6, 2, 0.4
    module = _torch_rnn_model(torch, ntoken, nhid, nlayers, p)
    model, params = _jrnn_rnn_model(module, p)
    tokens = np.random.default_rng(15).integers(0, ntoken, (B, T))
    key = jax.random.key(16)
    logits, _ = model.apply(params, tokens, key=key)

    k_e, k_network, k_o = jax.random.split(key, 3)
    k_drop = jax.random.split(jax.random.split(k_network, nlayers)[1])[0]  # the dropout before layer 2
    mask = {name: torch.as_tensor(np.asarray(jax.random.bernoulli(k, 1 - p, (B, T, nhid)), np.float32))
            for name, k in (("e", k_e), ("h", k_drop), ("o", k_o))}
    layers = []
    for l in range(nlayers):
        single = torch.nn.LSTM(nhid, nhid, batch_first=True)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(single, f"{name}_l0").copy_(getattr(module.rnn, f"{name}_l{l}"))
        layers.append(single)
    with torch.no_grad():
        x = module.encoder(torch.as_tensor(tokens)) * mask["e"] / (1 - p)
        h, _ = layers[0](x)
        h, _ = layers[1](h * mask["h"] / (1 - p))
        expected = module.decoder(h * mask["o"] / (1 - p))
    np.testing.assert_allclose(logits, expected.numpy(), rtol=1e-5, atol=1e-5)
    assert float(mask["e"].mean()) < 0.9 and float(mask["o"].mean()) < 0.9  # the masks do drop


def test_tied_dropout_gradients_are_finite_and_reach_every_parameter():
    model = jrnn.language_model(jrnn.deep([jrnn.lstm(4)] * 2, dropout=0.2), V, 4, tie=True, embed_dropout=0.2,
                                output_dropout=0.2)
    params = model.init(jax.random.key(0))
    tokens = np.random.default_rng(17).integers(0, V, (B, T + 1))
    batch = jrnn.Batch(tokens[:, :-1], tokens[:, 1:])
    loss_fn = jrnn.supervised_loss(model.apply, jrnn.masked_cross_entropy)
    grads = jax.grad(lambda p: loss_fn(p, batch, jax.random.key(19))[0])(params)
    for leaf in jax.tree_util.tree_leaves(grads):
        assert np.all(np.isfinite(leaf)) and np.any(leaf != 0)


def test_bad_dropout_rates_name_what_was_expected():
    for name in ("embed_dropout", "output_dropout"):
        for bad in (1.0, -0.1, 1.5):
            with pytest.raises(ValueError, match=rf"expected 0 <= {name} < 1 \(a dropout rate\), got {bad}"):
                jrnn.language_model(jrnn.lstm(4), V, 4, **{name: bad})
        for bad in ("0.5", True, None):
            with pytest.raises(TypeError, match=rf"expected {name} to be a number in \[0, 1\), got {bad!r}"):
                jrnn.language_model(jrnn.lstm(4), V, 4, **{name: bad})
