"""minGRU and minLSTM: ``jrnn.associative()`` (an associative scan in log space) equals the sequential loop over
``step`` for random lengths (some beyond T), in both directions, from any initial state, with parameters large enough
to saturate the gates; the solver chooses the path. Its gradients equal the loop's, and the loop's equal finite
differences: tests/test_contract.py."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import registry
from hypothesis import given, settings
from hypothesis import strategies as st

import jrnn

B, T, I, H = 4, 9, 3, 5
CELLS = {name: registry.make(name, H, jnp.float64) for name in registry.with_capability("linear_recurrence")
         if name not in registry.with_capability("windowed")  # those have a WindowState: tests/cells/test_rg_lru.py
         and name not in ("lru", "s5")}  # they read as many features as they output (2), not I: test_lru_s5.py


@functools.cache
def _both_paths(name):
    """One compiled program per cell: the parallel and the sequential path, each forward and in reverse."""
    cell = CELLS[name]

    @jax.jit
    def run(params, xs, lengths, s0):
        return [jrnn.scan(cell, params, xs, lengths=lengths, initial_state=s0, reverse=reverse, solver=solver)
                for solver in (jrnn.associative(), jrnn.sequential()) for reverse in (False, True)]

    return run


@settings(max_examples=12, deadline=None, database=None)
@given(name=st.sampled_from(sorted(CELLS)), seed=st.integers(0, 2 ** 16),
       lengths=st.lists(st.integers(0, T + 2), min_size=B, max_size=B))
def test_parallel_path_equals_the_sequential_loop_with_lengths_both_ways(name, seed, lengths):
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        shapes = jax.eval_shape(lambda k: CELLS[name].init(k, I), jax.random.key(0))
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(2.0 * rng.standard_normal(a.shape)), shapes)
        xs = jnp.asarray(rng.standard_normal((B, T, I)))
        s0 = jnp.asarray(rng.standard_normal((B, H)))  # of either sign: the log form never takes its log
        forward, backward, loop_forward, loop_backward = _both_paths(name)(params, xs, jnp.asarray(lengths), s0)
        for got, want in ((forward, loop_forward), (backward, loop_backward)):
            for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def _primitives(jaxpr):
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for value in eqn.params.values():
            inner = getattr(getattr(value, "jaxpr", value), "jaxpr", getattr(value, "jaxpr", value))
            if hasattr(inner, "eqns"):
                names |= _primitives(inner)
    return names


ON_CPU = jax.default_backend() == "cpu"


@pytest.mark.parametrize("solver, loops, steps", [(jrnn.associative(), False, False),
                                                  (jrnn.associative(method="loop"), True, False),
                                                  (jrnn.sequential(), True, True),
                                                  (jrnn.auto(), ON_CPU, False)])  # on a CPU: the loop form
def test_the_solver_chooses_the_path(solver, loops, steps):
    cell = jrnn.min_lstm(H)
    params = jax.eval_shape(lambda k: cell.init(k, I), jax.random.key(0))
    xs = jax.ShapeDtypeStruct((B, T, I), jnp.float32)
    names = _primitives(jax.make_jaxpr(lambda p, x: jrnn.scan(cell, p, x, solver=solver))(params, xs).jaxpr)
    assert ("scan" in names) == loops
    assert ("logistic" in names) == steps  # stepping computes σ; the coefficients only its log form


def test_parallel_path_stays_accurate_in_float32_over_a_long_sequence():
    """Over 256 steps the log-space pairs keep float32 accuracy (a product of 256 gates near 1/2 underflows)."""
    cell = jrnn.min_gru(8)
    params = cell.init(jax.random.key(1), 2)
    xs = jax.random.normal(jax.random.key(2), (2, 256, 2))
    run = jax.jit(lambda p, x: (jrnn.scan(cell, p, x, solver=jrnn.associative())[0],
                                jrnn.scan(cell, p, x, solver=jrnn.sequential())[0]))
    parallel, sequential = run(params, xs)
    np.testing.assert_allclose(parallel, sequential, rtol=2e-5, atol=2e-6)
