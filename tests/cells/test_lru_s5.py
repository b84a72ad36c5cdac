"""The LRU and S5 cells, whose state is complex: against their NumPy equations (tests/reference_ssm.py) one step at a
time and through ``jrnn.scan`` (lengths, both directions, a complex initial state); the associative solver against
the sequential loop in values and gradients in float64 (to 1e-10) and in float32 over 1024 steps; the gradients
against central differences of the NumPy loop; the initialisations' stated properties (the LRU's ring, S5's HiPPO-N
eigenvalues computed independently); the argument errors.

Float32: over 1024 steps from the default initialisations, both solvers stay within ``1e-5 · max|y|`` of the
float64 answer (measured: about ``2e-6 · max|y|`` for the LRU, ``1.5e-7 · max|y|`` for S5; the error is float32's
rounding of the parameters and of ``λ`` near the unit circle, the same for the loop and the associative scan).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
import reference_modern as refm
import reference_ssm as refs

import jrnn

B, T, I, H = 3, 6, 2, 4
LENGTHS = np.array([T, 2, 0], np.int32)  # a full, a short and an empty sequence
TOL = dict(rtol=1e-10, atol=1e-10)  # float64

CASES = {  # name: (cell, NumPy step (params -> (s, x) -> (s, y)))
    "lru": (jrnn.lru(H, I, dtype=jnp.float64), lambda p: functools.partial(refs.lru_step, p)),
    "s5_zoh": (jrnn.s5(H, I, dtype=jnp.float64), lambda p: functools.partial(refs.s5_step, p)),
    "s5_bilinear": (jrnn.s5(H, I, discretization="bilinear", dtype=jnp.float64),
                    lambda p: functools.partial(refs.s5_step, p, discretization="bilinear")),
    "s5_no_conj_sym": (jrnn.s5(H, I, conj_sym=False, dtype=jnp.float64),
                       lambda p: functools.partial(refs.s5_step, p, conj_sym=False)),
    "s5_clip_blocks": (jrnn.s5(H, I, blocks=2, clip_eigs=True, dtype=jnp.float64),
                       lambda p: functools.partial(refs.s5_step, p, clip_eigs=True)),
}


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _params(name, seed=0):
    """The cell's own initialisation, every entry moved by N(0, 0.3²) so that no structure of the init (S5's equal
    real parts) hides an error; one eigenvalue of the clipped S5 in the right half-plane, where the clip acts."""
    cell = CASES[name][0]
    rng = np.random.default_rng(seed)
    params = jax.tree_util.tree_map(lambda a: ref.device(np.asarray(a) + 0.3 * rng.standard_normal(a.shape),
                                                         np.float64), cell.init(jax.random.key(seed), I))
    if name == "s5_clip_blocks":
        params = params._replace(Lambda_re=params.Lambda_re.at[0].set(0.2))
    return params


def _inputs(seed):
    rng = np.random.default_rng(seed)
    xs = ref.device(rng.standard_normal((B, T, I)), np.float64)
    s0 = ref.device(0.5 * (rng.standard_normal((B, H)) + 1j * rng.standard_normal((B, H))), np.complex128)
    return xs, s0


@pytest.mark.parametrize("name", sorted(CASES))
def test_step_and_scan_equal_the_numpy_loop_with_lengths_both_ways_and_an_initial_state(name, x64):
    cell, ref_step = CASES[name]
    params = _params(name)
    xs, s0 = _inputs(1)

    @jax.jit
    def run(params, s0, xs, lengths):
        return (cell.step(params, s0, xs[:, 0]),
                *(jrnn.scan(cell, params, xs, lengths=lengths, initial_state=s0, reverse=reverse,
                            solver=jrnn.sequential()) for reverse in (False, True)))

    (s1, y1), forward, backward = run(params, s0, xs, ref.device(LENGTHS, np.int32))
    step = ref_step(params)
    for b in range(B):
        want_s, want_y = step(np.asarray(s0[b]), np.asarray(xs[b, 0]))
        np.testing.assert_allclose(s1[b], want_s, **TOL)
        np.testing.assert_allclose(y1[b], want_y, **TOL)
    for (ys, final), reverse in ((forward, False), (backward, True)):
        want_ys, want_finals = refm.run_batch(step, list(np.asarray(s0)), xs, LENGTHS, reverse=reverse)
        np.testing.assert_allclose(ys, want_ys, **TOL, err_msg=f"reverse={reverse}")
        np.testing.assert_allclose(final, np.stack(want_finals), **TOL, err_msg=f"reverse={reverse}")
    assert y1.dtype == jnp.float64 and s1.dtype == jnp.complex128


def _loss(cell, solver, reverse):
    """A weighted sum of the outputs plus ``sin`` of the final state's real and ``cos`` of its imaginary parts."""

    def loss(params, xs, s0, lengths):
        ys, final = jrnn.scan(cell, params, xs, lengths=lengths, initial_state=s0, reverse=reverse, solver=solver)
        weights = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype).reshape(ys.shape))
        return jnp.sum(weights * ys) + jnp.sum(jnp.sin(final.real)) + jnp.sum(jnp.cos(final.imag)), (ys, final)

    return loss


@pytest.mark.parametrize("name", sorted(CASES))
def test_associative_solver_equals_the_sequential_loop_in_values_and_gradients(name, x64):
    cell = CASES[name][0]
    params = _params(name, seed=2)
    xs, s0 = _inputs(3)

    @jax.jit
    def run(params, xs, s0, lengths):
        return {(solver, reverse): jax.grad(_loss(cell, make(), reverse), argnums=(0, 1, 2), has_aux=True)(
                    params, xs, s0, lengths)
                for solver, make in (("sequential", jrnn.sequential), ("associative", jrnn.associative))
                for reverse in (False, True)}

    results = run(params, xs, s0, ref.device(LENGTHS, np.int32))
    for reverse in (False, True):
        got, want = results["associative", reverse], results["sequential", reverse]
        for i, (a, e) in enumerate(zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True)):
            np.testing.assert_allclose(a, e, **TOL, err_msg=f"{name}, reverse={reverse}, leaf {i}")
        (_, _, ds0), (ys, final) = want
        # The empty sequence: zero outputs, its initial state, and the final-state term's gradient at s0 alone (JAX's
        # gradient of a real loss in z = u + iv is ∂L/∂u - i ∂L/∂v).
        np.testing.assert_array_equal(ys[2], 0.0)
        np.testing.assert_array_equal(final[2], s0[2])
        np.testing.assert_allclose(ds0[2], np.cos(s0[2].real) + 1j * np.sin(s0[2].imag), **TOL)


@pytest.mark.parametrize("cell", [jrnn.lru(64, 8, r_min=0.9, max_phase=np.pi / 10), jrnn.lru(64, 8),
                                  jrnn.s5(64, 8), jrnn.s5(64, 8, blocks=4, discretization="bilinear")],
                         ids=["lru_ring", "lru", "s5", "s5_bilinear_blocks"])
def test_float32_solvers_stay_near_the_float64_answer_over_1024_steps(cell):
    params = cell.init(jax.random.key(0), 8)
    xs = jax.random.normal(jax.random.key(1), (2, 1024, 8))
    run = jax.jit(lambda p, x: [jrnn.scan(cell, p, x, solver=s()) for s in (jrnn.associative, jrnn.sequential)])
    got = run(params, xs)
    with jax.enable_x64(True):
        want = jax.tree_util.tree_map(np.asarray, run(*jax.tree_util.tree_map(
            lambda a: jnp.asarray(a, jnp.float64), (params, xs)))[1])
    assert got[0][1].dtype == jnp.complex64
    for ys, final in got:
        np.testing.assert_allclose(ys, want[0], rtol=0, atol=1e-5 * np.abs(want[0]).max())
        np.testing.assert_allclose(final, want[1], rtol=0, atol=1e-5 * np.abs(want[0]).max())


FD_PARAMS = {  # a few scalars each: (field, index)
    "lru": [("nu_log", (0,)), ("theta_log", (1,)), ("gamma_log", (2,)), ("B_im", (1, 0)), ("C_re", (0, 3))],
    "s5_zoh": [("Lambda_re", (0,)), ("Lambda_im", (1,)), ("log_step", (2,)), ("B_re", (3, 1)), ("C_im", (1, 2))],
    "s5_bilinear": [("Lambda_re", (1,)), ("Lambda_im", (0,)), ("log_step", (3,)), ("D", (0,))],
}


@pytest.mark.parametrize("name", sorted(FD_PARAMS))
def test_gradients_equal_central_differences_of_the_numpy_loop(name, x64):
    cell, ref_step = CASES[name]
    params = _params(name, seed=4)
    xs, s0 = _inputs(5)
    weights = np.cos(np.arange(B * T * I)).reshape(B, T, I)

    def numpy_loss(params):
        ys, finals = refm.run_batch(ref_step(params), list(np.asarray(s0)), xs, LENGTHS, reverse=True)
        return np.sum(weights * ys) + sum(np.sum(np.sin(s.real)) + np.sum(np.cos(s.imag)) for s in finals)

    grads = jax.jit(jax.grad(lambda p: _loss(cell, jrnn.associative(), True)(p, xs, s0, LENGTHS)[0]))(params)
    numpy_params = jax.tree_util.tree_map(np.asarray, params)
    eps = 1e-6
    for field, index in FD_PARAMS[name]:
        moved = []
        for sign in (1, -1):
            value = getattr(numpy_params, field).copy()
            value[index] += sign * eps
            moved.append(numpy_loss(numpy_params._replace(**{field: value})))
        np.testing.assert_allclose(getattr(grads, field)[index], (moved[0] - moved[1]) / (2 * eps), rtol=1e-6,
                                   atol=1e-7, err_msg=f"{name}: d loss / d {field}{list(index)}")


# ----------------------------------------------------------------------------------------------------------------
# Initialisations.
# ----------------------------------------------------------------------------------------------------------------

def test_lru_defaults_are_the_papers():
    cell = jrnn.lru(8, 3)
    assert (cell.r_min, cell.r_max, cell.max_phase) == (0.0, 1.0, 6.28)


@pytest.mark.parametrize("r_min, r_max, max_phase", [(0.0, 1.0, 6.28), (0.9, 0.999, np.pi / 10), (0.4, 0.6, 3.0)])
def test_lru_eigenvalues_start_on_the_ring_with_the_normalisation(r_min, r_max, max_phase, x64):
    Hn, In = 4000, 3
    cell = jrnn.lru(Hn, In, r_min=r_min, r_max=r_max, max_phase=max_phase, dtype=jnp.float64)
    p = jax.tree_util.tree_map(np.asarray, cell.init(jax.random.key(0), In))
    lam = refs.lru_eigenvalues(p)
    modulus, phase = np.abs(lam), np.exp(p.theta_log)
    assert modulus.min() >= r_min - 1e-12 and modulus.max() <= r_max + 1e-12
    assert phase.min() >= 0.0 and phase.max() <= max_phase
    # |λ|² uniform on [r_min², r_max²] (uniform on the ring's area), θ uniform on [0, max_phase]: the means.
    width = r_max ** 2 - r_min ** 2  # the means are within 0.03 width (6 standard errors) of the uniform's
    np.testing.assert_allclose(np.mean(modulus ** 2), (r_min ** 2 + r_max ** 2) / 2, atol=0.03 * width)
    np.testing.assert_allclose(np.mean(phase), max_phase / 2, atol=0.03 * max_phase)
    np.testing.assert_allclose(np.exp(p.gamma_log), np.sqrt(1 - modulus ** 2), rtol=1e-10)
    # B_re, B_im ~ N(0, 1/(2I)); C_re, C_im ~ N(0, 1/H); D ~ N(0, 1).
    for field, std in (("B_re", 1 / np.sqrt(2 * In)), ("B_im", 1 / np.sqrt(2 * In)), ("C_re", 1 / np.sqrt(Hn)),
                       ("C_im", 1 / np.sqrt(Hn))):
        np.testing.assert_allclose(np.std(getattr(p, field)), std, rtol=0.05, err_msg=field)
    assert p.B_re.shape == (Hn, In) and p.C_re.shape == (In, Hn) and p.D.shape == (In,)


@pytest.mark.parametrize("hidden, blocks, conj_sym", [(4, 1, True), (6, 2, True), (6, 3, False), (5, 1, False)])
def test_s5_eigenvalues_are_hippo_n_s_computed_independently(hidden, blocks, conj_sym, x64):
    cell = jrnn.s5(hidden, 2, blocks=blocks, conj_sym=conj_sym, dtype=jnp.float64)
    p = cell.init(jax.random.key(0), 2)
    Lambda = np.asarray(p.Lambda_re) + 1j * np.asarray(p.Lambda_im)
    assert np.all(Lambda.real < 0)
    size = (2 if conj_sym else 1) * hidden // blocks
    by_imaginary_part = lambda v: v[np.argsort(v.imag)]  # noqa: E731  (the real parts are all -1/2)
    want = by_imaginary_part(np.linalg.eigvals(refs.hippo_n(size)))
    for block in np.split(Lambda, blocks):
        got = np.concatenate([block, block.conj()]) if conj_sym else block
        np.testing.assert_allclose(by_imaginary_part(got), want, atol=1e-9)
        if conj_sym:  # one of each conjugate pair: the one of negative imaginary part
            assert np.all(block.imag < 0)


def test_s5_initial_matrices_steps_and_feed_through_have_the_official_scales(x64):
    Hn, In, dt_min, dt_max = 64, 400, 0.002, 0.05
    p = jax.tree_util.tree_map(np.asarray, jrnn.s5(Hn, In, blocks=4, dt_min=dt_min, dt_max=dt_max,
                                                   dtype=jnp.float64).init(jax.random.key(0), In))
    P = 2 * Hn  # B [P, I] and the parts of C [O, P] have variance 1/P; V [P, H] has orthonormal columns.
    np.testing.assert_allclose(np.mean(p.B_re ** 2 + p.B_im ** 2), 1 / P, rtol=0.05)  # |V^H B|²: 1/P
    np.testing.assert_allclose(np.mean(p.C_re ** 2 + p.C_im ** 2), 2 / P, rtol=0.05)  # |C V|²: 2/P
    np.testing.assert_allclose(np.std(p.D), 1.0, rtol=0.1)
    step = np.exp(p.log_step)
    assert step.min() >= dt_min * (1 - 1e-12) and step.max() <= dt_max * (1 + 1e-12)
    assert p.log_step.shape == (Hn,) and p.B_re.shape == (Hn, In) and p.C_re.shape == (In, Hn)


@pytest.mark.parametrize("make", [lambda dtype: jrnn.lru(3, 2, dtype=dtype), lambda dtype: jrnn.s5(4, 2, dtype=dtype)],
                         ids=["lru", "s5"])
def test_initial_state_is_complex_zeros_of_the_carry_dtypes_precision(make, x64):
    cell = make(jnp.float32)
    assert cell.initial_state((2, 5)).shape == (2, 5, cell.hidden_size)
    assert cell.initial_state((2,)).dtype == jnp.complex64
    assert cell.initial_state((2,), jnp.float64).dtype == jnp.complex128
    assert make(jnp.float64).initial_state(()).dtype == jnp.complex128
    assert not np.any(np.asarray(cell.initial_state((2,))))


# ----------------------------------------------------------------------------------------------------------------
# Errors.
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [jrnn.lru, jrnn.s5], ids=["lru", "s5"])
def test_init_refuses_an_input_size_other_than_the_output_size(make):
    with pytest.raises(ValueError, match=r"init: expected input_size equal to output_size = 2 .*got input_size = 3"):
        make(4, 2).init(jax.random.key(0), 3)


@pytest.mark.parametrize("call, error, message", [
    (lambda: jrnn.lru(0, 2), ValueError, r"jrnn.lru: expected hidden_size to be a positive int, got 0"),
    (lambda: jrnn.lru(4, 2.0), TypeError, r"jrnn.lru: expected output_size to be a positive int, got 2.0"),
    (lambda: jrnn.lru(4, 2, r_min=1.0), ValueError, r"expected 0 <= r_min < 1, got r_min=1.0"),
    (lambda: jrnn.lru(4, 2, r_min=0.5, r_max=0.4), ValueError,
     r"expected r_min <= r_max <= 1, got r_min=0.5 and r_max=0.4"),
    (lambda: jrnn.lru(4, 2, max_phase=0.0), ValueError, r"expected a positive max_phase, got max_phase=0.0"),
    (lambda: jrnn.lru(4, 2, r_max="1"), TypeError, r"expected r_max to be a real number, got '1'"),
    (lambda: jrnn.s5(6, 2, blocks=4), ValueError,
     r"jrnn.s5: expected hidden_size to be a multiple of blocks, got hidden_size=6 and blocks=4"),
    (lambda: jrnn.s5(4, 2, discretization="euler"), ValueError,
     r"expected discretization to be one of \('zoh', 'bilinear'\), got 'euler'"),
    (lambda: jrnn.s5(4, 2, conj_sym=1), TypeError, r"expected conj_sym to be True or False, got 1"),
    (lambda: jrnn.s5(4, 2, dt_min=0.0), ValueError, r"expected dt_min to be a positive real number, got 0.0"),
    (lambda: jrnn.s5(4, 2, dt_min=0.2, dt_max=0.1), ValueError,
     r"expected dt_min <= dt_max, got dt_min=0.2 and dt_max=0.1"),
])
def test_factories_name_what_they_expected_and_what_they_got(call, error, message):
    with pytest.raises(error, match=message):
        call()
