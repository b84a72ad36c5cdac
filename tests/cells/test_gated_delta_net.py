"""Gated DeltaNet (``jrnn.gated_delta_net``, Yang, Kautz & Hatamizadeh 2024).

Against its NumPy equations (tests/reference_delta.py, ``S_t = α_t (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ`` as
a matrix product) in float64: the sequential scan with lengths, in reverse, from an initial state, with resets, and
``cell.step`` in a Python loop; a prefill then steps is one forward pass; the chunkwise WY/UT form
(``jrnn.chunked``, which ``jrnn.auto()`` takes) against the sequential scan in values, final states and every
gradient, and in float32 over many chunks; transformers' ``Qwen3NextGatedDeltaNet`` is reproduced on both of its
PyTorch paths (the chunked WY form and the token-by-token loop) by both solvers, its cached stepping too, and
round-trips exactly; the constructor's initialisation and the factory's errors. The contract over every solver is
tests/test_contract.py (registry entry ``gated_delta_net``, with ``jrnn.chunked(4)``).
"""

import contextlib
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
import reference_delta as refd
import reference_selective as refs
import registry

import jrnn

B, T, F = 3, 6, 5
LENGTHS = np.array([6, 2, 0], np.int32)  # a full, a short and an empty sequence
RESETS = np.zeros((B, T), bool)
RESETS[0, 3] = RESETS[1, 1] = RESETS[2, 2] = True  # a second segment in each row (past the valid steps in row 2)
TOL = dict(rtol=1e-10, atol=1e-10)
# two key heads each serving two value heads, d_k != d_v (a transposed memory would not fit), K = 3, O != F
HEADS = dict(num_heads=2, head_k_dim=3, head_v_dim=2, num_v_heads=4, conv_width=3, eps=1e-5)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _problem(seed=0):
    """``(cell, params, xs, s0)``: parameters from N(0, 0.6²), a random window and memory."""
    cell = jrnn.gated_delta_net(4, dtype=jnp.float64, **HEADS)
    params = ref.random_params(cell, seed, F, dtype=np.float64)
    xs = ref.device(np.random.default_rng(seed + 1).standard_normal((B, T, F)), np.float64)
    return cell, params, xs, ref.random_state(cell, B, seed + 2, dtype=jnp.float64)


def _step(params):
    return lambda s, x: refd.gated_delta_net_step(params, s, x, HEADS["num_heads"], HEADS["head_k_dim"],
                                                  HEADS["eps"])


def _rows(state):
    window, S = np.asarray(state.window, np.float64), np.asarray(state.inner, np.float64)
    return [refd.DeltaState(window[b], S[b]) for b in range(window.shape[0])]


def test_the_sequential_scan_equals_the_numpy_loop_with_lengths_reverse_resets_and_an_initial_state():
    cell, params, xs, s0 = _problem()

    @jax.jit
    def run(params, xs, s0, lengths, resets):
        return {(reverse, with_resets): jrnn.scan(cell, params, xs, lengths=lengths, initial_state=s0,
                                                  reverse=reverse, resets=resets if with_resets else None,
                                                  solver=jrnn.sequential())
                for reverse in (False, True) for with_resets in (False, True)}

    results = run(params, xs, s0, ref.device(LENGTHS, np.int32), ref.device(RESETS, bool))
    rows, xs64 = _rows(s0), np.asarray(xs, np.float64)
    restart = _rows(cell.initial_state((1,), jnp.float64))[0]  # after a reset: zeros
    for (reverse, with_resets), (ys, final) in results.items():
        want = [refs.run_segments(_step(params), rows[b], xs64[b], LENGTHS[b], RESETS[b] if with_resets else None,
                                  reverse, restart) for b in range(B)]
        what = f"reverse={reverse}, resets={with_resets}"
        np.testing.assert_allclose(np.asarray(ys), np.stack([y for y, _ in want]), err_msg=what, **TOL)
        np.testing.assert_allclose(final.window, np.stack([s.window for _, s in want]), err_msg=what, **TOL)
        np.testing.assert_allclose(final.inner, np.stack([s.S for _, s in want]), err_msg=what, **TOL)
        assert np.all(np.asarray(final.fresh)[LENGTHS > 0] == 0.0)


def test_cell_step_in_a_python_loop_equals_the_numpy_loop():
    cell, params, xs, s0 = _problem(seed=4)
    step = jax.jit(cell.step)
    state, ys = s0, []
    for t in range(T):
        state, y = step(params, state, xs[:, t])
        ys.append(y)
    rows, xs64 = _rows(s0), np.asarray(xs, np.float64)
    want = [refs.run_segments(_step(params), rows[b], xs64[b], T) for b in range(B)]
    np.testing.assert_allclose(np.stack(ys, axis=1), np.stack([y for y, _ in want]), **TOL)
    np.testing.assert_allclose(state.inner, np.stack([s.S for _, s in want]), **TOL)
    np.testing.assert_allclose(state.window, np.stack([s.window for _, s in want]), **TOL)


def test_prefill_then_steps_is_one_forward_pass():
    cell, params, xs, _ = _problem(seed=7)
    prompt = 4  # longer than the convolution's window of 2 past inputs

    @jax.jit
    def run(params, xs):
        whole, final = jrnn.scan(cell, params, xs)
        _, state = jrnn.scan(cell, params, xs[:, :prompt])
        state, stepped = jax.lax.scan(lambda s, x: cell.step(params, s, x), state, jnp.swapaxes(xs[:, prompt:], 0, 1))
        return whole, final, jnp.swapaxes(stepped, 0, 1), state

    whole, final, stepped, state = run(params, xs)
    np.testing.assert_allclose(stepped, whole[:, prompt:], **TOL)
    for a, e in zip(state, final, strict=True):
        np.testing.assert_allclose(a, e, **TOL)


# ----------------------------------------------------------------------------------------------------------------
# The chunkwise form (jrnn.chunked): the WY/UT solve against the steps.
# ----------------------------------------------------------------------------------------------------------------

CHUNK_T = 11
CHUNK_LENGTHS = np.array([11, 7, 0], np.int32)
CHUNK_RESETS = np.zeros((B, CHUNK_T), bool)
CHUNK_RESETS[0, [4, 5]] = True  # two segments back to back, the second one step long
CHUNK_RESETS[1, 3] = True


def _chunk_problem(dtype, time=CHUNK_T):
    """``(cell, params, xs, s0)``: the constructor's parameters moved by N(0, 0.3²) (away from ``dt_bias = 1`` and
    the norm's scale 1), a random window and memory."""
    cell = jrnn.gated_delta_net(4, dtype=dtype, **HEADS)
    params = cell.init(jax.random.key(0), F)
    noise = jax.tree.map(lambda p: 0.3 * jax.random.normal(jax.random.key(5), p.shape, p.dtype), params)
    params = jax.tree.map(jnp.add, params, noise)
    xs = jax.random.normal(jax.random.key(1), (B, time, F), dtype)
    s0 = jax.tree.map(lambda a: jax.random.normal(jax.random.key(3), a.shape, a.dtype), cell.initial_state((B,), dtype))
    return cell, params, xs, s0


def test_the_cell_is_chunkwise_and_auto_takes_chunks_of_its_value_size():
    """d_v rounded up to a power of two within [16, 64] (jrnn.auto's chunk size, measured fastest on a CPU)."""
    cell = jrnn.gated_delta_net(4, **HEADS)
    assert isinstance(cell, jrnn.Chunkwise) and jrnn.auto().choose(cell) == jrnn.chunked(16)
    assert jrnn.auto().choose(cell, state_mask=True) == jrnn.sequential()
    sizes = {d: jrnn.gated_delta_net(64, num_heads=1, head_k_dim=8, head_v_dim=d).chunk_size
             for d in (4, 16, 17, 64, 128)}
    assert sizes == {4: 16, 16: 16, 17: 32, 64: 64, 128: 64}


@pytest.mark.parametrize("size", [3, 16])  # not dividing T = 11; more than T (one step a chunk: test_chunked)
def test_chunks_equal_the_sequential_scan_in_values_and_gradients(size):
    """With lengths (a full, a short and an empty row), resets (two adjacent), reverse and a random initial state
    (window and memories): outputs, final states and the gradients w.r.t. the parameters, the inputs and the
    initial state, in float64 to 1e-10 (measured: about 1e-13)."""
    cell, params, xs, s0 = _chunk_problem(jnp.float64)
    registry.assert_chunks_equal_steps(cell, params, xs, s0, size, jnp.asarray(CHUNK_LENGTHS),
                                       jnp.asarray(CHUNK_RESETS), **TOL)


def test_float32_chunks_agree_over_many_chunks():
    """T = 200 in chunks of 64 (the last one padded), float32: outputs to 5e-5 (measured 4.6e-6 of outputs up to
    3.5, and up to 1.3e-5 on other draws; the sequential scan is as far from float64, 6e-6: the RMSNorm of a small
    read ``o`` magnifies either's rounding), the memories to 1e-6 (measured 6e-8)."""
    with jax.enable_x64(False):
        cell, params, xs, s0 = _chunk_problem(jnp.float32, time=200)
        a, fa = jrnn.scan(cell, params, xs, initial_state=s0, solver=jrnn.chunked(64))
        b, fb = jrnn.scan(cell, params, xs, initial_state=s0, solver=jrnn.sequential())
    assert a.dtype == fa.inner.dtype == jnp.float32
    np.testing.assert_allclose(a, b, rtol=5e-5, atol=5e-5)
    np.testing.assert_allclose(fa.inner, fb.inner, rtol=1e-6, atol=1e-6)


def test_a_masked_decay_pair_leaves_no_nan_in_the_gradient():
    """Strong decays (``A = e^5``, ``log α`` down to hundreds a step): the pairs above the diagonal would
    overflow ``exp(g_i - g_j)``; they are masked before the ``exp``, so the gradient stays finite and equal to the
    steps'."""
    cell, params, xs, s0 = _chunk_problem(jnp.float64)
    params = params._replace(A_log=jnp.full_like(params.A_log, 5.0), dt_bias=jnp.full_like(params.dt_bias, 3.0))

    def grad(solver):
        return jax.grad(lambda p: jnp.sum(jrnn.scan(cell, p, 4 * xs, initial_state=s0, solver=solver)[0]))(params)

    for a, e in zip(jax.tree.leaves(grad(jrnn.chunked(8))), jax.tree.leaves(grad(jrnn.sequential())), strict=True):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, e, **TOL)


# ----------------------------------------------------------------------------------------------------------------
# transformers' Qwen3NextGatedDeltaNet.
# ----------------------------------------------------------------------------------------------------------------

def _module(hidden_act="silu"):
    """A Qwen3NextGatedDeltaNet of a tiny config (two key heads of 4, four value heads of 3, K = 4), built by its
    constructor, every weight but ``A_log`` redrawn so that ``dt_bias``, the norm's scale and the gate matter. On a
    CPU transformers runs its PyTorch path: fla and causal-conv1d (not installed here) only run on CUDA, and no
    hub kernel is loaded without ``kernelize``."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.qwen3_next import modeling_qwen3_next as qwen

    transformers.utils.logging.set_verbosity_error()  # the fallback's warning
    config = transformers.Qwen3NextConfig(hidden_size=16, linear_num_key_heads=2, linear_num_value_heads=4,
                                          linear_key_head_dim=4, linear_value_head_dim=3, linear_conv_kernel_dim=4,
                                          rms_norm_eps=1e-5, hidden_act=hidden_act, num_hidden_layers=1,
                                          layer_types=["linear_attention"])
    torch.manual_seed(0)
    module = qwen.Qwen3NextGatedDeltaNet(config, layer_idx=0).eval()
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name == "norm.weight":
                p.uniform_(0.5, 1.5)
            elif name == "dt_bias":
                p.uniform_(-1.0, 1.0)
            elif name != "A_log":
                p.uniform_(-0.5, 0.5)
    return torch, transformers, qwen, module, config


@contextlib.contextmanager
def _torch_path(qwen, path):
    """Runs the module's forward on one of transformers' two PyTorch delta-rule functions: ``"chunk"`` (its default
    for a whole sequence, one chunk of 64), ``"chunk4"`` (the same in chunks of 4 steps, so the state crosses chunk
    boundaries) or ``"recurrent"`` (its token-by-token loop, which it otherwise runs for cached one-token steps).
    Yields the list of calls made, to show the path ran."""
    chunk, recurrent, calls = qwen.torch_chunk_gated_delta_rule, qwen.torch_recurrent_gated_delta_rule, []

    def run(*args, **kwargs):
        calls.append(path)
        if path == "recurrent":
            kwargs.pop("chunk_size", None)
            return recurrent(*args, **kwargs)
        return chunk(*args, **kwargs, **({"chunk_size": 4} if path == "chunk4" else {}))

    qwen.torch_chunk_gated_delta_rule = run
    try:
        yield calls
    finally:
        qwen.torch_chunk_gated_delta_rule = chunk


@contextlib.contextmanager
def _casts_kept_in_float64(torch):
    """transformers computes the delta rule, the decay and the norm in float32 whatever the dtype
    (``.to(torch.float32)``, ``.float()``); here those casts leave a float64 tensor as it is."""
    to, to_float = torch.Tensor.to, torch.Tensor.float

    def kept_to(self, *args, **kwargs):
        if self.dtype == torch.float64 and (torch.float32 in args or kwargs.get("dtype") == torch.float32):
            args, kwargs = tuple(a for a in args if a is not torch.float32), {k: v for k, v in kwargs.items()
                                                                              if k != "dtype"}
        return to(self, *args, **kwargs)

    torch.Tensor.to = kept_to
    torch.Tensor.float = lambda self, *a, **k: self if self.dtype == torch.float64 else to_float(self, *a, **k)
    try:
        yield
    finally:
        torch.Tensor.to, torch.Tensor.float = to, to_float


def _forward(torch, module, x):
    with torch.no_grad():
        return module(x).numpy()


def test_transformers_runs_its_pytorch_path_on_a_cpu():
    """Where fla or causal-conv1d is installed, transformers calls it only on the devices of its own table (CUDA
    and other accelerators); on a CPU, and wherever neither is installed (here), it calls its PyTorch functions."""
    pytest.importorskip("torch")
    hub_kernels = pytest.importorskip("transformers.integrations.hub_kernels")
    for package in ("fla", "causal_conv1d"):
        assert importlib.util.find_spec(package) is None or "cpu" not in hub_kernels._PACKAGE_SUPPORTED_DEVICES[package]


@pytest.mark.parametrize("path", ["chunk", "chunk4", "recurrent"])
def test_from_torch_reproduces_the_module_on_its_torch_paths_and_to_torch_round_trips(path):
    """float32 throughout (transformers' delta rule runs in float32 whatever the dtype): agreement to 1e-5 of
    outputs up to 3.3 (measured with ``jrnn.auto()``, chunks of 64: 7e-7 to 1.1e-6)."""
    torch, _, qwen, module, config = _module()
    x = torch.randn(2, 9, 16)
    with _torch_path(qwen, path) as calls:
        want = _forward(torch, module, x)
        short = _forward(torch, module, x[1:, :5])[0]
    assert calls == [path, path]
    with jax.enable_x64(False):
        fn, params = jrnn.from_torch(module)
        assert isinstance(fn.cell, jrnn.GatedDeltaNetCell) and isinstance(params, jrnn.GatedDeltaNetParams)
        cell = fn.cell
        assert (cell.num_heads, cell.head_k_dim, cell.num_v_heads, cell.head_v_dim, cell.width, cell.eps) == \
            (2, 4, 4, 3, 4, 1e-5)
        xs = jnp.asarray(x.numpy())
        got = fn(params, xs)
        padded = fn(params, xs, lengths=jnp.array([9, 5]))
    print(f"max |jrnn - transformers ({path})| in float32:", np.abs(np.asarray(got) - want).max(), "of",
          np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(padded[1, :5], short, rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(padded[1, 5:]) == 0.0)

    state_dict = jrnn.to_torch(params)
    assert list(state_dict) == list(module.state_dict())
    other = type(module)(config, layer_idx=0)
    other.load_state_dict(state_dict)
    for name, tensor in module.state_dict().items():
        assert torch.equal(other.state_dict()[name], tensor), name
    _, again = jrnn.from_torch(other)
    for a, e in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(params), strict=True):
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("path", ["chunk4", "recurrent"])
def test_float64_reproduction_is_exact_but_for_transformers_float32_casts(path):
    """In float64 with transformers' float32 casts kept in float64, jrnn agrees with both torch paths to 1e-12, in
    chunks (of 4, and of 64 as ``jrnn.auto()`` and so ``fn`` take them) and stepped."""
    torch, _, qwen, module, _ = _module()
    module = module.double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    fn, params = jrnn.from_torch(module)
    with _torch_path(qwen, path), _casts_kept_in_float64(torch):
        want = _forward(torch, module, x)
    for solver in (jrnn.chunked(4), jrnn.chunked(64), jrnn.sequential()):  # fn runs jrnn.auto(): chunks of 64
        got = np.asarray(jrnn.scan(fn.cell, params, jnp.asarray(x.numpy()), solver=solver)[0])
        print(f"max |jrnn {solver.name}({getattr(solver, 'size', '')}) - transformers ({path})| in float64, its casts "
              f"kept in float64:", np.abs(got - want).max())
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=repr(solver))
    np.testing.assert_array_equal(fn(params, jnp.asarray(x.numpy())), jrnn.scan(fn.cell, params,
                                                                                 jnp.asarray(x.numpy()))[0])


def test_step_after_a_prefill_is_transformers_cached_stepping():
    """A prefill of 5 tokens then one token at a time through transformers' cache (its recurrent delta rule and
    ``causal_conv1d_update``): jrnn's state after the prefill is that cache (its window the convolution state without
    the newest input, its inner state the recurrent state), and ``cell.step`` its steps (float64, casts kept)."""
    torch, transformers, _, module, config = _module()
    module = module.double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    cache = transformers.DynamicCache(config=config)
    with torch.no_grad(), _casts_kept_in_float64(torch):
        want = [module(x[:, :5], cache=cache).numpy()]
        conv, recurrent = cache.get_conv_state(0).numpy().copy(), cache.get_recurrent_state(0).numpy().copy()
        want += [module(x[:, t:t + 1], cache=cache).numpy() for t in range(5, 9)]
    fn, params = jrnn.from_torch(module)
    xs = jnp.asarray(x.numpy())
    prefill, state = jax.jit(lambda p, x: jrnn.scan(fn.cell, p, x))(params, xs[:, :5])
    np.testing.assert_allclose(state.window, np.swapaxes(conv[:, :, 1:], 1, 2), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state.inner, recurrent, rtol=1e-12, atol=1e-12)
    stepped, step = [], jax.jit(fn.cell.step)
    for t in range(5, 9):
        state, y = step(params, state, xs[:, t])
        stepped.append(np.asarray(y)[:, None])
    got = np.concatenate([np.asarray(prefill)] + stepped, axis=1)
    print("max |jrnn - transformers' cached steps| in float64:", np.abs(got - np.concatenate(want, axis=1)).max())
    np.testing.assert_allclose(got, np.concatenate(want, axis=1), rtol=1e-12, atol=1e-12)


def test_from_torch_refuses_another_activation_and_a_flat_input():
    _, _, _, module, _ = _module(hidden_act="gelu")
    with pytest.raises(ValueError, match=r"expected a Qwen3NextGatedDeltaNet whose activation is SiLU .*got 'gelu'"):
        jrnn.from_torch(module)
    _, _, _, module, _ = _module()
    fn, params = jrnn.from_torch(module)
    with pytest.raises(ValueError, match=r"expected x of shape \[B, T, D\].*got shape \(9, 16\)"):
        fn(params, jnp.zeros((9, 16)))


# ----------------------------------------------------------------------------------------------------------------
# The initialisation, the errors.
# ----------------------------------------------------------------------------------------------------------------

def test_initialisation_is_the_torch_constructors():
    """``A = exp(A_log)`` from U(0.01, 16) (Kolmogorov-Smirnov), ``dt_bias = 1``, the norm's scale 1, the linear
    maps and the convolution from U(±1/√fan_in)."""
    with jax.enable_x64(False):
        cell = jrnn.gated_delta_net(24, num_heads=4, head_k_dim=8, head_v_dim=6, num_v_heads=512)
        params = cell.init(jax.random.key(0), 20)
    C, V = 2 * 4 * 8 + 512 * 6, 512 * 6
    assert params.in_proj_qkvz_weight.shape == (2 * 32 + 2 * V, 20) and params.in_proj_ba_weight.shape == (1024, 20)
    assert params.conv1d_weight.shape == (C, 4) and params.out_proj_weight.shape == (24, V)
    ref.assert_uniform(np.exp(np.asarray(params.A_log, np.float64)), 0.01, 16.0, "exp(A_log)")
    np.testing.assert_array_equal(params.dt_bias, np.ones(512))
    np.testing.assert_array_equal(params.norm_weight, np.ones(6))
    for name, fan_in in (("in_proj_qkvz_weight", 20), ("in_proj_ba_weight", 20), ("conv1d_weight", 4),
                         ("out_proj_weight", V)):
        ref.assert_uniform(getattr(params, name), -fan_in ** -0.5, fan_in ** -0.5, name)


def test_dt_range_draws_fla_s_initialisation():
    """fla's ``GatedDeltaNet`` (the paper's code): ``A`` from U(0, 16), ``softplus(dt_bias)`` log-uniform on
    ``dt_range``; everything else as transformers' (the same key gives the same projections)."""
    cell = jrnn.gated_delta_net(8, num_heads=2, num_v_heads=512, head_k_dim=2, head_v_dim=2, dt_range=(0.001, 0.1))
    params = cell.init(jax.random.key(0), 5)
    dt = np.log1p(np.exp(np.asarray(params.dt_bias, np.float64)))
    ref.assert_uniform(np.log(dt), np.log(0.001), np.log(0.1), "log softplus(dt_bias)")
    ref.assert_uniform(np.exp(np.asarray(params.A_log, np.float64)), 0.0, 16.0, "exp(A_log)")
    plain = jrnn.gated_delta_net(8, num_heads=2, num_v_heads=512, head_k_dim=2, head_v_dim=2).init(jax.random.key(0), 5)
    np.testing.assert_array_equal(params.in_proj_qkvz_weight, plain.in_proj_qkvz_weight)
    with pytest.raises(ValueError, match=r"expected dt_range = \(dt_min, dt_max\) with 0 < dt_min <= dt_max, or None; "
                                         r"got \(0.1, 0.001\)"):
        jrnn.gated_delta_net(8, dt_range=(0.1, 0.001))


def test_the_window_holds_q_k_v_before_the_convolution_and_the_state_is_one_memory_per_value_head():
    cell = jrnn.gated_delta_net(6, num_heads=3, num_v_heads=6, head_v_dim=5, conv_width=2)
    params = cell.init(jax.random.key(0), 4)
    state = cell.initial_state((5,))
    assert (state.window.shape, state.fresh.shape, state.inner.shape) == ((5, 1, 2 * 3 * 2 + 6 * 5), (5, 1),
                                                                          (5, 6, 2, 5))
    step = jax.jit(lambda p, s, x: (*cell.step(p, s, x), cell.window_input(p, x)))
    state, y, u = step(params, state, jnp.ones((5, 4)))
    assert y.shape == (5, 6) and state.inner.shape == (5, 6, 2, 5)
    np.testing.assert_array_equal(state.window[:, -1], u)


@pytest.mark.parametrize("build, error, message", [
    (lambda: jrnn.gated_delta_net(0), ValueError, r"jrnn.gated_delta_net: expected hidden_size to be a positive "
                                                  r"int, got 0"),
    (lambda: jrnn.gated_delta_net(4, num_heads=2.5), TypeError, r"expected num_heads to be a positive int, got 2.5"),
    (lambda: jrnn.gated_delta_net(6, num_heads=4), ValueError,
     r"expected hidden_size divisible by num_heads when head_k_dim is None, got hidden_size=6, num_heads=4"),
    (lambda: jrnn.gated_delta_net(6, num_heads=4, head_k_dim=0), ValueError,
     r"expected head_k_dim to be a positive int, got 0"),
    (lambda: jrnn.gated_delta_net(4, head_v_dim=-1), ValueError, r"expected head_v_dim to be a positive int, got -1"),
    (lambda: jrnn.gated_delta_net(8, num_heads=4, num_v_heads=6), ValueError,
     r"expected num_v_heads to be a multiple of num_heads 4 .*got 6"),
    (lambda: jrnn.gated_delta_net(4, conv_width=0), ValueError, r"expected conv_width to be a positive int, got 0"),
    (lambda: jrnn.gated_delta_net(4, eps=-1.0), ValueError, r"expected a non-negative eps, got -1.0"),
    (lambda: jrnn.gated_delta_net(4).init(jax.random.key(0), 0), ValueError,
     r"jrnn.gated_delta_net.init: expected input_size to be a positive int, got 0"),
])
def test_the_factory_names_what_it_expected_and_what_it_got(build, error, message):
    with pytest.raises(error, match=message):
        build()
