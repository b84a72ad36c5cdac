"""xLSTM's cells (``jrnn.mlstm``, ``jrnn.mlstm_block``, ``jrnn.slstm``, Beck et al. 2024).

Against their NumPy equations (tests/reference_xlstm.py) in float64, step by step: the sequential scan with lengths,
resets, in reverse and from an initial state, and the bare step; transformers' ``xLSTMLayer`` and ``xLSTMBlock``
(their native PyTorch kernels: the recurrent step, the recurrent sequence and the chunkwise-parallel form) are
reproduced in float64 and float32, and round-trip exactly; the stabiliser keeps huge input gates finite and equal to
the paper's unstabilised equations where those are finite; the chunkwise form (``jrnn.chunked``, which
``jrnn.auto()`` takes for the mLSTM cells) equals the sequential scan in values, states and gradients, huge input gates
included; the initialisation and the errors. The contract over
every solver is tests/test_contract.py (registry entries ``mlstm``, ``mlstm_block`` and ``slstm``).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
import reference_selective as refs
import reference_xlstm as refx
import registry

import jrnn

B, T = 3, 6
LENGTHS = np.array([6, 2, 0], np.int32)  # a full, a short and an empty sequence
RESETS = np.zeros((B, T), bool)
RESETS[0, 3] = RESETS[1, 1] = RESETS[2, 2] = True  # a second segment in each row (past the valid steps in row 2)
TOL = dict(rtol=1e-10, atol=1e-10)
# (cell, input size): two heads each; the mLSTM with every bias, d_qk = 2 != d_v = 3 and a soft cap that bites
MLSTM = dict(num_heads=2, qk_dim_factor=2 / 3, bias=True, gate_soft_cap=1.5, eps=1e-3, norm_eps=1e-4, dtype=jnp.float64)
CASES = {
    "mlstm": (jrnn.mlstm(6, **MLSTM), 5),
    "mlstm_block": (jrnn.mlstm_block(6, ffn_round_up_to_multiple_of=4, **MLSTM), 6),  # a feed-forward of 16
    "slstm": (jrnn.slstm(4, num_heads=2, dtype=jnp.float64), 3),
}


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _step(name, params):
    cell = CASES[name][0]
    if name.startswith("mlstm"):
        layer = cell if name == "mlstm" else cell.layer
        cfg = refx.MLSTMConfig(layer.num_heads, layer.gate_soft_cap, layer.eps, layer.norm_eps)
        step = refx.mlstm_step if name == "mlstm" else refx.mlstm_block_step
        return lambda s, x: step(params, cfg, s, x)
    return lambda s, x: refx.slstm_step(params, s, x)


def _problem(name, seed=0):
    """``(cell, params, xs, s0)``: parameters from N(0, 0.6²), a random state (the sLSTM's normaliser positive)."""
    cell, F = CASES[name]
    params = ref.random_params(cell, seed, F, dtype=np.float64)
    xs = ref.device(np.random.default_rng(seed + 1).standard_normal((B, T, F)), np.float64)
    s0 = ref.random_state(cell, B, seed + 2, dtype=jnp.float64)
    if name == "slstm":
        s0 = s0._replace(n=jnp.abs(s0.n) + 0.5)
    return cell, params, xs, s0


def _rows(name, state):
    arrays = [np.asarray(leaf, np.float64) for leaf in state]
    kind = refx.SLSTMState if name == "slstm" else refx.MLSTMState
    return [kind(*(a[b] for a in arrays)) for b in range(arrays[0].shape[0])]


def _assert_state(got, want_rows, what):
    for field, leaf in zip(got._fields, got, strict=True):
        np.testing.assert_allclose(leaf, np.stack([getattr(s, field) for s in want_rows]), err_msg=f"{what}: {field}",
                                   **TOL)


@pytest.mark.parametrize("name", sorted(CASES))
def test_sequential_scan_equals_the_numpy_loop_with_lengths_reverse_resets_and_an_initial_state(name):
    cell, params, xs, s0 = _problem(name)

    @jax.jit
    def run(params, xs, s0, lengths, resets):
        return {(reverse, with_resets): jrnn.scan(cell, params, xs, lengths=lengths, initial_state=s0, reverse=reverse,
                                                  resets=resets if with_resets else None, solver=jrnn.sequential())
                for reverse in (False, True) for with_resets in (False, True)}

    results = run(params, xs, s0, ref.device(LENGTHS, np.int32), ref.device(RESETS, bool))
    step, rows, xs64 = _step(name, params), _rows(name, s0), np.asarray(xs, np.float64)
    restart = _rows(name, cell.initial_state((1,), jnp.float64))[0]  # after a reset: zeros
    for (reverse, with_resets), (ys, final) in results.items():
        want = [refs.run_segments(step, rows[b], xs64[b], LENGTHS[b], RESETS[b] if with_resets else None, reverse,
                                  restart) for b in range(B)]
        what = f"{name}: reverse={reverse}, resets={with_resets}"
        np.testing.assert_allclose(np.asarray(ys), np.stack([y for y, _ in want]), err_msg=what, **TOL)
        _assert_state(final, [s for _, s in want], what)


@pytest.mark.parametrize("name", sorted(CASES))
def test_stepping_from_the_zero_state_equals_the_numpy_steps(name):
    """``cell.step`` by hand, batch axes ``[2, B]`` (any leading shape), from ``initial_state``: at the first step
    the sLSTM's normaliser is 0 and its stabiliser starts at ``ĩ``."""
    cell, params, xs, _ = _problem(name, seed=4)
    xs = jnp.stack([xs, -xs])  # [2, B, T, F]
    state = cell.initial_state((2, B), jnp.float64)
    step = jax.jit(cell.step)
    rows = [_rows(name, jax.tree_util.tree_map(lambda a, k=k: a[k], state)) for k in range(2)]
    ref_step = _step(name, params)
    for t in range(T):
        state, y = step(params, state, xs[:, :, t])
        for k in range(2):
            outs = []
            for b in range(B):
                rows[k][b], out = ref_step(rows[k][b], np.asarray(xs[k, b, t], np.float64))
                outs.append(out)
            np.testing.assert_allclose(y[k], np.stack(outs), err_msg=f"{name}: step {t}", **TOL)
    for k in range(2):
        _assert_state(jax.tree_util.tree_map(lambda a, k=k: a[k], state), rows[k], f"{name}: final state")


# ----------------------------------------------------------------------------------------------------------------
# The stabiliser.
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mlstm", "slstm"])
def test_huge_input_gates_stay_finite_and_equal_the_unstabilised_equations(name):
    """Input-gate preactivations of 40 to 120: ``exp(ĩ)`` reaches 1e52, far past float32's range, yet finite in
    float64. The stabilised float64 cell (``ε = 0``, no soft cap) equals the paper's unstabilised equations to
    1e-10; in float32 it stays finite and within 1e-4 of them."""
    cell, F = CASES[name]
    if name == "mlstm":
        cell = jrnn.mlstm(6, num_heads=2, qk_dim_factor=2 / 3, bias=True, gate_soft_cap=None, eps=0.0,
                          norm_eps=1e-4, dtype=jnp.float64)
    params = ref.random_params(cell, 11, F, dtype=np.float64)
    if name == "mlstm":
        params = params._replace(igate_bias=jnp.array([80.0, 40.0]), igate_weight=40 * params.igate_weight)
        cfg = refx.MLSTMConfig(cell.num_heads, None, 0.0, cell.norm_eps)
        raw0 = refx.MLSTMRaw(np.zeros((2, 2, 3)), np.zeros((2, 2)))
        raw_step = lambda s, x: refx.mlstm_step_unstabilised(params, cfg, s, x)  # noqa: E731
    else:
        params = params._replace(b=params.b.at[:cell.hidden_size].set(jnp.array([80.0, 40.0, 100.0, 60.0])),
                                 U=params.U.at[:cell.hidden_size].multiply(20.0))
        raw0 = refx.SLSTMRaw(*(np.zeros(cell.hidden_size) for _ in range(3)))
        raw_step = lambda s, x: refx.slstm_step_unstabilised(params, s, x)  # noqa: E731
    xs = np.random.default_rng(12).standard_normal((B, T, F))
    gate = (params.igate_weight, params.igate_bias) if name == "mlstm" else (params.U[:4], params.b[:4])
    assert np.max(xs @ np.asarray(gate[0]).T + np.asarray(gate[1])) > 100  # exp(ĩ) > 1e43: past float32's range
    want = np.stack([refs.run_segments(raw_step, raw0, xs[b], T)[0] for b in range(B)])
    assert np.all(np.isfinite(want)) and np.max(np.abs(want)) > 0.05
    ys64, _ = jax.jit(lambda p, x: jrnn.scan(cell, p, x))(params, ref.device(xs, np.float64))
    np.testing.assert_allclose(ys64, want, **TOL)
    with jax.enable_x64(False):
        params32 = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a), jnp.float32), params)
        cell32 = dataclasses.replace(cell, dtype=jnp.float32)
        ys32, final32 = jax.jit(lambda p, x: jrnn.scan(cell32, p, x))(params32, jnp.asarray(xs, jnp.float32))
        assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves((ys32, final32)))
        np.testing.assert_allclose(np.asarray(ys32), want, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------------------------
# The chunkwise form (jrnn.chunked, which jrnn.auto() takes for both mLSTM cells).
# ----------------------------------------------------------------------------------------------------------------

T_CHUNKED = 11
LENGTHS_CHUNKED = np.array([11, 7, 0], np.int32)
RESETS_CHUNKED = np.zeros((B, T_CHUNKED), bool)
RESETS_CHUNKED[0, [4, 5]] = True  # two segments back to back, the second one step long
RESETS_CHUNKED[1, 3] = True


# The block's chunk is the layer's between pointwise parts: test_contract runs it chunked (values, gradients, resets).
@pytest.mark.parametrize("name, size", [("mlstm", 3), ("mlstm", 16)])  # not dividing T = 11; more than T
def test_chunks_equal_the_sequential_scan_in_values_states_and_gradients(name, size):
    """The chunk is exact (the stabiliser ``m`` has a closed form over a chunk): equal to the step loop in float64
    to 1e-10 (measured: 2e-13 at most), with parameters from N(0, 0.6²) (the initialisation's gate weights are 0)
    and a random initial state (``C, n`` normal, ``m`` away from 0, where a tie in the stabiliser's max would split its
    gradient)."""
    cell, params, _, s0 = _problem(name, seed=20)
    xs = ref.device(np.random.default_rng(21).standard_normal((B, T_CHUNKED, CASES[name][1])), np.float64)
    registry.assert_chunks_equal_steps(cell, params, xs, s0, size, ref.device(LENGTHS_CHUNKED, np.int32),
                                       ref.device(RESETS_CHUNKED, bool), **TOL)


def test_chunks_stay_exact_where_the_unstabilised_memory_overflows():
    """No soft cap, input-gate preactivations of 32 to 99: ``exp(ĩ)`` passes float32's range (``ĩ > 88.7``)
    at some steps, and the chunk's ``exp(b_i − b_j + ĩ_j − m_i)`` would too without ``m``. In float64 the chunk
    equals the step loop to 1e-10, values and gradients; in float32 it stays finite and within 1e-4 of it."""
    cell = jrnn.mlstm(6, num_heads=2, qk_dim_factor=2 / 3, bias=True, gate_soft_cap=None, eps=1e-3, norm_eps=1e-4,
                      dtype=jnp.float64)
    params = ref.random_params(cell, 30, 5, dtype=np.float64)
    params = params._replace(igate_bias=jnp.array([70.0, 50.0]), igate_weight=8 * params.igate_weight)
    xs = ref.device(np.random.default_rng(31).standard_normal((B, T_CHUNKED, 5)), np.float64)
    i_pre = np.asarray(xs) @ np.asarray(params.igate_weight).T + np.asarray(params.igate_bias)
    assert np.min(i_pre) > 30 and np.max(i_pre) > 88.8  # exp(ĩ) overflows float32
    s0 = ref.random_state(cell, B, 32, dtype=jnp.float64)
    registry.assert_chunks_equal_steps(cell, params, xs, s0, 4, ref.device(LENGTHS_CHUNKED, np.int32),
                                       ref.device(RESETS_CHUNKED, bool), **TOL)
    with jax.enable_x64(False):
        cast = lambda tree: jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a), jnp.float32), tree)  # noqa: E731
        cell32 = dataclasses.replace(cell, dtype=jnp.float32)
        run = jax.jit(lambda p, x, s, solver: jrnn.scan(cell32, p, x, initial_state=s, solver=solver),
                      static_argnums=3)
        got = run(cast(params), cast(xs), cast(s0), jrnn.chunked(4))
        want = run(cast(params), cast(xs), cast(s0), jrnn.sequential())
        assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(got))
        for a, e in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
            np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["mlstm", "mlstm_block"])
def test_float32_chunks_agree_to_1e_4(name):
    """The documented float32 tolerance, T = 200 in chunks of 64 (the last one padded), from a random state: the
    chunk sums ``exp`` of summed log forget gates, the loop multiplies them one step at a time (measured: 5e-5 on
    outputs, 4e-6 on the state)."""
    with jax.enable_x64(False):
        cell, F = CASES[name]
        cell = dataclasses.replace(cell, dtype=jnp.float32) if name == "mlstm" else \
            dataclasses.replace(cell, layer=dataclasses.replace(cell.layer, dtype=jnp.float32))
        params = ref.random_params(cell, 40, F, dtype=np.float32)
        xs = jnp.asarray(np.random.default_rng(41).standard_normal((B, 200, F)), jnp.float32)
        s0 = ref.random_state(cell, B, 42, dtype=jnp.float32)
        got = jrnn.scan(cell, params, xs, initial_state=s0, solver=jrnn.chunked(64))
        want = jrnn.scan(cell, params, xs, initial_state=s0, solver=jrnn.sequential())
        assert jrnn.auto().choose(cell) == jrnn.chunked(cell.chunk_size) and cell.chunk_size in (16, 32, 64)
        for a, e in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
            np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------------------------
# transformers' xLSTMLayer.
# ----------------------------------------------------------------------------------------------------------------

def _module(kind="layer", dtype="float64", mode="inference", weight_mode="single", use_bias=True):
    """A tiny ``xLSTMLayer`` or ``xLSTMBlock`` (D = 8, two heads, d_qk = 2, d_v = 4, chunks of 4, a feed-forward of
    24) with every parameter redrawn from N(0, 0.6²) so that every gate matters. Its native kernels only:
    ``mode="inference"`` runs the chunkwise form on whole chunks and the recurrent sequence kernel on the rest (one
    step alone: the step kernel); ``mode="train"`` the chunkwise form alone. In float64 the state dtype (a config
    literal of float32, bfloat16 and float16) is set past the config's check, and the norms' float32 reduction is
    off."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.xlstm.modeling_xlstm import xLSTMBlock, xLSTMLayer

    config = transformers.xLSTMConfig(hidden_size=8, num_heads=2, use_bias=use_bias, mode=mode, chunk_size=4,
                                      return_last_states=True, autocast_kernel_dtype="float32",
                                      inference_state_dtype="float32", weight_mode=weight_mode, num_hidden_layers=1,
                                      gate_soft_cap=2.0, ffn_round_up_to_multiple_of=8,
                                      norm_reduction_force_float32=dtype == "float32")
    object.__setattr__(config, "inference_state_dtype", dtype)
    torch.manual_seed(0)
    module = (xLSTMLayer if kind == "layer" else xLSTMBlock)(config).to(getattr(torch, dtype)).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.6)
    return torch, module


def _torch_state(torch, state):
    return tuple(torch.from_numpy(np.array(a)) for a in (state.C, state.n, state.m[..., None]))


@pytest.mark.parametrize("kind", ["layer", "block"])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
def test_from_torch_reproduces_the_sequence_and_step_paths(kind, dtype, tol):
    """float64: to 1e-12 (measured ~1e-15). float32: to 2e-5 (measured ~1e-6; the chunkwise form sums in another
    order). Three paths: ``mode="train"`` (chunkwise alone, T = 8), ``mode="inference"`` (chunkwise on 8 steps,
    the recurrent sequence kernel on the last 2) from a state of a first call, and the step kernel, one step per
    call with transformers' state carried over."""
    torch, module = _module(kind, dtype, mode="train")
    _, infer = _module(kind, dtype, mode="inference")
    infer.load_state_dict(module.state_dict())
    fn, params = jrnn.from_torch(module)
    assert isinstance(fn.cell, jrnn.MLSTMCell if kind == "layer" else jrnn.MLSTMBlockCell)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 13, 8)).astype(dtype)
    tol = dict(rtol=tol, atol=tol)
    with torch.no_grad():
        y_train, (c, n, m) = module(torch.from_numpy(x[:, :8]))
        y_first, state = infer(torch.from_numpy(x[:, :3]))
        y_rest, (c2, n2, m2) = infer(torch.from_numpy(x[:, 3:]), state)
        stepped, step_state = [], None
        for t in range(13):
            y_t, step_state = infer(torch.from_numpy(x[:, t:t + 1]), step_state)
            stepped.append(y_t)
    y, final = fn(params, jnp.asarray(x[:, :8]))
    np.testing.assert_allclose(y, y_train.numpy(), **tol)
    for got, want in zip(final, (c, n, m[..., 0]), strict=True):
        np.testing.assert_allclose(got, want.numpy(), **tol)
    y_all, final_all = fn(params, jnp.asarray(x))
    np.testing.assert_allclose(y_all[:, :3], y_first.numpy(), **tol)
    np.testing.assert_allclose(y_all[:, 3:], y_rest.numpy(), **tol)
    np.testing.assert_allclose(y_all, torch.cat(stepped, dim=1).numpy(), **tol)
    for got, want, stepped_state in zip(final_all, (c2, n2, m2[..., 0]), step_state, strict=True):
        np.testing.assert_allclose(got, want.numpy(), **tol)
        np.testing.assert_allclose(got, stepped_state.numpy().reshape(got.shape), **tol)
    # from a jrnn state: the module's second call reads it as transformers' (c, n, m)
    _, mid = fn(params, jnp.asarray(x[:, :3]))
    with torch.no_grad():
        y_from, _ = infer(torch.from_numpy(x[:, 3:]), _torch_state(torch, mid))
    np.testing.assert_allclose(fn(params, jnp.asarray(x[:, 3:]), mid)[0], y_from.numpy(), **tol)


def test_from_torch_reads_the_fused_weight_mode_and_modules_without_biases():
    """A fused layer holding a single layer's weights converts to that layer's parameters exactly; a fused block
    (``proj_up_gate_z`` too) is reproduced."""
    torch, single = _module(use_bias=False)
    _, fused = _module(weight_mode="fused", use_bias=False)
    s, f = single.state_dict(), fused.state_dict()
    with torch.no_grad():
        f["qkv_opreact.weight"].copy_(torch.cat([s["q.weight"], s["k.weight"], s["v.weight"],
                                                 s["ogate_preact.weight"]]))
        f["ifgate_preact.weight"].copy_(torch.cat([s["igate_preact.weight"], s["fgate_preact.weight"]]))
        f["ifgate_preact.bias"].copy_(torch.cat([s["igate_preact.bias"], s["fgate_preact.bias"]]))
        f["multihead_norm.weight"].copy_(s["multihead_norm.weight"])
        f["out_proj.weight"].copy_(s["out_proj.weight"])
    x = np.random.default_rng(1).standard_normal((2, 5, 8))
    with torch.no_grad():
        want = fused(torch.from_numpy(x))[0].numpy()
    fn, params = jrnn.from_torch(fused)
    assert params.q_bias is None and params.norm_bias is None and params.out_proj_bias is None
    np.testing.assert_allclose(fn(params, jnp.asarray(x))[0], want, rtol=1e-12, atol=1e-12)
    round_trip = jrnn.to_torch(params)
    assert list(round_trip) == list(s)
    for name, value in s.items():
        assert torch.equal(round_trip[name], value), name
    for use_bias in (False, True):
        _, block = _module("block", weight_mode="fused", use_bias=use_bias)
        with torch.no_grad():
            want = block(torch.from_numpy(x))[0].numpy()
        fn, params = jrnn.from_torch(block)
        np.testing.assert_allclose(fn(params, jnp.asarray(x))[0], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["layer", "block"])
def test_to_torch_round_trips_exactly_and_loads_into_the_module(kind):
    torch, module = _module(kind)
    fn, params = jrnn.from_torch(module)
    state = jrnn.to_torch(params)
    assert list(state) == list(module.state_dict())
    for name, value in module.state_dict().items():
        assert torch.equal(state[name], value), name
    _, fresh = _module(kind)
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    fresh.load_state_dict(state)
    x = np.random.default_rng(2).standard_normal((1, 6, 8))
    with torch.no_grad():
        np.testing.assert_array_equal(fresh(torch.from_numpy(x))[0].numpy(), module(torch.from_numpy(x))[0].numpy())
    back = jrnn.from_torch(fresh)[1]
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"expected x of shape \[B, T, D\].*got shape \(6, 8\)"):
        fn(params, jnp.zeros((6, 8)))


# ----------------------------------------------------------------------------------------------------------------
# Initialisation and errors.
# ----------------------------------------------------------------------------------------------------------------

def test_initialisation_is_transformers_and_the_official_slstms():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.xLSTMConfig(hidden_size=64, num_heads=4, num_hidden_layers=2, vocab_size=10)
    torch.manual_seed(0)
    theirs = jrnn.from_torch(transformers.xLSTMModel(config).blocks[0])[1]
    ours = jrnn.mlstm_block(64, num_heads=4, num_layers=2).init(jax.random.key(0), 64)
    assert ours.proj_up_weight.shape == theirs.proj_up_weight.shape == (192, 64)  # 64 · 2.667 rounded up to 64s
    layer_fields = ("ogate_weight", "igate_weight", "igate_bias", "fgate_weight", "fgate_bias", "norm_weight")
    for field in ("norm_mlstm_weight", "norm_ffn_weight", "proj_up_gate_weight") + layer_fields:
        got, want = (getattr(p.mlstm_layer if field in layer_fields else p, field) for p in (ours, theirs))
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=field)
    for field in ("q_weight", "k_weight", "v_weight", "out_proj_weight", "proj_up_weight", "proj_down_weight"):
        # 2048 to 12288 draws: the standard deviations agree within 5%
        got, want = (getattr(p.mlstm_layer if hasattr(p.mlstm_layer, field) else p, field) for p in (ours, theirs))
        np.testing.assert_allclose(np.std(got), np.std(want), rtol=0.05, err_msg=field)
    params = jrnn.slstm(8, num_heads=2).init(jax.random.key(0), 3)
    ramp = np.arange(4) / 3
    np.testing.assert_allclose(params.b[8:16], np.tile(-(-5.0 + 12.0 * ramp ** 0.3), 2), rtol=1e-6)
    assert not np.any(params.b[:8]) and not np.any(params.b[16:]) and not np.any(params.W)
    np.testing.assert_allclose(np.std(params.U), np.sqrt(2 / 15), rtol=0.3)


@pytest.mark.parametrize("make, error, match", [
    (lambda: jrnn.mlstm(0), ValueError, r"expected hidden_size to be a positive int, got 0"),
    (lambda: jrnn.mlstm(8, num_heads=3), ValueError,
     r"expected int\(hidden_size \* qk_dim_factor\) to be a positive multiple of num_heads \(3\), got int\(8 \* 0.5\) "
     r"= 4"),
    (lambda: jrnn.mlstm(8, num_heads=4, v_dim_factor=0.5), ValueError,
     r"expected at least 2 value features per head .* got 4 over 4 heads"),
    (lambda: jrnn.mlstm(8, qk_dim_factor=-1.0), ValueError, r"expected a positive qk_dim_factor, got -1.0"),
    (lambda: jrnn.mlstm(8, gate_soft_cap=0.0), ValueError, r"expected a positive gate_soft_cap or None, got 0.0"),
    (lambda: jrnn.mlstm(8, eps=-1.0), ValueError, r"expected a non-negative eps, got -1.0"),
    (lambda: jrnn.mlstm(8, num_layers=1.5), TypeError, r"expected num_layers to be a positive int, got 1.5"),
    (lambda: jrnn.mlstm(8).init(jax.random.key(0), 0), ValueError, r"jrnn.mlstm.init: expected input_size"),
    (lambda: jrnn.mlstm_block(8, num_heads=3), ValueError, r"jrnn.mlstm_block: expected int\(hidden_size"),
    (lambda: jrnn.mlstm_block(8, ffn_proj_factor=0), ValueError, r"expected a positive ffn_proj_factor, got 0"),
    (lambda: jrnn.mlstm_block(8).init(jax.random.key(0), 4), ValueError,
     r"expected input_size equal to hidden_size 8 \(the block is residual\), got 4"),
    (lambda: jrnn.slstm(6, num_heads=4), ValueError, r"expected num_heads to divide hidden_size \(6\), got 4"),
    (lambda: jrnn.slstm(6, num_heads=True), TypeError, r"expected num_heads to be a positive int, got True"),
    (lambda: jrnn.slstm(8).init(jax.random.key(0), -2), ValueError, r"jrnn.slstm.init: expected input_size"),
])
def test_errors_name_what_was_expected_and_what_was_received(make, error, match):
    with pytest.raises(error, match=match):
        make()
