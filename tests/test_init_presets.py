"""``init="pytorch" | "flax" | "keras"``: each preset against what the library itself draws.

Every parameter of a jrnn layer built with a preset is compared with the freshly initialised weights of the same
layer in the real library (same sizes, gate blocks mapped to jrnn's layout): exactly where the library is
deterministic (zeros, ones, forget biases, A_log grids), else by a two-sample Kolmogorov-Smirnov test on seeded
draws. One test shows the KS test has the power to tell jrnn's own defaults from PyTorch's.
"""

import inspect
import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is imported

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jrnn  # noqa: E402

stats = pytest.importorskip("scipy.stats")

H, I = 64, 32  # noqa: E741
KEY = jax.random.key(0)


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor
        a = a.detach()
    if hasattr(a, "numpy"):  # a torch tensor
        a = a.numpy()
    elif hasattr(a, "assign"):  # a Keras variable: its JAX array
        a = a.value
    return np.asarray(a, np.float64)


def same_law(ours, theirs, what: str = "") -> None:
    """``ours`` and ``theirs`` equal, or (random draws) not told apart by a two-sample KS test at 0.1 %."""
    ours, theirs = _np(ours).ravel(), _np(theirs).ravel()
    if ours.shape == theirs.shape and np.allclose(ours, theirs, rtol=1e-6, atol=1e-7):
        return
    p = stats.ks_2samp(ours, theirs).pvalue
    assert p > 1e-3, f"{what}: KS p = {p:.2e}; ours in [{ours.min():.3g}, {ours.max():.3g}] sd {ours.std():.3g}, " \
                     f"theirs in [{theirs.min():.3g}, {theirs.max():.3g}] sd {theirs.std():.3g}"


def orthonormal_columns(M) -> None:
    M = _np(M)
    np.testing.assert_allclose(M.T @ M, np.eye(M.shape[1]), atol=1e-5)


# ------------------------------------------------------------------------------------------------------------
# PyTorch: nn.RNN / LSTM / GRU reset_parameters, nn.Linear, nn.Embedding
# ------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return torch


@pytest.mark.parametrize("name", ["elman", "lstm", "gru"])
def test_pytorch_preset_draws_every_weight_and_bias_as_torch_reset_parameters(torch, name):
    module = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[name](I, H)
    params = getattr(jrnn, name)(H, init="pytorch").init(KEY, I)
    for field, torch_name in zip(("U", "W", "b_U", "b_W"), ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
                                                             "bias_hh_l0")):
        ours, theirs = getattr(params, field), getattr(module, torch_name)
        assert ours.shape == tuple(theirs.shape)
        same_law(ours, theirs, f"{name}.{field}")  # the LSTM's b_U too: no forget bias


def test_pytorch_preset_lstm_projection_as_torch_weight_hr(torch):
    module = torch.nn.LSTM(I, H, proj_size=16)
    params = jrnn.lstm(H, proj_size=16, init="pytorch").init(KEY, I)
    assert params.W.shape == tuple(module.weight_hh_l0.shape)
    same_law(params.W, module.weight_hh_l0, "W")
    same_law(params.R, module.weight_hr_l0, "R")


def test_the_ks_test_tells_jrnn_defaults_from_pytorch_ones(torch):
    module = torch.nn.GRU(I, H)
    U = _np(jrnn.gru(H).init(KEY, I).U).ravel()  # Glorot per block: bound 0.25 against torch's 0.125
    assert stats.ks_2samp(U, _np(module.weight_ih_l0).ravel()).pvalue < 1e-6


def test_pytorch_preset_language_model_as_nn_embedding_and_nn_linear(torch):
    V, D = 500, 64
    params = jrnn.language_model(jrnn.lstm(D, init="pytorch"), V, D, init="pytorch").init(KEY)
    embedding, linear = torch.nn.Embedding(V, D), torch.nn.Linear(D, V)
    same_law(params.embedding, embedding.weight, "E")  # N(0, 1)
    same_law(params.readout.V, linear.weight, "V")
    same_law(params.readout.b, linear.bias, "b")  # U(±1/√D), not zeros


def _torch_modules(torch):
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.set_verbosity_error()
    from transformers.models.mamba.modeling_mamba import MambaMixer
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer
    from transformers.models.qwen3_next.modeling_qwen3_next import Qwen3NextGatedDeltaNet
    from transformers.models.recurrent_gemma.modeling_recurrent_gemma import RecurrentGemmaRecurrentBlock
    from transformers.models.xlstm.modeling_xlstm import xLSTMBlock, xLSTMLayer

    xlstm = transformers.xLSTMConfig(hidden_size=H, num_heads=4, num_hidden_layers=1)
    return {
        "mamba": (lambda: MambaMixer(transformers.MambaConfig(hidden_size=H, state_size=16, expand=2,
                                                              num_hidden_layers=1), layer_idx=0),
                  jrnn.mamba(H, state_size=16, init="pytorch")),
        "mamba2": (lambda: Mamba2Mixer(transformers.Mamba2Config(hidden_size=H, num_heads=8, head_dim=16,
                                                                 state_size=16, n_groups=2, expand=2,
                                                                 num_hidden_layers=1), layer_idx=0),
                   jrnn.mamba2(H, state_size=16, head_dim=16, n_groups=2, init="pytorch")),
        "gated_delta_net": (lambda: Qwen3NextGatedDeltaNet(transformers.Qwen3NextConfig(
            hidden_size=H, linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16,
            linear_value_head_dim=16, num_hidden_layers=1, layer_types=["linear_attention"]), layer_idx=0),
            jrnn.gated_delta_net(H, num_heads=2, num_v_heads=4, head_k_dim=16, head_v_dim=16, init="pytorch")),
        "hawk_block": (lambda: RecurrentGemmaRecurrentBlock(transformers.RecurrentGemmaConfig(
            hidden_size=H, lru_width=H, num_attention_heads=2, conv1d_width=4, num_hidden_layers=1, vocab_size=8,
            intermediate_size=8), layer_idx=0), jrnn.hawk_block(H, num_heads=2, init="pytorch")),
        "mlstm": (lambda: xLSTMLayer(xlstm), jrnn.mlstm(H, num_heads=4, init="pytorch")),
        "mlstm_block": (lambda: xLSTMBlock(xlstm), jrnn.mlstm_block(H, num_heads=4, init="pytorch")),
    }


MODERN = ["mamba", "mamba2", "gated_delta_net", "hawk_block", "mlstm", "mlstm_block"]


@pytest.mark.parametrize("name", MODERN)
def test_pytorch_preset_of_a_modern_cell_draws_as_its_torch_module_constructor(torch, name):
    make, cell = _torch_modules(torch)[name]
    _, theirs = jrnn.from_torch(make())
    ours = cell.init(KEY, H)
    paths = jax.tree_util.tree_leaves_with_path(theirs)
    assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(theirs)
    for (path, b), a in zip(paths, jax.tree_util.tree_leaves(ours)):
        where = jax.tree_util.keystr(path)
        assert a.shape == b.shape, where
        if name == "hawk_block" and ".rg_lru" in where:
            continue  # torch.empty in the torch module's constructor: see the next test
        same_law(a, b, f"{name}{where}")


def test_hawk_block_pytorch_preset_keeps_jrnns_rg_lru_and_rg_lru_alone_has_no_pytorch_preset():
    ours = jrnn.hawk_block(H, num_heads=2, init="pytorch").init(KEY, H)
    own = jrnn.hawk_block(H, num_heads=2).init(KEY, H)
    for a, b in zip(jax.tree_util.tree_leaves(ours.rg_lru), jax.tree_util.tree_leaves(own.rg_lru)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"jrnn.rg_lru: no init='pytorch' preset \(transformers' RecurrentGemmaRglru "
                                         r"leaves its parameters uninitialised .*; its presets: 'jrnn'$"):
        jrnn.rg_lru(16, init="pytorch")


# ------------------------------------------------------------------------------------------------------------
# Flax: linen SimpleCell / LSTMCell / GRUCell / MGUCell / ConvLSTMCell, Dense, Embed
# ------------------------------------------------------------------------------------------------------------

GATES = {"elman": ("",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "mgu": ("f", "n")}


@pytest.mark.parametrize("name", ["elman", "lstm", "gru", "mgu"])
def test_flax_preset_draws_as_the_flax_linen_cell(name):
    nn = pytest.importorskip("flax.linen")
    module = {"elman": nn.SimpleCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell, "mgu": nn.MGUCell}[name](H)
    carry = module.initialize_carry(jax.random.key(1), (1, I))
    theirs = module.init(jax.random.key(2), carry, jnp.zeros((1, I)))["params"]
    gates = GATES[name]
    params = getattr(jrnn, name)(H, init="flax").init(KEY, I)
    same_law(params.U, np.concatenate([theirs["i" + g]["kernel"].T for g in gates]), f"{name}.U")  # LeCun normal
    same_law(params.W, np.concatenate([theirs["h" + g]["kernel"].T for g in gates]), f"{name}.W")
    for block in np.split(_np(params.W), len(gates)):  # orthogonal per gate, as Flax's one Dense per gate
        orthonormal_columns(block)
    # Flax's biases sit on some of its Dense layers only (the GRU's on the input side, and on hn); the sum is what
    # the cell computes with.
    bias = [_np(theirs.get("i" + g, {}).get("bias", 0.0)) + _np(theirs.get("h" + g, {}).get("bias", 0.0))
            for g in gates]
    np.testing.assert_array_equal(params.b_U + params.b_W, np.concatenate([np.broadcast_to(b, (H,)) for b in bias]))


def test_flax_preset_conv_lstm_draws_as_flax_conv_lstm_cell():
    nn = pytest.importorskip("flax.linen")
    C, Cin, shape = 16, 8, (6, 6)
    module = nn.ConvLSTMCell(features=C, kernel_size=(3, 3))
    carry = module.initialize_carry(jax.random.key(1), (1, *shape, Cin))
    theirs = module.init(jax.random.key(2), carry, jnp.zeros((1, *shape, Cin)))["params"]
    params = jrnn.conv_lstm(C, shape, 3, init="flax").init(KEY, Cin)
    same_law(params.U, theirs["ih"]["kernel"], "U")  # LeCun normal over the window's fan-in
    same_law(params.W, theirs["hh"]["kernel"], "W")
    np.testing.assert_array_equal(theirs["ih"]["bias"] + theirs["hh"]["bias"], 0.0)
    # Flax adds 1 to the forget gate's preactivation in its forward pass: jrnn's forget bias of 1.
    np.testing.assert_array_equal(params.b, np.repeat([0.0, 1.0, 0.0, 0.0], C))


def test_flax_preset_language_model_as_flax_embed_and_dense():
    nn = pytest.importorskip("flax.linen")
    V, D = 500, 64
    params = jrnn.language_model(jrnn.lstm(D, init="flax"), V, D, init="flax").init(KEY)
    embed = nn.Embed(V, D).init(jax.random.key(1), jnp.zeros((1,), jnp.int32))["params"]["embedding"]
    dense = nn.Dense(V).init(jax.random.key(2), jnp.zeros((1, D)))["params"]
    same_law(params.embedding, embed, "E")  # N(0, 1/D), not truncated
    same_law(params.readout.V, dense["kernel"], "V")
    np.testing.assert_array_equal(params.readout.b, dense["bias"])


# ------------------------------------------------------------------------------------------------------------
# Keras 3: SimpleRNN / LSTM / GRU / ConvLSTM2D, Dense, Embedding
# ------------------------------------------------------------------------------------------------------------

def keras_side():
    """Keras' own code broadcasts ranks, which the suite's strict ``jax_numpy_rank_promotion`` refuses."""
    return jax.numpy_rank_promotion("allow")


@pytest.fixture(scope="module")
def keras():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip("keras runs on another backend here")
    keras.utils.set_random_seed(0)
    return keras


@pytest.mark.parametrize("name", ["elman", "lstm", "gru"])
def test_keras_preset_draws_as_the_keras_layer(keras, name):
    layer = {"elman": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[name](H)
    with keras_side():
        layer.build((None, 5, I))
    kernel, recurrent, bias = (_np(w) for w in layer.get_weights())
    params = getattr(jrnn, name)(H, init="keras").init(KEY, I)
    same_law(params.U, kernel, f"{name}.U")  # Glorot over the packed (I, G·H) kernel
    same_law(params.W, recurrent, f"{name}.W")
    orthonormal_columns(params.W)  # orthogonal over the packed matrix, not per gate
    if name == "gru":  # reset_after=True: bias (2, 3H), gates z, r, h -> jrnn's r, z, n
        bias = np.concatenate([bias[:, H:2 * H], bias[:, :H], bias[:, 2 * H:]], axis=1)
        np.testing.assert_array_equal(params.b_U, bias[0])
        np.testing.assert_array_equal(params.b_W, bias[1])
    else:  # one bias; the LSTM's forget block is 1 (unit_forget_bias)
        np.testing.assert_array_equal(params.b_U + params.b_W, bias)


def test_keras_preset_conv_lstm_draws_as_conv_lstm_2d(keras):
    C, Cin, shape = 16, 8, (6, 6)
    layer = keras.layers.ConvLSTM2D(C, 3, padding="same")
    with keras_side():
        layer.build((None, 5, *shape, Cin))
    kernel, recurrent, bias = (_np(w) for w in layer.get_weights())
    params = jrnn.conv_lstm(C, shape, 3, init="keras").init(KEY, Cin)
    same_law(params.U, kernel, "U")
    same_law(params.W, recurrent, "W")
    orthonormal_columns(_np(params.W).transpose(2, 3, 1, 0).reshape(-1, 4 * C))  # Keras' flattened kernel
    np.testing.assert_array_equal(params.b, bias)


def test_keras_preset_language_model_as_keras_embedding_and_dense(keras):
    V, D = 500, 64
    params = jrnn.language_model(jrnn.lstm(D, init="keras"), V, D, init="keras").init(KEY)
    embedding, dense = keras.layers.Embedding(V, D), keras.layers.Dense(V)
    with keras_side():
        embedding.build((None,))
        dense.build((None, D))
    same_law(params.embedding, embedding.embeddings, "E")  # U(±0.05)
    same_law(params.readout.V, dense.kernel, "V")
    np.testing.assert_array_equal(params.readout.b, dense.bias)


# ------------------------------------------------------------------------------------------------------------
# The preset only changes defaults; the errors name what is offered.
# ------------------------------------------------------------------------------------------------------------

def test_no_preset_and_jrnn_are_todays_defaults():
    assert jrnn.lstm(H, init="jrnn") == jrnn.lstm(H)
    assert jrnn.readout(3, init="jrnn") == jrnn.readout(3)
    for a, b in zip(jrnn.gru(H, init="jrnn").init(KEY, I), jrnn.gru(H).init(KEY, I)):
        np.testing.assert_array_equal(a, b)
    assert jrnn.mamba(H, init="pytorch") == jrnn.mamba(H)  # its torch module's constructor is jrnn's default
    params = jrnn.readout(3).init(KEY, 4)
    np.testing.assert_array_equal(params.b, 0.0)


def test_an_explicit_initializer_or_forget_bias_wins_over_the_preset():
    params = jrnn.lstm(H, init="pytorch", W_init=jrnn.init.orthogonal(), forget_bias=2.0).init(KEY, I)
    for block in np.split(_np(params.W), 4):
        orthonormal_columns(block)
    assert np.abs(_np(params.U)).max() <= H ** -0.5  # the preset's U(±1/√H) still
    assert _np(params.b_U[H:2 * H]).min() >= 2.0 - H ** -0.5
    b = jrnn.readout(3, init="pytorch", b_init=jrnn.init.zeros).init(KEY, 4).b
    np.testing.assert_array_equal(b, 0.0)
    E = jrnn.language_model(jrnn.lstm(8), 10, 8, init="keras", E_init=jrnn.init.constant(0.5)).init(KEY).embedding
    np.testing.assert_array_equal(E, 0.5)


@pytest.mark.parametrize("make", [lambda init: jrnn.lstm(4, init=init), lambda init: jrnn.mamba(4, init=init),
                                  lambda init: jrnn.readout(3, init=init),
                                  lambda init: jrnn.language_model(jrnn.gru(4), 10, 4, init=init)],
                         ids=["lstm", "mamba", "readout", "language_model"])
@pytest.mark.parametrize("bad", ["torch", "PyTorch", 1])
def test_an_unknown_preset_is_an_error_naming_the_valid_ones(make, bad):
    with pytest.raises(ValueError, match=r"expected init to be None or one of 'jrnn', 'pytorch', 'flax', 'keras', "
                                         rf"got {bad!r}$"):
        make(bad)


@pytest.mark.parametrize(("make", "preset", "message"), [
    (lambda init: jrnn.mgu(4, init=init), "pytorch", r"jrnn.mgu: no init='pytorch' preset \(PyTorch has no "
                                                     r"counterpart of jrnn.mgu\); its presets: 'jrnn', 'flax'$"),
    (lambda init: jrnn.conv_lstm(4, (5,), init=init), "pytorch", r"its presets: 'jrnn', 'flax', 'keras'$"),
    (lambda init: jrnn.indrnn(4, init=init), "keras", r"jrnn.indrnn: no init='keras' .*; its presets: 'jrnn'$"),
    (lambda init: jrnn.mamba(4, init=init), "flax", r"Flax has no counterpart of jrnn.mamba\); its presets: "
                                                    r"'jrnn', 'pytorch'$"),
    (lambda init: jrnn.slstm(8, num_heads=2, init=init), "pytorch", r"jrnn.slstm: no init='pytorch'"),
    (lambda init: jrnn.layer_norm_lstm(4, init=init), "flax", r"jrnn.layer_norm_lstm: no init='flax'"),
], ids=["mgu", "conv_lstm", "indrnn", "mamba", "slstm", "layer_norm_lstm"])
def test_a_preset_the_cell_lacks_is_an_error_naming_the_cell_and_its_presets(make, preset, message):
    with pytest.raises(ValueError, match=message):
        make(preset)


def test_every_cell_factory_takes_init():
    factories = [jrnn.elman, jrnn.lstm, jrnn.gru, jrnn.mgu, jrnn.indrnn, jrnn.exprnn, jrnn.layer_norm_lstm,
                 jrnn.layer_norm_gru, jrnn.min_gru, jrnn.min_lstm, jrnn.conv_lstm, jrnn.lru, jrnn.s5, jrnn.rg_lru,
                 jrnn.hawk_block, jrnn.mamba, jrnn.s6, jrnn.mamba2, jrnn.gated_delta_net, jrnn.mlstm,
                 jrnn.mlstm_block, jrnn.slstm, jrnn.readout, jrnn.language_model]
    for factory in factories:
        parameter = inspect.signature(factory).parameters.get("init")
        assert parameter is not None and parameter.default is None, factory.__name__
