"""Independent NumPy references for xLSTM's two cells (Beck et al. 2024, arXiv 2405.04517), written from the paper's
equations and the numerics of transformers' ``xLSTMLayer`` (mLSTM) and the official ``xlstm`` vanilla sLSTM.

As in ``reference.py``: never calls jrnn, float64, one sequence and one time step at a time, explicit loops over the
heads. Each step takes parameters with the fields of the jrnn NamedTuple, a state and ``x``, and returns
``(new_state, y)``. The ``*_unstabilised`` steps are the paper's equations without the stabiliser ``m``
(``i_t = exp(ĩ_t)`` as it is), finite only while ``exp(ĩ)`` and the sums it enters are.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from reference import f64, sigmoid


def log_sigmoid(v):
    return -(np.log1p(np.exp(-np.abs(v))) + np.maximum(-v, 0.0))


def _linear(x, w, b):
    y = f64(w) @ x
    return y if b is None else y + f64(b)


# ----------------------------------------------------------------------------------------------------------------
# mLSTM (section 2.3; transformers' xLSTMLayer, weight_mode="single").
# ----------------------------------------------------------------------------------------------------------------


class MLSTMState(NamedTuple):
    """One sequence: ``C [NH, d_qk, d_v]``, ``n [NH, d_qk]``, ``m [NH]``."""

    C: np.ndarray
    n: np.ndarray
    m: np.ndarray


def _mlstm_projections(p, x, num_heads, cap):
    soft = (lambda z: z) if cap is None else (lambda z: cap * np.tanh(z / cap))
    q = _linear(x, p.q_weight, p.q_bias).reshape(num_heads, -1)
    k = _linear(x, p.k_weight, p.k_bias).reshape(num_heads, -1)
    v = _linear(x, p.v_weight, p.v_bias).reshape(num_heads, -1)
    i_pre = soft(_linear(x, p.igate_weight, p.igate_bias))
    f_pre = soft(_linear(x, p.fgate_weight, p.fgate_bias))
    return q, k, v, i_pre, f_pre


def _mlstm_output(p, x, h, norm_eps):
    """``out_proj(σ(o) ⊙ LN(h))``: a layer norm over each head's ``d_v`` features, then the scale and bias."""
    normed = []
    for head in h:
        mean = head.mean()
        var = ((head - mean) ** 2).mean()
        normed.append((head - mean) / np.sqrt(var + norm_eps))
    h = np.concatenate(normed) * f64(p.norm_weight) + (0.0 if p.norm_bias is None else f64(p.norm_bias))
    o = sigmoid(_linear(x, p.ogate_weight, p.ogate_bias))
    return _linear(o * h, p.out_proj_weight, p.out_proj_bias)


class MLSTMConfig(NamedTuple):
    """The mLSTM's settings the step needs (the cell's own fields, read by the test)."""

    num_heads: int
    cap: float | None
    eps: float
    norm_eps: float


def mlstm_step(p, cfg: MLSTMConfig, state: MLSTMState, x):
    """The stabilised mLSTM layer, head by head::

        m = max(log σ(f̃) + m_prev, ĩ);  i' = exp(ĩ - m);  f' = exp(log σ(f̃) + m_prev - m)
        C = f' C_prev + i' k vᵀ;  n = f' n_prev + i' k;  h = Cᵀ q̂ / (max(|nᵀ q̂|, exp(-m)) + ε),  q̂ = q / √d_qk
    """
    q, k, v, i_pre, f_pre = _mlstm_projections(p, x, cfg.num_heads, cfg.cap)
    C, n, m, h = [], [], [], []
    for j in range(cfg.num_heads):
        log_f = log_sigmoid(f_pre[j])
        m_j = max(log_f + state.m[j], i_pre[j])
        f, i = np.exp(log_f + state.m[j] - m_j), np.exp(i_pre[j] - m_j)
        C_j = f * state.C[j] + i * np.outer(k[j], v[j])
        n_j = f * state.n[j] + i * k[j]
        q_hat = q[j] / np.sqrt(q.shape[1])
        h.append(C_j.T @ q_hat / (max(abs(n_j @ q_hat), np.exp(-m_j)) + cfg.eps))
        C.append(C_j), n.append(n_j), m.append(m_j)
    return MLSTMState(np.stack(C), np.stack(n), np.array(m)), _mlstm_output(p, x, h, cfg.norm_eps)


class MLSTMRaw(NamedTuple):
    """The unstabilised mLSTM state, one sequence: ``C [NH, d_qk, d_v]``, ``n [NH, d_qk]``."""

    C: np.ndarray
    n: np.ndarray


def mlstm_step_unstabilised(p, cfg: MLSTMConfig, state: MLSTMRaw, x):
    """The paper's equations 19-27 without the stabiliser, ``ε = 0``: ``C = σ(f̃) C_prev + exp(ĩ) k vᵀ``,
    ``n = σ(f̃) n_prev + exp(ĩ) k``, ``h = Cᵀ q̂ / max(|nᵀ q̂|, 1)``."""
    q, k, v, i_pre, f_pre = _mlstm_projections(p, x, cfg.num_heads, cfg.cap)
    C, n, h = [], [], []
    for j in range(cfg.num_heads):
        f, i = sigmoid(f_pre[j]), np.exp(i_pre[j])
        C_j = f * state.C[j] + i * np.outer(k[j], v[j])
        n_j = f * state.n[j] + i * k[j]
        q_hat = q[j] / np.sqrt(q.shape[1])
        h.append(C_j.T @ q_hat / max(abs(n_j @ q_hat), 1.0))
        C.append(C_j), n.append(n_j)
    return MLSTMRaw(np.stack(C), np.stack(n)), _mlstm_output(p, x, h, cfg.norm_eps)


def _rms_norm(x, weight, bias, eps):
    y = x / np.sqrt(np.mean(x ** 2) + eps) * f64(weight)
    return y if bias is None else y + f64(bias)


def mlstm_block_step(p, cfg: MLSTMConfig, state: MLSTMState, x):
    """xLSTM-7B's block (transformers' ``xLSTMBlock``): ``x' = x + mlstm(RMSNorm(x))``, then
    ``y = x' + down(silu(gate(r)) ⊙ up(r))`` with ``r = RMSNorm'(x')``; both norms with ``cfg.norm_eps``."""
    state, u = mlstm_step(p.mlstm_layer, cfg, state, _rms_norm(x, p.norm_mlstm_weight, p.norm_mlstm_bias,
                                                                  cfg.norm_eps))
    x = x + u
    r = _rms_norm(x, p.norm_ffn_weight, p.norm_ffn_bias, cfg.norm_eps)
    gate = _linear(r, p.proj_up_gate_weight, p.proj_up_gate_bias)
    gate = gate * sigmoid(gate)
    return state, x + _linear(gate * _linear(r, p.proj_up_weight, p.proj_up_bias), p.proj_down_weight,
                              p.proj_down_bias)


# ----------------------------------------------------------------------------------------------------------------
# sLSTM (section 2.2; the official xlstm package's slstm_forward_pointwise).
# ----------------------------------------------------------------------------------------------------------------


class SLSTMState(NamedTuple):
    """One sequence, each ``[H]``: the output ``h``, memory ``c``, normaliser ``n``, stabiliser ``m``."""

    h: np.ndarray
    c: np.ndarray
    n: np.ndarray
    m: np.ndarray


def _slstm_preactivations(p, h_prev, x):
    """``U x + b + W h_prev`` with ``W`` block-diagonal: gate ``g``, head ``j`` reads head ``j`` of ``h_prev``."""
    W = f64(p.W)
    G, NH, d, _ = W.shape
    recurrent = np.zeros(G * NH * d)
    for g in range(G):
        for j in range(NH):
            recurrent[g * NH * d + j * d:g * NH * d + (j + 1) * d] = W[g, j] @ h_prev[j * d:(j + 1) * d]
    return np.split(_linear(x, p.U, p.b) + recurrent, 4)


def slstm_step(p, state: SLSTMState, x):
    """The stabilised sLSTM, unit by unit, gates ``i, f, z, o``::

        m = max(ĩ, log σ(f̃) + m_prev)  (m = ĩ where n_prev = 0);  i' = exp(ĩ - m);  f' = exp(log σ(f̃) + m_prev - m)
        c = f' c_prev + i' tanh(z̃);  n = f' n_prev + i';  h = σ(õ) c / n
    """
    i_pre, f_pre, z, o = _slstm_preactivations(p, state.h, x)
    H = i_pre.shape[0]
    h, c, n, m = (np.zeros(H) for _ in range(4))
    for u in range(H):
        log_f_m = log_sigmoid(f_pre[u]) + state.m[u]
        if state.n[u] == 0.0:
            m[u], f = i_pre[u], 0.0
        else:
            m[u] = max(i_pre[u], log_f_m)
            f = np.exp(log_f_m - m[u])
        i = np.exp(i_pre[u] - m[u])
        c[u] = f * state.c[u] + i * np.tanh(z[u])
        n[u] = f * state.n[u] + i
        h[u] = sigmoid(o[u]) * c[u] / n[u]
    return SLSTMState(h, c, n, m), h


class SLSTMRaw(NamedTuple):
    """The unstabilised sLSTM state, one sequence, each ``[H]``."""

    h: np.ndarray
    c: np.ndarray
    n: np.ndarray


def slstm_step_unstabilised(p, state: SLSTMRaw, x):
    """The paper's equations 8-17 as written: ``c = σ(f̃) c_prev + exp(ĩ) tanh(z̃)``, ``n = σ(f̃) n_prev + exp(ĩ)``,
    ``h = σ(õ) c / n``."""
    i_pre, f_pre, z, o = _slstm_preactivations(p, state.h, x)
    c = sigmoid(f_pre) * state.c + np.exp(i_pre) * np.tanh(z)
    n = sigmoid(f_pre) * state.n + np.exp(i_pre)
    h = sigmoid(o) * c / n
    return SLSTMRaw(h, c, n), h
