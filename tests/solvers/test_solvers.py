"""The solver abstraction: what jrnn.auto() chooses, each solver's refusals, the open fused-kernel registry, the one
linear-recurrence module against NumPy loops, and the deprecated keywords (each warns, names its replacement and
computes what the replacement computes)."""

import pathlib
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn._src.cells.elman import ElmanKernel
from jrnn._src.solvers.auto import Auto
from jrnn._src.solvers.fused import _KERNELS, kernel_for
from jrnn._src.solvers.linear import linear_scan, log_linear_scan
from jrnn._src.windowed import inner_cell

B, T, F, H = 3, 7, 2, 4


def setup(cell, dtype=jnp.float32):
    params = jax.tree_util.tree_map(lambda a: a.astype(dtype), cell.init(jax.random.key(0), F))
    xs = jax.random.normal(jax.random.key(1), (B, T, F), dtype)
    return params, xs


# ------------------------------------------------------------------------------------------------------------
# jrnn.auto()'s decision list
# ------------------------------------------------------------------------------------------------------------

def test_auto_takes_the_fused_kernel_for_the_registered_cells_and_the_loop_for_the_others_on_cpu():
    assert jax.default_backend() == "cpu"
    for cell in (jrnn.elman(H), jrnn.lstm(H), jrnn.gru(H)):
        assert jrnn.auto().choose(cell) == jrnn.fused()
    for cell in (jrnn.indrnn(H), jrnn.mgu(H), jrnn.exprnn(H), jrnn.mamba(H), jrnn.s6(H)):
        assert jrnn.auto().choose(cell) == jrnn.sequential()
    for cell in (jrnn.min_gru(H), jrnn.min_lstm(H), jrnn.lru(H, 2), jrnn.s5(H, 2), jrnn.rg_lru(H), jrnn.hawk_block(H)):
        assert jrnn.auto().choose(cell) == jrnn.associative(method="loop")
    cell = jrnn.mamba2(H, state_size=2, head_dim=2)
    for asked in (cell, inner_cell(cell)):  # the cell, and its inner cell, which jrnn.scan asks about
        assert jrnn.auto().choose(asked) == jrnn.chunked()
        assert jrnn.auto().choose(asked, state_mask=True) == jrnn.sequential()
    # state dropout never goes to the associative solver, whatever the backend
    with pytest.warns(DeprecationWarning):
        eager = jrnn.min_gru(H, parallel=True)
    assert jrnn.auto().choose(eager) == jrnn.associative()
    assert jrnn.auto().choose(eager, state_mask=True) == jrnn.sequential()


def test_the_default_solver_is_the_chosen_one_bit_for_bit():
    for cell, solver in ((jrnn.lstm(H), jrnn.fused()), (jrnn.indrnn(H), jrnn.sequential())):
        params, xs = setup(cell)
        default = jrnn.scan(cell, params, xs, lengths=jnp.array([7, 3, 0]), reverse=True)
        chosen = jrnn.scan(cell, params, xs, lengths=jnp.array([7, 3, 0]), reverse=True, solver=solver)
        for a, b in zip(jax.tree_util.tree_leaves(default), jax.tree_util.tree_leaves(chosen)):
            np.testing.assert_array_equal(a, b)


def test_solvers_refuse_what_they_cannot_evaluate_by_name():
    params, xs = setup(jrnn.indrnn(H))
    with pytest.raises(ValueError, match=r"jrnn.fused\(\) needs a cell with a registered fused kernel.*IndRNNCell"):
        jrnn.scan(jrnn.indrnn(H), params, xs, solver=jrnn.fused())
    with pytest.raises(ValueError, match=r"jrnn.associative\(\) needs a cell whose recurrence is linear.*IndRNN"):
        jrnn.scan(jrnn.indrnn(H), params, xs, solver=jrnn.associative())
    with pytest.raises(TypeError, match="expected solver to be None or a jrnn solver.*got 'deer'"):
        jrnn.scan(jrnn.indrnn(H), params, xs, solver="deer")
    net = jrnn.deep([jrnn.gru(H)])
    with pytest.raises(ValueError, match="a network has no fused form of its own"):
        jrnn.scan(net, net.init(jax.random.key(0), F), xs, solver=jrnn.fused())
    for bad in (0, -1, 1.5):
        with pytest.raises((TypeError, ValueError), match="unroll"):
            jrnn.sequential(bad)
    with pytest.raises(ValueError, match="floating dtype"):
        jrnn.fused(jnp.int8)


def test_solvers_are_hashable_static_options():
    solvers = [jrnn.auto(), jrnn.sequential(2), jrnn.fused(jnp.bfloat16), jrnn.associative(), jrnn.deer(),
               jrnn.quasi_deer(), jrnn.elk(1e-4)]
    assert len(set(solvers)) == len(solvers)
    assert all(isinstance(s, jrnn.Solver) for s in solvers)
    cell = jrnn.gru(H)
    params, xs = setup(cell)
    run = jax.jit(lambda p, x, solver: jrnn.scan(cell, p, x, solver=solver)[0], static_argnums=2)
    np.testing.assert_allclose(run(params, xs, jrnn.sequential()), run(params, xs, jrnn.fused()), atol=1e-6)


# ------------------------------------------------------------------------------------------------------------
# The open fused-kernel registry
# ------------------------------------------------------------------------------------------------------------

def test_the_registry_is_keyed_by_exact_type_and_open_to_other_modules():
    class SameEquations(jrnn.ElmanCell):
        pass

    cell = SameEquations(H)
    assert kernel_for(cell) is None and jrnn.auto().choose(cell) == jrnn.sequential()  # a subclass may change step
    try:
        jrnn.register_fused_kernel(SameEquations, ElmanKernel)
        assert isinstance(kernel_for(cell), ElmanKernel) and jrnn.auto().choose(cell) == jrnn.fused()
        params, xs = setup(cell)
        np.testing.assert_allclose(jrnn.scan(cell, params, xs)[0],
                                   jrnn.scan(jrnn.elman(H), params, xs, solver=jrnn.sequential())[0], atol=1e-6)
    finally:
        _KERNELS.pop(SameEquations, None)
    with pytest.raises(TypeError, match="expected a cell class"):
        jrnn.register_fused_kernel(jrnn.elman(H), ElmanKernel)
    with pytest.raises(TypeError, match="expected a subclass of jrnn.FusedKernel"):
        jrnn.register_fused_kernel(SameEquations, object)


def test_no_solver_module_imports_a_cell_module():
    solvers = pathlib.Path(jrnn.__file__).parent / "_src" / "solvers"
    for path in solvers.glob("*.py"):
        imports = re.findall(r"^(?:from|import) (\S+)(?: import (.+))?$", path.read_text(), flags=re.M)
        for module, names in imports:
            assert not module.startswith("jrnn._src.cells") and "cells" not in names.split(", "), (path.name, module)


# ------------------------------------------------------------------------------------------------------------
# The linear-recurrence module against NumPy loops: signed, complex, diagonal, dense, reversed, log space
# ------------------------------------------------------------------------------------------------------------

def numpy_loop(A, b, s0, reverse=False):
    A, b, s = np.asarray(A), np.asarray(b), np.asarray(s0)
    out = np.zeros(np.broadcast_shapes(b.shape, s[:, None].shape), np.result_type(A, b, s))
    steps = range(b.shape[1] - 1, -1, -1) if reverse else range(b.shape[1])
    for t in steps:
        s = (np.einsum("bij,bj->bi", A[:, t], s) if A.ndim == b.ndim + 1 else A[:, t] * s) + b[:, t]
        out[:, t] = s
    return out


@pytest.mark.parametrize("kind", ["signed", "complex", "dense"])
@pytest.mark.parametrize("reverse", [False, True])
def test_linear_scan_equals_the_loop(kind, reverse):
    rng = np.random.default_rng(0)
    b = rng.normal(size=(2, 9, 3))
    s0 = rng.normal(size=(2, 3))
    if kind == "signed":
        A = rng.uniform(-1.2, 1.2, size=(2, 9, 3))
    elif kind == "complex":
        A = rng.uniform(0.5, 1.0, size=(2, 9, 3)) * np.exp(1j * rng.uniform(-np.pi, np.pi, size=(2, 9, 3)))
        b = b + 1j * rng.normal(size=b.shape)
    else:
        A = rng.normal(size=(2, 9, 3, 3)) / 2
    with jax.enable_x64(True):
        got = linear_scan(jnp.asarray(A), jnp.asarray(b), jnp.asarray(s0), reverse=reverse)
        np.testing.assert_allclose(got, numpy_loop(A, b, s0, reverse), rtol=1e-10, atol=1e-10)


def test_log_linear_scan_equals_the_loop_for_positive_coefficients_and_any_initial_state():
    rng = np.random.default_rng(1)
    a, b, s0 = rng.uniform(0.01, 1.0, (2, 50, 3)), rng.uniform(0.01, 2.0, (2, 50, 3)), rng.normal(size=(2, 3))
    with jax.enable_x64(True):
        got = log_linear_scan(jnp.log(a), jnp.log(b), jnp.asarray(s0))
        np.testing.assert_allclose(got, numpy_loop(a, b, s0), rtol=1e-10)


# ------------------------------------------------------------------------------------------------------------
# The deprecated keywords: a warning naming the replacement, and the replacement's result
# ------------------------------------------------------------------------------------------------------------

def same(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("old, new, replacement", [
    (dict(fused=False), jrnn.sequential(), r"solver=jrnn.sequential\(\)"),
    (dict(fused=False, unroll=2), jrnn.sequential(2), r"solver=jrnn.sequential\(unroll=2\)"),
    (dict(matmul_dtype=jnp.bfloat16), jrnn.fused(jnp.bfloat16), r"solver=jrnn.fused\("),
    (dict(unroll=3), jrnn.fused(unroll=3), r"solver=jrnn.fused\(unroll=...\) or jrnn.sequential\(unroll=...\)"),
    (dict(fused=True), jrnn.auto(), r"the default solver \(jrnn.auto\(\)\)"),
])
def test_scan_keywords_warn_and_compute_their_replacement(old, new, replacement):
    cell = jrnn.lstm(H)
    params, xs = setup(cell)
    with pytest.warns(DeprecationWarning, match=f"jrnn.scan.*deprecated.*use {replacement}.*Migrating to solvers"):
        got = jrnn.scan(cell, params, xs, lengths=jnp.array([7, 2, 5]), **old)
    same(got, jrnn.scan(cell, params, xs, lengths=jnp.array([7, 2, 5]), solver=new))


def test_layer_keywords_warn_and_fold_into_the_solver():
    cell = jrnn.gru(H)
    params, xs = setup(cell)
    with pytest.warns(DeprecationWarning, match=r"jrnn.RNN: fused=False is deprecated"):
        layer = jrnn.RNN(cell, fused=False)
    assert layer == jrnn.RNN(cell, solver=jrnn.sequential()) and layer.solver == jrnn.sequential()
    same(layer.apply(params, xs), jrnn.RNN(cell, solver=jrnn.sequential()).apply(params, xs))
    with pytest.warns(DeprecationWarning, match=r"jrnn.bidirectional: matmul_dtype=.*jrnn.fused"):
        bi = jrnn.bidirectional(cell, matmul_dtype=jnp.bfloat16)
    assert bi.solver == jrnn.fused(jnp.bfloat16)
    with pytest.warns(DeprecationWarning, match=r"jrnn.checkpointed_scan\(GRUCell\): unroll=2"):
        got = jrnn.checkpointed_scan(cell, params, xs, unroll=2, segment_length=3)
    same(got, jrnn.checkpointed_scan(cell, params, xs, solver=jrnn.fused(unroll=2), segment_length=3))
    with pytest.warns(DeprecationWarning, match=r"jrnn.min_gru: parallel=True.*solver=jrnn.associative\(\)"):
        jrnn.min_gru(H, parallel=True)
    with pytest.warns(DeprecationWarning, match=r"jrnn.min_lstm: parallel=False.*solver=jrnn.sequential\(\)"):
        jrnn.min_lstm(H, parallel=False)


def test_keywords_beside_a_solver_warn_and_defer_to_it_and_matmul_dtype_still_refuses_newton():
    cell = jrnn.elman(H)
    params, xs = setup(cell)
    with pytest.warns(DeprecationWarning, match="is ignored beside solver="):
        got = jrnn.scan(cell, params, xs, solver=jrnn.sequential(), fused=True)
    same(got, jrnn.scan(cell, params, xs, solver=jrnn.sequential()))
    with pytest.raises(ValueError, match="expected matmul_dtype=None with the Newton solver"):
        jrnn.scan(cell, params, xs, solver=jrnn.deer(), matmul_dtype=jnp.bfloat16)


def test_the_new_spelling_warns_nothing():
    cell = jrnn.lstm(H)
    params, xs = setup(cell)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jrnn.scan(cell, params, xs, solver=jrnn.fused(unroll=2))
        jrnn.RNN(cell, solver=jrnn.sequential()).apply(params, xs)
        jrnn.bidirectional(cell, solver=jrnn.sequential())
        jrnn.min_gru(H)


# ------------------------------------------------------------------------------------------------------------
# The wrappers forward the capabilities: an RNN of a ConvLSTM reads [B, T, H, W, C] (it did not)
# ------------------------------------------------------------------------------------------------------------

def test_wrappers_forward_input_shape_and_prepare():
    cell = jrnn.conv_lstm(3, (5, 4))
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (2, 4, 5, 4, 2))
    direct = jrnn.scan(cell, params, xs, lengths=jnp.array([4, 2]))
    for net, p in ((jrnn.RNN(cell), params), (jrnn.deep([cell]), (params,)),
                   (jrnn.truncated_bptt(jrnn.RNN(cell), 2), params)):
        assert isinstance(net, jrnn.Wrapper) and isinstance(net, jrnn.InputShaped)
        assert net.input_shape(p) == (5, 4, 2)
        ys, final = jrnn.scan(net, p, xs, lengths=jnp.array([4, 2]))
        np.testing.assert_allclose(ys, direct[0], atol=1e-6)
    exp = jrnn.exprnn(H)
    p = exp.init(jax.random.key(0), F)
    assert isinstance(jrnn.RNN(exp).prepare(p), jrnn.ExpRNNPrepared)


def test_flax_modules_take_one_solver_and_warn_on_unroll():
    from flax import nnx

    import jrnn.flax

    cell = jrnn.lstm(H)
    params, xs = setup(cell)
    want = jrnn.scan(cell, params, xs, solver=jrnn.sequential())[0]
    module = jrnn.flax.nnx.RNN(cell, F, solver=jrnn.sequential(), params=params)
    np.testing.assert_array_equal(module(xs), want)
    with pytest.warns(DeprecationWarning, match=r"jrnn.flax.nnx.RNN: unroll=2 is deprecated"):
        module = jrnn.flax.nnx.RNN(cell, F, unroll=2, rngs=nnx.Rngs(params=0))
    assert module.layer.solver == Auto(unroll=2)  # the loop the old keyword asked for, under auto
    linen = jrnn.flax.linen.RNN(cell, solver=jrnn.sequential())
    variables = linen.init(jax.random.key(0), xs)
    variables = {"params": {"rnn": params}} if "rnn" in variables["params"] else variables
    np.testing.assert_allclose(linen.apply(variables, xs), want, atol=1e-6)
    deep = jrnn.flax.nnx.Deep([cell], F, solver=jrnn.sequential(), params=(params,))
    assert deep.layer.layers[0].solver == jrnn.sequential()
    np.testing.assert_array_equal(deep(xs), want)
