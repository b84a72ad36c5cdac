"""``jrnn.recurrent_dropout``: variational dropout (Gal & Ghahramani 2016) and weight drop (Merity et al. 2018) on
both paths of ``jrnn.scan``, and through the layers.

- float64, every built-in cell (the LSTM with ``proj_size``, whose state P differs from H; the GRU reset after and
  before), with lengths, reverse and an initial state: both paths equal a NumPy loop written from Gal's equations
  with the same masks, and their gradients (parameters, inputs, initial state) equal each other's; a dropped entry
  of ``W`` gets a zero gradient;
- the masks, read off linear networks built to expose them: the input and state masks are one per sequence and
  the same at every step, the weight mask one for the whole batch and every step, each entry 0 or ``1 / (1 - p)``;
- Monte Carlo over keys: the mean of a quantity linear in the masks is the no-dropout value; two steps on, the
  state mask's reuse shows as the bias ``E[m²] - 1 = p / (1 - p)`` it predicts (fresh masks would give none);
- no key is the plain network bit for bit; bidirectional and deep layers give each direction and layer its own
  keys; ``checkpointed_scan`` keeps one set of masks over its segments; input and output dropout work with any
  cell; errors name what was expected.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
import registry

import jrnn
from jrnn._src.regularisation import draw_masks

ALL = jrnn.recurrent_dropout(input=0.3, state=0.4, output=0.2, weight=0.5)
B, T, I = 3, 6, 4


def _gal(step):
    """A reference step ``(params, masks) -> (state, x) -> (state, y)`` from one of ``reference.gal_*_step``."""
    return lambda p, m_x, m_s, M_W: (lambda s, x: step(p, s, x, m_x, m_s, M_W))


CELLS = {  # the StateMaskable cells of tests/registry.py, each with its equations under Gal's masks
    "elman": (registry.make("elman_tanh", 5), _gal(ref.gal_elman_step)),
    "lstm_proj": (registry.make("lstm_proj", 5), _gal(ref.gal_lstm_step)),  # P = 3 < H = 5
    "gru": (registry.make("gru", 5), _gal(ref.gal_gru_step)),
    "gru_reset_before": (registry.make("gru_reset_before", 5),
                         _gal(lambda p, s, x, *m: ref.gal_gru_step(p, s, x, *m, reset_after=False))),
}


def _masks(dropout, key, cell, params, dtype):
    return draw_masks(dropout, key, batch=B, input_size=I, state_size=cell.output_size,
                      output_size=cell.output_size, weight_shape=params.W.shape, dtype=dtype)


# ----------------------------------------------------------------------------------------------------------------
# Gal's equations in NumPy; the two paths; their gradients.
# ----------------------------------------------------------------------------------------------------------------

def _loss_and_grads(cell, fused):
    def loss(params, xs, s0, lengths, key):
        ys, final = jrnn.scan(cell, params, xs, lengths=lengths, initial_state=s0, reverse=True, dropout=ALL,
                              key=key, solver=jrnn.auto() if fused else jrnn.sequential())
        w = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype).reshape(ys.shape))
        total = jnp.sum(ys * w) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree_util.tree_leaves(final))
        return total, (ys, final)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))


@pytest.mark.parametrize("name", sorted(CELLS))
def test_both_paths_equal_gals_equations_and_each_others_gradients_float64(name):
    cell, gal_step = CELLS[name]
    lengths = np.array([6, 3, 0])  # a full, a short and an empty sequence
    key = jax.random.key(5)
    with jax.enable_x64(True):
        params = ref.random_params(cell, 0, I, dtype=np.float64)
        xs = ref.device(np.random.default_rng(1).standard_normal((B, T, I)), np.float64)
        s0 = ref.random_state(cell, B, 2, dtype=jnp.float64)
        masks = _masks(ALL, key, cell, params, jnp.float64)
        fused = _loss_and_grads(cell, True)(params, xs, s0, jnp.asarray(lengths), key)
        plain = _loss_and_grads(cell, False)(params, xs, s0, jnp.asarray(lengths), key)

    m_x, m_s, m_y, M_W = (ref.f64(m) for m in masks)
    ys_ref, finals_ref = [], []
    for b, s0_b in enumerate(ref.state_rows(s0, B)):
        ys_b, final_b = ref.run_sequence(gal_step(params, m_x[b], m_s[b], M_W), s0_b, xs[b], lengths[b],
                                         reverse=True)
        ys_ref.append(ys_b * m_y[b])
        finals_ref.append(final_b)
    for path, ((dparams, _, _), (ys, final)) in (("fused", fused), ("plain", plain)):
        np.testing.assert_allclose(ys, np.stack(ys_ref), rtol=1e-12, atol=1e-12, err_msg=f"{name} {path} ys")
        ref.assert_states_close(final, ref.stack_states(finals_ref), rtol=1e-12, atol=1e-12)
        dW = np.asarray(dparams.W)
        np.testing.assert_array_equal(dW[M_W == 0], 0.0, err_msg=f"{name} {path}: a dropped weight's gradient")
    for a, e in zip(jax.tree_util.tree_leaves(fused), jax.tree_util.tree_leaves(plain), strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-10, err_msg=f"{name}: fused vs plain")
    for mask, rate in ((m_x, 0.3), (m_s, 0.4), (m_y, 0.2), (M_W, 0.5)):  # inverted scaling
        assert set(np.unique(mask)) <= {0.0, 1.0 / (1.0 - rate)}


# ----------------------------------------------------------------------------------------------------------------
# The masks, read off linear networks: one per sequence (W: per batch), the same at every step.
# ----------------------------------------------------------------------------------------------------------------

LINEAR = jrnn.elman(6, lambda v: v, bias=False)  # s_t = U x_t + W s_{t-1}; B = H = 6 below


def _mask_readouts(W, xs, key, fused):
    eye, zeros = jnp.eye(6), jnp.zeros((6, 6))

    def run(U, W, xs, dropout, s0=None):
        return jrnn.scan(LINEAR, jrnn.ElmanParams(U, W, None, None), xs, initial_state=s0, dropout=dropout, key=key,
                         solver=jrnn.auto() if fused else jrnn.sequential())[0]

    return (run(eye, zeros, xs, jrnn.recurrent_dropout(input=0.5)),  # s_t = m_x ⊙ x_t
            run(eye, eye, jnp.ones_like(xs), jrnn.recurrent_dropout(state=0.5)),  # s_t = 1 + m_s ⊙ s_{t-1}
            run(zeros, W, jnp.zeros_like(xs), jrnn.recurrent_dropout(weight=0.5), s0=eye))  # s_t = W̃ s_{t-1}, s_0 = I


@pytest.mark.parametrize("fused", [True, False])
def test_masks_are_one_per_sequence_reused_at_every_step_and_the_weight_mask_one_per_batch(fused):
    rng = np.random.default_rng(3)
    W = rng.uniform(0.2, 0.6, (6, 6)) * rng.choice([-1.0, 1.0], (6, 6))
    xs = rng.uniform(0.5, 1.5, (6, 4, 6)).astype(np.float32).astype(np.float64)  # exactly what the device holds
    inputs, states, weights = (np.asarray(a, np.float64) for a in jax.jit(_mask_readouts, static_argnums=3)(
        ref.device(W), ref.device(xs), jax.random.key(9), fused))

    # Input: s_t = m_x ⊙ x_t, so s_t / x_t is the mask: 0 or 2, the same at every step, not the same in every row.
    m_x = inputs[:, 0] / xs[:, 0]
    np.testing.assert_allclose(inputs / xs, np.repeat(m_x[:, None], 4, axis=1), rtol=1e-6)
    assert set(np.round(m_x, 6).ravel()) == {0.0, 2.0} and len({tuple(row) for row in m_x}) > 1

    # State: s_0 = 1 and s_1 = 1 + m_s give m_s; a mask reused at every step makes s_t = Σ_{k ≤ t} m_s^k (where
    # m_s = 0, the state stays 1: the carried state itself is never masked).
    m_s = states[:, 1] - 1.0
    assert set(np.round(m_s, 6).ravel()) == {0.0, 2.0} and len({tuple(row) for row in m_s}) > 1
    want = np.stack([sum(m_s ** k for k in range(t + 1)) for t in range(4)], axis=1)
    np.testing.assert_allclose(states, want, rtol=1e-6)

    # Weight: sequence b starts at e_b, so s_1 of all six sequences are the columns of W̃ = M_W ⊙ W; one mask for
    # the whole batch and every step makes s_t of sequence b column b of W̃^t.
    W_dropped = weights[:, 0].T
    kept = W_dropped != 0.0
    np.testing.assert_allclose(W_dropped[kept], 2.0 * W[kept], rtol=1e-6)
    assert 0 < kept.sum() < kept.size
    for t in range(4):
        np.testing.assert_allclose(weights[:, t].T, np.linalg.matrix_power(W_dropped, t + 1), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Monte Carlo over keys (the "rbg" PRNG: the same code, much faster to compile than threefry).
# ----------------------------------------------------------------------------------------------------------------

def test_expectation_of_what_is_linear_in_the_masks_is_unchanged_and_reuse_biases_the_rest_as_predicted():
    n = 4000
    cell = jrnn.elman(3, lambda v: v)  # linear: s_t = U x_t + b + W s_{t-1}
    params = ref.random_params(cell, 4, 2)
    xs = ref.device(np.random.default_rng(5).standard_normal((2, 3, 2)))
    s0 = ref.random_state(cell, 2, 6)
    exact = np.asarray(jrnn.scan(cell, params, xs, initial_state=s0)[0], np.float64)
    keys = jax.random.split(jax.random.key(0, impl="rbg"), n)

    @jax.jit
    def samples(keys):
        def one(dropout):
            return jax.vmap(lambda k: jrnn.scan(cell, params, xs, initial_state=s0, dropout=dropout, key=k)[0])(keys)

        return one(ALL), one(jrnn.recurrent_dropout(input=0.5, output=0.5)), one(jrnn.recurrent_dropout(state=0.5))

    def z_scores(draws, expected):  # |mean - expected| in standard errors
        draws = np.asarray(draws, np.float64)
        return np.abs(draws.mean(0) - expected) / (draws.std(0) / np.sqrt(n))

    every_mask, input_output, state = samples(keys)
    # Step 0 reads each mask once: y_0 = m_y ⊙ (U (m_x ⊙ x_0) + b + (M_W ⊙ W)(m_s ⊙ s_init)), E = the plain y_0.
    assert z_scores(every_mask[:, :, 0], exact[:, 0]).max() < 5.0
    # The input and output masks enter every output linearly: the whole sequence keeps its expectation.
    assert z_scores(input_output, exact).max() < 5.0
    # The state mask: step 0 keeps its expectation; step 1 reads m_s twice, W (m_s ⊙ W (m_s ⊙ s_init)), and
    # E[m_i m_j] = 1 + [i = j] p / (1 - p) adds W (diag(W) ⊙ s_init) at p = 1/2. Masks drawn afresh per step would
    # add nothing: the bias is the reuse.
    W, s_init = ref.f64(params.W), ref.f64(s0)
    bias = np.stack([W @ (np.diag(W) * s_init[b]) for b in range(2)])
    assert z_scores(state[:, :, 0], exact[:, 0]).max() < 5.0
    assert z_scores(state[:, :, 1], exact[:, 1] + bias).max() < 5.0
    assert z_scores(state[:, :, 1], exact[:, 1]).max() > 20.0


# ----------------------------------------------------------------------------------------------------------------
# Evaluation, layers, other cells, errors.
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fused", [True, False])
def test_without_a_key_the_layer_is_the_plain_one_bit_for_bit(fused):
    cell = jrnn.lstm(4, proj_size=3)
    solver = jrnn.auto() if fused else jrnn.sequential()
    layer = jrnn.RNN(cell, solver=solver, dropout=ALL)
    params = ref.random_params(cell, 7, I)
    xs = ref.device(np.random.default_rng(8).standard_normal((B, T, I)))

    @jax.jit
    def run(params, xs, k1, k2):
        return (layer.apply(params, xs)[0], jrnn.RNN(cell, solver=solver).apply(params, xs)[0],
                jrnn.RNN(cell, solver=solver, dropout=jrnn.recurrent_dropout()).apply(params, xs, key=k1)[0],
                layer.apply(params, xs, key=k1)[0], layer.apply(params, xs, key=k2)[0])

    evaluation, plain, zero_rates, one, two = run(params, xs, jax.random.key(1), jax.random.key(2))
    np.testing.assert_array_equal(evaluation, plain)
    np.testing.assert_array_equal(zero_rates, plain)
    np.testing.assert_array_equal(run(params, xs, jax.random.key(1), jax.random.key(2))[3], one)
    assert not np.allclose(one, plain, atol=1e-3) and not np.allclose(one, two, atol=1e-3)


def test_bidirectional_and_deep_give_each_direction_and_layer_keys_of_their_own():
    dropout = jrnn.recurrent_dropout(input=0.5, state=0.3, output=0.2, weight=0.3)
    fw, bw, top = jrnn.elman(4), jrnn.elman(3), jrnn.elman(4)  # the plumbing of keys, in the cheapest cell
    net = jrnn.deep([jrnn.bidirectional(fw, bw, dropout=dropout), jrnn.RNN(top, dropout=dropout)], dropout=0.25)
    params = ref.random_params(net, 9, I)
    xs = ref.device(np.random.default_rng(10).standard_normal((B, T, I)))
    lengths = jnp.array([6, 2, 4])

    def by_hand(params, xs, key):  # the documented key splits, one scan at a time
        k0, k1 = jax.random.split(key)
        k_fw, k_bw = jax.random.split(jax.random.split(k0)[1])
        k1_drop, k1_layer = jax.random.split(k1)
        a = jrnn.scan(fw, params[0].forward, xs, lengths=lengths, dropout=dropout, key=k_fw)[0]
        a_rev = jrnn.scan(bw, params[0].backward, xs, lengths=lengths, reverse=True, dropout=dropout, key=k_bw)[0]
        h = jnp.concatenate([a, a_rev], axis=-1)
        h = jnp.where(jax.random.bernoulli(k1_drop, 0.75, h.shape), h / 0.75, 0.0)
        return jrnn.scan(top, params[1], h, lengths=lengths, dropout=dropout, key=k1_layer)[0]

    @jax.jit
    def run(params, xs, key):
        return net.apply(params, xs, lengths=lengths, key=key)[0], by_hand(params, xs, key), net.apply(
            params, xs, lengths=lengths)[0]

    ys, want, evaluation = run(params, xs, jax.random.key(11))
    np.testing.assert_allclose(ys, want, rtol=1e-6, atol=1e-6)
    assert not np.allclose(ys, evaluation, atol=1e-3)


def test_checkpointed_scan_draws_one_set_of_masks_for_the_whole_sequence():
    cell = jrnn.elman(4)
    params = ref.random_params(cell, 14, I)
    xs = ref.device(np.random.default_rng(15).standard_normal((B, 7, I)))
    lengths = jnp.array([7, 4, 1])

    @jax.jit
    def both(params, key):
        def loss(scan_fn, **kw):
            return lambda p: jnp.sum(jnp.sin(scan_fn(cell, p, xs, lengths=lengths, reverse=True, dropout=ALL, key=key,
                                                     **kw)[0]))

        return (jax.value_and_grad(loss(jrnn.checkpointed_scan, segment_length=3))(params),
                jax.value_and_grad(loss(jrnn.scan))(params))

    segmented, whole = both(params, jax.random.key(16))
    for a, e in zip(jax.tree_util.tree_leaves(segmented), jax.tree_util.tree_leaves(whole), strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


class Accumulate:
    """A cell of one's own, ``s_t = s_{t-1} + x_t``, with no ``W`` and a step without ``state_mask``."""

    hidden_size = output_size = I

    def init(self, key, input_size):
        return ()

    def initial_state(self, batch_shape=(), dtype=jnp.float32):
        return jnp.zeros((*batch_shape, I), dtype)

    def step(self, params, state, x):
        return state + x, state + x

    def input_size(self, params):
        return I


def test_input_and_output_dropout_work_with_any_cell_and_the_rest_say_what_they_need():
    cell = Accumulate()
    xs = ref.device(np.random.default_rng(12).standard_normal((B, T, I)))
    dropout, key = jrnn.recurrent_dropout(input=0.5, output=0.25), jax.random.key(13)
    ys = jax.jit(lambda xs, key: jrnn.scan(cell, (), xs, dropout=dropout, key=key)[0])(xs, key)
    m = draw_masks(dropout, key, batch=B, input_size=I, state_size=I, output_size=I, weight_shape=(),
                   dtype=jnp.float32)
    want = np.cumsum(ref.f64(m.input)[:, None] * ref.f64(xs), axis=1) * ref.f64(m.output)[:, None]
    np.testing.assert_allclose(ys, want, rtol=1e-6, atol=1e-6)

    with pytest.raises(TypeError, match=r"state dropout needs a cell whose step takes state_mask=.*got Accumulate"):
        jrnn.scan(cell, (), xs, dropout=jrnn.recurrent_dropout(state=0.1))
    with pytest.raises(TypeError, match=r"weight drop needs a cell with a recurrent matrix W.*got Accumulate"):
        jrnn.scan(cell, (), xs, dropout=jrnn.recurrent_dropout(weight=0.1), key=key)


def test_bad_rates_and_options_are_named():
    for name in ("input", "state", "output", "weight"):
        for bad in (1.0, -0.1, "0.5", True):
            with pytest.raises(ValueError, match=rf"expected {name} to be a dropout rate in \[0, 1\), got {bad!r}"):
                jrnn.recurrent_dropout(**{name: bad})
    cell = jrnn.gru(4)
    params = ref.random_params(cell, 0, I)
    xs = jnp.ones((B, T, I))
    with pytest.raises(ValueError, match="got a key but no dropout"):
        jrnn.scan(cell, params, xs, key=jax.random.key(0))
    with pytest.raises(TypeError, match=r"expected dropout to be None or jrnn.recurrent_dropout\(...\), got 0.5"):
        jrnn.scan(cell, params, xs, dropout=0.5)
    with pytest.raises(TypeError, match=r"jrnn.bidirectional: expected dropout .*got 0.5"):
        jrnn.bidirectional(cell, dropout=0.5)


def test_the_fused_loops_still_update_their_buffers_in_place_with_a_state_mask():
    """As ``test_fused.py`` checks without masks: no copy of a ``[T, B, k]`` buffer inside a compiled loop."""
    T_, B_ = 12, 4
    lengths = jnp.array([12, 5, 9, 1])
    cell = jrnn.lstm(8, proj_size=5)
    params = ref.random_params(cell, 0, 8)

    def loss(p, x):
        return jnp.sum(jrnn.scan(cell, p, x, lengths=lengths, dropout=ALL, key=jax.random.key(0))[0])

    text = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, jnp.ones((B_, T_, 8))).compile().as_text()
    for comp in text.split("\n\n"):
        if comp.startswith("ENTRY") or "fused_computation" in comp.split("\n", 1)[0]:
            continue
        assert not re.findall(rf"= f32\[{T_},{B_},\d+\]\{{[\d,]+\}} copy\(", comp), comp[:2000]
