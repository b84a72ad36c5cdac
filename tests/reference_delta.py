"""Independent NumPy reference for the delta-rule recurrences, written from the papers' equations.

As in ``reference.py``: never calls jrnn, float64, one sequence and one time step at a time, explicit loops. Each
step takes parameters with the fields of the jrnn NamedTuple, a state and ``x``, and returns ``(new_state, y)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from reference import f64, sigmoid

# ----------------------------------------------------------------------------------------------------------------
# Gated DeltaNet (Yang, Kautz & Hatamizadeh 2024, arXiv 2412.06464, equation (10); transformers'
# Qwen3NextGatedDeltaNet for the projections' layout, the convolution and the gated RMSNorm).
# ----------------------------------------------------------------------------------------------------------------


class DeltaState(NamedTuple):
    """Gated DeltaNet's state, one sequence: the last ``K - 1`` convolution inputs ``window [K-1, C]`` (oldest
    first) and one memory per value head, ``S [H_v, d_k, d_v]``."""

    window: np.ndarray
    S: np.ndarray


def softplus(v):
    return np.log1p(np.exp(-np.abs(v))) + np.maximum(v, 0.0)


def silu(v):
    return v * sigmoid(v)


def l2norm(v, eps=1e-6):
    return v / np.sqrt(np.sum(v * v) + eps)


def split_projections(p, x, H_k, d_k):
    """``(q [H_k, d_k], k [H_k, d_k], v [H_v, d_v], z [H_v, d_v], b [H_v], a [H_v])`` from ``x``, reading the
    interleaved rows of ``in_proj_qkvz`` and ``in_proj_ba`` one key head's block at a time: block ``g`` holds
    ``q_g, k_g``, then ``v`` and ``z`` of value heads ``g r .. g r + r - 1``; ``in_proj_ba``'s block ``g`` holds
    their ``b`` then their ``a``."""
    H_v, d_v = np.shape(p.A_log)[0], np.shape(p.norm_weight)[0]
    r = H_v // H_k
    qkvz, ba = f64(p.in_proj_qkvz_weight) @ x, f64(p.in_proj_ba_weight) @ x
    q, k = np.zeros((H_k, d_k)), np.zeros((H_k, d_k))
    v, z, b, a = np.zeros((H_v, d_v)), np.zeros((H_v, d_v)), np.zeros(H_v), np.zeros(H_v)
    width = 2 * d_k + 2 * r * d_v
    for g in range(H_k):
        block, pair = qkvz[g * width:(g + 1) * width], ba[g * 2 * r:(g + 1) * 2 * r]
        q[g], k[g] = block[:d_k], block[d_k:2 * d_k]
        for j in range(r):
            h = g * r + j
            v[h] = block[2 * d_k + j * d_v:2 * d_k + (j + 1) * d_v]
            z[h] = block[2 * d_k + r * d_v + j * d_v:2 * d_k + r * d_v + (j + 1) * d_v]
            b[h], a[h] = pair[j], pair[r + j]
    return q, k, v, z, b, a


def gated_delta_net_step(p, state: DeltaState, x, H_k, d_k, eps):
    """One step of Gated DeltaNet on ``x [F]``: the causal depthwise convolution with SiLU over the window of the
    last K ``[q, k, v]``; per value head ``h`` of key head ``g = h // r``, ``q = l2norm(q̂_g) / √d_k``,
    ``k = l2norm(k̂_g)``, ``α = exp(-exp(A_log) softplus(a + dt_bias))``, ``β = sigmoid(b)``,
    ``S_h = α (I - β k kᵀ) S_h + β k vᵀ``, ``o_h = S_hᵀ q``; ``y = out_proj(concat_h(w ⊙ rmsnorm(o_h) ⊙ silu(z_h)))``.
    """
    H_v, d_v = np.shape(p.A_log)[0], np.shape(p.norm_weight)[0]
    r = H_v // H_k
    q, k, v, z, b, a = split_projections(p, x, H_k, d_k)
    u = np.concatenate([q.ravel(), k.ravel(), v.ravel()])
    window = np.concatenate([state.window, u[None]], axis=0)  # [K, C], oldest first
    w = f64(p.conv1d_weight)
    conv = np.zeros(u.shape[0])
    for c in range(u.shape[0]):
        for j in range(w.shape[1]):
            conv[c] += w[c, j] * window[j, c]
    conv = silu(conv)
    q_hat = conv[:H_k * d_k].reshape(H_k, d_k)
    k_hat = conv[H_k * d_k:2 * H_k * d_k].reshape(H_k, d_k)
    v_hat = conv[2 * H_k * d_k:].reshape(H_v, d_v)
    S, outputs = np.zeros_like(state.S), []
    for h in range(H_v):
        g = h // r
        q_h, k_h = l2norm(q_hat[g]) / np.sqrt(d_k), l2norm(k_hat[g])
        alpha = np.exp(-np.exp(f64(p.A_log)[h]) * softplus(a[h] + f64(p.dt_bias)[h]))
        beta = sigmoid(b[h])
        S[h] = alpha * (np.eye(d_k) - beta * np.outer(k_h, k_h)) @ state.S[h] + beta * np.outer(k_h, v_hat[h])
        o = S[h].T @ q_h
        normed = o / np.sqrt(np.mean(o * o) + eps)
        outputs.append(f64(p.norm_weight) * normed * silu(z[h]))
    y = f64(p.out_proj_weight) @ np.concatenate(outputs)
    return DeltaState(window[1:], S), y
