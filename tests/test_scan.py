"""``jrnn.scan``, ``jrnn.reverse_sequences`` and ``jrnn.RNN`` against Python/NumPy loops and analytic answers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

import jrnn

CASES = ref.cell_cases()
# The cells' equations are tested one by one in test_cells.py; the scan's properties are drawn over three cells that
# cover an array state (Elman, GRU) and a named-tuple state whose output size differs from its state (LSTM with
# projection), so that compiled scans are shared between examples and tests.
BY_NAME = {c.name: c for c in CASES}
SCAN_CASES = [BY_NAME[n] for n in ("elman_tanh", "lstm_proj", "gru_reset_before")]
TOL = dict(rtol=2e-5, atol=2e-5)
SETTINGS = settings(max_examples=15, deadline=None, database=None)
I = 3  # input features

# One compiled scan per (cell, shapes, flags), shared by every test in this file.
scan_jit = jax.jit(jrnn.scan, static_argnums=(0,), static_argnames=("reverse", "solver"))
reverse_jit = jax.jit(jrnn.reverse_sequences)


@functools.cache
def step_jit(cell):
    return jax.jit(cell.step)


def _inputs(seed, B, T, scale=1.0):
    return ref.device(scale * np.random.default_rng(seed).standard_normal((B, T, I)))


@st.composite
def problems(draw, shapes=((3, 5),), max_extra_length=1):
    """A cell case, ``xs[B, T, I]``, ``lengths[B]`` in ``0..T + max_extra_length`` and a random initial state."""
    case = draw(st.sampled_from(SCAN_CASES))
    B, T = draw(st.sampled_from(shapes))
    lengths = draw(st.lists(st.integers(0, T + max_extra_length), min_size=B, max_size=B))
    seed = draw(st.integers(0, 2 ** 16))
    params = ref.random_params(case.cell, seed, I)
    s0 = ref.random_state(case.cell, B, seed + 1)
    return case, params, _inputs(seed + 2, B, T), ref.device(lengths, np.int32), s0


def _assert_padded_exactly_zero(ys, lengths):
    ys = np.asarray(ys)
    for b, n in enumerate(np.asarray(lengths)):
        np.testing.assert_array_equal(ys[b, n:], 0.0)


# ----------------------------------------------------------------------------------------------------------------
# Forward scan
# ----------------------------------------------------------------------------------------------------------------

@SETTINGS
@given(case=st.sampled_from(SCAN_CASES), shape=st.sampled_from([(1, 1), (3, 5)]), seed=st.integers(0, 2 ** 16))
def test_scan_without_lengths_equals_python_loop_over_step(case, shape, seed):
    B, T = shape
    params = ref.random_params(case.cell, seed, I)
    xs = _inputs(seed + 1, B, T)
    ys, final = scan_jit(case.cell, params, xs)

    x = np.asarray(xs)  # slice in NumPy: eager jnp slicing would compile one op per time index
    state, loop_ys = case.cell.initial_state((B,)), []
    for t in range(T):
        state, y = step_jit(case.cell)(params, state, x[:, t])
        loop_ys.append(np.asarray(y))
    np.testing.assert_allclose(ys, np.stack(loop_ys, axis=1), rtol=1e-6, atol=1e-6)
    ref.assert_states_close(final, state, rtol=1e-6, atol=1e-6)

    # ... and the loop is the NumPy equations.
    ref_ys, ref_finals = ref.run_batch(case.ref_step(params), ref.state_rows(case.cell.initial_state((B,)), B), xs)
    np.testing.assert_allclose(ys, ref_ys, **TOL)
    ref.assert_states_close(final, ref.stack_states(ref_finals), **TOL)


@SETTINGS
@given(problem=problems(shapes=((3, 5), (1, 4)), max_extra_length=2))
def test_scan_with_lengths_equals_each_sequences_own_prefix_loop(problem):
    case, params, xs, lengths, s0 = problem
    ys, final = scan_jit(case.cell, params, xs, lengths=lengths, initial_state=s0)

    ref_ys, ref_finals = ref.run_batch(case.ref_step(params), ref.state_rows(s0, len(lengths)), xs, lengths)
    np.testing.assert_allclose(ys, ref_ys, **TOL)  # valid steps; final state = state after the last valid step
    ref.assert_states_close(final, ref.stack_states(ref_finals), **TOL)
    _assert_padded_exactly_zero(ys, lengths)


def test_zero_length_sequence_returns_the_initial_state_and_zero_outputs():
    cell = BY_NAME["lstm_proj"].cell
    params = ref.random_params(cell, 0, I)
    s0 = ref.random_state(cell, 3, seed=1)
    for reverse in (False, True):
        ys, final = scan_jit(cell, params, _inputs(2, 3, 5), lengths=jnp.array([0, 0, 0]), initial_state=s0,
                             reverse=reverse)
        np.testing.assert_array_equal(ys, 0.0)
        np.testing.assert_array_equal(final.h, s0.h)
        np.testing.assert_array_equal(final.c, s0.c)


def test_lengths_of_T_and_above_equal_no_lengths():
    case = BY_NAME["lstm_proj"]
    params = ref.random_params(case.cell, 0, I)
    xs, s0 = _inputs(1, 3, 5), case.cell.initial_state((3,))
    for reverse in (False, True):
        ys_none, final_none = scan_jit(case.cell, params, xs, reverse=reverse)
        ys_len, final_len = scan_jit(case.cell, params, xs, lengths=jnp.array([5, 6, 100]), initial_state=s0,
                                     reverse=reverse)
        np.testing.assert_allclose(ys_len, ys_none, rtol=1e-6, atol=1e-7)
        ref.assert_states_close(final_len, final_none, rtol=1e-6, atol=1e-7)


def test_initial_state_is_honoured_against_numpy():
    for case in SCAN_CASES:
        params = ref.random_params(case.cell, 3, I)
        s0 = ref.random_state(case.cell, 3, seed=4, scale=1.0)
        xs, lengths = _inputs(5, 3, 5), jnp.array([5, 2, 1])
        ys, final = scan_jit(case.cell, params, xs, lengths=lengths, initial_state=s0)
        ref_ys, ref_finals = ref.run_batch(case.ref_step(params), ref.state_rows(s0, 3), xs, lengths)
        np.testing.assert_allclose(ys, ref_ys, **TOL)
        ref.assert_states_close(final, ref.stack_states(ref_finals), **TOL)
        # the initial state matters: starting from zeros gives a different first output
        ys_zero, _ = scan_jit(case.cell, params, xs, lengths=lengths, initial_state=case.cell.initial_state((3,)))
        assert not np.allclose(ys_zero[:, 0], ys[:, 0], atol=1e-3)


def test_a_user_defined_cell_scans_to_running_sums():
    class Summer:
        """s_t = s_{t-1} + x_t, y_t = s_t: the scan is a (length-aware) cumulative sum."""
        hidden_size = output_size = 2

        def init(self, key, input_size):
            return ()

        def initial_state(self, batch_shape=(), dtype=None):
            return jnp.zeros((*batch_shape, 2), dtype or jnp.float32)

        def step(self, params, state, x):
            return state + x, state + x

        def input_size(self, params):
            return 2

    xs = jnp.arange(24, dtype=jnp.float32).reshape(3, 4, 2)
    lengths = np.array([4, 2, 0])
    ys, final = jrnn.scan(Summer(), (), xs, lengths=jnp.asarray(lengths))
    ys_rev, final_rev = jrnn.scan(Summer(), (), xs, lengths=jnp.asarray(lengths), reverse=True)
    x = np.asarray(xs)
    for b, n in enumerate(lengths):
        np.testing.assert_array_equal(ys[b, :n], np.cumsum(x[b, :n], axis=0))
        # backwards, the output at t is the sum of the suffix x[t:n]
        np.testing.assert_array_equal(ys_rev[b, :n], np.cumsum(x[b, :n][::-1], axis=0)[::-1])
        np.testing.assert_array_equal(final[b], x[b, :n].sum(axis=0))
        np.testing.assert_array_equal(final_rev[b], x[b, :n].sum(axis=0))
    _assert_padded_exactly_zero(ys, lengths)
    _assert_padded_exactly_zero(ys_rev, lengths)


# ----------------------------------------------------------------------------------------------------------------
# Padding, reversal, jit, unroll
# ----------------------------------------------------------------------------------------------------------------

def _scramble_padding(xs, lengths, seed):
    """``xs`` with every padded entry replaced by large garbage."""
    xs = np.array(xs)
    garbage = 1e3 * np.random.default_rng(seed).standard_normal(xs.shape)
    pad = np.arange(xs.shape[1])[None, :] >= np.asarray(lengths)[:, None]
    xs[pad] = garbage[pad]
    return ref.device(xs)


@SETTINGS
@given(problem=problems(), reverse=st.booleans())
def test_padding_never_leaks_into_valid_outputs_or_final_states(problem, reverse):
    case, params, xs, lengths, s0 = problem
    ys, final = scan_jit(case.cell, params, xs, lengths=lengths, initial_state=s0, reverse=reverse)
    ys2, final2 = scan_jit(case.cell, params, _scramble_padding(xs, lengths, 7), lengths=lengths,
                           initial_state=s0, reverse=reverse)
    np.testing.assert_array_equal(ys2, ys)
    for a, b in zip(ref.state_arrays(final2), ref.state_arrays(final), strict=True):
        np.testing.assert_array_equal(a, b)


@SETTINGS
@given(problem=problems())
def test_reverse_equals_flip_forward_flip_per_sequence(problem):
    case, params, xs, lengths, s0 = problem
    ys_rev, final_rev = scan_jit(case.cell, params, xs, lengths=lengths, initial_state=s0, reverse=True)

    flipped = ref.device(ref.flip_valid(xs, lengths))  # NumPy per-sequence flip
    ys_fwd, final_fwd = scan_jit(case.cell, params, flipped, lengths=lengths, initial_state=s0)
    np.testing.assert_allclose(ys_rev, ref.flip_valid(ys_fwd, lengths), rtol=1e-6, atol=1e-6)
    ref.assert_states_close(final_rev, final_fwd, rtol=1e-6, atol=1e-6)
    _assert_padded_exactly_zero(ys_rev, lengths)

    # ... and against the NumPy loop that reads each valid prefix from its end.
    ref_ys, ref_finals = ref.run_batch(case.ref_step(params), ref.state_rows(s0, len(lengths)), xs, lengths,
                                       reverse=True)
    np.testing.assert_allclose(ys_rev, ref_ys, **TOL)
    ref.assert_states_close(final_rev, ref.stack_states(ref_finals), **TOL)


@SETTINGS
@given(B=st.sampled_from([1, 3]), T=st.sampled_from([1, 6]), trailing=st.sampled_from([(), (2, 3)]),
       data=st.data())
def test_reverse_sequences_is_an_involution_matching_a_numpy_loop(B, T, trailing, data):
    lengths = np.array(data.draw(st.lists(st.integers(0, T + 2), min_size=B, max_size=B)), np.int32)
    xs = np.arange(B * T * int(np.prod(trailing)), dtype=np.float32).reshape((B, T, *trailing))
    out = np.asarray(reverse_jit(jnp.asarray(xs), jnp.asarray(lengths)))
    expected = xs.copy()
    for b in range(B):
        n = min(lengths[b], T)
        for t in range(n):
            expected[b, t] = xs[b, n - 1 - t]
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out, ref.flip_valid(xs, lengths))
    np.testing.assert_array_equal(reverse_jit(jnp.asarray(out), jnp.asarray(lengths)), xs)


def test_reverse_sequences_without_lengths_flips_the_time_axis():
    xs = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    np.testing.assert_array_equal(jrnn.reverse_sequences(jnp.asarray(xs)), xs[:, ::-1])


def test_valid_mask_is_t_below_length():
    mask = jrnn.valid_mask(jnp.array([0, 2, 5]), 3, 4)
    np.testing.assert_array_equal(mask, [[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    assert jrnn.valid_mask(None, 3, 4) is None


@pytest.mark.parametrize("reverse, name", [(False, "lstm_proj"), (True, "gru_reset_before")])
def test_jit_equals_no_jit(reverse, name):
    cell = BY_NAME[name].cell
    params = ref.random_params(cell, 0, I)
    xs, lengths = _inputs(1, 3, 5), jnp.array([5, 3, 0])
    s0 = ref.random_state(cell, 3, seed=2)
    eager = jrnn.scan(cell, params, xs, lengths=lengths, initial_state=s0, reverse=reverse)
    jitted = jax.jit(lambda p, x, n, s: jrnn.scan(cell, p, x, lengths=n, initial_state=s, reverse=reverse))(
        params, xs, lengths, s0)
    np.testing.assert_allclose(jitted[0], eager[0], rtol=1e-6, atol=1e-6)
    ref.assert_states_close(jitted[1], eager[1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("solver, reverse", [(jrnn.fused(unroll=2), True), (jrnn.fused(unroll=True), False),
                                            (jrnn.sequential(unroll=3), True)])
def test_unroll_leaves_the_result_equal_to_numpy(solver, reverse):
    case = BY_NAME["lstm_proj"]
    params = ref.random_params(case.cell, 0, I)
    xs, lengths = _inputs(1, 3, 5), jnp.array([5, 3, 1])
    ys, final = scan_jit(case.cell, params, xs, lengths=lengths, reverse=reverse, solver=solver)
    ref_ys, ref_finals = ref.run_batch(case.ref_step(params), ref.state_rows(case.cell.initial_state((3,)), 3),
                                       xs, lengths, reverse=reverse)
    np.testing.assert_allclose(ys, ref_ys, **TOL)
    ref.assert_states_close(final, ref.stack_states(ref_finals), **TOL)


def test_rnn_layer_runs_the_cell_forward_or_backward_like_numpy():
    case = BY_NAME["gru_reset_after"]
    params = ref.random_params(case.cell, 0, I)
    xs, lengths = _inputs(1, 3, 5), jnp.array([2, 5, 4])
    for reverse in (False, True):
        layer = jrnn.RNN(case.cell, reverse=reverse)
        ys, final = jax.jit(layer.apply)(params, xs, lengths=lengths)
        ref_ys, ref_finals = ref.run_batch(case.ref_step(params), ref.state_rows(case.cell.initial_state((3,)), 3),
                                           xs, lengths, reverse=reverse)
        np.testing.assert_allclose(ys, ref_ys, **TOL)
        np.testing.assert_allclose(final, np.stack(ref_finals), **TOL)


def test_bfloat16_inputs_with_float32_params_scan_like_their_float32_values():
    case = BY_NAME["elman_tanh"]
    params = ref.random_params(case.cell, 0, I)
    xs = _inputs(1, 3, 5).astype(jnp.bfloat16)
    ys, final = scan_jit(case.cell, params, xs, lengths=jnp.array([5, 2, 0]))
    ys32, final32 = scan_jit(case.cell, params, xs.astype(jnp.float32), lengths=jnp.array([5, 2, 0]))
    np.testing.assert_array_equal(ys, ys32)
    np.testing.assert_array_equal(final, final32)
