"""Layer-normalised LSTM and GRU: the paper's placement makes each cell invariant to rescaling ``U`` and ``W``
separately (a property a normalisation of the sum ``U x + W s`` would not have), and the memory is carried
unnormalised."""

import jax
import jax.numpy as jnp
import numpy as np
import reference as ref

import jrnn

B, T, I, H = 3, 6, 3, 4


def test_rescaling_u_and_w_separately_leaves_both_cells_unchanged():
    cells = (jrnn.layer_norm_lstm(H), jrnn.layer_norm_gru(H))
    params = [ref.random_params(cell, seed=s, input_size=I) for s, cell in enumerate(cells)]
    xs = ref.device(np.random.default_rng(5).standard_normal((B, T, I)))

    @jax.jit
    def run(params, xs):
        out = []
        for cell, p in zip(cells, params):
            scaled = p._replace(U=7.0 * p.U, W=5.0 * p.W)
            out.append((jrnn.scan(cell, p, xs)[0], jrnn.scan(cell, scaled, xs)[0]))
        return out

    for ys, ys_scaled in run(params, xs):
        # equal up to LN's epsilon (1e-5 against variances of 0.01 and more)
        np.testing.assert_allclose(ys_scaled, ys, rtol=1e-3, atol=1e-4)
        assert float(jnp.abs(ys).max()) > 0.1


def test_the_same_rescaling_changes_a_plain_lstm():
    """The property above is the normalisation's: without it the outputs move."""
    cell = jrnn.lstm(H)
    p = ref.random_params(cell, seed=0, input_size=I)
    xs = ref.device(np.random.default_rng(5).standard_normal((B, T, I)))
    run = jax.jit(lambda p, xs: (jrnn.scan(cell, p, xs)[0], jrnn.scan(cell, p._replace(U=7.0 * p.U, W=5.0 * p.W),
                                                                           xs)[0]))
    ys, ys_scaled = run(p, xs)
    assert float(jnp.abs(ys_scaled - ys).max()) > 0.1


def test_lstm_memory_is_carried_unnormalised():
    """Input gate shut, forget gate open: c_t = c_{t-1} exactly, however large, while h_t sees LN(c_t)."""
    cell = jrnn.layer_norm_lstm(H)
    big = 30.0
    p = ref.random_params(cell, seed=0, input_size=I)._replace(
        b_U=ref.device(np.concatenate([-big * np.ones(H), big * np.ones(H), np.zeros(2 * H)])))
    c = ref.device([[5.0, -3.0, 100.0, 0.0]])
    state, h = jax.jit(cell.step)(p, jrnn.LSTMState(ref.device(np.zeros((1, H))), c), ref.device(np.ones((1, I))))
    np.testing.assert_allclose(state.c, c, rtol=1e-6, atol=1e-9)
    assert float(jnp.abs(h).max()) < 1.0  # tanh of a normalised c with unit gain
