"""Independent NumPy references for the cells after LSTM and GRU, written from the papers' equations.

As in ``reference.py``: never calls jrnn, float64, one sequence and one time step at a time, explicit loops. Each
step takes parameters with the fields of the jrnn NamedTuple (``U``, ``W``, ...), a state and ``x``, and returns
``(new_state, y)``. The convolution is written as the sum over window offsets of a zero-padded input.
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.linalg
from reference import LSTMState, f64, relu, sigmoid


def layer_norm(v, g, b, eps=1e-5):
    """Ba et al. 2016: ``g (v - mean) / sqrt(var + eps) + b`` over the whole vector."""
    mu = v.mean()
    return f64(g) * (v - mu) / np.sqrt(((v - mu) ** 2).mean() + eps) + f64(b)


def layer_norm_lstm_step(p, state, x):
    """Ba et al. eq. 20-22: LN over all 4H of ``U x`` and of ``W h``; ``h = σ(o) tanh(LN(c))``; c unnormalised."""
    U, W = f64(p.U), f64(p.W)
    H = U.shape[0] // 4
    a = layer_norm(U @ x, p.g_U, p.b_U) + layer_norm(W @ state.h, p.g_W, p.b_W)
    i, f, g, o = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
    c = sigmoid(f) * state.c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(layer_norm(c, p.g_c, p.b_c))
    return LSTMState(h, c), h


def layer_norm_gru_step(p, s, x):
    """The authors' LN-GRU: LN over the two gates together and over the candidate alone, for ``U x`` and ``W s``."""
    U, W = f64(p.U), f64(p.W)
    H = U.shape[0] // 3
    g_U, b_U, g_W, b_W = f64(p.g_U), f64(p.b_U), f64(p.g_W), f64(p.b_W)
    gates = (layer_norm(U[:2 * H] @ x, g_U[:2 * H], b_U[:2 * H])
             + layer_norm(W[:2 * H] @ s, g_W[:2 * H], b_W[:2 * H]))
    r, z = sigmoid(gates[:H]), sigmoid(gates[H:])
    n = np.tanh(layer_norm(U[2 * H:] @ x, g_U[2 * H:], b_U[2 * H:])
                + r * layer_norm(W[2 * H:] @ s, g_W[2 * H:], b_W[2 * H:]))
    s_new = (1 - z) * n + z * s
    return s_new, s_new


def indrnn_step(p, s, x):
    """Li et al. 2018: ``relu(U x + w ⊙ s + b)``."""
    s_new = relu(f64(p.U) @ x + f64(p.w) * s + f64(p.b))
    return s_new, s_new


def modrelu(z, b):
    out = np.zeros_like(z)
    for n in range(z.size):  # sign(z) relu(|z| + b), unit by unit
        magnitude = max(abs(z[n]) + b[n], 0.0)
        out[n] = np.sign(z[n]) * magnitude
    return out


def exprnn_step(p, s, x, linear=False):
    """Lezcano-Casado & Martínez-Rubio 2019: ``W = expm(A - A^T)`` (strict upper triangle of A, SciPy's expm)."""
    A = np.triu(f64(p.A), 1)
    W = scipy.linalg.expm(A - A.T)
    z = f64(p.U) @ x + W @ s
    s_new = z if linear else modrelu(z, f64(p.b))
    return s_new, s_new


def g(v):
    """Feng et al.'s positive candidate, elementwise."""
    return np.array([u + 0.5 if u >= 0 else 1 / (1 + np.exp(-u)) for u in v])


def min_gru_step(p, s, x):
    """Feng et al. 2024, minGRU: ``z = σ(U_z x)``, ``h̃ = g(U_h x)``, ``s = (1 - z) s + z h̃``."""
    k = f64(p.U) @ x + f64(p.b)
    H = k.size // 2
    z = sigmoid(k[:H])
    s_new = (1 - z) * s + z * g(k[H:])
    return s_new, s_new


def min_lstm_step(p, s, x):
    """Feng et al. 2024, minLSTM: ``f' = f / (f + i)``, ``i' = i / (f + i)``, ``s = f' s + i' g(U_h x)``."""
    k = f64(p.U) @ x + f64(p.b)
    H = k.size // 3
    f, i = sigmoid(k[:H]), sigmoid(k[H:2 * H])
    s_new = f / (f + i) * s + i / (f + i) * g(k[2 * H:])
    return s_new, s_new


def mgu_step(p, s, x, reset_after=True):
    """Zhou et al. 2016 in Flax's orientation: ``s = (1 - f) n + f s``; f resets after or before ``W_n``."""
    U, W, b_U, b_W = f64(p.U), f64(p.W), f64(p.b_U), f64(p.b_W)
    H = U.shape[0] // 2
    f = sigmoid(U[:H] @ x + b_U[:H] + W[:H] @ s + b_W[:H])
    if reset_after:
        n = np.tanh(U[H:] @ x + b_U[H:] + f * (W[H:] @ s + b_W[H:]))
    else:
        n = np.tanh(U[H:] @ x + b_U[H:] + W[H:] @ (f * s) + b_W[H:])
    s_new = (1 - f) * n + f * s
    return s_new, s_new


def conv_same(v, kernel):
    """``kernel * v``: 'same'-padded stride-1 cross-correlation of ``v[*spatial, C_in]`` with ``[C_out, C_in, *k]``.

    ``out[p, o] = Σ_{d, i} kernel[o, i, d] v[p + d - pad_lo, i]`` with zeros outside (lax's SAME: ``pad_lo =
    (k - 1) // 2``).
    """
    v, kernel = f64(v), f64(kernel)
    spatial, window = v.shape[:-1], kernel.shape[2:]
    out = np.zeros(spatial + (kernel.shape[0],))
    for d in itertools.product(*(range(k) for k in window)):
        shift = [dd - (k - 1) // 2 for dd, k in zip(d, window)]
        shifted = np.zeros_like(v)
        src = tuple(slice(max(0, s), n + min(0, s)) for s, n in zip(shift, spatial))
        dst = tuple(slice(max(0, -s), n - max(0, s)) for s, n in zip(shift, spatial))
        shifted[dst] = v[src]
        out += shifted @ kernel[(slice(None), slice(None)) + d].T
    return out


def conv_lstm_step(p, state, x):
    """Shi et al. 2015, eq. 3, with peepholes ``P`` when present; gates ``i, f, g, o``."""
    z = conv_same(x, p.U) + conv_same(state.h, p.W)
    if p.b is not None:
        z = z + f64(p.b)
    C = z.shape[-1] // 4
    i, f, gg, o = (z[..., k * C:(k + 1) * C] for k in range(4))
    if p.P is not None:
        P = f64(p.P)
        i, f = i + P[0] * state.c, f + P[1] * state.c
    c = sigmoid(f) * state.c + sigmoid(i) * np.tanh(gg)
    if p.P is not None:
        o = o + P[2] * c
    h = sigmoid(o) * np.tanh(c)
    return LSTMState(h, c), h


def run_sequence(step, state, xs_b, length, reverse=False):
    """One sequence ``xs_b[T, ...]`` through ``step`` over its first ``length`` steps; outputs of any shape, zero at
    the padded steps; with ``reverse`` the valid prefix is read from its end."""
    T = xs_b.shape[0]
    n = max(0, min(int(length), T))
    outputs = {}
    for t in (range(n - 1, -1, -1) if reverse else range(n)):
        state, y = step(state, f64(xs_b[t]))
        outputs[t] = y
    shape = step(state, np.zeros(xs_b.shape[1:]))[1].shape
    ys = np.zeros((T,) + shape)
    for t, y in outputs.items():
        ys[t] = y
    return ys, state


def run_batch(step, states, xs, lengths=None, reverse=False):
    """:func:`run_sequence` for each sequence b with initial state ``states[b]``: ``(ys[B, T, ...], finals)``."""
    xs = f64(xs)
    B, T = xs.shape[:2]
    out = [run_sequence(step, states[b], xs[b], T if lengths is None else lengths[b], reverse) for b in range(B)]
    return np.stack([ys for ys, _ in out]), [s for _, s in out]


def run_bidirectional_sum(fwd_step, bwd_step, xs, lengths, states):
    """The bidirectional RNN with a sum merge, any output shape: a forward loop plus the backward cell's loop over
    each valid prefix read from its end; padded outputs 0. Returns ``(ys, forward_finals)``."""
    a, finals = run_batch(fwd_step, states, xs, lengths)
    a_rev, _ = run_batch(bwd_step, states, xs, lengths, reverse=True)
    return a + a_rev, finals
