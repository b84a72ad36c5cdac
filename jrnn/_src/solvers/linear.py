"""Linear recurrences over time: the one module that solves them, for the associative solver (``associative.py``)
and for the inner step of the Newton solvers (``newton.py``); in ``O(log T)`` depth (:func:`linear_scan`,
:func:`log_linear_scan`) or, time-major, as a plain loop (:func:`linear_loop`).

A linear recurrence ``s_t = A_t s_{t-1} + b_t`` is a composition of affine maps, and affine maps compose
associatively: ``(A_1, b_1)`` then ``(A_2, b_2)`` is ``(A_2 A_1, A_2 b_1 + b_2)``. ``jax.lax.associative_scan``
therefore computes every prefix, every ``s_t``, in ``O(log T)`` sequential depth (Blelloch 1990). ``A_t`` is a
``[D, D]`` matrix (DEER) or a diagonal, stored as its ``[D]`` vector (quasi-DEER, ELK, the diagonal linear cells),
real of either sign or complex. ``s_0`` is folded into the first element, ``b_1 <- A_1 s_0 + b_1``, so the ``b``
component of each prefix is ``s_t`` itself.

For positive coefficients the solve can also run in log space (:func:`log_linear_scan`). Feng et al. (2024, "Were
RNNs all we needed?", arXiv 2410.01201) keep ``a_t, b_t > 0`` and take ``a*_t = cumsum(log a)`` and
``log s_t = a*_t + logcumsumexp(log b - a*)``, which cancels two large numbers when ``a*_t`` is very negative.
Here the associative scan runs on the log pairs directly,

    (A_1, L_1) ∘ (A_2, L_2) = (A_1 + A_2, logaddexp(L_1 + A_2, L_2)),

so ``A_t = Σ log a`` and ``L_t = log Σ_k (Π a) b_k`` are each exact to rounding; the initial state, of any sign,
enters linearly: ``s_t = exp(A_t) ⊙ s_0 + exp(L_t)``.

The damped step of ELK (Gonzalez et al. 2024) is the Levenberg-Marquardt step

    argmin_s  Σ_t |s_t - a_t ⊙ s_{t-1} - b_t|² + λ Σ_t |s_t - z_t|²,

which is the posterior mean of a linear-Gaussian state-space model (unit process noise, the previous iterate
``z_t`` observed with precision ``λ``): a Kalman filter forward and a Rauch-Tung-Striebel smoother backward. With a
diagonal ``a`` every coordinate is a scalar model, and all three of its recurrences run in parallel over time: the
filter's variance follows a Riccati recursion, a Möbius map of ``P_{t-1}`` whose 2 × 2 matrices compose by
product, and given the variances the filtered and smoothed means are linear recurrences.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _compose_full(earlier, later):
    A1, b1 = earlier
    A2, b2 = later
    return A2 @ A1, jnp.einsum("...ij,...j->...i", A2, b1) + b2


def _compose_diagonal(earlier, later):
    a1, b1 = earlier
    a2, b2 = later
    return a2 * a1, a2 * b1 + b2


def _compose_log(earlier, later):
    A1, L1 = earlier
    A2, L2 = later
    return A1 + A2, jnp.logaddexp(L1 + A2, L2)


def _compose_log_segmented(earlier, later):
    """:func:`_compose_log` that restarts at a segment's first step: a flagged element drops what came before."""
    A1, L1, f1 = earlier
    A2, L2, f2 = later
    return (jnp.where(f2, A2, A1 + A2), jnp.where(f2, L2, jnp.logaddexp(L1 + A2, L2)), f1 | f2)


def log_linear_scan(log_a: jax.Array, log_b: jax.Array, s0: jax.Array, resets: jax.Array | None = None,
                    restart: jax.Array | None = None) -> jax.Array:
    """Every ``s_t`` of ``s_t = a_t ⊙ s_{t-1} + b_t`` for positive ``a``, ``b``, from ``log a``, ``log b``
    ``[B, T, H]`` and ``s0 [B, H]`` of any sign: ``s [B, T, H]``, in log space.

    With ``resets [B, T]`` (bool), ``s_{t-1}`` is ``restart [B, H]`` where ``resets[:, t]``: a segmented scan,
    whose flagged elements drop the products before them, so ``A_t`` sums ``log a`` from the segment's first step
    and ``s_t = exp(A_t) ⊙ s_start + exp(L_t)``, ``s_start`` being ``s0`` in the first segment and ``restart``
    after.

    Example:
      >>> import jax.numpy as jnp
      >>> from jrnn._src.solvers.linear import log_linear_scan
      >>> s = log_linear_scan(jnp.log(jnp.full((1, 3, 1), 0.5)), jnp.zeros((1, 3, 1)), -jnp.ones((1, 1)))
      >>> s[0, :, 0].round(4)   # s_t = s_{t-1} / 2 + 1 from s_0 = -1
      Array([0.5  , 1.25 , 1.625], dtype=float32)
    """
    if resets is None:
        A, L = jax.lax.associative_scan(_compose_log, (log_a, log_b), axis=1)
    else:
        flags = jnp.broadcast_to(resets[..., None], log_a.shape)
        A, L, _ = jax.lax.associative_scan(_compose_log_segmented, (log_a, log_b, flags), axis=1)
        first = (jnp.cumsum(resets, axis=1) == 0)[..., None]
        return jnp.exp(A) * jnp.where(first, s0[:, None, :], restart[:, None, :]) + jnp.exp(L)
    return jnp.exp(A) * s0[:, None, :] + jnp.exp(L)


def linear_scan(A: jax.Array, b: jax.Array, s0: jax.Array, *, reverse: bool = False,
                resets: jax.Array | None = None, restart: jax.Array | None = None) -> jax.Array:
    """Every ``s_t`` of ``s_t = A_t s_{t-1} + b_t``: ``A [B, T, D, D]`` or diagonal ``[B, T, D]``, ``b [B, T, D]``,
    ``s0 [B, D]`` -> ``s [B, T, D]``.

    With ``reverse=True`` time runs backwards: ``s_t = A_t s_{t+1} + b_t`` from ``s_{T+1} = s0``. The
    coefficients may have either sign or be complex (``s`` then has the promoted dtype). With ``resets [B, T]``
    (bool, forward only), ``s_{t-1}`` is ``restart [B, D]`` where ``resets[:, t]``: there ``(A_t, b_t)``
    becomes ``(0, A_t restart + b_t)``, which cuts the products at the segment's first step.

    Example:
      >>> import jax.numpy as jnp
      >>> from jrnn._src.solvers.linear import linear_scan
      >>> linear_scan(jnp.full((1, 3, 1), 2.0), jnp.ones((1, 3, 1)), jnp.zeros((1, 1)))[0, :, 0]
      Array([1., 3., 7.], dtype=float32)
    """
    full = A.ndim == b.ndim + 1
    dtype = jnp.result_type(A, b, s0)
    A, b, s0 = (jnp.asarray(v, dtype) for v in (A, b, s0))
    apply = (lambda M, v: jnp.einsum("b...ij,b...j->b...i", M, v)) if full else (lambda M, v: M * v)  # noqa: E731
    if resets is not None:
        if reverse:
            raise ValueError("linear_scan: resets run forward in time only")
        b = jnp.where(resets[..., None], b + apply(A, jnp.asarray(restart, dtype)[:, None]), b)
        A = jnp.where(resets.reshape(resets.shape + (1,) * (A.ndim - 2)), jnp.zeros_like(A), A)
    first = 0 if not reverse else -1
    A0 = A[:, first]
    b0 = b[:, first] + apply(A0, s0)
    b = b.at[:, first].set(b0)
    compose = _compose_full if full else _compose_diagonal
    return jax.lax.associative_scan(compose, (A, b), reverse=reverse, axis=1)[1]


def linear_loop(A: jax.Array, b: jax.Array, s0: jax.Array, resets: jax.Array | None = None,
                restart: jax.Array | None = None) -> jax.Array:
    """Every ``s_t`` of ``s_t = A_t s_{t-1} + b_t``, time-major, by ``jax.lax.scan``: ``A [T, B, D, D]`` or diagonal
    ``[T, B, D]``, ``b [T, B, D]``, ``s0 [B, D]`` -> ``s [T, B, D]`` (the promoted dtype). With ``resets [T, B]``,
    ``s_{t-1}`` is ``restart [B, D]`` where ``resets[t]``. ``T`` steps deep, half the tree's work.

    Example:
      >>> import jax.numpy as jnp
      >>> from jrnn._src.solvers.linear import linear_loop
      >>> linear_loop(jnp.full((3, 1, 1), 2.0), jnp.ones((3, 1, 1)), jnp.zeros((1, 1)))[:, 0, 0]
      Array([1., 3., 7.], dtype=float32)
    """
    dtype = jnp.result_type(A, b, s0)
    full = A.ndim == b.ndim + 1

    def body(s, inputs):
        A_t, b_t, reset = inputs
        if reset is not None:  # a new segment starts from restart
            s = jnp.where(reset[:, None], jnp.asarray(restart, dtype), s)
        s = (jnp.einsum("...ij,...j->...i", A_t, s) if full else A_t * s) + b_t
        return s, s

    return jax.lax.scan(body, jnp.asarray(s0, dtype), (A, b, resets))[1]


def _compose_mobius(earlier, later):
    product = later @ earlier  # entries are >= 0: scaling by the largest keeps the projective map, never overflows
    return product / jnp.max(product, axis=(-2, -1), keepdims=True)


def damped_diagonal_step(a: jax.Array, b: jax.Array, s0: jax.Array, z: jax.Array, damping: float) -> jax.Array:
    """ELK's damped step for a diagonal recurrence: the minimiser over ``s [B, T, D]`` of
    ``Σ_t (s_t - a_t s_{t-1} - b_t)² + damping · Σ_t (s_t - z_t)²``, coordinate by coordinate, with ``s_0 = s0``.

    ``damping = 0`` is the undamped step ``s_t = a_t s_{t-1} + b_t``; as it grows, the step stays nearer ``z``.
    For any ``damping > 0`` the filter's variance is at most about ``1 / damping``, so however large the ``a_t``,
    the step departs from ``z`` by at most about ``1/√damping`` times the size of ``b`` (no overflow). 16-bit
    inputs are computed in float32 and the step returned in their dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> from jrnn._src.solvers.linear import damped_diagonal_step
      >>> a, b, z = jnp.ones((1, 2, 1)), jnp.ones((1, 2, 1)), jnp.zeros((1, 2, 1))
      >>> damped_diagonal_step(a, b, jnp.zeros((1, 1)), z, 0.0)[0, :, 0]
      Array([1., 2.], dtype=float32)
    """
    dtype = b.dtype
    if jnp.finfo(dtype).bits < 32:  # a 16-bit float holds neither a small λ nor the variances up to 1/λ
        a, b, s0, z = (v.astype(jnp.float32) for v in (a, b, s0, z))
    lam = jnp.asarray(damping, b.dtype)
    # The filter's variance: P_t = (a² P + 1) / (λ a² P + 1 + λ), P_0 = 0, in homogeneous coordinates.
    a2 = a * a
    M = jnp.stack([jnp.stack([a2, jnp.ones_like(a2)], -1), jnp.stack([lam * a2, jnp.full_like(a2, 1 + lam)], -1)],
                  -2)
    M = jax.lax.associative_scan(_compose_mobius, M, axis=1)
    P = M[..., 0, 1] / M[..., 1, 1]  # applied to (P_0, 1) = (0, 1)
    P_prev = jnp.concatenate([jnp.zeros_like(P[:, :1]), P[:, :-1]], axis=1)
    P_pred = a2 * P_prev + 1  # >= 1
    K = lam * P_pred / (1 + lam * P_pred)
    # Filtered means: m_t = (1 - K) (a m_{t-1} + b) + K z.
    m = linear_scan((1 - K) * a, (1 - K) * b + K * z, s0)
    m_pred_next = a[:, 1:] * m[:, :-1] + b[:, 1:]
    # Smoothed means: m^s_t = m_t + G_t (m^s_{t+1} - a_{t+1} m_t - b_{t+1}), G_t = P_t a_{t+1} / P^-_{t+1}.
    G = jnp.concatenate([P[:, :-1] * a[:, 1:] / P_pred[:, 1:], jnp.zeros_like(P[:, :1])], axis=1)
    offset = m - G * jnp.concatenate([m_pred_next, jnp.zeros_like(m[:, :1])], axis=1)
    return linear_scan(G, offset, jnp.zeros_like(s0), reverse=True).astype(dtype)
