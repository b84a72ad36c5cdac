"""Mamba's block and its selective scan (``jrnn.mamba``, ``jrnn.s6``, Gu & Dao 2023).

Against their NumPy equations (tests/reference_selective.py) in float64, step by step: the loop, the associative
scan and DEER, with lengths, in reverse, from an initial state, with resets; the coefficients and readout on
windows built by hand; the associative scan's gradients equal the loop's and finite differences; a prefill then
steps is one forward pass; transformers' ``MambaMixer`` (its PyTorch path) is reproduced, its cached stepping too,
and round-trips exactly; the official initialisation and the factories' errors. The contract over every solver is
tests/test_contract.py (registry entry ``mamba``).
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
import reference_selective as refs
import registry
from jax.test_util import check_grads
from scipy import stats

import jrnn

B, T = 3, 6
LENGTHS = np.array([6, 2, 0], np.int32)  # a full, a short and an empty sequence
RESETS = np.zeros((B, T), bool)
RESETS[0, 3] = RESETS[1, 1] = RESETS[2, 2] = True  # a second segment in each row (past the valid steps in row 2)
TOL = dict(rtol=1e-10, atol=1e-10)
CASES = {  # (cell, NumPy step, input size): Mamba with every bias, R = 2 and F != O; S6 maps E to itself
    "mamba": (jrnn.mamba(4, state_size=3, dt_rank=2, bias=True, dtype=jnp.float64), refs.mamba_step, 5),
    "s6": (jrnn.s6(4, state_size=3, dt_rank=2, dtype=jnp.float64), refs.s6_step, 4),
}
SOLVERS = {"sequential": jrnn.sequential(), "associative": jrnn.associative(), "deer": jrnn.deer()}


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _problem(name, seed=0):
    """``(cell, params, xs, s0)``: parameters from N(0, 0.6²), a random window and state."""
    cell, _, F = CASES[name]
    params = ref.random_params(cell, seed, F, dtype=np.float64)
    xs = ref.device(np.random.default_rng(seed + 1).standard_normal((B, T, F)), np.float64)
    return cell, params, xs, ref.random_state(cell, B, seed + 2, dtype=jnp.float64)


def _rows(state):
    """A batched state as per-sequence NumPy states: MambaStates for a WindowState, ``[E·N]`` arrays for S6."""
    if isinstance(state, jrnn.WindowState):
        window, inner = np.asarray(state.window, np.float64), np.asarray(state.inner, np.float64)
        N = inner.shape[-1] // window.shape[-1]
        return [refs.MambaState(window[b], inner[b].reshape(-1, N)) for b in range(window.shape[0])]
    return list(np.asarray(state, np.float64))


def _assert_state(got, want_rows, what):
    if isinstance(got, jrnn.WindowState):
        np.testing.assert_allclose(got.window, np.stack([s.window for s in want_rows]), err_msg=what, **TOL)
        np.testing.assert_allclose(got.inner, np.stack([s.h.reshape(-1) for s in want_rows]), err_msg=what, **TOL)
        assert np.all(np.asarray(got.fresh)[LENGTHS > 0] == 0.0)
    else:
        np.testing.assert_allclose(got, np.stack(want_rows), err_msg=what, **TOL)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_solver_equals_the_numpy_loop_with_lengths_reverse_resets_and_an_initial_state(name):
    cell, params, xs, s0 = _problem(name)
    step = CASES[name][1]

    @jax.jit
    def run(params, xs, s0, lengths, resets):
        return {(n, reverse, with_resets): jrnn.scan(cell, params, xs, lengths=lengths, initial_state=s0,
                                                     reverse=reverse, resets=resets if with_resets else None,
                                                     solver=solver)
                for n, solver in SOLVERS.items() for reverse in (False, True) for with_resets in (False, True)}

    results = run(params, xs, s0, ref.device(LENGTHS, np.int32), ref.device(RESETS, bool))
    rows, xs64 = _rows(s0), np.asarray(xs, np.float64)
    restart = _rows(cell.initial_state((1,), jnp.float64))[0]  # after a reset: zeros
    for (n, reverse, with_resets), (ys, final) in results.items():
        want = [refs.run_segments(lambda s, x: step(params, s, x), rows[b], xs64[b], LENGTHS[b],
                                  RESETS[b] if with_resets else None, reverse, restart) for b in range(B)]
        what = f"{name}: {n}, reverse={reverse}, resets={with_resets}"
        np.testing.assert_allclose(np.asarray(ys), np.stack([y for y, _ in want]), err_msg=what, **TOL)
        _assert_state(final, [s for _, s in want], what)


def test_coefficients_and_readout_on_windows_built_by_hand_are_the_numpy_loop():
    """The :class:`jrnn.LinearRecurrence` form alone, without the scan: windows of ``in_proj``'s ``x`` block with
    zeros before the start, ``h_t = a_t ⊙ h_{t-1} + b_t`` by a Python loop, then the readout."""
    cell, params, xs, _ = _problem("mamba", seed=9)
    u = cell.window_input(params, xs)  # [B, T, E]
    padded = jnp.concatenate([jnp.zeros((B, cell.width - 1, u.shape[-1])), u], axis=1)
    window = jnp.stack([padded[:, t:t + cell.width] for t in range(T)], axis=1)  # [B, T, K, E]
    fresh = jnp.zeros((B, T, 1)).at[:, 0].set(1.0)
    inputs = jrnn.WindowInputs(window, xs, fresh)
    a, b = cell.coefficients(params, inputs)
    h, states = jnp.zeros((B, a.shape[-1])), []
    for t in range(T):
        h = a[:, t] * h + b[:, t]
        states.append(h)
    ys = cell.readout(params, jnp.stack(states, axis=1), inputs)
    zero = refs.MambaState(np.zeros((cell.width - 1, cell.intermediate_size)),
                           np.zeros((cell.intermediate_size, cell.state_size)))
    want = [refs.run_segments(lambda s, x: refs.mamba_step(params, s, x), zero, np.asarray(xs[r]), T)[0]
            for r in range(B)]
    np.testing.assert_allclose(ys, np.stack(want), **TOL)


@pytest.mark.parametrize("name", sorted(CASES))
def test_associative_gradients_equal_the_loops_with_lengths_reverse_resets_and_an_initial_state(name):
    cell, params, xs, s0 = _problem(name, seed=3)

    @jax.jit
    def run(params, xs, s0, lengths, resets):
        return {(n, reverse, r is None):
                jax.grad(registry.scan_loss(cell, SOLVERS[n], lengths, r, reverse), argnums=(0, 1, 2))(params, xs, s0)
                for n in ("sequential", "associative") for reverse in (False, True) for r in (None, resets)}

    grads = run(params, xs, s0, ref.device(LENGTHS, np.int32), ref.device(RESETS, bool))
    for (n, reverse, plain), got in grads.items():
        want = grads[("sequential", reverse, plain)]
        for i, (a, e) in enumerate(zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want),
                                       strict=True)):
            np.testing.assert_allclose(a, e, err_msg=f"{name}: {n}, reverse={reverse}, leaf {i}", **TOL)


def test_associative_gradients_equal_finite_differences_with_resets():
    cell, params, xs, s0 = _problem("mamba", seed=5)
    loss = registry.scan_loss(cell, jrnn.associative(), ref.device(LENGTHS, np.int32), ref.device(RESETS, bool), False)
    check_grads(jax.jit(loss), (params, xs, s0), order=1, modes=["rev"], eps=1e-6, atol=1e-6, rtol=1e-6)


def test_prefill_then_steps_is_one_forward_pass():
    cell, params, xs, _ = _problem("mamba", seed=7)
    prompt = 4  # longer than the convolution's window of 3 past inputs

    @jax.jit
    def run(params, xs):
        whole, final = jrnn.scan(cell, params, xs, solver=jrnn.associative())
        _, state = jrnn.scan(cell, params, xs[:, :prompt], solver=jrnn.associative())
        state, stepped = jax.lax.scan(lambda s, x: cell.step(params, s, x), state, jnp.swapaxes(xs[:, prompt:], 0, 1))
        return whole, final, jnp.swapaxes(stepped, 0, 1), state

    whole, final, stepped, state = run(params, xs)
    np.testing.assert_allclose(stepped, whole[:, prompt:], **TOL)
    for a, e in zip(state, final, strict=True):
        np.testing.assert_allclose(a, e, **TOL)


# ----------------------------------------------------------------------------------------------------------------
# transformers' MambaMixer.
# ----------------------------------------------------------------------------------------------------------------

def _mixer(use_conv_bias=True, use_bias=False, hidden_act="silu"):
    """A MambaMixer at its own initialisation (transformers' ``init_mamba_weights``), every linear weight and bias
    redrawn at a larger scale so that the gate and the convolution matter. On a CPU without ``mamba_ssm`` and
    ``causal_conv1d`` transformers runs its PyTorch path (``mamba_inner_fn`` falls back to None; the convolution
    and the scan to their reference loops), in evaluation mode as in training."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.mamba.modeling_mamba import MambaMixer

    transformers.utils.logging.set_verbosity_error()  # the fallback's warning
    config = transformers.MambaConfig(hidden_size=16, state_size=4, expand=2, conv_kernel=4, time_step_rank="auto",
                                      use_conv_bias=use_conv_bias, use_bias=use_bias, num_hidden_layers=1,
                                      hidden_act=hidden_act)
    torch.manual_seed(0)
    mixer = MambaMixer(config, layer_idx=0).eval()
    with torch.no_grad():
        for name, p in mixer.named_parameters():
            if name not in ("A_log", "D", "dt_proj.bias"):
                p.uniform_(-0.5, 0.5)
    return torch, transformers, mixer


def _forward(torch, mixer, x):
    with torch.no_grad():
        return mixer(x).numpy()


@contextlib.contextmanager
def _casts_kept_in_float64(torch):
    """transformers' scan and cached step cast ``B``, ``u``, ``Δ``, ``A_log``, ``D``, ``b_Δ`` and the recurrent
    state with ``.float()`` whatever the dtype; here ``.float()`` leaves a float64 tensor as it is."""
    to_float = torch.Tensor.float
    torch.Tensor.float = lambda self, *a, **k: self if self.dtype == torch.float64 else to_float(self, *a, **k)
    try:
        yield
    finally:
        torch.Tensor.float = to_float


@pytest.mark.parametrize("use_conv_bias, use_bias", [(True, False), (False, True)])
def test_from_torch_reproduces_the_mixer_and_to_torch_round_trips(use_conv_bias, use_bias):
    torch, _, mixer = _mixer(use_conv_bias, use_bias)
    x = torch.randn(2, 9, 16)
    want = _forward(torch, mixer, x)
    with jax.enable_x64(False):
        fn, params = jrnn.from_torch(mixer)
        assert isinstance(fn.cell, jrnn.MambaCell) and isinstance(params, jrnn.MambaParams)
        assert (fn.cell.intermediate_size, fn.cell.state_size, fn.cell.dt_rank, fn.cell.width) == (32, 4, 1, 4)
        xs = jnp.asarray(x.numpy())
        got = fn(params, xs)
        parallel, _ = jrnn.scan(fn.cell, params, xs, solver=jrnn.associative())
        short = fn(params, xs, lengths=jnp.array([9, 5]))
    print("max |jrnn - transformers| in float32:", np.abs(np.asarray(got) - want).max(), "of", np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(parallel, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(short[1, :5], _forward(torch, mixer, x[1:, :5])[0], rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(short[1, 5:]) == 0.0)

    state_dict = jrnn.to_torch(params)
    assert list(state_dict) == list(mixer.state_dict())
    other = type(mixer)(mixer.config, layer_idx=0)
    other.load_state_dict(state_dict)
    for name, tensor in mixer.state_dict().items():
        assert torch.equal(other.state_dict()[name], tensor), name
    _, again = jrnn.from_torch(other)
    for a, e in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(params), strict=True):
        np.testing.assert_array_equal(a, e)


def test_float64_reproduction_is_exact_but_for_transformers_float32_casts():
    """transformers' scan casts to float32 whatever the dtype: with those casts kept in float64, jrnn's float64
    block agrees to 1e-12."""
    torch, _, mixer = _mixer()
    mixer = mixer.double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    fn, params = jrnn.from_torch(mixer)
    got = np.asarray(fn(params, jnp.asarray(x.numpy())))
    print("max |jrnn - transformers| in float64:", np.abs(got - _forward(torch, mixer, x)).max())
    np.testing.assert_allclose(got, _forward(torch, mixer, x), rtol=1e-6, atol=1e-6)
    with _casts_kept_in_float64(torch):
        want = _forward(torch, mixer, x)
    print("... with its casts kept in float64:", np.abs(got - want).max())
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_step_after_a_prefill_is_transformers_cached_stepping():
    """A prefill of 5 tokens then one token at a time through transformers' cache (``selective_state_update``, the
    convolution's rolling state): jrnn's state after the prefill is that cache (its window the convolution state
    without the newest input, its inner state the recurrent state flattened), and ``cell.step`` its steps (in
    float64, transformers' float32 casts kept in float64)."""
    torch, transformers, mixer = _mixer()
    mixer = mixer.double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    cache = transformers.DynamicCache(config=mixer.config)
    with torch.no_grad(), _casts_kept_in_float64(torch):
        want = [mixer(x[:, :5], cache=cache).numpy()]
        conv, recurrent = cache.get_conv_state(0).numpy().copy(), cache.get_recurrent_state(0).numpy().copy()
        want += [mixer(x[:, t:t + 1], cache=cache).numpy() for t in range(5, 9)]
    fn, params = jrnn.from_torch(mixer)
    xs = jnp.asarray(x.numpy())
    prefill, state = jrnn.scan(fn.cell, params, xs[:, :5])
    np.testing.assert_allclose(state.window, np.swapaxes(conv[:, :, 1:], 1, 2), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state.inner, recurrent.reshape(2, -1), rtol=1e-12, atol=1e-12)
    stepped = []
    for t in range(5, 9):
        state, y = fn.cell.step(params, state, xs[:, t])
        stepped.append(y[:, None])
    got = np.concatenate([np.asarray(prefill)] + [np.asarray(y) for y in stepped], axis=1)
    print("max |jrnn - transformers' cached steps| in float64:", np.abs(got - np.concatenate(want, axis=1)).max())
    np.testing.assert_allclose(got, np.concatenate(want, axis=1), rtol=1e-12, atol=1e-12)


def test_from_torch_refuses_another_activation_and_a_flat_input():
    _, _, mixer = _mixer(hidden_act="gelu")
    with pytest.raises(ValueError, match=r"expected a MambaMixer whose activation is SiLU .*got 'gelu'"):
        jrnn.from_torch(mixer)
    _, _, mixer = _mixer()
    fn, params = jrnn.from_torch(mixer)
    with pytest.raises(ValueError, match=r"expected x of shape \[B, T, D\].*got shape \(9, 16\)"):
        fn(params, jnp.zeros((9, 16)))


# ----------------------------------------------------------------------------------------------------------------
# The initialisation, the errors.
# ----------------------------------------------------------------------------------------------------------------

def test_initialisation_is_the_official_recipe():
    """``A_log = log(1..N)``, ``D = 1``, ``Δ = softplus(b_Δ)`` log-uniform on [dt_min, dt_max] (Kolmogorov-Smirnov)
    and floored, ``W_Δ`` from U(±dt_scale/√R), the linear maps and the convolution from U(±1/√fan_in)."""
    with jax.enable_x64(False):
        cell = jrnn.mamba(256, state_size=8, bias=True)
        params = cell.init(jax.random.key(0), 24)
        floored = jrnn.mamba(16, dt_min=1e-6, dt_max=1e-5, dt_scale=3.0, conv_bias=False).init(jax.random.key(1), 4)
    E, N, R, K = 512, 8, 16, 4
    assert (cell.intermediate_size, cell.state_size, cell.dt_rank, cell.width) == (E, N, R, K)
    np.testing.assert_allclose(params.A_log, np.broadcast_to(np.log(np.arange(1, N + 1)), (E, N)), rtol=1e-7)
    np.testing.assert_array_equal(params.D, np.ones(E))
    dt = np.logaddexp(0.0, np.asarray(params.dt_proj_bias, np.float64))
    assert 1e-3 * (1 - 1e-5) <= dt.min() and dt.max() <= 0.1 * (1 + 1e-5)
    assert stats.kstest(np.log(dt), stats.uniform(np.log(1e-3), np.log(100.0)).cdf).pvalue > 0.001
    ref.assert_uniform(params.dt_proj_weight, -R ** -0.5, R ** -0.5, "dt_proj_weight")
    for name, bound in (("in_proj_weight", 24 ** -0.5), ("in_proj_bias", 24 ** -0.5), ("conv1d_weight", K ** -0.5),
                        ("conv1d_bias", K ** -0.5), ("x_proj_weight", E ** -0.5), ("out_proj_weight", E ** -0.5),
                        ("out_proj_bias", E ** -0.5)):
        ref.assert_uniform(getattr(params, name), -bound, bound, name)
    assert params.in_proj_weight.shape == (2 * E, 24) and params.x_proj_weight.shape == (R + 2 * N, E)
    np.testing.assert_allclose(np.logaddexp(0.0, np.asarray(floored.dt_proj_bias, np.float64)), 1e-4, rtol=1e-4)
    assert np.abs(floored.dt_proj_weight).max() <= 3.0 and np.abs(floored.dt_proj_weight).max() > 1.5
    assert floored.conv1d_bias is None and floored.in_proj_bias is None and floored.out_proj_bias is None


def test_the_window_holds_in_projs_x_block_and_the_state_is_flat():
    cell = jrnn.mamba(4, state_size=3, expand=1.5, conv_width=3)
    params = cell.init(jax.random.key(0), 2)
    state = cell.initial_state((5,))
    assert (state.window.shape, state.fresh.shape, state.inner.shape) == ((5, 2, 6), (5, 1), (5, 18))
    state, y = cell.step(params, state, jnp.ones((5, 2)))
    assert y.shape == (5, 4)
    np.testing.assert_allclose(state.window[:, -1], cell.window_input(params, jnp.ones((5, 2))), rtol=1e-6)


@pytest.mark.parametrize("build, error, message", [
    (lambda: jrnn.mamba(0), ValueError, r"jrnn.mamba: expected hidden_size to be a positive int, got 0"),
    (lambda: jrnn.mamba(4, state_size=2.5), TypeError, r"expected state_size to be a positive int, got 2.5"),
    (lambda: jrnn.mamba(4, expand=0.1), ValueError, r"expected expand > 0 with int\(expand \* hidden_size\) >= 1"),
    (lambda: jrnn.mamba(4, conv_width=0), ValueError, r"expected conv_width to be a positive int, got 0"),
    (lambda: jrnn.mamba(4, dt_rank="full"), TypeError, r"expected dt_rank to be a positive int, got 'full'"),
    (lambda: jrnn.mamba(4, dt_min=0.2, dt_max=0.1), ValueError,
     r"expected 0 < dt_min <= dt_max, got dt_min=0.2, dt_max=0.1"),
    (lambda: jrnn.mamba(4, dt_init_floor=-1.0), ValueError, r"expected a non-negative dt_init_floor, got -1.0"),
    (lambda: jrnn.s6(4, dt_scale=0.0), ValueError, r"jrnn.s6: expected a positive dt_scale, got 0.0"),
    (lambda: jrnn.mamba(4).init(jax.random.key(0), 0), ValueError,
     r"jrnn.mamba.init: expected input_size to be a positive int, got 0"),
    (lambda: jrnn.s6(4).init(jax.random.key(0), 3), ValueError,
     r"jrnn.s6.init: expected input_size equal to hidden_size 4 .*got 3"),
])
def test_factories_name_what_they_expected_and_what_they_got(build, error, message):
    with pytest.raises(error, match=message):
        build()
