"""Parallel in time: DEER, quasi-DEER and ELK against the sequential scan (a ``lax.scan`` of ``cell.step``, the
definition), their implicit gradients against BPTT, and the iteration's own promises (exact prefixes, one step for
an affine recurrence, a flag when it did not converge).

Float64 tests run inside ``jax.enable_x64`` (a context manager), so other test files keep 32-bit types.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import registry

import jrnn
from jrnn._src.solvers.linear import damped_diagonal_step, linear_scan

B, T, F = 3, 40, 2
SOLVERS = {"deer": jrnn.deer, "quasi_deer": jrnn.quasi_deer, "elk": jrnn.elk}
CELLS = {
    "elman-tanh": lambda: registry.make("elman_tanh", 5),
    "elman-relu": lambda: jrnn.elman(5, jax.nn.relu, W_init=jrnn.init.orthogonal(0.9)),  # contracting: converges
    "lstm": lambda: registry.make("lstm", 4),
    "gru": lambda: registry.make("gru", 4),
}


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def f64(tree):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)


def problem(name, seed=0, batch=B, time=T):
    cell = CELLS[name]()
    params = f64(cell.init(jax.random.key(seed), F))
    xs = jax.random.normal(jax.random.key(seed + 1), (batch, time, F), jnp.float64)
    state = jax.tree_util.tree_map(lambda a: 0.3 * jax.random.normal(jax.random.key(seed + 2), a.shape, a.dtype),
                                   cell.initial_state((batch,), jnp.float64))
    return cell, params, xs, state


def sequential(cell, params, xs, **kwargs):
    return jrnn.scan(cell, params, xs, solver=jrnn.sequential(), **kwargs)


def max_abs(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                                jax.tree_util.tree_leaves(b), strict=True))


# At T = 40, where converging takes fewer than T iterations. Every cell of tests/registry.py, reversed, at T = 6 (and
# the values and gradients of the default gradient modes): tests/test_contract.py.
EQUALITY = [(method, name) for method in SOLVERS for name in CELLS]


@pytest.mark.parametrize("method,name", EQUALITY)
def test_each_solver_equals_the_sequential_scan_in_float64(x64, method, name):
    cell, params, xs, state = problem(name)
    lengths = jnp.array([T, 17, 0])
    kwargs = dict(lengths=lengths, initial_state=state)
    ys, final, info = jrnn.newton_scan(cell, params, xs, solver=SOLVERS[method](fallback="none"), **kwargs)
    want_ys, want_final = sequential(cell, params, xs, **kwargs)
    assert bool(info.converged), info
    assert int(info.iterations) <= T
    assert max_abs(ys, want_ys) < 1e-8
    assert max_abs(final, want_final) < 1e-8
    assert float(jnp.abs(ys[1, 17:]).max()) == 0.0  # padded outputs are zero


# The modes that are not the solvers' defaults; the defaults (DEER parallel, quasi-DEER and ELK sequential) on every
# cell of tests/registry.py: tests/test_contract.py.
GRADIENTS = [("deer", "sequential", "elman-tanh"), ("quasi_deer", "parallel", "lstm")]


@pytest.mark.parametrize("method,gradient,name", GRADIENTS)
def test_implicit_gradients_equal_bptt_in_float64(x64, method, gradient, name):
    cell, params, xs, state = problem(name, seed=3)
    lengths = jnp.array([T, 23, 5])
    weights = jax.random.normal(jax.random.key(9), (B, T, cell.output_size), jnp.float64)
    solver = SOLVERS[method](gradient=gradient)

    def loss(params, xs, state, **scan_options):
        ys, final = jrnn.scan(cell, params, xs, lengths=lengths, initial_state=state, **scan_options)
        return jnp.sum(weights * ys) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree_util.tree_leaves(final))

    got = jax.grad(functools.partial(loss, solver=solver), argnums=(0, 1, 2))(params, xs, state)
    want = jax.grad(functools.partial(loss, solver=jrnn.sequential()), argnums=(0, 1, 2))(params, xs, state)
    assert max_abs(got, want) < 1e-7


def test_an_affine_recurrence_converges_in_one_iteration(x64):
    cell, params, xs, state = problem("elman-tanh")
    cell = jrnn.elman(5, lambda z: z)
    ys, _, info = jrnn.newton_scan(cell, params, xs, initial_state=state, solver=jrnn.deer(fallback="none"))
    assert int(info.iterations) == 1 and bool(info.converged)
    assert max_abs(ys, sequential(cell, params, xs, initial_state=state)[0]) < 1e-9


@pytest.mark.parametrize("method", ["deer", "quasi_deer"])
def test_after_k_iterations_the_first_k_states_are_exact(x64, method):
    cell, params, xs, state = problem("gru", seed=5)
    want, _ = sequential(cell, params, xs, initial_state=state)
    for k in (1, 2, 3):
        ys, _, info = jrnn.newton_scan(cell, params, xs, initial_state=state,
                                       solver=SOLVERS[method](max_iters=k, fallback="none"))
        assert int(info.iterations) == k and not bool(info.converged)
        assert max_abs(ys[:, :k], want[:, :k]) < 1e-12
        assert max_abs(ys[:, k:], want[:, k:]) > 1e-6  # and the rest is not there yet: the prefix is the promise


def test_quasi_deer_is_deer_on_a_cell_with_a_diagonal_jacobian(x64):
    cell = jrnn.indrnn(6)
    params = f64(cell.init(jax.random.key(0), F))
    xs = jax.random.normal(jax.random.key(1), (B, T, F), jnp.float64)
    full = jrnn.newton_scan(cell, params, xs, solver=jrnn.deer(fallback="none"))
    diagonal = jrnn.newton_scan(cell, params, xs, solver=jrnn.quasi_deer(fallback="none"))
    assert int(full[2].iterations) == int(diagonal[2].iterations)
    assert max_abs(full[0], diagonal[0]) < 1e-12


def test_elk_converges_where_deer_and_quasi_deer_overflow():
    # s_t = tanh(1.5 s_{t-1} + 0.3 x_t + 0.5) has one fixed point (about 0.96), attracting (|f'| about 0.12 there):
    # sequentially it is as tame as a recurrence gets. But around DEER's zero guess f' = 1.5 sech²(0.3 x + 0.5) is
    # about 1.2, and the product of 1000 of them (about 1e72) overflows float32 in the first linear solve. ELK's
    # Kalman smoother caps that amplification (about 1/√λ), the saturating tanh pulls the next iterate back, and
    # Newton converges.
    cell = jrnn.elman(1)
    params = cell.init(jax.random.key(0), 1)
    params = params._replace(W=jnp.full((1, 1), 1.5), U=jnp.full((1, 1), 0.3), b_U=jnp.full((1,), 0.5),
                             b_W=jnp.zeros(1))
    xs = jax.random.normal(jax.random.key(1), (4, 1000, 1))
    want, _ = jrnn.scan(cell, params, xs)
    assert want.dtype == jnp.float32
    for solver in (jrnn.deer(fallback="none"), jrnn.quasi_deer(fallback="none")):
        _, _, info = jrnn.newton_scan(cell, params, xs, solver=solver)
        assert not bool(info.converged) and not np.isfinite(float(info.residual))  # the iterate overflowed
    ys, _, info = jrnn.newton_scan(cell, params, xs, solver=jrnn.elk(fallback="none"))
    assert bool(info.converged) and int(info.iterations) <= 30, info  # 13 when written; T = 1000
    np.testing.assert_allclose(ys, want, atol=1e-5)
    _, _, slow = jrnn.newton_scan(cell, params, xs, solver=jrnn.elk(1e-2, fallback="none"))
    assert int(slow.iterations) > int(info.iterations)  # a large λ is a small trust region: it crawls (23 then)


def test_elk_stays_finite_on_a_bistable_recurrence_and_the_fallback_is_the_sequential_answer():
    # W = 2 I: tanh's two saturated fixed points, the state decided by a sensitive transient. DEER's and
    # quasi-DEER's first solve overflows (about 2^150); ELK's iterates stay finite but do not converge (no method of
    # the family converges fast on a multistable recurrence), and the fallback gives the sequential answer.
    cell = jrnn.elman(4)
    params = cell.init(jax.random.key(0), F)
    params = params._replace(W=2.0 * jnp.eye(4) + 0.1 * params.W, U=0.5 * params.U)
    xs = jax.random.normal(jax.random.key(1), (2, 150, F))
    want, _ = jrnn.scan(cell, params, xs)
    for solver in (jrnn.deer(fallback="none"), jrnn.quasi_deer(fallback="none")):
        _, _, info = jrnn.newton_scan(cell, params, xs, solver=solver)
        assert not bool(info.converged) and not np.isfinite(float(info.residual))
    ys, _, info = jrnn.newton_scan(cell, params, xs, solver=jrnn.elk(max_iters=30, fallback="none"))
    assert bool(jnp.all(jnp.isfinite(ys))) and np.isfinite(float(info.residual)) and not bool(info.converged)
    for solver in (jrnn.deer(), jrnn.elk(max_iters=30)):  # the default fallback: the sequential answer
        ys, _, info = jrnn.newton_scan(cell, params, xs, solver=solver)
        assert not bool(info.converged)
        np.testing.assert_allclose(ys, want, atol=1e-6)  # float32 rounding: the sequential answer, not an iterate


def test_the_damped_step_stays_finite_where_the_linear_solve_overflows():
    for dtype, time in ((jnp.float32, 100), (jnp.float16, 16)):  # 3^100, 3^16 overflow; float16's smoother: float32
        a, b, s0, z = jnp.full((1, time, 1), 3.0, dtype), jnp.ones((1, time, 1), dtype), jnp.zeros((1, 1), dtype), \
            jnp.zeros((1, time, 1), dtype)
        assert not bool(jnp.all(jnp.isfinite(jax.jit(linear_scan)(a, b, s0))))
        step = jax.jit(damped_diagonal_step)(a, b, s0, z, 1e-8)
        assert step.dtype == dtype and bool(jnp.all(jnp.isfinite(step)))
        assert float(jnp.max(jnp.abs(step))) < 1e5  # amplification about 1/√λ at most


def test_the_step_warm_start_makes_the_first_state_exact_before_any_iteration(x64):
    cell, params, xs, state = problem("gru")
    lengths = jnp.array([T, 17, 0])
    kwargs = dict(lengths=lengths, initial_state=state)
    want, _ = sequential(cell, params, xs, **kwargs)
    for k in (1, 3):  # after k iterations from f(s_0, x_t), the first k + 1 states are exact
        ys, _, _ = jrnn.newton_scan(cell, params, xs, solver=jrnn.deer(init="step", max_iters=k, fallback="none"),
                                    **kwargs)
        assert max_abs(ys[:, :k + 1], want[:, :k + 1]) < 1e-12
        assert max_abs(ys[0, k + 1:], want[0, k + 1:]) > 1e-8
    for method in SOLVERS:
        ys, _, info = jrnn.newton_scan(cell, params, xs, solver=SOLVERS[method](init="step", fallback="none"),
                                       **kwargs)
        assert bool(info.converged) and max_abs(ys, want) < 1e-8


@pytest.mark.parametrize("name,H,method", [("elman", 8, "deer"), ("gru", 32, "deer"), ("gru", 8, "quasi_deer")])
def test_float32_defaults_reach_1e4_of_the_sequential_answer(name, H, method):
    cell = {"elman": jrnn.elman, "gru": jrnn.gru}[name](H)
    params = cell.init(jax.random.key(0), 4)
    xs = jax.random.normal(jax.random.key(1), (2, 1000, 4))
    ys, _, info = jrnn.newton_scan(cell, params, xs, solver=SOLVERS[method](fallback="none"))
    assert bool(info.converged)
    assert max_abs(ys, jrnn.scan(cell, params, xs)[0]) < 1e-4


def test_layers_networks_and_jit_pass_the_solver_through(x64):
    cell, params, xs, _ = problem("gru")
    lengths = jnp.array([T, 11, 1])
    solver = jrnn.deer()
    rnn = jrnn.RNN(cell, reverse=True, solver=solver)
    assert max_abs(jax.jit(rnn.apply)(params, xs, lengths=lengths),
                   jrnn.RNN(cell, reverse=True).apply(params, xs, lengths=lengths)) < 1e-9
    bi = jrnn.bidirectional(cell, solver=jrnn.quasi_deer())
    bi_params = f64(bi.init(jax.random.key(1), F))
    assert max_abs(bi.apply(bi_params, xs, lengths=lengths),
                   jrnn.bidirectional(cell).apply(bi_params, xs, lengths=lengths)) < 1e-9
    stack = jrnn.deep([jrnn.RNN(cell, solver=solver), jrnn.RNN(jrnn.lstm(3), solver=solver)])
    plain = jrnn.deep([cell, jrnn.lstm(3)])
    stack_params = f64(stack.init(jax.random.key(2), F))
    assert max_abs(stack.apply(stack_params, xs, lengths=lengths),
                   plain.apply(stack_params, xs, lengths=lengths)) < 1e-9
    # a stepping network given a solver is solved as one cell, its layers' states together
    assert max_abs(jrnn.scan(plain, stack_params, xs, lengths=lengths, solver=solver),
                   plain.apply(stack_params, xs, lengths=lengths)) < 1e-9


def test_linear_scans_equal_python_loops_and_the_damped_step_is_the_least_squares_minimiser(x64):
    rng = np.random.default_rng(0)
    b, t, d = 2, 7, 3
    A, bias, s0 = rng.normal(size=(b, t, d, d)) * 0.5, rng.normal(size=(b, t, d)), rng.normal(size=(b, d))
    for reverse in (False, True):
        state, want = s0, [None] * t
        for i in reversed(range(t)) if reverse else range(t):
            state = np.einsum("bij,bj->bi", A[:, i], state) + bias[:, i]
            want[i] = state
        np.testing.assert_allclose(linear_scan(A, bias, s0, reverse=reverse), np.stack(want, 1), atol=1e-12)
    a, z = rng.normal(size=(b, t, d)) * 2, rng.normal(size=(b, t, d))
    for damping in (0.0, 0.3, 5.0):
        got = np.asarray(damped_diagonal_step(a, bias, s0, z, damping))
        for i in range(b):
            for j in range(d):  # rows: s_t - a_t s_{t-1} - b_t, then sqrt(λ) (s_t - z_t)
                M, y = np.zeros((2 * t, t)), np.zeros(2 * t)
                for k in range(t):
                    M[k, k], y[k] = 1.0, bias[i, k, j] + (a[i, k, j] * s0[i, j] if k == 0 else 0.0)
                    if k:
                        M[k, k - 1] = -a[i, k, j]
                    M[t + k, k], y[t + k] = np.sqrt(damping), np.sqrt(damping) * z[i, k, j]
                np.testing.assert_allclose(got[i, :, j], np.linalg.lstsq(M, y, rcond=None)[0], atol=1e-10)


def test_bad_solvers_and_options_are_errors():
    cell = jrnn.gru(3)
    params = cell.init(jax.random.key(0), F)
    xs = jnp.ones((1, 4, F))
    for make, kwargs, needle in [(jrnn.deer, dict(max_iters=0), "max_iters"), (jrnn.deer, dict(atol=-1.0), "atol"),
                                 (jrnn.elk, dict(damping=-1.0), "damping"), (jrnn.deer, dict(init="ones"), "init"),
                                 (jrnn.quasi_deer, dict(fallback="raise"), "fallback"),
                                 (jrnn.deer, dict(gradient="exact"), "gradient")]:
        with pytest.raises(ValueError, match=needle):
            make(**kwargs)
    with pytest.raises(TypeError, match="expected solver"):
        jrnn.scan(cell, params, xs, solver="deer")
    with pytest.raises(ValueError, match="fallback='sequential'"):
        jrnn.scan(cell, params, xs, solver=jrnn.deer(fallback="none"))
    with pytest.raises(ValueError, match="matmul_dtype"):
        jrnn.scan(cell, params, xs, solver=jrnn.deer(), matmul_dtype=jnp.bfloat16)
    with pytest.raises(ValueError, match="expected a Newton solver"):
        jrnn.newton_scan(cell, params, xs, solver=jrnn.sequential())
    with pytest.raises(ValueError, match="cannot step"):
        network = jrnn.deep([jrnn.bidirectional(cell)])
        jrnn.scan(network, network.init(jax.random.key(0), F), xs, solver=jrnn.deer())


def test_empty_sequences_and_sequential_solver_are_the_plain_scan():
    cell = jrnn.lstm(3)
    params = cell.init(jax.random.key(0), F)
    ys, state, info = jrnn.newton_scan(cell, params, jnp.ones((2, 0, F)))
    assert ys.shape == (2, 0, 3) and int(info.iterations) == 0
    xs = jax.random.normal(jax.random.key(1), (2, 6, F))
    np.testing.assert_allclose(jrnn.scan(cell, params, xs, solver=jrnn.sequential())[0],
                               jrnn.scan(cell, params, xs)[0], atol=1e-6)
