"""Cells: one ``step`` against the NumPy equations of tests/reference.py, and the initializers' promises."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

import jrnn

CASES = ref.cell_cases()
TOL = dict(rtol=2e-5, atol=2e-6)  # float32 against float64


def _host_tree(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def _device_tree(tree):
    return jax.tree_util.tree_map(jax.device_put, tree)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_step_equals_numpy_equations_for_a_batch_no_batch_and_a_2d_batch(case):
    I, B = 3, 6
    params = ref.random_params(case.cell, seed=1, input_size=I)
    state = _host_tree(ref.random_state(case.cell, B, seed=2))
    x = np.random.default_rng(3).standard_normal((B, I)).astype(np.float32)
    # The same six (state, x) pairs as a batch [6], one at a time (batch []), and as a batch [2, 3].
    unbatched = (_device_tree(jax.tree_util.tree_map(lambda a: a[0], state)), jax.device_put(x[0]))
    batch_2d = (_device_tree(jax.tree_util.tree_map(lambda a: a.reshape(2, 3, -1), state)),
                jax.device_put(x.reshape(2, 3, I)))

    @jax.jit
    def steps(params, batch, unbatched, batch_2d):
        return case.cell.step(params, *batch), case.cell.step(params, *unbatched), case.cell.step(params, *batch_2d)

    (new_state, y), (new_state_0, y_0), (new_state_2d, y_2d) = steps(
        params, (_device_tree(state), jax.device_put(x)), unbatched, batch_2d)

    step = case.ref_step(params)
    rows = [step(s, ref.f64(x[b])) for b, s in enumerate(ref.state_rows(state, B))]
    expected_y, expected_state = np.stack([r[1] for r in rows]), ref.stack_states([r[0] for r in rows])
    np.testing.assert_allclose(y, expected_y, **TOL)
    ref.assert_states_close(new_state, expected_state, **TOL)
    np.testing.assert_allclose(y_0, expected_y[0], **TOL)
    for got, want in zip(ref.state_arrays(new_state_0), ref.state_arrays(expected_state), strict=True):
        np.testing.assert_allclose(got, want[0], **TOL)
    np.testing.assert_allclose(y_2d, expected_y.reshape(2, 3, -1), **TOL)
    for got, want in zip(ref.state_arrays(new_state_2d), ref.state_arrays(expected_state), strict=True):
        np.testing.assert_allclose(got, want.reshape(2, 3, -1), **TOL)


def test_elman_relu_is_the_positive_part_of_the_affine_map():
    cell = jrnn.elman(3, jax.nn.relu)
    params = jrnn.ElmanParams(U=jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]), W=-jnp.eye(3),
                              b_U=jnp.array([0.0, 0.5, 0.0]), b_W=jnp.array([0.0, 0.0, -0.25]))
    s, y = cell.step(params, jnp.array([1.0, 2.0, 3.0]), jnp.array([2.0, -1.0]))
    # U x + b_U + W s + b_W = [2 - 1, -1 + 0.5 - 2, 3 - 3 - 0.25] = [1, -2.5, -0.25]
    np.testing.assert_array_equal(y, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(s, y)


def test_lstm_with_saturated_gates_keeps_its_memory_and_outputs_zero():
    # A hand-computed case: forget gate fully open, input gate shut => c_t = c_{t-1}; o shut => h_t = 0.
    H, big = 2, 50.0
    b = jnp.concatenate([-big * jnp.ones(H), big * jnp.ones(H), jnp.zeros(H), -big * jnp.ones(H)])
    params = jrnn.LSTMParams(U=jnp.zeros((4 * H, 1)), W=jnp.zeros((4 * H, H)), b_U=b, b_W=jnp.zeros(4 * H))
    state = jrnn.LSTMState(h=jnp.array([0.3, -0.2]), c=jnp.array([0.7, -1.5]))
    new, y = jrnn.lstm(H).step(params, state, jnp.array([1.0]))
    np.testing.assert_allclose(new.c, state.c, rtol=1e-6)
    np.testing.assert_allclose(y, 0.0, atol=1e-6)


def test_gru_with_update_gate_open_keeps_the_state():
    H = 3
    b = jnp.concatenate([jnp.zeros(H), 50.0 * jnp.ones(H), jnp.zeros(H)])  # z = 1 => s_t = s_{t-1}
    params = jrnn.GRUParams(U=jnp.ones((3 * H, 2)), W=jnp.ones((3 * H, H)), b_U=b, b_W=jnp.zeros(3 * H))
    s = jnp.array([0.1, -0.4, 0.9])
    for reset_after in (True, False):
        new, _ = jrnn.gru(H, reset_after=reset_after).step(params, s, jnp.array([1.0, -2.0]))
        np.testing.assert_allclose(new, s, rtol=1e-6)


def test_gru_reset_after_and_before_differ_only_through_the_reset_gate():
    # With r = 1 (reset gate saturated open) the two forms are the same function.
    H, I = 3, 2
    params = ref.random_params(jrnn.gru(H), seed=7, input_size=I)
    params = params._replace(b_U=params.b_U.at[:H].set(50.0))
    s, x = jnp.array([0.2, -0.3, 0.5]), jnp.array([0.4, 1.0])
    after, _ = jrnn.gru(H, reset_after=True).step(params, s, x)
    before, _ = jrnn.gru(H, reset_after=False).step(params, s, x)
    np.testing.assert_allclose(after, before, rtol=1e-5)
    # ... and with r != 1 they are not.
    params = params._replace(b_U=params.b_U.at[:H].set(-1.0))
    after, _ = jrnn.gru(H, reset_after=True).step(params, s, x)
    before, _ = jrnn.gru(H, reset_after=False).step(params, s, x)
    assert not np.allclose(after, before, rtol=1e-3)


# ----------------------------------------------------------------------------------------------------------------
# Initializers
# ----------------------------------------------------------------------------------------------------------------

def KEY(seed):
    """An "rbg" key: the properties below do not depend on the PRNG, and rbg compiles far faster than threefry on
    CPU (test_bidirectional.py initialises with the default key)."""
    return jax.random.key(seed, impl="rbg")


@pytest.mark.parametrize("scale", [1.0, 0.5, 2.0])
def test_orthogonal_recurrent_blocks_have_all_singular_values_equal_to_scale(scale):
    H, I = 4, 3
    for cell, gates in ((jrnn.elman(H, W_init=jrnn.init.orthogonal(scale)), 1),
                        (jrnn.lstm(H, W_init=jrnn.init.orthogonal(scale)), 4),
                        (jrnn.gru(H, W_init=jrnn.init.orthogonal(scale)), 3)):
        W = np.asarray(cell.init(KEY(1), I).W, np.float64)
        assert W.shape == (gates * H, H)
        for g in range(gates):
            sv = np.linalg.svd(W[g * H:(g + 1) * H], compute_uv=False)
            np.testing.assert_allclose(sv, scale, rtol=1e-5)


def test_orthogonal_blocks_are_distinct_per_gate():
    W = np.asarray(jrnn.lstm(4).init(KEY(2), 3).W)
    blocks = W.reshape(4, 4, 4)
    for a in range(4):
        for b in range(a + 1, 4):
            assert not np.allclose(blocks[a], blocks[b])


@pytest.mark.parametrize("shape", [(6, 3), (3, 6)])
def test_orthogonal_rectangular_matrix_is_semi_orthogonal(shape):
    M = np.asarray(jrnn.init.orthogonal(0.7)(KEY(3), shape, jnp.float32), np.float64)
    sv = np.linalg.svd(M, compute_uv=False)
    assert sv.shape == (min(shape),)
    np.testing.assert_allclose(sv, 0.7, rtol=1e-5)


def test_identity_init_gives_scaled_identity_per_gate_block():
    H = 4
    W = np.asarray(jrnn.elman(H, jax.nn.relu, W_init=jrnn.init.identity()).init(KEY(0), 3).W)
    np.testing.assert_array_equal(W, np.eye(H))
    W = np.asarray(jrnn.gru(H, W_init=jrnn.init.identity(0.5)).init(KEY(0), 3).W)
    np.testing.assert_array_equal(W, np.concatenate([0.5 * np.eye(H)] * 3))
    M = jrnn.init.identity(2.0)(KEY(0), (2, 3), jnp.float32)
    np.testing.assert_array_equal(M, [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])


@pytest.mark.parametrize("forget_bias", [1.0, 2.5, 0.0])
def test_forget_bias_is_added_to_the_forget_slice_of_b_U_only(forget_bias):
    H, base = 4, 0.25
    cell = jrnn.lstm(H, forget_bias=forget_bias, b_init=jrnn.init.constant(base))
    params = cell.init(KEY(0), 3)
    expected_U = np.full(4 * H, base)
    expected_U[H:2 * H] += forget_bias  # gate order i, f, g, o: f is the second block
    np.testing.assert_allclose(params.b_U, expected_U, rtol=1e-7)
    np.testing.assert_allclose(params.b_W, np.full(4 * H, base), rtol=1e-7)


def test_forget_bias_default_is_one_on_zero_biases():
    params = jrnn.lstm(4).init(KEY(0), 3)
    np.testing.assert_array_equal(params.b_U, [0] * 4 + [1] * 4 + [0] * 8)  # i, f, g, o
    np.testing.assert_array_equal(params.b_W, np.zeros(16))


@pytest.mark.parametrize("H", [4, 25])
def test_pytorch_uniform_stays_within_and_fills_one_over_sqrt_hidden(H):
    bound = 1.0 / math.sqrt(H)
    a = np.asarray(jrnn.init.pytorch_uniform(H)(KEY(4), (200, 50), jnp.float32), np.float64)
    assert np.all(np.abs(a) <= bound)
    assert a.max() > 0.99 * bound and a.min() < -0.99 * bound
    # U(-a, a) has variance a^2 / 3; with 10^4 draws the sample variance is within a few percent.
    np.testing.assert_allclose(a.var(), bound ** 2 / 3, rtol=0.05)
    np.testing.assert_allclose(a.mean(), 0.0, atol=0.05 * bound)


def test_pytorch_uniform_used_for_every_lstm_parameter_respects_the_bound():
    H = 4
    init = jrnn.init.pytorch_uniform(H)
    params = jrnn.lstm(H, forget_bias=0.0, U_init=init, W_init=init, b_init=init).init(KEY(5), 3)
    for leaf in (params.U, params.W, params.b_U, params.b_W):
        assert np.max(np.abs(leaf)) <= 1.0 / math.sqrt(H)
        assert np.max(np.abs(leaf)) > 0.8 / math.sqrt(H)


def test_glorot_uniform_bound_uses_each_gate_block_shape():
    H, I = 4, 3
    U = np.asarray(jrnn.gru(H).init(KEY(6), I).U)  # default U_init is glorot_uniform, per block
    assert np.max(np.abs(U)) <= math.sqrt(6.0 / (H + I))  # the bound of one [H, I] block
    assert np.max(np.abs(U)) > math.sqrt(6.0 / (3 * H + I))  # beyond the bound of the packed [3H, I] matrix


# Every *_init takes an initializer (key, shape, dtype) -> array; a factory passed uncalled fails at construction,
# naming the call that fixes it (it used to be a bare TypeError at the first init).
INIT_ARGUMENTS = [(jrnn.elman, "W_init"), (jrnn.gru, "U_init"), (jrnn.lstm, "R_init"), (jrnn.mgu, "b_init"),
                  (jrnn.indrnn, "w_init"), (jrnn.exprnn, "A_init"), (jrnn.layer_norm_lstm, "W_init"),
                  (jrnn.layer_norm_gru, "U_init"), (jrnn.min_gru, "U_init"), (jrnn.min_lstm, "b_init"),
                  (jrnn.readout, "V_init"), (jrnn.seed_merge, "V_init"),
                  (lambda H, **kw: jrnn.conv_lstm(H, (5,), **kw), "W_init")]


@pytest.mark.parametrize(("factory", "name"), INIT_ARGUMENTS, ids=[n for _, n in INIT_ARGUMENTS])
@pytest.mark.parametrize(("uncalled", "call"), [(jrnn.init.orthogonal, "jrnn.init.orthogonal()"),
                                                (jrnn.init.uniform, "jrnn.init.uniform(...)"),
                                                (jax.nn.initializers.orthogonal, "jax.nn.initializers.orthogonal()")],
                         ids=["orthogonal", "uniform", "jax_orthogonal"])
def test_an_uncalled_initializer_factory_is_named_when_the_cell_is_built(factory, name, uncalled, call):
    with pytest.raises(TypeError, match=rf"expected {name} to be an initializer \(key, shape, dtype\) -> array, "
                                        rf"got the factory .*; call it: {re.escape(call)}$"):
        factory(4, **{name: uncalled})


@pytest.mark.parametrize("bad", [3, lambda key, shape: None], ids=["not_callable", "two_arguments"])
def test_something_that_is_not_an_initializer_is_rejected_when_the_cell_is_built(bad):
    with pytest.raises(TypeError, match=r"jrnn.lstm: expected W_init to be an initializer \(key, shape, dtype\)"):
        jrnn.lstm(4, W_init=bad)


def test_initializers_of_every_spelling_are_accepted():
    for init in (jrnn.init.orthogonal(), jrnn.init.lecun_normal, jax.nn.initializers.orthogonal(),
                 jax.nn.initializers.zeros, lambda key, shape, dtype=jnp.float32: jnp.ones(shape, dtype)):
        W = jrnn.elman(4, W_init=init).init(KEY(0), 3).W
        assert W.shape == (4, 4)


@pytest.mark.parametrize("cell", [jrnn.elman(4, bias=False), jrnn.lstm(4, bias=False),
                                  jrnn.lstm(4, proj_size=2, bias=False), jrnn.gru(4, bias=False)],
                         ids=["elman", "lstm", "lstm_proj", "gru"])
def test_bias_false_gives_none_biases_and_a_linear_map_through_zero(cell):
    params = cell.init(KEY(0), 3)
    assert params.b_U is None and params.b_W is None
    # No bias: from a zero state, a zero input gives a zero output for every cell.
    _, y = cell.step(params, cell.initial_state((1,)), jnp.zeros((1, 3)))
    np.testing.assert_array_equal(y, 0.0)


def test_cells_run_under_strict_rank_promotion():
    with jax.numpy_rank_promotion("raise"):
        for case in CASES:
            params = ref.random_params(case.cell, seed=0, input_size=2)
            jax.eval_shape(case.cell.step, params, case.cell.initial_state((3,)), jnp.ones((3, 2)))
