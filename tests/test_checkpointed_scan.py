"""The checkpointed scan: same values and gradients as plain BPTT through jrnn.scan, and less memory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn

B, T, I = 3, 11, 2
LENGTHS = np.array([11, 6, 1])

CASES = [  # (cell, lengths, reverse, segment_length): padded and exact segmentations, both directions
    ("elman", False, False, 1),
    ("lstm_proj", True, True, 4),
    ("gru", True, False, 100),  # longer than T: one segment (the default length is used below)
]


def _cell(name, dtype):
    return {"elman": jrnn.elman(5, dtype=dtype), "lstm": jrnn.lstm(4, dtype=dtype),
            "lstm_proj": jrnn.lstm(5, proj_size=3, dtype=dtype), "gru": jrnn.gru(4, dtype=dtype)}[name]


def _both(cell, lengths, reverse, segment):
    """Value and gradient (params, xs, initial state) of one loss through each scan, in one compiled program."""
    def loss(scan_fn, params, xs, s0):
        ys, final = scan_fn(cell, params, xs, lengths=lengths, initial_state=s0, reverse=reverse)
        return jnp.sum(jnp.sin(ys) * ys) + sum(jnp.sum(leaf ** 2) for leaf in jax.tree_util.tree_leaves(final))

    def checkpointed(*args, **kwargs):
        return jrnn.checkpointed_scan(*args, segment_length=segment, **kwargs)

    @jax.jit
    def run(params, xs, s0):
        grad = jax.value_and_grad(loss, argnums=(1, 2, 3))
        return grad(jrnn.scan, params, xs, s0), grad(checkpointed, params, xs, s0)

    return run


@pytest.mark.parametrize("name, with_lengths, reverse, segment", CASES)
def test_checkpointed_scan_gradient_equals_plain_bptt(name, with_lengths, reverse, segment):
    with jax.enable_x64(True):
        cell = _cell(name, jnp.float64)
        params = cell.init(jax.random.key(0), I)
        xs = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float64)
        s0 = jax.tree_util.tree_map(lambda z: z + 0.1, cell.initial_state((B,), jnp.float64))
        lengths = jnp.asarray(LENGTHS) if with_lengths else None
        (v, g), (v_ck, g_ck) = _both(cell, lengths, reverse, segment)(params, xs, s0)
        np.testing.assert_allclose(v_ck, v, rtol=1e-12)
        for a, b in zip(jax.tree_util.tree_leaves(g_ck), jax.tree_util.tree_leaves(g)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_checkpointed_scan_outputs_and_final_state_equal_scan_in_float32():
    cell = jrnn.lstm(4)
    params = cell.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (B, T, I))
    lengths = jnp.asarray(LENGTHS)
    run = jax.jit(lambda p, x: (jrnn.scan(cell, p, x, lengths=lengths, reverse=True),
                                jrnn.checkpointed_scan(cell, p, x, lengths=lengths, reverse=True, segment_length=3)))
    (ys, final), (ys_ck, final_ck) = run(params, xs)
    np.testing.assert_allclose(ys_ck, ys, rtol=1e-6, atol=1e-6)
    for a, b in zip(final_ck, final):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert np.all(np.asarray(ys_ck)[2, 1:] == 0)  # padded outputs are 0, as jrnn.scan's


def test_checkpointed_scan_lowers_peak_memory_of_the_gradient():
    """XLA's compiled memory analysis (nothing runs): plain BPTT stores residuals for every step."""
    cell = jrnn.elman(32)
    params = cell.init(jax.random.key(0), I)
    xs = jnp.zeros((4, 1000, I))

    def temp_bytes(scan_fn):  # default segment length: ceil(sqrt(1000)) = 32
        def loss(p, x):
            return jnp.sum(scan_fn(cell, p, x)[1] ** 2)
        return jax.jit(jax.grad(loss)).lower(params, xs).compile().memory_analysis().temp_size_in_bytes

    plain, checkpointed = temp_bytes(jrnn.scan), temp_bytes(jrnn.checkpointed_scan)
    per_step_state = 4 * 32 * 4  # one [B, H] float32 array
    assert plain > 1000 * per_step_state  # at least one state's worth of residuals per step
    assert checkpointed < plain / 4


def test_checkpointed_scan_rejects_bad_segment_length_and_inputs():
    cell = jrnn.gru(4)
    params = cell.init(jax.random.key(0), I)
    xs = jnp.zeros((B, T, I))
    with pytest.raises(ValueError, match="segment_length"):
        jrnn.checkpointed_scan(cell, params, xs, segment_length=0)
    with pytest.raises(TypeError, match="segment_length"):
        jrnn.checkpointed_scan(cell, params, xs, segment_length=2.5)
    with pytest.raises(ValueError, match="input features"):
        jrnn.checkpointed_scan(cell, params, jnp.zeros((B, T, I + 1)))
    with pytest.raises(ValueError, match="initial_state"):
        jrnn.checkpointed_scan(cell, params, xs, initial_state=jnp.zeros((B, 5)))
