"""The fused solver (``jrnn/_src/solvers/fused.py``) against the sequential solver and PyTorch.

- float64, small: outputs, final states and the gradients of every parameter, the input and the initial state
  equal ``jax.grad`` of the plain path to 1e-10, with and without lengths, forward and reverse, with and without an
  initial state, and with ``unroll`` > 1 (the registry's cells with lengths, reverse and an initial state are
  tests/test_contract.py's; here the other flag sets and the configurations without biases or with another
  activation);
- float32, every configuration of the benchmark grid: outputs and gradients equal PyTorch's
  ``nn.RNN/LSTM/GRU`` (same weights, through ``jrnn.from_torch``) and the plain scan;
- structure: no copy of a ``[B, T, k]`` buffer inside the compiled loops, and less scratch memory than the plain
  scan's gradient (the properties the speed rests on; no timings are asserted);
- the bfloat16 matmul option stays within bfloat16's precision; other cells take the plain path; the layers and
  ``jrnn.from_torch`` networks take the fused path;
- ``python -m benchmarks`` runs at a tiny size and writes the documented JSON and Markdown.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import registry
import torch

import jrnn


def fused_scan(*args, unroll=1, matmul_dtype=None, **kwargs):
    return jrnn.scan(*args, solver=jrnn.fused(matmul_dtype, unroll=unroll), **kwargs)


def plain_scan(*args, **kwargs):
    return jrnn.scan(*args, solver=jrnn.sequential(), **kwargs)


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CELLS = {  # the registry's cells with a fused kernel (tests/registry.py), and configurations it leaves out
    **{name: lambda H, name=name: registry.make(name, H) for name in registry.with_capability("fused")},
    "elman_softplus": lambda H: jrnn.elman(H, jax.nn.softplus),  # generic activation: derivative by jax.jvp
    "elman_nobias": lambda H: jrnn.elman(H, bias=False),
    "lstm_nobias": lambda H: jrnn.lstm(H, bias=False),
    "gru_nobias": lambda H: jrnn.gru(H, bias=False),
}


def _random_like(tree, key, scale):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, max(len(leaves), 1))
    return jax.tree_util.tree_unflatten(
        treedef, [scale * jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)])


def _problem(cell, B, T, I, dtype, seed=0):
    params = cell.init(jax.random.key(seed), I)
    params = jax.tree_util.tree_map(lambda a: a.astype(dtype), params)
    params = jax.tree_util.tree_map(jnp.add, params, _random_like(params, jax.random.key(seed + 1), 0.3))
    xs = jax.random.normal(jax.random.key(seed + 2), (B, T, I), dtype)
    s0 = _random_like(cell.initial_state((B,), dtype), jax.random.key(seed + 3), 0.5)
    return params, xs, s0


def _loss_and_grads(scan_fn, cell, lengths, reverse, with_state, **kw):
    def loss(params, xs, s0):
        ys, final = scan_fn(cell, params, xs, lengths=lengths, initial_state=s0 if with_state else None,
                            reverse=reverse, **kw)
        w = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype).reshape(ys.shape))
        total = jnp.sum(ys * w) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree_util.tree_leaves(final))
        return total, (ys, final)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))


def _assert_trees_close(actual, expected, rtol, atol, what=""):
    a_leaves, a_def = jax.tree_util.tree_flatten(actual)
    e_leaves, e_def = jax.tree_util.tree_flatten(expected)
    assert a_def == e_def, f"{what}: structures differ: {a_def} vs {e_def}"
    for i, (a, e) in enumerate(zip(a_leaves, e_leaves)):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(e, np.float64), rtol=rtol, atol=atol,
                                   err_msg=f"{what} leaf {i}")


# ----------------------------------------------------------------------------------------------------------------
# float64: the fused path is the plain path, to rounding.
# ----------------------------------------------------------------------------------------------------------------

# (with lengths, reverse, with initial state, unroll): every cell runs with everything on (unroll 3: T = 7 is not
# a multiple of it), which tests/test_contract.py does for the registry's cells (unroll 4 of T = 6); the default
# Elman, LSTM and GRU also with everything off and the two mixed sets.
ALL_ON = [(True, True, True, 3)]
MORE_FLAG_SETS = [(False, False, False, 1), (True, False, True, 1), (False, True, False, 2)]


def _flag_sets(name):
    return ([] if name in registry.NAMES else ALL_ON) + (MORE_FLAG_SETS if name in ("elman_tanh", "lstm", "gru")
                                                          else [])


@pytest.mark.parametrize("name", [name for name in sorted(CELLS) if _flag_sets(name)])
def test_fused_equals_plain_scan_float64(name):
    B, T, I, H = 3, 7, 4, 5
    cell = CELLS[name](H)
    lengths = jnp.array([7, 3, -1])  # a full, a short and an empty sequence
    flag_sets = _flag_sets(name)
    with jax.enable_x64(True):
        params, xs, s0 = _problem(cell, B, T, I, jnp.float64)
        for with_lengths, reverse, with_state, unroll in flag_sets:
            L = lengths if with_lengths else None
            got = _loss_and_grads(fused_scan, cell, L, reverse, with_state, unroll=unroll)(params, xs, s0)
            want = _loss_and_grads(plain_scan, cell, L, reverse, with_state)(params, xs, s0)
            what = f"{name} lengths={with_lengths} reverse={reverse} state={with_state} unroll={unroll}"
            _assert_trees_close(got, want, rtol=1e-10, atol=1e-10, what=what)
            (dparams, _, _), (ys, _) = got
            if with_lengths:
                for b, n in enumerate(np.asarray(lengths)):
                    assert np.all(np.asarray(ys)[b, max(n, 0):] == 0.0), f"{what}: padded outputs must be 0"
            if dparams.b_U is not None:  # torch's bias_ih and bias_hh get the same gradient (GRU: r, z parts)
                n = 2 * H if name.startswith("gru") and cell.reset_after else dparams.b_U.shape[0]
                np.testing.assert_allclose(dparams.b_U[:n], dparams.b_W[:n], rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# float32, the benchmark grid: PyTorch and the plain scan.
# ----------------------------------------------------------------------------------------------------------------

GRID_SHAPES = ((32, 200, 128), (64, 100, 256), (16, 500, 64), (64, 100, 512), (1, 1000, 128))  # benchmarks/grid.py


def _torch_module(kind, I, H):
    torch.manual_seed(0)
    make = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    return torch, make(I, H, batch_first=True)


@pytest.mark.parametrize("shape", GRID_SHAPES, ids=lambda s: "B{}xT{}xH{}".format(*s))
@pytest.mark.parametrize("kind", ["elman", "lstm", "gru"])
def test_fused_equals_torch_and_plain_scan_on_benchmark_grid(kind, shape):
    from benchmarks.grid import SHAPES

    assert shape in SHAPES
    B, T, H = shape
    I = H
    torch, module = _torch_module(kind, I, H)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    gy = rng.standard_normal((B, T, H)).astype(np.float32)

    xt = torch.tensor(x, requires_grad=True)
    y_t, _ = module(xt)
    (y_t * torch.tensor(gy)).sum().backward()
    torch_grads = {name: p.grad.numpy() for name, p in module.named_parameters()}

    fn, params = jrnn.from_torch(module)
    cell, p = fn.network.layers[0].cell, params[0]

    def grads_of(scan_fn):
        def loss(p, xs):
            ys = scan_fn(cell, p, xs)[0]
            return jnp.vdot(ys, gy), ys

        return jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(p, jnp.asarray(x))

    (dp, dx), ys = grads_of(fused_scan)
    (dp_plain, dx_plain), ys_plain = grads_of(plain_scan)

    def close(actual, expected, what):  # float32 sums over B*T rows: tolerance relative to the array's scale
        expected = np.asarray(expected)
        np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-4,
                                   atol=2e-5 * max(1.0, float(np.max(np.abs(expected)))), err_msg=what)

    close(ys, y_t.detach().numpy(), "outputs vs torch")
    close(dx, xt.grad.numpy(), "dx vs torch")
    named = jrnn.to_torch(dp)
    for name, g in torch_grads.items():
        close(named[name].numpy(), g, f"d/d {name} vs torch")
    for a, e in zip(jax.tree_util.tree_leaves((ys, dp, dx)), jax.tree_util.tree_leaves((ys_plain, dp_plain, dx_plain))):
        close(a, e, "vs jrnn.scan")


# ----------------------------------------------------------------------------------------------------------------
# Structure of the compiled program: what the speed rests on (no timings).
# ----------------------------------------------------------------------------------------------------------------

def _fwdbwd_compiled(scan_fn, cell, B, T, I, lengths=None):
    params, xs, _ = _problem(cell, B, T, I, jnp.float32)
    g = jnp.ones((B, T, cell.output_size))
    fn = jax.jit(jax.grad(lambda p, x: jnp.vdot(scan_fn(cell, p, x, lengths=lengths)[0], g), argnums=(0, 1)))
    return fn.lower(params, xs).compile()


@pytest.mark.parametrize("name", ["elman_tanh", "lstm", "lstm_proj", "gru", "gru_reset_before"])
def test_loops_update_their_buffers_in_place_and_use_less_memory_than_plain_scan(name):
    """XLA copies a [T, B, k] buffer inside a loop when a read of it can follow a write into it; the fused loops
    are written so that it never has to (a copy per step would cost O(T^2) memory traffic). And the fused
    gradient's scratch memory is below the plain scan's."""
    B, T, H = 4, 12, 8
    cell = CELLS[name](H)
    lengths = jnp.array([12, 5, 9, 1])
    compiled = _fwdbwd_compiled(fused_scan, cell, B, T, H, lengths=lengths)
    for comp in compiled.as_text().split("\n\n"):
        if comp.startswith("ENTRY") or "fused_computation" in comp.split("\n", 1)[0]:
            continue
        copies = re.findall(rf"= f32\[{T},{B},\d+\]\{{[\d,]+\}} copy\(", comp)
        assert not copies, f"a loop copies a [T, B, k] buffer every iteration:\n{comp[:2000]}"
    plain = _fwdbwd_compiled(plain_scan, cell, B, T, H, lengths=lengths)
    assert compiled.memory_analysis().temp_size_in_bytes < plain.memory_analysis().temp_size_in_bytes


# ----------------------------------------------------------------------------------------------------------------
# Options and edge cases.
# ----------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Doubling(jrnn.ElmanCell):  # a subclass may change the step: it must not take the fused path
    def step(self, params, state, x):
        s, _ = super().step(params, state, x)
        return s, 2.0 * s


@pytest.mark.parametrize("name", ["lstm_proj", "gru"])
def test_bfloat16_matmuls_stay_within_bfloat16_precision(name):
    cell = CELLS[name](8)
    params, xs, _ = _problem(cell, 3, 6, 5, jnp.float32)

    def run(dtype):
        def loss(p, x):
            ys = fused_scan(cell, p, x, matmul_dtype=dtype)[0]
            return jnp.sum(jnp.sin(ys)), ys

        return jax.grad(loss, argnums=(0, 1), has_aux=True)(params, xs)

    (dp16, dx16), ys16 = run(jnp.bfloat16)
    (dp32, dx32), ys32 = run(None)
    assert ys16.dtype == jnp.float32 and dx16.dtype == jnp.float32
    np.testing.assert_allclose(ys16, ys32, atol=3e-2)
    for a, e in zip(jax.tree_util.tree_leaves((dp16, dx16)), jax.tree_util.tree_leaves((dp32, dx32))):
        assert np.linalg.norm(a - e) <= 3e-2 * np.linalg.norm(e) + 1e-6


def test_other_cells_take_the_plain_path():
    cell = _Doubling(4)
    params, xs, _ = _problem(cell, 2, 5, 3, jnp.float32)
    assert jrnn.auto().choose(cell) == jrnn.sequential()
    np.testing.assert_allclose(jrnn.scan(cell, params, xs)[0], plain_scan(cell, params, xs)[0], rtol=1e-6)


def test_empty_time_axis_and_vmap():
    cell = jrnn.lstm(4)
    params, xs, s0 = _problem(cell, 2, 5, 3, jnp.float32)
    ys, final = fused_scan(cell, params, xs[:, :0], initial_state=s0)
    assert ys.shape == (2, 0, 4)
    _assert_trees_close(final, s0, 0, 0, "T = 0 keeps the initial state")
    batched = jax.vmap(lambda x: fused_scan(cell, params, x)[0])(jnp.stack([xs, 2 * xs]))
    np.testing.assert_allclose(batched[1], fused_scan(cell, params, 2 * xs)[0], rtol=1e-5, atol=1e-6)


def test_bad_options_are_named():
    cell = jrnn.gru(4)
    params, xs, _ = _problem(cell, 2, 5, 3, jnp.float32)
    with pytest.raises(ValueError, match="jrnn.scan.*lengths"):
        fused_scan(cell, params, xs, lengths=jnp.array([1, 2, 3]))
    with pytest.raises(ValueError, match="floating dtype.*got 'int8'"):
        jrnn.fused("int8")
    with pytest.raises(ValueError, match="needs a cell with a registered fused kernel.*_Doubling"):
        jrnn.RNN(_Doubling(4), solver=jrnn.fused(jnp.bfloat16)).apply(params, xs)
    with pytest.raises(ValueError, match="needs the fused path.*fused=False"):
        jrnn.scan(cell, params, xs, matmul_dtype=jnp.bfloat16, fused=False)


def test_forward_mode_autodiff_needs_the_plain_path():
    """A custom VJP has no JVP: ``jax.jacfwd`` works with ``jrnn.sequential()`` and equals the fused jacrev."""
    cell = jrnn.elman(3)
    params, xs, _ = _problem(cell, 1, 4, 2, jnp.float32)
    with pytest.raises(TypeError, match=r"custom_vjp.*pass solver=jrnn.sequential\(\) to jrnn.scan"):
        jax.jacfwd(lambda x: fused_scan(cell, params, x)[0])(xs)
    fwd = jax.jacfwd(lambda x: plain_scan(cell, params, x)[0])(xs)
    rev = jax.jacrev(lambda x: fused_scan(cell, params, x)[0])(xs)
    np.testing.assert_allclose(fwd, rev, rtol=1e-5, atol=1e-6)


def test_jvp_on_the_default_path_names_the_fix_and_the_sequential_jvp_equals_finite_differences():
    cell = jrnn.lstm(3)
    params, xs, _ = _problem(cell, 2, 5, 2, jnp.float32)
    fix = r"jax.jvp and jax.jacfwd do not.*pass solver=jrnn.sequential\(\)"
    with pytest.raises(TypeError, match=fix):  # jrnn.auto() picks the fused solver for an LSTM
        jax.jvp(lambda x: jrnn.scan(cell, params, x)[0], (xs,), (xs,))
    layer = jrnn.RNN(cell, reverse=True)  # the fused reversal, before the fused loops, is a custom VJP too
    with pytest.raises(TypeError, match=fix):
        jax.jvp(lambda x: layer.apply(params, x, lengths=jnp.array([5, 3]))[0], (xs,), (xs,))

    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        x64 = jnp.asarray(xs, jnp.float64)
        dx = jax.random.normal(jax.random.key(9), x64.shape, jnp.float64)
        f = jax.jit(lambda x: jrnn.scan(cell, p64, x, solver=jrnn.sequential())[0])
        _, tangent = jax.jvp(f, (x64,), (dx,))
        eps = 1e-6
        central = (f(x64 + eps * dx) - f(x64 - eps * dx)) / (2 * eps)
        np.testing.assert_allclose(tangent, central, rtol=1e-6, atol=1e-9)


def test_layers_and_torch_networks_take_the_fused_path():
    """``jrnn.RNN``, ``jrnn.bidirectional`` and ``jrnn.from_torch`` networks run the fused path (its custom VJP is
    in their program), and ``solver=jrnn.sequential()`` layers the plain ``lax.scan``."""
    x = jnp.ones((2, 5, 3))

    def loop_kinds(fn, *args):
        return "fori" if "custom_vjp_call" in str(jax.make_jaxpr(fn)(*args)) else "scan"

    for fused in (True, False):
        solver = jrnn.auto() if fused else jrnn.sequential()
        layer = jrnn.bidirectional(jrnn.lstm(4), solver=solver)
        p = layer.init(jax.random.key(0), 3)
        fused_loop = loop_kinds(lambda p, x, layer=layer: layer.apply(p, x)[0], p, x) == "fori"
        assert fused_loop == fused
        layer = jrnn.RNN(jrnn.gru(4), solver=solver)
        p = layer.init(jax.random.key(0), 3)
        assert (loop_kinds(lambda p, x, layer=layer: layer.apply(p, x)[0], p, x) == "fori") == fused
    fn, params = jrnn.from_torch(torch.nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True))
    assert loop_kinds(lambda p, x: fn(p, x)[0], params, x) == "fori"


# ----------------------------------------------------------------------------------------------------------------
# The benchmark suite runs and writes what it documents (tiny sizes; nothing about speed is asserted).
# ----------------------------------------------------------------------------------------------------------------

def test_benchmark_suite_writes_json_and_markdown(tmp_path):
    out_json, out_md = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--cells", "lstm", "--shapes", "2x3x4", "--reps", "2",
           "--pause-ms", "0", "--impls", "jrnn,jrnn_plain,torch,flax,equinox,jrnn_all", "--json", str(out_json),
           "--md", str(out_md)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)
    doc = json.loads(out_json.read_text())
    assert {"command", "date", "machine", "settings", "results", "targets", "targets_all", "ablation"} <= set(doc)
    assert [r["config"]["cell"] for r in doc["results"]] == ["lstm"]
    for res in doc["results"]:
        assert {"config", "gemm_gflops", "impls", "ratios", "loadavg_1min"} <= set(res)
        assert {"jrnn", "jrnn_plain", "torch", "flax", "equinox", "jrnn_all"} <= set(res["impls"])
        for entry in res["impls"].values():
            for mode in ("fwd", "fwdbwd"):
                assert {"median_ms", "samples_ms", "gflops", "fraction_of_gemm"} <= set(entry[mode])
                assert len(entry[mode]["samples_ms"]) == 2
            assert "peak_bytes_fwdbwd" in entry
        assert {"torch", "flax", "equinox"} <= set(res["ratios"])
    assert doc["ablation"] and {"jrnn_plain", "abl_hoist_scan", "jrnn"} <= set(doc["ablation"][0]["variants"])
    md = out_md.read_text()
    assert any(line.startswith("python -m benchmarks --quick") for line in md.splitlines()[:8])
    for heading in ("## Summary", "## Targets", "## Every core", "## Median milliseconds", "## Achieved GFLOP/s",
                    "## Peak memory", "## Ablation"):
        assert heading in md
