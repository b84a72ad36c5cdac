"""BPTT: docs/concepts/bptt.md by hand in NumPy against ``jax.grad``, and finite differences, all in float64.

Every test in this file runs with 64-bit types on (the ``x64`` fixture, a context manager, so other test files are
unaffected).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

import jrnn


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _normal(rng, shape, scale=1.0):
    return ref.device(scale * rng.standard_normal(shape), np.float64)


# ----------------------------------------------------------------------------------------------------------------
# The derivation by hand (tests/reference.py::elman_bptt) against jax.grad
# ----------------------------------------------------------------------------------------------------------------

def _elman_squared_loss(params, head_params, xs, s0, targets, final_targets, final_weight, lengths):
    """½ Σ_{valid t} ‖V s_t + c − y_t‖² + final_weight · ½ ‖s_final − final_targets‖², through jrnn.scan."""
    cell, head = jrnn.elman(params.W.shape[0]), jrnn.readout(head_params.V.shape[0])
    ys, final = jrnn.scan(cell, params, xs, lengths=lengths, initial_state=s0)
    o = head.apply(head_params, ys)
    mask = jrnn.valid_mask(lengths, *xs.shape[:2])
    L = 0.5 * jnp.sum(jnp.where(mask[:, :, None], o - targets, 0.0) ** 2)
    return L + final_weight * 0.5 * jnp.sum((final - final_targets) ** 2)


_elman_value_and_grads = jax.jit(jax.value_and_grad(_elman_squared_loss, argnums=(0, 1, 2, 3)))


@pytest.mark.parametrize("final_state_loss", [False, True], ids=["outputs_only", "plus_final_state"])
def test_hand_derived_bptt_equals_jax_grad_for_elman_readout_squared_loss_with_lengths(final_state_loss):
    H, I, O, B, T = 4, 3, 2, 4, 6
    rng = np.random.default_rng(0)
    params = jrnn.ElmanParams(U=_normal(rng, (H, I), 0.5), W=_normal(rng, (H, H), 0.5),
                              b_U=_normal(rng, H, 0.3), b_W=_normal(rng, H, 0.3))
    head_params = jrnn.ReadoutParams(V=_normal(rng, (O, H)), b=_normal(rng, O))
    xs, s0 = _normal(rng, (B, T, I)), _normal(rng, (B, H), 0.5)
    targets, final_targets = _normal(rng, (B, T, O)), _normal(rng, (B, H), 0.5)
    lengths = np.array([6, 3, 1, 0])

    value, grads = _elman_value_and_grads(params, head_params, xs, s0, targets, final_targets,
                                          float(final_state_loss), ref.device(lengths, np.int32))
    g_params, g_head, g_xs, g_s0 = grads

    b = ref.f64(params.b_U) + ref.f64(params.b_W)
    L_np, g = ref.elman_bptt(params.U, params.W, b, head_params.V, head_params.b, xs, targets, lengths, s0,
                             final_targets if final_state_loss else None)
    tol = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(value, L_np, **tol)
    np.testing.assert_allclose(g_params.U, g["U"], **tol)
    np.testing.assert_allclose(g_params.W, g["W"], **tol)
    np.testing.assert_allclose(g_params.b_U, g["b"], **tol)  # b = b_U + b_W: both get ∂L/∂b
    np.testing.assert_allclose(g_params.b_W, g["b"], **tol)
    np.testing.assert_allclose(g_head.V, g["V"], **tol)
    np.testing.assert_allclose(g_head.b, g["c"], **tol)
    np.testing.assert_allclose(g_xs, g["xs"], **tol)
    np.testing.assert_allclose(g_s0, g["s0"], **tol)
    # No gradient flows into padded inputs (exactly zero, not merely small).
    for b, n in enumerate(lengths):
        np.testing.assert_array_equal(np.asarray(g_xs)[b, n:], 0.0)
    # A length-0 sequence: dL/ds_0 = delta_1 = ... = delta_T = dL/ds_T (the final-state term only).
    expected_s0 = (ref.f64(s0)[3] - ref.f64(final_targets)[3]) if final_state_loss else np.zeros(H)
    np.testing.assert_allclose(g_s0[3], expected_s0, **tol)


# ----------------------------------------------------------------------------------------------------------------
# The Jacobian product and the (gamma ‖W‖)^T bound
# ----------------------------------------------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnums=0)
def _final_state_jacobian(cell, params, xs, s0, lengths):
    """∂s_final/∂s_0 for one sequence (batch of 1), from jax.jacobian through jrnn.scan."""
    def final(s0_vec):
        _, s = jrnn.scan(cell, params, xs, lengths=lengths, initial_state=s0_vec[None])
        return s[0]
    return jax.jacobian(final)(s0)


def _jacobian(cell, params, xs, s0, n):
    """``∂s_n/∂s_0``: the final state of a length-``n`` sequence is the state after ``n`` steps."""
    f64 = lambda a: None if a is None else ref.device(a, np.float64)  # noqa: E731
    params = jax.tree_util.tree_map(f64, params)
    return np.asarray(_final_state_jacobian(cell, params, f64(xs), f64(s0), ref.device([n], np.int32)))


def _orthogonal(rng, H):
    Q, _ = np.linalg.qr(rng.standard_normal((H, H)))
    return Q


def test_final_state_jacobian_is_the_product_of_diag_fprime_times_W_over_valid_steps():
    H, I, T = 4, 3, 7
    rng = np.random.default_rng(1)
    U, W, b = rng.standard_normal((H, I)), 0.6 * rng.standard_normal((H, H)), rng.standard_normal(H)
    xs, s0 = rng.standard_normal((1, T, I)), 0.5 * rng.standard_normal(H)
    for n in (T, 4, 0):
        s, zs = s0, []  # NumPy forward pass for the pre-activations z_1..z_n of the valid steps
        for t in range(n):
            zs.append(U @ xs[0, t] + W @ s + b)
            s = np.tanh(zs[-1])
        expected = ref.elman_jacobian_chain(W, np.array(zs).reshape(n, H))  # the identity for n = 0
        J = _jacobian(jrnn.elman(H), jrnn.ElmanParams(U, W, b, None), xs, s0, n)
        np.testing.assert_allclose(J, expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("activation, gamma, W_scale", [
    (jnp.tanh, 1.0, 0.8),          # ‖W‖ = 0.8 < 1/γ = 1: vanishes
    (jax.nn.sigmoid, 0.25, 3.0),   # ‖W‖ = 3 > 1 but < 1/γ = 4: still vanishes
    (jnp.tanh, 1.0, 1.5),          # ‖W‖ > 1/γ: the bound allows growth (saturation keeps it small here)
], ids=["tanh_small_W", "sigmoid_W_3", "tanh_large_W"])
def test_jacobian_norm_is_bounded_by_gamma_norm_W_to_the_t(activation, gamma, W_scale):
    H, I, T = 5, 3, 12
    rng = np.random.default_rng(2)
    params = jrnn.ElmanParams(rng.standard_normal((H, I)), W_scale * _orthogonal(rng, H), None, None)
    cell = jrnn.elman(H, activation, bias=False)
    xs, s0 = rng.standard_normal((1, T, I)), rng.standard_normal(H)
    for t in (1, 4, T):
        J = _jacobian(cell, params, xs, s0, t)
        assert np.linalg.norm(J, 2) <= (gamma * W_scale) ** t * (1 + 1e-12)
    if gamma * W_scale < 1:
        assert np.linalg.norm(J, 2) < 0.07  # (γ‖W‖)^12 = 0.8^12 ≈ 0.069 and 0.75^12 ≈ 0.032


def test_linear_rnn_jacobian_is_W_to_the_T_and_explodes_with_singular_values_above_one():
    H, T, a = 4, 20, 1.1
    rng = np.random.default_rng(3)
    Q = _orthogonal(rng, H)
    params = jrnn.ElmanParams(rng.standard_normal((H, 2)), a * Q, None, None)
    J = _jacobian(jrnn.elman(H, lambda z: z, bias=False), params, rng.standard_normal((1, T, 2)),
                  rng.standard_normal(H), T)
    np.testing.assert_allclose(J, np.linalg.matrix_power(a * Q, T), rtol=1e-10)
    np.testing.assert_allclose(np.linalg.svd(J, compute_uv=False), a ** T, rtol=1e-10)  # 1.1^20 ≈ 6.7


def test_irnn_with_identity_W_in_the_linear_region_has_identity_jacobian():
    H, T = 4, 15
    cell = jrnn.elman(H, jax.nn.relu)
    params = jrnn.ElmanParams(np.zeros((H, 2)), np.eye(H), np.full(H, 0.1), None)  # z_t = s_{t-1} + 0.1 > 0
    J = _jacobian(cell, params, np.ones((1, T, 2)), np.linspace(0.1, 1.0, H), T)
    np.testing.assert_array_equal(J, np.eye(H))


# ----------------------------------------------------------------------------------------------------------------
# Central finite differences of jax.grad through a deep bidirectional network (through each cell's scan, with every
# solver: tests/test_contract.py)
# ----------------------------------------------------------------------------------------------------------------

def _check_directional_derivatives(loss, params, xs, seed, n_directions=3, eps=1e-5):
    """jax.grad · v against (L(θ + εv) − L(θ − εv)) / 2ε, for random unit v in parameter space and in input space.

    The directions and shifts are made on the host in float64; one compiled ``value_and_grad`` gives both the
    gradient and the loss values.
    """
    rng = np.random.default_rng(seed)
    value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    leaves, treedef = jax.tree_util.tree_flatten(params)
    leaves, x = [np.asarray(a, np.float64) for a in leaves], np.asarray(xs, np.float64)
    g_params, g_xs = value_and_grad(params, xs)[1]
    g_leaves, g_x = [np.asarray(g) for g in jax.tree_util.tree_leaves(g_params)], np.asarray(g_xs)
    assert len(g_leaves) == len(leaves)
    assert all(np.any(g != 0) for g in g_leaves) and np.any(g_x != 0)

    def L(p_leaves, x):
        p = jax.tree_util.tree_unflatten(treedef, [ref.device(a, np.float64) for a in p_leaves])
        return float(value_and_grad(p, ref.device(x, np.float64))[0])

    def close(exact, fd):
        assert abs(exact - fd) <= 1e-6 * max(abs(exact), abs(fd)), (exact, fd)

    for _ in range(n_directions):
        v = [rng.standard_normal(a.shape) for a in leaves]
        norm = np.sqrt(sum(np.sum(d ** 2) for d in v))
        v = [d / norm for d in v]
        plus = [a + eps * d for a, d in zip(leaves, v, strict=True)]
        minus = [a - eps * d for a, d in zip(leaves, v, strict=True)]
        fd = L(plus, x) - L(minus, x)
        close(sum(float(np.sum(g * d)) for g, d in zip(g_leaves, v, strict=True)), fd / (2 * eps))

        u = rng.standard_normal(x.shape)
        u /= np.linalg.norm(u)
        close(float(np.sum(g_x * u)), (L(leaves, x + eps * u) - L(leaves, x - eps * u)) / (2 * eps))


def test_jax_grad_through_two_layer_bidirectional_deep_net_matches_finite_differences():
    net = jrnn.deep([jrnn.bidirectional(jrnn.elman(3), merge="sum"),
                     jrnn.bidirectional(jrnn.elman(2), merge=jrnn.seed_merge(2, jnp.tanh))])
    B, T, I = 3, 5, 2
    rng = np.random.default_rng(7)
    params = ref.random_params(net, 8, I, dtype=np.float64)  # (seed_merge's V would be float32 from init)
    xs = _normal(rng, (B, T, I))
    lengths = np.array([5, 3, 1])
    w_y = rng.standard_normal((B, T, 2))

    def loss(params, xs):
        ys, finals = net.apply(params, xs, lengths=lengths)
        return jnp.sum(jnp.tanh(ys) * w_y) + 0.3 * sum(jnp.sum(leaf ** 2) for leaf in jax.tree_util.tree_leaves(finals))

    _check_directional_derivatives(loss, params, xs, seed=9)


def test_nan_in_padding_does_not_reach_the_gradients():
    cell = jrnn.elman(3)
    params = ref.random_params(cell, 0, 2, dtype=np.float64)
    lengths = np.array([4, 2])
    xs = np.ones((2, 4, 2))
    poisoned = xs.copy()
    poisoned[1, 2:] = np.nan

    grad = jax.jit(jax.grad(lambda params, xs: jnp.sum(jrnn.scan(cell, params, xs, lengths=lengths)[0])))
    clean, bad = grad(params, ref.device(xs, np.float64)), grad(params, ref.device(poisoned, np.float64))
    for a, b in zip(jax.tree_util.tree_leaves(bad), jax.tree_util.tree_leaves(clean), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
