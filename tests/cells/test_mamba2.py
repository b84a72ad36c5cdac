"""Mamba-2's block (``jrnn.mamba2``, Dao & Gu 2024).

Against its NumPy equations (tests/reference_mamba2.py) in float64, step by step: the loop, the associative scan
(tree and loop), with lengths, in reverse, from an initial state, with resets, with and without a clamp on Δ; the
associative scan's gradients equal the loop's; transformers' ``Mamba2Mixer`` (its PyTorch path, the chunked SSD
algorithm) is reproduced, its cached stepping too, and round-trips exactly; the initialisation and the factory's
errors. The contract over every solver is tests/test_contract.py (registry
entry ``mamba2``).
"""

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
import reference_mamba2 as refm
import reference_selective as refs
import registry
from scipy import stats

import jrnn

B, T = 3, 6
LENGTHS = np.array([6, 2, 0], np.int32)  # a full, a short and an empty sequence
RESETS = np.zeros((B, T), bool)
RESETS[0, 3] = RESETS[1, 1] = RESETS[2, 2] = True  # a second segment in each row (past the valid steps in row 2)
TOL = dict(rtol=1e-10, atol=1e-10)
CASES = {  # (cell, NumPy step, input size)
    # every bias, H = 4 heads of P = 2 in G = 2 groups, F != O
    "grouped": (jrnn.mamba2(4, state_size=3, head_dim=2, n_groups=2, bias=True, dtype=jnp.float64),
                refm.mamba2_step, 5),
    # no convolution bias, K = 3, a non-integer expand (E = 6, H = 2 heads of P = 3), Δ clamped on both sides
    "clamped": (jrnn.mamba2(4, state_size=2, expand=1.5, head_dim=3, conv_width=3, conv_bias=False,
                            dt_limit=(0.3, 0.9), norm_eps=1e-3, dtype=jnp.float64),
                functools.partial(refm.mamba2_step, norm_eps=1e-3, dt_limit=(0.3, 0.9)), 3),
}
SOLVERS = {"sequential": jrnn.sequential(), "associative": jrnn.associative(),
           "associative_loop": jrnn.associative(method="loop")}


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _rows(cell, state):
    """A batched WindowState as per-sequence NumPy states."""
    window, inner = np.asarray(state.window, np.float64), np.asarray(state.inner, np.float64)
    shape = (cell.num_heads, cell.head_dim, cell.state_size)
    return [refm.Mamba2State(window[b], inner[b].reshape(shape)) for b in range(window.shape[0])]


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_solver_equals_the_numpy_loop_with_lengths_reverse_resets_and_an_initial_state(name):
    cell, step, F = CASES[name]
    params = ref.random_params(cell, 0, F, dtype=np.float64)
    xs = ref.device(np.random.default_rng(1).standard_normal((B, T, F)), np.float64)
    s0 = ref.random_state(cell, B, 2, dtype=jnp.float64)

    @jax.jit
    def run(params, xs, s0, lengths, resets):
        return {(n, reverse, with_resets): jrnn.scan(cell, params, xs, lengths=lengths, initial_state=s0,
                                                     reverse=reverse, resets=resets if with_resets else None,
                                                     solver=solver)
                for n, solver in SOLVERS.items() for reverse in (False, True) for with_resets in (False, True)}

    results = run(params, xs, s0, ref.device(LENGTHS, np.int32), ref.device(RESETS, bool))
    rows, xs64 = _rows(cell, s0), np.asarray(xs, np.float64)
    restart = _rows(cell, cell.initial_state((1,), jnp.float64))[0]  # after a reset: zeros
    if name == "clamped":  # the clamp is active on both sides somewhere
        start = cell.intermediate_size + cell.window_size  # Δ's block of in_proj
        raw = np.asarray(xs) @ np.asarray(params.in_proj_weight[start:]).T + np.asarray(params.dt_bias)
        dt = np.logaddexp(0.0, raw)
        assert dt.min() < 0.3 and dt.max() > 0.9
    for (n, reverse, with_resets), (ys, final) in results.items():
        want = [refs.run_segments(lambda s, x: step(params, s, x), rows[b], xs64[b], LENGTHS[b],
                                  RESETS[b] if with_resets else None, reverse, restart) for b in range(B)]
        what = f"{name}: {n}, reverse={reverse}, resets={with_resets}"
        np.testing.assert_allclose(np.asarray(ys), np.stack([y for y, _ in want]), err_msg=what, **TOL)
        np.testing.assert_allclose(final.window, np.stack([s.window for _, s in want]), err_msg=what, **TOL)
        np.testing.assert_allclose(final.inner, np.stack([s.S.reshape(-1) for _, s in want]), err_msg=what, **TOL)
        assert np.all(np.asarray(final.fresh)[LENGTHS > 0] == 0.0)


def test_associative_gradients_equal_the_loops_with_lengths_reverse_resets_and_an_initial_state():
    cell, _, F = CASES["grouped"]
    params = ref.random_params(cell, 3, F, dtype=np.float64)
    xs = ref.device(np.random.default_rng(4).standard_normal((B, T, F)), np.float64)
    s0 = ref.random_state(cell, B, 5, dtype=jnp.float64)

    @jax.jit
    def run(params, xs, s0, lengths, resets):
        return {(n, reverse): jax.grad(registry.scan_loss(cell, SOLVERS[n], lengths, resets, reverse),
                                       argnums=(0, 1, 2))(params, xs, s0)
                for n in ("sequential", "associative") for reverse in (False, True)}

    grads = run(params, xs, s0, ref.device(LENGTHS, np.int32), ref.device(RESETS, bool))
    for (n, reverse), got in grads.items():
        want = grads[("sequential", reverse)]
        for i, (a, e) in enumerate(zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want),
                                       strict=True)):
            np.testing.assert_allclose(a, e, err_msg=f"{n}, reverse={reverse}, leaf {i}", **TOL)


def test_the_window_holds_in_projs_xbc_block_and_the_state_is_flat():
    cell = jrnn.mamba2(4, state_size=3, expand=1.5, head_dim=2, n_groups=3, conv_width=3)
    params = cell.init(jax.random.key(0), 2)
    state = cell.initial_state((5,))
    # E = 6 channels, C = E + 2GN = 24 convolved, H = 3 heads: state H·P·N = 18
    assert (state.window.shape, state.fresh.shape, state.inner.shape) == ((5, 2, 24), (5, 1), (5, 18))
    state, y = cell.step(params, state, jnp.ones((5, 2)))
    assert y.shape == (5, 4)
    np.testing.assert_allclose(state.window[:, -1], cell.window_input(params, jnp.ones((5, 2))), rtol=1e-6)
    np.testing.assert_allclose(cell.window_input(params, jnp.ones((5, 2))),
                               jnp.ones((5, 2)) @ params.in_proj_weight[6:30].T, rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# transformers' Mamba2Mixer.
# ----------------------------------------------------------------------------------------------------------------

def _mixer(use_conv_bias=True, use_bias=False, time_step_limit=(0.0, float("inf")), hidden_act="silu"):
    """A Mamba2Mixer at its own initialisation (``init_mamba2_weights``), every other weight and bias redrawn from
    U(±0.5) so that the gate, the norm and the convolution matter: D = 16, 8 heads of 4 channels in 2 groups, N = 4,
    and a chunk of 4 steps so that a sequence of 9 is cut into 3 chunks, the last padded. On a CPU without
    ``mamba_ssm`` and ``causal_conv1d`` transformers runs its PyTorch path (the chunked SSD scan ``mamba2_chunk_scan``
    and ``F.conv1d``), in evaluation mode as in training."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer

    transformers.utils.logging.set_verbosity_error()
    config = transformers.Mamba2Config(hidden_size=16, num_heads=8, head_dim=4, state_size=4, n_groups=2, expand=2,
                                       conv_kernel=4, chunk_size=4, use_conv_bias=use_conv_bias, use_bias=use_bias,
                                       time_step_limit=time_step_limit, num_hidden_layers=1, hidden_act=hidden_act)
    torch.manual_seed(0)
    mixer = Mamba2Mixer(config, layer_idx=0).eval()
    with torch.no_grad():
        for name, p in mixer.named_parameters():
            if name not in ("A_log", "D", "dt_bias"):
                p.uniform_(-0.5, 0.5)
    return torch, mixer, config


def _forward(torch, mixer, x):
    with torch.no_grad():
        return mixer(x).numpy()


@contextlib.contextmanager
def _casts_kept_in_float64(torch):
    """transformers' scan casts ``x``, ``B``, ``C``, ``Δ`` and ``A_log`` with ``.float()`` and its gated norm with
    ``.to(torch.float32)``, whatever the dtype; here both leave a float64 tensor as it is."""
    to_float, to = torch.Tensor.float, torch.Tensor.to

    def kept(self, *args, **kwargs):
        if self.dtype == torch.float64 and args == (torch.float32,) and not kwargs:
            return self
        return to(self, *args, **kwargs)

    torch.Tensor.float = lambda self, *a, **k: self if self.dtype == torch.float64 else to_float(self, *a, **k)
    torch.Tensor.to = kept
    try:
        yield
    finally:
        torch.Tensor.float, torch.Tensor.to = to_float, to


@pytest.mark.parametrize("use_conv_bias, use_bias, limit", [(True, False, (0.0, float("inf"))),
                                                            (False, True, (0.01, 0.05))])
def test_from_torch_reproduces_the_mixer_and_to_torch_round_trips(use_conv_bias, use_bias, limit):
    """float32: agreement to 1e-5 (measured 5e-7 of outputs of size ~1.6; transformers computes the scan as chunked
    matrix products, jrnn as a recurrence)."""
    torch, mixer, config = _mixer(use_conv_bias, use_bias, limit)
    x = torch.randn(2, 9, 16)
    want = _forward(torch, mixer, x)
    with jax.enable_x64(False):
        fn, params = jrnn.from_torch(mixer)
        assert isinstance(fn.cell, jrnn.Mamba2Cell) and isinstance(params, jrnn.Mamba2Params)
        cell = fn.cell
        assert (cell.num_heads, cell.head_dim, cell.state_size, cell.n_groups, cell.width) == (8, 4, 4, 2, 4)
        assert cell.dt_limit == limit and cell.norm_eps == 1e-5
        xs = jnp.asarray(x.numpy())
        got = fn(params, xs)
        parallel, _ = jrnn.scan(cell, params, xs, solver=jrnn.associative())
        short = fn(params, xs, lengths=jnp.array([9, 5]))
    print("max |jrnn - transformers| in float32:", np.abs(np.asarray(got) - want).max(), "of", np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(parallel, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(short[1, :5], _forward(torch, mixer, x[1:, :5])[0], rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(short[1, 5:]) == 0.0)

    state_dict = jrnn.to_torch(params)
    assert list(state_dict) == list(mixer.state_dict())
    other = type(mixer)(config, layer_idx=0)
    other.load_state_dict(state_dict)
    for name, tensor in mixer.state_dict().items():
        assert torch.equal(other.state_dict()[name], tensor), name
    _, again = jrnn.from_torch(other)
    for a, e in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(params), strict=True):
        np.testing.assert_array_equal(a, e)


def test_float64_reproduction_is_exact_but_for_transformers_float32_casts():
    """transformers casts the scan's inputs and the gated norm to float32 whatever the dtype: as is, jrnn's float64
    block agrees to float32's precision; with those casts kept in float64, to 1e-12."""
    torch, mixer, _ = _mixer(use_bias=True, time_step_limit=(0.01, 0.05))
    mixer = mixer.double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    fn, params = jrnn.from_torch(mixer)
    got = np.asarray(jrnn.scan(fn.cell, params, jnp.asarray(x.numpy()), solver=jrnn.associative())[0])
    print("max |jrnn - transformers| in float64:", np.abs(got - _forward(torch, mixer, x)).max())
    np.testing.assert_allclose(got, _forward(torch, mixer, x), rtol=1e-5, atol=1e-5)
    with _casts_kept_in_float64(torch):
        want = _forward(torch, mixer, x)
    print("... with its casts kept in float64:", np.abs(got - want).max())
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_step_after_a_prefill_is_transformers_cached_stepping():
    """A prefill of 5 tokens then one token at a time through transformers' cache (``selective_state_update``, the
    convolution's rolling state): jrnn's state after the prefill is that cache (its window the convolution state
    without the newest input, its inner state the recurrent state ``[B, H, P, N]`` flattened), and ``cell.step`` its
    steps (in float64, transformers' float32 casts kept in float64)."""
    torch, mixer, config = _mixer()
    transformers = pytest.importorskip("transformers")
    mixer = mixer.double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    cache = transformers.DynamicCache(config=config)
    with torch.no_grad(), _casts_kept_in_float64(torch):
        want = [mixer(x[:, :5], cache=cache).numpy()]
        conv, recurrent = cache.get_conv_state(0).numpy().copy(), cache.get_recurrent_state(0).numpy().copy()
        want += [mixer(x[:, t:t + 1], cache=cache).numpy() for t in range(5, 9)]
    fn, params = jrnn.from_torch(mixer)
    xs = jnp.asarray(x.numpy())
    prefill, state = jrnn.scan(fn.cell, params, xs[:, :5])
    np.testing.assert_allclose(state.window, np.swapaxes(conv[:, :, 1:], 1, 2), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state.inner, recurrent.reshape(2, -1), rtol=1e-12, atol=1e-12)
    step = jax.jit(fn.cell.step)
    stepped = []
    for t in range(5, 9):
        state, y = step(params, state, xs[:, t])
        stepped.append(np.asarray(y)[:, None])
    got = np.concatenate([np.asarray(prefill)] + stepped, axis=1)
    print("max |jrnn - transformers' cached steps| in float64:", np.abs(got - np.concatenate(want, axis=1)).max())
    np.testing.assert_allclose(got, np.concatenate(want, axis=1), rtol=1e-12, atol=1e-12)


def test_from_torch_refuses_another_activation_and_a_flat_input():
    _, mixer, _ = _mixer(hidden_act="gelu")
    with pytest.raises(ValueError, match=r"expected a Mamba2Mixer whose activation is SiLU .*got 'gelu'"):
        jrnn.from_torch(mixer)
    _, mixer, _ = _mixer()
    fn, params = jrnn.from_torch(mixer)
    with pytest.raises(ValueError, match=r"expected x of shape \[B, T, D\].*got shape \(9, 16\)"):
        fn(params, jnp.zeros((9, 16)))


# ----------------------------------------------------------------------------------------------------------------
# The initialisation, the errors.
# ----------------------------------------------------------------------------------------------------------------

def test_initialisation_is_transformers():
    """``A_log = log(1..H)``, ``D = 1``, the norm's scale 1, ``Δ = softplus(dt_bias)`` log-uniform on
    [dt_min, dt_max] (Kolmogorov-Smirnov) and floored, the linear maps and the convolution from U(±1/√fan_in)."""
    with jax.enable_x64(False):
        cell = jrnn.mamba2(128, state_size=8, head_dim=1, n_groups=4, bias=True)  # H = 256 heads
        params = cell.init(jax.random.key(0), 24)
        floored = jrnn.mamba2(16, head_dim=8, dt_min=1e-6, dt_max=1e-5, conv_bias=False).init(jax.random.key(1), 4)
    E, H, N, G, K = 256, 256, 8, 4, 4
    C = E + 2 * G * N
    assert (cell.intermediate_size, cell.num_heads, cell.window_size, cell.width) == (E, H, C, K)
    np.testing.assert_allclose(params.A_log, np.log(np.arange(1, H + 1)), rtol=1e-6)
    np.testing.assert_array_equal(params.D, np.ones(H))
    np.testing.assert_array_equal(params.norm_weight, np.ones(E))
    dt = np.logaddexp(0.0, np.asarray(params.dt_bias, np.float64))
    assert 1e-3 * (1 - 1e-5) <= dt.min() and dt.max() <= 0.1 * (1 + 1e-5)
    assert stats.kstest(np.log(dt), stats.uniform(np.log(1e-3), np.log(100.0)).cdf).pvalue > 0.001
    for name, bound in (("in_proj_weight", 24 ** -0.5), ("in_proj_bias", 24 ** -0.5), ("conv1d_weight", K ** -0.5),
                        ("conv1d_bias", K ** -0.5), ("out_proj_weight", E ** -0.5), ("out_proj_bias", E ** -0.5)):
        ref.assert_uniform(getattr(params, name), -bound, bound, name)
    assert params.in_proj_weight.shape == (E + C + H, 24) and params.conv1d_weight.shape == (C, K)
    np.testing.assert_allclose(np.logaddexp(0.0, np.asarray(floored.dt_bias, np.float64)), 1e-4, rtol=1e-4)
    assert floored.conv1d_bias is None and floored.in_proj_bias is None and floored.out_proj_bias is None


@pytest.mark.parametrize("build, error, message", [
    (lambda: jrnn.mamba2(0), ValueError, r"jrnn.mamba2: expected hidden_size to be a positive int, got 0"),
    (lambda: jrnn.mamba2(4, state_size=2.5), TypeError, r"expected state_size to be a positive int, got 2.5"),
    (lambda: jrnn.mamba2(4, head_dim=0), ValueError, r"expected head_dim to be a positive int, got 0"),
    (lambda: jrnn.mamba2(4, expand=0.1), ValueError, r"expected expand > 0 with int\(expand \* hidden_size\) >= 1"),
    (lambda: jrnn.mamba2(8), ValueError,
     r"expected head_dim to divide int\(expand \* hidden_size\) = 16, got head_dim=64"),
    (lambda: jrnn.mamba2(8, head_dim=4, n_groups=3), ValueError,
     r"expected n_groups to divide the number of heads 4 \(= 16 / head_dim 4\), got n_groups=3"),
    (lambda: jrnn.mamba2(4, head_dim=2, conv_width=0), ValueError, r"expected conv_width to be a positive int"),
    (lambda: jrnn.mamba2(4, head_dim=2, dt_min=0.2, dt_max=0.1), ValueError,
     r"expected 0 < dt_min <= dt_max, got dt_min=0.2, dt_max=0.1"),
    (lambda: jrnn.mamba2(4, head_dim=2, dt_limit=(0.5, 0.1)), ValueError,
     r"expected dt_limit = \(low, high\) with 0 <= low <= high, got \(0.5, 0.1\)"),
    (lambda: jrnn.mamba2(4, head_dim=2, dt_limit=0.1), ValueError, r"expected dt_limit = \(low, high\).*got 0.1"),
    (lambda: jrnn.mamba2(4, head_dim=2, norm_eps=0.0), ValueError, r"expected a positive norm_eps, got 0.0"),
    (lambda: jrnn.mamba2(4, head_dim=2).init(jax.random.key(0), 0), ValueError,
     r"jrnn.mamba2.init: expected input_size to be a positive int, got 0"),
])
def test_factory_names_what_it_expected_and_what_it_got(build, error, message):
    with pytest.raises(error, match=message):
        build()
