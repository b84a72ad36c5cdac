"""jrnn.flax: the NNX and Linen modules against the pure jrnn layers they wrap, against each other and against
PyTorch (through jrnn.from_torch), and in use: nnx.Sequential, @nn.compact, jit, grad, nnx.Optimizer, optax,
variable lengths and dropout RNGs.

Compilation is nearly all of these tests' time on CPU, so each test traces what it compares into one ``jit``.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

import jrnn
import jrnn.flax  # noqa: E402

B, T, F = 3, 6, 4
H = 4  # every hidden size: the eager initialisers compile once per shape
ATOL = 1e-5
LENGTHS = jnp.array([6, 2, 4])

# (NNX module, Linen module, the pure layer both wrap), built from the same arguments.
CONFIGS = {
    "rnn_lstm": (lambda **kw: jrnn.flax.nnx.RNN(jrnn.lstm(H), F, **kw),
                 lambda: jrnn.flax.linen.RNN(jrnn.lstm(H)),
                 jrnn.RNN(jrnn.lstm(H))),
    "rnn_gru_reverse": (lambda **kw: jrnn.flax.nnx.RNN(jrnn.gru(H), F, reverse=True, **kw),
                        lambda: jrnn.flax.linen.RNN(jrnn.gru(H), reverse=True),
                        jrnn.RNN(jrnn.gru(H), reverse=True)),
    "bidirectional_sum": (lambda **kw: jrnn.flax.nnx.Bidirectional(jrnn.elman(H), F, merge="sum", **kw),
                          lambda: jrnn.flax.linen.Bidirectional(jrnn.elman(H), merge="sum"),
                          jrnn.bidirectional(jrnn.elman(H), merge="sum")),
    "deep_bilstm_gru_dropout": (
        lambda **kw: jrnn.flax.nnx.Deep([jrnn.bidirectional(jrnn.lstm(H)), jrnn.gru(H)], F, dropout=0.5,
                                        deterministic=True, **kw),
        lambda: jrnn.flax.linen.Deep((jrnn.bidirectional(jrnn.lstm(H)), jrnn.gru(H)), dropout=0.5,
                                     deterministic=True),
        jrnn.deep([jrnn.bidirectional(jrnn.lstm(H)), jrnn.gru(H)], dropout=0.5)),
}


def inputs(seed=0, batch=B):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((batch, T, F)), jnp.float32)


def init(layer, seed=1):
    return layer.init(jax.random.key(seed), F)  # eagerly: under jit the orthogonal initialiser compiles slowly


def assert_trees_close(a, b, atol=ATOL):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


def differ(a, b):
    return float(jnp.abs(a - b).max()) > 1e-3


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_flax_modules_equal_pure_layer_and_each_other(name):
    make_nnx, make_linen, layer = CONFIGS[name]

    @jax.jit
    def outputs(params, xs):
        want = layer.apply(params, xs, lengths=LENGTHS)
        nnx_out = make_nnx(params=params).run(xs, lengths=LENGTHS)
        linen_out = make_linen().apply({"params": {"rnn": params}}, xs, lengths=LENGTHS, method="run")
        return want, nnx_out, linen_out

    want, nnx_out, linen_out = outputs(init(layer), inputs())
    assert_trees_close(nnx_out, want)
    assert_trees_close(linen_out, want)
    assert_trees_close(linen_out, nnx_out)


def test_flax_module_call_is_the_outputs_of_run():
    @jax.jit
    def outputs(params, xs):
        return (jrnn.scan(jrnn.lstm(H), params, xs, lengths=LENGTHS)[0],
                jrnn.flax.nnx.RNN(jrnn.lstm(H), F, params=params)(xs, lengths=LENGTHS),
                jrnn.flax.linen.RNN(jrnn.lstm(H)).apply({"params": {"rnn": params}}, xs, lengths=LENGTHS))

    want, nnx_ys, linen_ys = outputs(init(jrnn.RNN(jrnn.lstm(H))), inputs())
    assert_trees_close(nnx_ys, want)
    assert_trees_close(linen_ys, want)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_flax_modules_initialise_the_pure_parameter_pytree(name):
    make_nnx, make_linen, layer = CONFIGS[name]
    want = jax.eval_shape(lambda key: layer.init(key, F), jax.random.key(0))
    nnx_params = nnx.eval_shape(lambda: make_nnx(rngs=nnx.Rngs(0))).params
    linen_params = jax.eval_shape(make_linen().init, jax.random.key(0), inputs())["params"]["rnn"]
    for params in (nnx_params, linen_params):
        assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(want)  # NamedTuple types too
        assert jax.tree_util.tree_map(jnp.shape, params) == jax.tree_util.tree_map(jnp.shape, want)


def test_flax_modules_load_from_torch_and_match_torch():
    torch.manual_seed(0)
    module = torch.nn.LSTM(F, H, bidirectional=True, batch_first=True)
    xs = inputs()
    with torch.no_grad():
        want = module(torch.tensor(np.asarray(xs)))[0].numpy()
    fn, params = jrnn.from_torch(module)

    @jax.jit
    def outputs(params, xs):
        return (jrnn.flax.nnx.Recurrent(fn.network, F, params=params)(xs),
                jrnn.flax.linen.Recurrent(fn.network).apply({"params": {"rnn": params}}, xs))

    nnx_ys, linen_ys = outputs(params, xs)
    np.testing.assert_allclose(np.asarray(nnx_ys), want, atol=1e-5)
    np.testing.assert_allclose(np.asarray(linen_ys), want, atol=1e-5)

    # load() into an existing module writes its nnx.Params in place: nnx.state then holds torch's weights under
    # the pure API's names.
    fresh = jrnn.flax.nnx.Deep([jrnn.bidirectional(jrnn.lstm(H))], F, rngs=nnx.Rngs(3))
    variables = jax.tree_util.tree_leaves(fresh.rnn, is_leaf=lambda v: isinstance(v, nnx.Variable))
    fresh.load(params)
    assert_trees_close(fresh.params, params, atol=0)
    assert variables == jax.tree_util.tree_leaves(fresh.rnn, is_leaf=lambda v: isinstance(v, nnx.Variable))
    state = nnx.state(fresh, nnx.Param)
    np.testing.assert_array_equal(np.asarray(state["rnn"][0]["backward"]["U"][...]),
                                  module.weight_ih_l0_reverse.detach().numpy())


def test_flax_nnx_state_update_split_merge_round_trip():
    model = jrnn.flax.nnx.Bidirectional(jrnn.lstm(H), F, rngs=nnx.Rngs(0))
    before = model.params
    graphdef, state = nnx.split(model)
    clone = nnx.merge(graphdef, jax.tree_util.tree_map(lambda x: x, state))
    assert isinstance(clone.params, jrnn.BidirectionalParams) and isinstance(clone.params.forward, jrnn.LSTMParams)
    assert_trees_close(clone.params, before, atol=0)
    nnx.update(model, jax.tree_util.tree_map(lambda x: 2 * x, nnx.state(model)))
    assert_trees_close(model.params, jax.tree_util.tree_map(lambda x: 2 * x, before), atol=0)
    assert sorted(nnx.state(model, nnx.Param)["rnn"]["forward"]) == ["U", "W", "b_U", "b_W"]


def test_flax_nnx_sequential_equals_manual_composition():
    rngs = nnx.Rngs(0)
    model = nnx.Sequential(jrnn.flax.nnx.RNN(jrnn.gru(H), F, rngs=rngs), lambda ys: ys[:, -1],
                           nnx.Linear(H, 2, rngs=rngs))

    @nnx.jit
    def outputs(model, xs):
        rnn, _, head = model.layers
        return model(xs), head(jrnn.RNN(jrnn.gru(H)).apply(rnn.params, xs)[0][:, -1])

    got, want = outputs(model, inputs())
    assert_trees_close(got, want)


class LinenTagger(nn.Module):
    """A Linen @compact model with a jrnn module inside."""

    @nn.compact
    def __call__(self, xs, lengths):
        h = jrnn.flax.linen.Bidirectional(jrnn.gru(H), merge="sum")(xs, lengths=lengths)
        return nn.Dense(2)(h)


def test_flax_linen_compact_submodule_equals_pure_layer():
    model = LinenTagger()
    xs = inputs()
    shapes = jax.eval_shape(model.init, jax.random.key(0), xs, LENGTHS)  # the names and shapes Linen gives
    rng = np.random.default_rng(1)
    variables = jax.tree_util.tree_map(lambda s: jnp.asarray(rng.normal(size=s.shape), jnp.float32), shapes)

    @jax.jit
    def outputs(variables, xs):
        p = variables["params"]
        hidden = jrnn.bidirectional(jrnn.gru(H), merge="sum").apply(p["Bidirectional_0"]["rnn"], xs,
                                                                    lengths=LENGTHS)[0]
        dense = p["Dense_0"]
        return model.apply(variables, xs, LENGTHS), hidden @ dense["kernel"] + dense["bias"][None, None]

    got, want = outputs(variables, xs)
    assert_trees_close(got, want)


def regression_data(seed=0, batch=8):
    """Targets a smooth function of the inputs, with variable lengths."""
    xs = inputs(seed, batch)
    targets = jnp.tanh(jnp.cumsum(xs[..., :2], axis=1) / 2)
    lengths = jnp.asarray(np.random.default_rng(seed).integers(2, T + 1, batch))
    return xs, targets, lengths


def masked_mse(ys, targets, lengths):
    mask = (jnp.arange(T)[None, :] < lengths[:, None])[..., None]
    return jnp.sum(mask * (ys[..., :2] - targets) ** 2) / (2 * jnp.sum(lengths))


def test_flax_nnx_grad_equals_pure_grad_and_optimizer_trains():
    xs, targets, lengths = regression_data()
    model = jrnn.flax.nnx.Deep([jrnn.lstm(H), jrnn.lstm(H)], F, rngs=nnx.Rngs(0))
    layer = model.layer

    def loss(model):
        return masked_mse(model(xs, lengths=lengths), targets, lengths)

    pure_grads = jax.jit(jax.grad(lambda p: masked_mse(layer.apply(p, xs, lengths=lengths)[0], targets, lengths)))(
        model.params)
    optimizer = nnx.Optimizer(model, optax.adam(3e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value, grads

    value, grads = step(model, optimizer)
    # The gradient State, merged into a module of the same graph, reads back as the pure API's NamedTuples.
    assert_trees_close(nnx.merge(nnx.graphdef(model), grads).params, pure_grads)
    losses = [float(value)] + [float(step(model, optimizer)[0]) for _ in range(29)]
    assert losses[-1] < 0.5 * losses[0]
    assert int(optimizer.step[...]) == 30


def test_flax_linen_optax_training_decreases_loss():
    xs, targets, lengths = regression_data()
    model = jrnn.flax.linen.Deep((jrnn.gru(H), jrnn.lstm(H)))
    params = model.init(jax.random.key(0), xs)["params"]
    tx = optax.adam(3e-2)
    opt_state = tx.init(params)

    def loss(params):
        return masked_mse(model.apply({"params": params}, xs, lengths=lengths), targets, lengths)

    @jax.jit
    def step(params, opt_state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    losses = []
    for _ in range(30):
        params, opt_state, value = step(params, opt_state)
        losses.append(float(value))
    assert losses[-1] < 0.5 * losses[0]
    assert type(params["rnn"][0]) is jrnn.GRUParams  # optax kept the pure pytree


DROPOUT_LAYERS = [jrnn.elman(H), jrnn.elman(H)]


def test_flax_nnx_dropout_draws_from_the_dropout_stream_under_jit_and_eval_turns_it_off():
    layer = jrnn.deep(DROPOUT_LAYERS, dropout=0.5)
    model = jrnn.flax.nnx.Deep(DROPOUT_LAYERS, F, dropout=0.5, rngs=nnx.Rngs(params=0, dropout=1))
    xs, key = inputs(), jax.random.key(7)

    @nnx.jit
    def outputs(model, xs, key):
        return model(xs), model(xs), model(xs, rngs=key), model(xs, deterministic=True)

    first, second, keyed, no_dropout = outputs(model, xs, key)
    want_keyed, want_no_dropout = jax.jit(lambda p: (layer.apply(p, xs, key=key)[0], layer.apply(p, xs)[0]))(
        model.params)
    assert differ(first, second)  # the stream advances between calls
    assert differ(first, no_dropout)
    assert_trees_close(keyed, want_keyed)
    assert_trees_close(no_dropout, want_no_dropout)
    assert differ(outputs(model, xs, key)[0], first)  # ... and between jitted calls (its count is NNX state)

    model.eval()
    assert model.deterministic
    assert_trees_close(nnx.jit(lambda model, xs: model(xs))(model, xs), want_no_dropout)
    model.train()
    assert not model.deterministic


def test_flax_linen_dropout_uses_the_dropout_rng():
    model = jrnn.flax.linen.Deep(tuple(DROPOUT_LAYERS), dropout=0.5)
    params = {"rnn": init(jrnn.deep(DROPOUT_LAYERS))}
    xs = inputs()

    @jax.jit
    def outputs(params, xs):
        def train(seed):
            return model.apply({"params": params}, xs, deterministic=False, rngs={"dropout": jax.random.key(seed)})

        return (model.apply({"params": params}, xs, deterministic=True), jrnn.deep(DROPOUT_LAYERS).apply(
            params["rnn"], xs)[0], train(1), train(1), train(2))

    deterministic, no_dropout, one, one_again, two = outputs(params, xs)
    assert_trees_close(deterministic, no_dropout)
    assert_trees_close(one, one_again)
    assert differ(one, two)
    assert differ(one, no_dropout)


RECURRENT_DROPOUT = jrnn.recurrent_dropout(input=0.3, state=0.3, weight=0.3)


def test_flax_recurrent_dropout_draws_from_the_dropout_stream_and_eval_turns_it_off():
    """``jrnn.recurrent_dropout`` on a layer, or on the layers of a stack without dropout between them, is driven by
    the ``dropout`` stream (NNX) or RNG (Linen), as :class:`jrnn.Deep`'s dropout is."""
    layer = jrnn.RNN(jrnn.elman(H), dropout=RECURRENT_DROPOUT)
    model = jrnn.flax.nnx.RNN(jrnn.elman(H), F, dropout=RECURRENT_DROPOUT, rngs=nnx.Rngs(params=0, dropout=1))
    xs, key = inputs(), jax.random.key(7)

    @nnx.jit
    def outputs(model, xs, key):
        return model(xs), model(xs), model(xs, rngs=key), model(xs, deterministic=True)

    first, second, keyed, evaluation = outputs(model, xs, key)
    want_keyed, want_evaluation = jax.jit(lambda p: (layer.apply(p, xs, key=key)[0], layer.apply(p, xs)[0]))(
        model.params)
    assert differ(first, second) and differ(first, evaluation)
    assert_trees_close(keyed, want_keyed)
    assert_trees_close(evaluation, want_evaluation)

    stack = (jrnn.RNN(jrnn.elman(H), dropout=RECURRENT_DROPOUT), jrnn.RNN(jrnn.elman(H), dropout=RECURRENT_DROPOUT))
    linen = jrnn.flax.linen.Deep(stack)  # no dropout between the layers: the layers' own dropout needs the RNG
    params = {"rnn": init(jrnn.deep(stack))}

    @jax.jit
    def linen_outputs(params, xs):
        def train(seed):
            return linen.apply({"params": params}, xs, deterministic=False, rngs={"dropout": jax.random.key(seed)})

        return (linen.apply({"params": params}, xs, deterministic=True), jrnn.deep(stack).apply(params["rnn"], xs)[0],
                train(1), train(1), train(2))

    deterministic, plain, one, one_again, two = linen_outputs(params, xs)
    assert_trees_close(deterministic, plain)
    assert_trees_close(one, one_again)
    assert differ(one, two) and differ(one, plain)
    with pytest.raises(ValueError, match="expected deterministic=True or False"):
        linen.apply({"params": params}, xs)


def test_flax_modules_reject_wrong_params_naming_expected_and_received():
    lstm_params = jrnn.lstm(H).init(jax.random.key(0), F)
    gru_params = jrnn.gru(H).init(jax.random.key(0), F)
    with pytest.raises(ValueError, match=r"nnx.RNN: expected params .*LSTMParams\(U=\(16, 4\).*got GRUParams"):
        jrnn.flax.nnx.RNN(jrnn.lstm(H), F, params=gru_params)
    model = jrnn.flax.nnx.RNN(jrnn.lstm(H), F, params=lstm_params)
    with pytest.raises(ValueError, match=r"load: expected params .*U=\(16, 4\).*got LSTMParams\(U=\(16, 3\)"):
        model.load(jrnn.lstm(H).init(jax.random.key(0), 3))
    with pytest.raises(ValueError, match=r"jrnn.flax.linen.RNN: expected params .*got GRUParams"):
        jrnn.flax.linen.RNN(jrnn.lstm(H)).apply({"params": {"rnn": gru_params}}, inputs())
    with pytest.raises(ValueError, match=r"expected params for Deep .*got \(LSTMParams"):
        jrnn.flax.nnx.Deep([jrnn.lstm(H)] * 2, F, params=(lstm_params,))


def test_flax_modules_reject_bad_construction():
    with pytest.raises(TypeError, match="expected rngs .* or params=; got neither"):
        jrnn.flax.nnx.RNN(jrnn.lstm(H), F)
    with pytest.raises(TypeError, match="expected a jrnn cell"):
        jrnn.flax.nnx.RNN(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), F, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="expected a jrnn sequence layer"):
        jrnn.flax.nnx.Recurrent(jrnn.lstm(H), F, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="expected input_size to be a positive int"):
        jrnn.flax.nnx.RNN(jrnn.lstm(H), 0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="expected xs of shape"):
        jrnn.flax.linen.RNN(jrnn.lstm(H)).init(jax.random.key(0), jnp.ones((T, F)))


def test_flax_dropout_without_key_or_deterministic_is_an_error():
    params = jrnn.deep(DROPOUT_LAYERS).init(jax.random.key(0), F)
    with pytest.raises(ValueError, match="no dropout key"):
        jrnn.flax.nnx.Deep(DROPOUT_LAYERS, F, dropout=0.5, params=params)(inputs())
    with pytest.raises(ValueError, match="expected deterministic=True or False"):
        jrnn.flax.linen.Deep(tuple(DROPOUT_LAYERS), dropout=0.5).apply({"params": {"rnn": params}}, inputs())


def test_flax_classifier_data_labels_are_the_marker_order():
    from experiments import flax_classifier as fc

    tokens, lengths, labels = fc.marker_order(np.random.default_rng(0), 200, min_len=5, max_len=12, fillers=4)
    assert tokens.shape == (200, 12) and set(np.unique(lengths)) <= set(range(5, 13))
    for row, n, label in zip(tokens, lengths, labels):
        assert np.all(row[n:] == fc.PAD) and np.all(row[:n] != fc.PAD)
        markers = [int(t) - 1 for t in row[:n] if 1 <= t <= fc.MARKERS]  # in order of appearance
        assert tuple(markers) == fc.ORDERS[label]
    assert set(labels) == set(range(6))


def test_flax_classifier_experiment_runs_and_records(tmp_path, monkeypatch):
    from experiments import _common
    from experiments import flax_classifier as fc

    tiny = dict(min_len=3, max_len=6, fillers=3, embed=4, hidden=4, layers=1, dropout=0.1, batch=8, steps=3,
                lr=1e-2, test=16)
    monkeypatch.setitem(fc.PROFILES, "quick", tiny)
    monkeypatch.setattr(_common, "progress", lambda iterable, **kw: iterable)
    result = fc.run("quick", 0, tmp_path)
    assert result["experiment"] == "flax_classifier"
    assert [row["model"] for row in result["rows"]] == ["bi-lstm", "bag-of-embeddings"]
    for row in result["rows"]:
        assert 0.0 <= row["accuracy"] <= 1.0 and np.isfinite(row["final_loss"])
        assert [step for step, _ in row["curve"]] == [0, 2]  # every 10th step and the last
    assert (tmp_path / result["plots"][0]).stat().st_size > 1000
