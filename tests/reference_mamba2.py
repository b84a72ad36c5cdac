"""An independent NumPy reference for Mamba-2's block (Dao & Gu 2024, arXiv 2405.21060; transformers' ``Mamba2Mixer``
and the official ``mamba_ssm.modules.mamba2.Mamba2``), written from the equations.

As in ``reference.py``: never calls jrnn, float64, one sequence and one time step at a time, explicit loops. The step
takes parameters with the fields of ``jrnn.Mamba2Params``, a :class:`Mamba2State` and ``x``, and returns
``(new_state, y)``; ``reference_selective.run_segments`` runs it over a sequence.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from reference import f64
from reference_selective import silu


class Mamba2State(NamedTuple):
    """Mamba-2's state, one sequence: the last ``K - 1`` convolution inputs ``window [K-1, E + 2GN]`` (oldest first)
    and the state ``S [H, P, N]``."""

    window: np.ndarray
    S: np.ndarray


def mamba2_step(p, state: Mamba2State, x, norm_eps: float = 1e-5, dt_limit=(0.0, math.inf)):
    """Mamba-2's block, entry by entry; ``H`` from ``A_log``, ``P`` and ``N`` from the state, ``G`` from the
    convolution's channels ``E + 2GN``:

    ``(z, x̂, Δ_raw) = in_proj x``; ``v = silu(Σ_k w[:, k] x̂_{t-K+1+k} + b)`` over the window of the last K ``x̂``,
    split into ``u [H, P]``, ``B [G, N]``, ``C [G, N]``; ``Δ[h] = clip(softplus(Δ_raw[h] + dt_bias[h]))``;
    ``S[h, p, n] = exp(Δ[h] A[h]) S[h, p, n] + Δ[h] u[h, p] B[g, n]`` and ``y[h, p] = Σ_n S[h, p, n] C[g, n] +
    D[h] u[h, p]`` with ``g = h // (H/G)``; then ``w = y ⊙ silu(z)``, each group of ``E/G`` channels divided by
    ``√(mean(w²) + eps)``, times ``norm_weight``, and ``out_proj``.
    """
    H, P, N = state.S.shape
    E = H * P
    W_in = f64(p.in_proj_weight)
    conv_channels = f64(p.conv1d_weight).shape[0]
    G = (conv_channels - E) // (2 * N)
    proj = W_in @ x + (0.0 if p.in_proj_bias is None else f64(p.in_proj_bias))
    z, xbc, dt_raw = proj[:E], proj[E:E + conv_channels], proj[E + conv_channels:]
    window = np.concatenate([state.window, xbc[None]], axis=0)  # [K, C], oldest first
    w = f64(p.conv1d_weight)
    v = np.zeros(conv_channels) if p.conv1d_bias is None else f64(p.conv1d_bias).copy()
    for k in range(w.shape[1]):
        v += w[:, k] * window[k]
    v = silu(v)
    u, B, C = v[:E].reshape(H, P), v[E:E + G * N].reshape(G, N), v[E + G * N:].reshape(G, N)
    A = -np.exp(f64(p.A_log))
    D, dt_bias = f64(p.D), f64(p.dt_bias)
    S, y = np.zeros((H, P, N)), np.zeros((H, P))
    for h in range(H):
        g = h // (H // G)
        delta = min(max(np.logaddexp(0.0, dt_raw[h] + dt_bias[h]), dt_limit[0]), dt_limit[1])
        for q in range(P):
            for n in range(N):
                S[h, q, n] = math.exp(delta * A[h]) * state.S[h, q, n] + delta * u[h, q] * B[g, n]
                y[h, q] += S[h, q, n] * C[g, n]
            y[h, q] += D[h] * u[h, q]
    gated = y.reshape(E) * silu(z)
    normed = np.zeros(E)
    size = E // G
    for g in range(G):
        block = gated[g * size:(g + 1) * size]
        normed[g * size:(g + 1) * size] = block / math.sqrt(np.mean(block ** 2) + norm_eps)
    out = f64(p.out_proj_weight) @ (f64(p.norm_weight) * normed)
    if p.out_proj_bias is not None:
        out = out + f64(p.out_proj_bias)
    return Mamba2State(window[1:], S), out
