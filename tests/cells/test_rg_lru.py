"""The RG-LRU and Hawk's recurrent block (``jrnn.rg_lru``, ``jrnn.hawk_block``, De et al. 2024).

Against their NumPy equations (tests/reference_selective.py) in float64, step by step: the loop, the associative
scan and DEER, with lengths, in reverse, from an initial state (a continuing one and a fresh one), with resets; the
associative scan's gradients equal the loop's and finite differences; a prefill then steps is one forward pass;
transformers' ``RecurrentGemmaRecurrentBlock`` and ``RecurrentGemmaRglru`` are reproduced and round-trip exactly;
the bounded square root, the initialisation's ring and the factories' errors. The contract over every solver is
tests/test_contract.py (registry entries ``rg_lru`` and ``hawk_block``).
"""

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
from jrnn._src.cells.rg_lru import block_diagonal, sqrt_bound_derivative

B, T = 3, 6
LENGTHS = np.array([6, 2, 0], np.int32)  # a full, a short and an empty sequence
RESETS = np.zeros((B, T), bool)
RESETS[0, 3] = RESETS[1, 1] = RESETS[2, 2] = True  # a second segment in each row (past the valid steps in row 2)
FRESH = np.array([[0.0], [1.0], [0.0]])  # row 0 continues its initial state, row 1 starts afresh
TOL = dict(rtol=1e-10, atol=1e-10)
CASES = {  # (cell, NumPy step, input size): two heads each, Hawk with its width-4 convolution and O != D != H
    "rg_lru": (jrnn.rg_lru(4, num_heads=2, dtype=jnp.float64), refs.rg_lru_step, 4),
    "hawk_block": (jrnn.hawk_block(4, output_size=3, num_heads=2, dtype=jnp.float64), refs.hawk_step, 5),
}


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _problem(name, seed=0):
    """``(cell, params, xs, s0)``: parameters from N(0, 0.6²), a random window and state, ``fresh`` of FRESH."""
    cell, _, D = CASES[name]
    params = ref.random_params(cell, seed, D, dtype=np.float64)
    xs = ref.device(np.random.default_rng(seed + 1).standard_normal((B, T, D)), np.float64)
    s0 = ref.random_state(cell, B, seed + 2, dtype=jnp.float64)._replace(fresh=ref.device(FRESH, np.float64))
    return cell, params, xs, s0


def _rows(state):
    """A batched WindowState as per-sequence NumPy HawkStates."""
    window, fresh, inner = (np.asarray(a, np.float64) for a in state)
    return [refs.HawkState(window[b], float(fresh[b, 0]), inner[b]) for b in range(window.shape[0])]


def _assert_state(got, want_rows):
    window, fresh, inner = (np.asarray(a, np.float64) for a in got)
    np.testing.assert_allclose(window, np.stack([s.window for s in want_rows]).reshape(window.shape), **TOL)
    np.testing.assert_allclose(fresh[:, 0], [s.fresh for s in want_rows], **TOL)
    np.testing.assert_allclose(inner, np.stack([s.h for s in want_rows]), **TOL)


SOLVERS = {"sequential": jrnn.sequential(), "associative": jrnn.associative(), "deer": jrnn.deer()}


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
    restart = _rows(cell.initial_state((1,), jnp.float64))[0]  # after a reset: zeros, fresh
    for (n, reverse, with_resets), (ys, final) in results.items():
        want = [refs.run_segments(lambda s, x: step(params, s, x), rows[b], xs64[b], LENGTHS[b],
                                  RESETS[b] if with_resets else None, reverse, restart) for b in range(B)]
        what = f"{name}: {n}, reverse={reverse}, resets={with_resets}"
        np.testing.assert_allclose(np.asarray(ys), np.stack([y for y, _ in want]), err_msg=what, **TOL)
        _assert_state(final, [s for _, s in want])


@pytest.mark.parametrize("name", sorted(CASES))
def test_associative_gradients_equal_the_loops_with_lengths_reverse_resets_and_an_initial_state(name):
    cell, params, xs, s0 = _problem(name, seed=3)

    @jax.jit
    def run(params, xs, s0, lengths, resets):
        return {(n, reverse, r is None):
                jax.grad(registry.scan_loss(cell, solver, lengths, r, reverse), argnums=(0, 1, 2))(params, xs, s0)
                for n, solver in SOLVERS.items() if n != "deer" for reverse in (False, True) for r in (None, resets)}

    grads = run(params, xs, s0, ref.device(LENGTHS, np.int32), ref.device(RESETS, bool))
    for (n, reverse, plain), got in grads.items():
        want = grads[("sequential", reverse, plain)]
        for i, (a, e) in enumerate(zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want))):
            np.testing.assert_allclose(a, e, err_msg=f"{name}: {n}, reverse={reverse}, leaf {i}", **TOL)
    assert np.abs(np.asarray(grads[("sequential", False, True)][2].fresh)).max() > 0.1  # fresh is differentiable


def test_associative_gradients_equal_finite_differences_with_resets():
    cell, params, xs, s0 = _problem("hawk_block", seed=5)
    loss = registry.scan_loss(cell, jrnn.associative(), ref.device(LENGTHS, np.int32), ref.device(RESETS, bool), False)
    check_grads(jax.jit(loss), (params, xs, s0), order=1, modes=["rev"], eps=1e-6, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_prefill_then_steps_is_one_forward_pass(name):
    cell, params, xs, _ = _problem(name, seed=7)
    prompt = 4  # longer than the convolution's window of 3 past inputs

    @jax.jit
    def run(params, xs):
        whole, final = jrnn.scan(cell, params, xs, solver=jrnn.associative())
        _, state = jrnn.scan(cell, params, xs[:, :prompt], solver=jrnn.associative())
        state, stepped = jax.lax.scan(lambda s, x: cell.step(params, s, x), state, jnp.swapaxes(xs[:, prompt:], 0, 1))
        return whole, final, jnp.swapaxes(stepped, 0, 1), state

    whole, final, stepped, state = run(params, xs)
    np.testing.assert_allclose(stepped, whole[:, prompt:], **TOL)
    for a, e in zip(state, final):
        np.testing.assert_allclose(a, e, **TOL)


def test_the_first_step_drops_the_state_and_its_normalisation():
    """From a fresh state ``s_1 = σ(W_x x + b_x) ⊙ x`` whatever ``s_0``; from a continuing one ``s_0`` counts."""
    cell, params, xs, _ = _problem("rg_lru")
    x = xs[:, 0]
    inner = jnp.ones((B, 4))
    fresh, _ = cell.step(params, cell.initial_state((B,))._replace(inner=inner), x)
    want = jax.nn.sigmoid(block_diagonal(x, params.input_gate_weight, params.input_gate_bias)) * x
    np.testing.assert_allclose(fresh.inner, want, **TOL)
    assert fresh.fresh.max() == 0.0
    continuing, _ = cell.step(params, fresh._replace(inner=inner), x)
    assert np.abs(np.asarray(continuing.inner - want)).min() > 1e-3


# ----------------------------------------------------------------------------------------------------------------
# transformers' RecurrentGemma layers.
# ----------------------------------------------------------------------------------------------------------------

def _transformers_block(hidden_activation="gelu_pytorch_tanh"):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import RecurrentGemmaConfig
    from transformers.models.recurrent_gemma.modeling_recurrent_gemma import RecurrentGemmaRecurrentBlock

    config = RecurrentGemmaConfig(hidden_size=16, lru_width=16, num_attention_heads=2, conv1d_width=4,
                                  num_hidden_layers=1, vocab_size=8, intermediate_size=8,
                                  hidden_activation=hidden_activation)
    torch.manual_seed(0)
    block = RecurrentGemmaRecurrentBlock(config, layer_idx=0)
    with torch.no_grad():  # every parameter non-zero, biases and the convolution included
        for p in block.parameters():
            p.normal_(0.0, 0.5)
    return torch, block


def _forward(torch, block, x):
    """The block as transformers calls it on a fresh sequence: ``position_ids = arange(T)``, no cache."""
    position_ids = torch.arange(x.shape[1])[None].expand(x.shape[0], -1)
    with torch.no_grad():
        return block(x, position_ids=position_ids, attention_mask=None, use_cache=False)[0].numpy()


def test_from_torch_reproduces_the_recurrent_block_and_to_torch_round_trips():
    torch, block = _transformers_block()
    x = torch.randn(2, 9, 16)
    want = _forward(torch, block, x)
    with jax.enable_x64(False):
        fn, params = jrnn.from_torch(block)
        assert isinstance(fn.cell, jrnn.HawkBlockCell) and isinstance(params, jrnn.HawkBlockParams)
        xs = jnp.asarray(x.numpy())
        got = fn(params, xs)
        parallel, _ = jrnn.scan(fn.cell, params, xs, solver=jrnn.associative())
        short = fn(params, xs, lengths=jnp.array([9, 5]))
    print("max |jrnn - transformers| in float32:", np.abs(np.asarray(got) - want).max())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(parallel, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(short[1, :5], _forward(torch, block, x[1:, :5])[0], rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(short[1, 5:]) == 0.0)

    state_dict = jrnn.to_torch(params)
    assert list(state_dict) == list(block.state_dict())
    other = type(block)(_config(block), layer_idx=0)
    other.load_state_dict(state_dict)
    for name, tensor in block.state_dict().items():
        assert torch.equal(other.state_dict()[name], tensor), name
    _, again = jrnn.from_torch(other)
    for a, e in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, e)


def _config(block):
    from transformers import RecurrentGemmaConfig

    return RecurrentGemmaConfig(hidden_size=block.hidden_size, lru_width=block.lru_width,
                                num_attention_heads=block.rg_lru.num_attention_heads,
                                conv1d_width=block.conv1d_width, num_hidden_layers=1, vocab_size=8,
                                intermediate_size=8)


def test_float64_reproduction_is_exact_but_for_transformers_float32_accumulation():
    """transformers accumulates the RG-LRU in float32 whatever the dtype (``_rnn_scan``'s ``acc_dtype``): with it
    in float64 too, jrnn's float64 block agrees to 1e-12."""
    torch, block = _transformers_block()
    block = block.double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    fn, params = jrnn.from_torch(block)
    got = np.asarray(fn(params, jnp.asarray(x.numpy())))
    np.testing.assert_allclose(got, _forward(torch, block, x), rtol=1e-6, atol=1e-6)
    scan = block.rg_lru._rnn_scan
    block.rg_lru._rnn_scan = lambda *args, **kwargs: scan(*args, **kwargs, acc_dtype=torch.float64)
    np.testing.assert_allclose(got, _forward(torch, block, x), rtol=1e-12, atol=1e-12)


def test_from_torch_converts_the_rg_lru_alone():
    torch, block = _transformers_block()
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    module = block.rg_lru.double()
    with torch.no_grad():
        want = module(x, torch.arange(7)[None].expand(2, -1)).numpy()
    fn, params = jrnn.from_torch(module)
    assert isinstance(fn.cell, jrnn.RGLRUCell) and fn.cell.num_heads == 2
    np.testing.assert_allclose(fn(params, jnp.asarray(x.numpy())), want, rtol=1e-6, atol=1e-6)
    state_dict = jrnn.to_torch(params)
    assert list(state_dict) == list(module.state_dict())
    module.load_state_dict(state_dict)


def test_from_torch_refuses_another_activation_and_a_flat_input():
    _, block = _transformers_block(hidden_activation="gelu")  # the erf form
    with pytest.raises(ValueError, match=r"expected a RecurrentGemmaRecurrentBlock whose act_fn is GeLU's tanh form"):
        jrnn.from_torch(block)
    _, block = _transformers_block()
    fn, params = jrnn.from_torch(block)
    with pytest.raises(ValueError, match=r"expected x of shape \[B, T, D\].*got shape \(9, 16\)"):
        fn(params, jnp.zeros((9, 16)))


# ----------------------------------------------------------------------------------------------------------------
# The bounded square root, the initialisation, the errors.
# ----------------------------------------------------------------------------------------------------------------

def test_sqrt_derivative_is_the_true_one_away_from_zero_and_bounded_at_zero():
    x = jnp.array([2.5e-7, 1e-4, 0.25, 1.0, 4.0])  # from the bound's edge, 1 / (4 · 1000²), up
    grad = jax.vmap(jax.grad(sqrt_bound_derivative))(x)
    np.testing.assert_allclose(grad, 0.5 / np.sqrt(np.asarray(x)), rtol=1e-12)
    np.testing.assert_allclose(jax.jvp(sqrt_bound_derivative, (x,), (jnp.ones_like(x),))[1], grad, rtol=1e-12)
    np.testing.assert_array_equal(sqrt_bound_derivative(x), jnp.sqrt(x))
    tiny = jnp.array([0.0, 1e-300, 1e-12, 2.4e-7])
    np.testing.assert_allclose(jax.vmap(jax.grad(sqrt_bound_derivative))(tiny), 1000.0, rtol=1e-12)


def test_gradients_stay_finite_where_a_reaches_1():
    """With softplus(Λ) = 0 in float64, ``a_t = 1`` and ``1 - a_t² = 0``: √'s derivative there is infinite, the
    bounded one is 1000, and every gradient is finite."""
    cell, params, xs, _ = _problem("rg_lru")
    params = params._replace(recurrent_param=jnp.full((4,), -800.0))
    loss = lambda p: jnp.sum(jrnn.scan(cell, p, xs, solver=jrnn.associative())[0])  # noqa: E731
    grads = jax.jit(jax.grad(loss))(params)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)
    assert np.all(np.isinf(np.asarray(jax.grad(lambda v: jnp.sqrt(1.0 - jnp.exp(-v)))(0.0))))


def test_initialisation_puts_a_squared_uniformly_on_the_ring():
    """recurrentgemma's ``rnn_param_init(min_rad=0.9, max_rad=0.999)``: ``a = exp(-softplus(Λ))`` with ``a²``
    uniform on ``[0.81, 0.998001]`` (Kolmogorov-Smirnov); gates and projections at their variances."""
    with jax.enable_x64(False):
        params = jrnn.rg_lru(4096, num_heads=4).init(jax.random.key(0), 4096)
        hawk = jrnn.hawk_block(256, output_size=64, conv1d_width=4).init(jax.random.key(1), 128)
    a2 = np.exp(-2.0 * np.logaddexp(0.0, np.asarray(params.recurrent_param, np.float64)))
    assert 0.81 - 1e-6 <= a2.min() and a2.max() <= 0.999 ** 2 + 1e-6
    assert stats.kstest(a2, stats.uniform(0.81, 0.999 ** 2 - 0.81).cdf).pvalue > 0.01
    assert params.input_gate_weight.shape == (4, 1024, 1024) and np.all(np.asarray(params.input_gate_bias) == 0)
    np.testing.assert_allclose(np.std(params.recurrent_gate_weight), (1 / 1024) ** 0.5, rtol=0.01)
    for w, std in ((hawk.linear_x_weight, (1 / 128) ** 0.5), (hawk.linear_y_weight, (1 / 128) ** 0.5),
                   (hawk.linear_out_weight, (1 / 256) ** 0.5), (hawk.conv_1d_weight, (0.01 / 4) ** 0.5)):
        np.testing.assert_allclose(np.std(w), std, rtol=0.1)
    assert all(np.all(np.asarray(b) == 0) for b in (hawk.linear_x_bias, hawk.linear_out_bias, hawk.conv_1d_bias))


@pytest.mark.parametrize("build, error, message", [
    (lambda: jrnn.rg_lru(0), ValueError, r"jrnn.rg_lru: expected hidden_size to be a positive int, got 0"),
    (lambda: jrnn.rg_lru(4, num_heads=3), ValueError,
     r"jrnn.rg_lru: expected num_heads to divide hidden_size 4 .*got num_heads=3"),
    (lambda: jrnn.rg_lru(4, min_rad=0.99, max_rad=0.9), ValueError,
     r"expected 0 < min_rad < max_rad < 1 .*got min_rad=0.99, max_rad=0.9"),
    (lambda: jrnn.rg_lru(4).init(jax.random.key(0), 3), ValueError,
     r"jrnn.rg_lru.init: expected input_size equal to hidden_size 4 .*got 3"),
    (lambda: jrnn.hawk_block(4, output_size=0), ValueError, r"expected output_size to be a positive int, got 0"),
    (lambda: jrnn.hawk_block(4, num_heads=8), ValueError, r"expected num_heads to divide hidden_size 4"),
    (lambda: jrnn.hawk_block(4, conv1d_width=1.5), TypeError, r"expected conv1d_width to be a positive int"),
    (lambda: jrnn.hawk_block(4, final_w_init_variance_scale=0.0), ValueError,
     r"expected a positive final_w_init_variance_scale, got 0.0"),
    (lambda: jrnn.hawk_block(4).init(jax.random.key(0), -1), ValueError,
     r"jrnn.hawk_block.init: expected input_size to be a positive int, got -1"),
])
def test_factories_name_what_they_expected_and_what_they_got(build, error, message):
    with pytest.raises(error, match=message):
        build()
