"""Independent NumPy references for the gated and selective linear recurrences, written from the papers' equations
and the official code's numerics.

As in ``reference.py``: never calls jrnn, float64, one sequence and one time step at a time, explicit loops. Each
step takes parameters with the fields of the jrnn NamedTuple, a state and ``x``, and returns ``(new_state, y)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from reference import f64, sigmoid

# ----------------------------------------------------------------------------------------------------------------
# RG-LRU and Hawk's recurrent block (De et al. 2024, arXiv 2402.19427; recurrentgemma's layers.RGLRU, Conv1D and
# modules.RecurrentBlock).
# ----------------------------------------------------------------------------------------------------------------


class HawkState(NamedTuple):
    """A windowed state, one sequence: the last ``K - 1`` convolution inputs ``window [K-1, H]`` (oldest first;
    ``[0, 0]`` for the RG-LRU alone), ``fresh`` (1: the next step is the sequence's first) and the RG-LRU's ``h``."""

    window: np.ndarray
    fresh: float
    h: np.ndarray


def softplus(v):
    return np.log1p(np.exp(-np.abs(v))) + np.maximum(v, 0.0)


def gelu_tanh(v):
    """GeLU in its tanh form (``jax.nn.gelu``'s default, torch's ``approximate="tanh"``)."""
    return 0.5 * v * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (v + 0.044715 * v ** 3)))


def block_diagonal(x, w, b):
    """Head by head: ``y[h·n:(h+1)·n] = x[h·n:(h+1)·n] @ w[h] + b[h]``."""
    w, b = f64(w), f64(b)
    heads, n, _ = w.shape
    return np.concatenate([x[h * n:(h + 1) * n] @ w[h] + b[h] for h in range(heads)])


def rg_lru_update(p, h, x, fresh):
    """One RG-LRU update of ``h`` by ``x``: ``a = exp(-8 softplus(Λ) r)``, ``h = a h + √(1 - a²) (i x)``; at a
    sequence's first step (``fresh``) recurrentgemma drops ``h`` and the square root: ``h = i x``."""
    i = sigmoid(block_diagonal(x, p.input_gate_weight, p.input_gate_bias))
    r = sigmoid(block_diagonal(x, p.recurrent_gate_weight, p.recurrent_gate_bias))
    a = np.exp(-8.0 * r * softplus(f64(p.recurrent_param)))
    if fresh:
        return i * x
    return a * h + np.sqrt(1.0 - a ** 2) * (i * x)


def rg_lru_step(p, state: HawkState, x):
    """The RG-LRU cell: ``y = h``."""
    h = rg_lru_update(p, state.h, x, state.fresh)
    return HawkState(state.window, 0.0, h), h


def hawk_step(p, state: HawkState, x):
    """Hawk's recurrent block: ``y = W_out (RG-LRU(conv(W_x x + b_x)) ⊙ gelu(W_y x + b_y)) + b_out``, the causal
    depthwise convolution ``Σ_k w[:, k] u_{t-K+1+k} + b`` over the window of the last K inputs ``u``."""
    u = f64(p.linear_x_weight) @ x + f64(p.linear_x_bias)
    window = np.concatenate([state.window, u[None]], axis=0)  # [K, H], oldest first
    w = f64(p.conv_1d_weight)
    v = f64(p.conv_1d_bias).copy()
    for k in range(w.shape[1]):
        v += w[:, k] * window[k]
    h = rg_lru_update(p.rg_lru, state.h, v, state.fresh)
    gate = gelu_tanh(f64(p.linear_y_weight) @ x + f64(p.linear_y_bias))
    y = f64(p.linear_out_weight) @ (h * gate) + f64(p.linear_out_bias)
    return HawkState(window[1:], 0.0, h), y


def run_segments(step, state0: HawkState, xs_b, length: int, resets_b=None, reverse: bool = False,
                 restart: HawkState | None = None):
    """One sequence ``xs_b [T, F]`` over its first ``length`` steps cut into segments where ``resets_b[t]``:
    ``(ys [T, O], final_state)``, zero outputs at the padded steps. The first segment read starts from ``state0``,
    every later one from ``restart`` (``state0`` if None), ``fresh`` included. With ``reverse`` the segments are
    read from the last to the first, each from its end."""
    T = xs_b.shape[0]
    n = max(0, min(int(length), T))
    starts = [t for t in range(n) if t == 0 or (resets_b is not None and resets_b[t])]
    segments = [range(a, b) for a, b in zip(starts, starts[1:] + [n])]
    state, outputs = state0, {}
    for k, segment in enumerate(reversed(segments) if reverse else segments):
        state = state0 if k == 0 or restart is None else restart
        for t in (reversed(segment) if reverse else segment):
            state, outputs[t] = step(state, f64(xs_b[t]))
    size = step(state0, np.zeros(xs_b.shape[1:]))[1].shape[-1]
    ys = np.zeros((T, size))
    for t, y in outputs.items():
        ys[t] = y
    return ys, state


# ----------------------------------------------------------------------------------------------------------------
# Mamba's block and its selective scan S6 (Gu & Dao 2023, arXiv 2312.00752, algorithm 2; the official
# mamba_simple.Mamba and transformers' MambaMixer).
# ----------------------------------------------------------------------------------------------------------------


class MambaState(NamedTuple):
    """Mamba's state, one sequence: the last ``K - 1`` convolution inputs ``window [K-1, E]`` (oldest first) and the
    selective state ``h [E, N]``."""

    window: np.ndarray
    h: np.ndarray


def silu(v):
    return v * sigmoid(v)


def s6_update(p, h, u):
    """One step of S6 on ``u [E]`` from ``h [E, N]``, entry by entry: ``(h_new, y)``.

    ``(Δ_raw, B, C) = x_proj u``, ``Δ = softplus(W_Δ Δ_raw + b_Δ)``, ``A = -exp(A_log)``,
    ``h[e, n] = exp(Δ[e] A[e, n]) h[e, n] + Δ[e] B[n] u[e]``, ``y[e] = Σ_n h[e, n] C[n] + D[e] u[e]``.
    """
    W_x, W_dt, b_dt, A_log, D = (f64(a) for a in (p.x_proj_weight, p.dt_proj_weight, p.dt_proj_bias, p.A_log, p.D))
    E, N = A_log.shape
    R = W_dt.shape[1]
    selected = W_x @ u
    dt_raw, B, C = selected[:R], selected[R:R + N], selected[R + N:]
    delta = np.logaddexp(0.0, W_dt @ dt_raw + b_dt)
    h_new, y = np.zeros((E, N)), np.zeros(E)
    for e in range(E):
        for n in range(N):
            h_new[e, n] = np.exp(delta[e] * -np.exp(A_log[e, n])) * h[e, n] + delta[e] * B[n] * u[e]
            y[e] += h_new[e, n] * C[n]
        y[e] += D[e] * u[e]
    return h_new, y


def s6_step(p, h, u):
    """The S6 cell on a flat state ``h [E·N]`` (channel-major)."""
    E, N = np.shape(p.A_log)
    h_new, y = s6_update(p, np.reshape(h, (E, N)), u)
    return h_new.reshape(-1), y


def mamba_step(p, state: MambaState, x):
    """Mamba's block: ``(x̂, z) = in_proj x``; ``u = silu(Σ_k w[:, k] x̂_{t-K+1+k} + b)`` over the window of the
    last K ``x̂`` (zeros before the start); ``y = out_proj((S6(u)) ⊙ silu(z))``."""
    W_in = f64(p.in_proj_weight)
    E = W_in.shape[0] // 2
    xz = W_in @ x + (0.0 if p.in_proj_bias is None else f64(p.in_proj_bias))
    window = np.concatenate([state.window, xz[None, :E]], axis=0)  # [K, E], oldest first
    w = f64(p.conv1d_weight)
    v = np.zeros(E) if p.conv1d_bias is None else f64(p.conv1d_bias).copy()
    for k in range(w.shape[1]):
        v += w[:, k] * window[k]
    h, y = s6_update(p, state.h, silu(v))
    out = f64(p.out_proj_weight) @ (y * silu(xz[E:]))
    if p.out_proj_bias is not None:
        out = out + f64(p.out_proj_bias)
    return MambaState(window[1:], h), out
