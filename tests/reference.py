"""Independent NumPy references for jrnn's tests, written from the equations in the docstrings.

The reference functions never call jrnn: each is the textbook equation, one sequence and one time step at a
time, in float64. Parameters come in as anything with the fields of the jrnn NamedTuples (``U``, ``W``, ``b_U``,
...); every array is converted with :func:`f64` first. Vectors are 1-D (one batch element); the batch loops are
explicit so that no broadcasting rule of the library is shared with the reference.

The last section pairs each jrnn cell configuration with its reference step, for the test files to share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np


def f64(a):
    """``a`` as a float64 NumPy array (None stays None)."""
    return None if a is None else np.asarray(a, dtype=np.float64)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def relu(x):
    return np.maximum(x, 0.0)


def _bias(b, size):
    return np.zeros(size) if b is None else f64(b)


# ----------------------------------------------------------------------------------------------------------------
# One step of each cell, for a single sequence: x[I], state vectors, returns (new_state, y).
# ----------------------------------------------------------------------------------------------------------------

def elman_step(p, s, x, f: Callable = np.tanh):
    """``s_t = f(U x_t + b_U + W s_{t-1} + b_W)``, ``y_t = s_t``."""
    U, W = f64(p.U), f64(p.W)
    H = U.shape[0]
    s_new = f(U @ x + _bias(p.b_U, H) + W @ s + _bias(p.b_W, H))
    return s_new, s_new


class LSTMState(NamedTuple):
    h: np.ndarray
    c: np.ndarray


def lstm_step(p, state: LSTMState, x):
    """Gates ``i, f, g, o`` in this order: ``c_t = σ(f) c_{t-1} + σ(i) tanh(g)``, ``h_t = R σ(o) tanh(c_t)``."""
    U, W = f64(p.U), f64(p.W)
    H = U.shape[0] // 4
    z = U @ x + _bias(p.b_U, 4 * H) + W @ state.h + _bias(p.b_W, 4 * H)
    i, f, g, o = z[0:H], z[H:2 * H], z[2 * H:3 * H], z[3 * H:4 * H]
    c = sigmoid(f) * state.c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(c)
    R = getattr(p, "R", None)
    if R is not None:
        h = f64(R) @ h
    return LSTMState(h, c), h


def gru_step(p, s, x, reset_after: bool = True):
    """Gates ``r, z, n`` in this order; ``s_t = (1 - z) n + z s_{t-1}``; see :func:`jrnn.gru` for ``n``."""
    U, W = f64(p.U), f64(p.W)
    H = U.shape[0] // 3
    bU, bW = _bias(p.b_U, 3 * H), _bias(p.b_W, 3 * H)
    Ur, Uz, Un = U[:H], U[H:2 * H], U[2 * H:]
    Wr, Wz, Wn = W[:H], W[H:2 * H], W[2 * H:]
    r = sigmoid(Ur @ x + bU[:H] + Wr @ s + bW[:H])
    z = sigmoid(Uz @ x + bU[H:2 * H] + Wz @ s + bW[H:2 * H])
    if reset_after:
        n = np.tanh(Un @ x + bU[2 * H:] + r * (Wn @ s + bW[2 * H:]))
    else:
        n = np.tanh(Un @ x + bU[2 * H:] + Wn @ (r * s) + bW[2 * H:])
    s_new = (1.0 - z) * n + z * s
    return s_new, s_new


# ----------------------------------------------------------------------------------------------------------------
# Variational dropout (Gal & Ghahramani 2016, eqs. 7-8 "tied weights") with weight drop (Merity et al. 2018): one
# step of each cell for one sequence, given its masks: m_x[I] on x_t, m_s[P] on s_{t-1} where it meets W, and the
# batch's M_W on W. The masks are applied here, in each equation, not by transforming the cell's inputs.
# ----------------------------------------------------------------------------------------------------------------

def gal_elman_step(p, s, x, m_x, m_s, M_W, f: Callable = np.tanh):
    """``s_t = f(U (m_x ⊙ x_t) + b_U + (M_W ⊙ W)(m_s ⊙ s_{t-1}) + b_W)``, ``y_t = s_t``."""
    U, W = f64(p.U), f64(M_W) * f64(p.W)
    H = U.shape[0]
    s_new = f(U @ (m_x * x) + _bias(p.b_U, H) + W @ (m_s * s) + _bias(p.b_W, H))
    return s_new, s_new


def gal_lstm_step(p, state: LSTMState, x, m_x, m_s, M_W):
    """``[i; f; g; o] = U (m_x ⊙ x_t) + b_U + (M_W ⊙ W)(m_s ⊙ h_{t-1}) + b_W``; ``c_{t-1}`` unmasked."""
    U, W = f64(p.U), f64(M_W) * f64(p.W)
    H = U.shape[0] // 4
    z = U @ (m_x * x) + _bias(p.b_U, 4 * H) + W @ (m_s * state.h) + _bias(p.b_W, 4 * H)
    i, f, g, o = z[0:H], z[H:2 * H], z[2 * H:3 * H], z[3 * H:4 * H]
    c = sigmoid(f) * state.c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(c)
    R = getattr(p, "R", None)
    if R is not None:
        h = f64(R) @ h
    return LSTMState(h, c), h


def gal_gru_step(p, s, x, m_x, m_s, M_W, reset_after: bool = True):
    """The GRU with ``m_x ⊙ x_t`` and ``(M_W ⊙ W)(m_s ⊙ s_{t-1})`` in every gate (reset before: ``W_n (r ⊙ m_s ⊙
    s_{t-1})``); the interpolation ``z ⊙ s_{t-1}`` reads the unmasked state (Keras 3's ``recurrent_dropout``)."""
    U, W = f64(p.U), f64(M_W) * f64(p.W)
    H = U.shape[0] // 3
    bU, bW = _bias(p.b_U, 3 * H), _bias(p.b_W, 3 * H)
    Ur, Uz, Un = U[:H], U[H:2 * H], U[2 * H:]
    Wr, Wz, Wn = W[:H], W[H:2 * H], W[2 * H:]
    xd, sd = m_x * x, m_s * s
    r = sigmoid(Ur @ xd + bU[:H] + Wr @ sd + bW[:H])
    z = sigmoid(Uz @ xd + bU[H:2 * H] + Wz @ sd + bW[H:2 * H])
    if reset_after:
        n = np.tanh(Un @ xd + bU[2 * H:] + r * (Wn @ sd + bW[2 * H:]))
    else:
        n = np.tanh(Un @ xd + bU[2 * H:] + Wn @ (r * sd) + bW[2 * H:])
    s_new = (1.0 - z) * n + z * s
    return s_new, s_new


# ----------------------------------------------------------------------------------------------------------------
# Sequences.
# ----------------------------------------------------------------------------------------------------------------

def flip_valid(xs, lengths=None):
    """Reverses ``xs[b, :n_b]`` for each b (``n_b = min(lengths[b], T)``), leaving ``xs[b, n_b:]`` in place."""
    xs = np.array(xs, copy=True)
    T = xs.shape[1]
    out = xs.copy()
    for b in range(xs.shape[0]):
        n = T if lengths is None else max(0, min(int(lengths[b]), T))
        for t in range(n):
            out[b, t] = xs[b, n - 1 - t]
    return out


def run_sequence(step: Callable, state, xs_b, length: int, reverse: bool = False):
    """One sequence ``xs_b[T, F]`` through ``step``: only the first ``length`` steps are used.

    Returns ``(ys[T, O], final_state)`` with zeros at the padded steps ``t >= length``. With ``reverse`` the
    valid prefix is consumed from its last element back to the first, and ``ys[t]`` is the output produced on
    reading ``xs_b[t]``.
    """
    T = xs_b.shape[0]
    n = max(0, min(int(length), T))
    order = range(n - 1, -1, -1) if reverse else range(n)
    outputs = {}
    for t in order:
        state, y = step(state, f64(xs_b[t]))
        outputs[t] = y
    size = _output_size(step, state, xs_b)
    ys = np.zeros((T, size))
    for t, y in outputs.items():
        ys[t] = y
    return ys, state


def _output_size(step, state, xs_b):
    _, y = step(state, np.zeros(xs_b.shape[-1]))
    return y.shape[-1]


def run_batch(step: Callable, states: Sequence, xs, lengths=None, reverse: bool = False):
    """:func:`run_sequence` for every ``b``; ``states[b]`` is sequence b's initial state.

    Returns ``(ys[B, T, O], [final_state_b for b])``.
    """
    xs = f64(xs)
    B, T = xs.shape[:2]
    ys, finals = [], []
    for b in range(B):
        n = T if lengths is None else int(lengths[b])
        y, s = run_sequence(step, states[b], xs[b], n, reverse)
        ys.append(y)
        finals.append(s)
    return np.stack(ys), finals


def merge(mode, a, a_rev, params=None, g: Callable = lambda v: v):
    """A bidirectional merge in NumPy, one time step per row: ``a[..., H]``, ``a_rev[..., H']``."""
    if mode == "concat":
        return np.concatenate([a, a_rev], axis=-1)
    if mode == "sum":
        return a + a_rev
    if mode == "mean":
        return (a + a_rev) / 2.0
    if mode == "product":
        return a * a_rev
    if mode == "seed":  # y = g(V A + V' A' + b)
        V, V_rev = f64(params.V), f64(params.V_rev)
        out = np.einsum("oh,...h->...o", V, a) + np.einsum("oh,...h->...o", V_rev, a_rev)
        if params.b is not None:
            out = out + f64(params.b)
        return g(out)
    raise ValueError(mode)


def run_bidirectional(fwd_step, bwd_step, merge_fn, xs, lengths, fwd_states, bwd_states):
    """The seed's bidirectional RNN in NumPy: a forward loop, then the NumPy flip of each valid prefix through a
    forward loop of the backward cell, flipped back; ``merge_fn(A, A_rev)``; padded outputs set to 0.

    Returns ``(ys[B, T, O], forward_finals, backward_finals)`` (finals as lists of per-sequence states).
    """
    xs = f64(xs)
    B, T = xs.shape[:2]
    lengths = np.full(B, T) if lengths is None else np.minimum(np.asarray(lengths), T)
    a, fwd_finals = run_batch(fwd_step, fwd_states, xs, lengths)
    a_rev_flipped, bwd_finals = run_batch(bwd_step, bwd_states, flip_valid(xs, lengths), lengths)
    a_rev = flip_valid(a_rev_flipped, lengths)
    ys = merge_fn(a, a_rev)
    for b in range(B):
        ys[b, lengths[b]:] = 0.0
    return ys, fwd_finals, bwd_finals


# ----------------------------------------------------------------------------------------------------------------
# BPTT for the Elman RNN with a linear readout and a squared loss (docs/concepts/bptt.md, written out by hand).
# ----------------------------------------------------------------------------------------------------------------

def elman_bptt(U, W, b, V, c, xs, targets, lengths, s0, final_targets=None, f=np.tanh,
               f_prime=lambda z: 1.0 - np.tanh(z) ** 2):
    """Loss and gradients of ``L = ½ Σ_b Σ_{t < n_b} ‖V s_t + c - targets_t‖² (+ ½ Σ_b ‖s_final - final_targets‖²)``.

    ``s_t = f(z_t)``, ``z_t = U x_t + W s_{t-1} + b`` on valid steps; ``s_t = s_{t-1}`` on padded steps.
    Shapes: ``U[H, I]``, ``W[H, H]``, ``b[H]``, ``V[O, H]``, ``c[O]``, ``xs[B, T, I]``, ``targets[B, T, O]``,
    ``lengths[B]``, ``s0[B, H]``, ``final_targets[B, H]`` or None.

    Returns ``(L, dict(U=, W=, b=, V=, c=, xs=, s0=))``.
    """
    U, W, b, V, c = map(f64, (U, W, b, V, c))
    xs, targets, s0 = f64(xs), f64(targets), f64(s0)
    B, T, _ = xs.shape
    grads = dict(U=np.zeros_like(U), W=np.zeros_like(W), b=np.zeros_like(b), V=np.zeros_like(V),
                 c=np.zeros_like(c), xs=np.zeros_like(xs), s0=np.zeros_like(s0))
    loss = 0.0
    for n_b in range(B):
        n = min(int(lengths[n_b]), T)
        # Forward pass over all T steps; m_t = 1 on valid steps, 0 on padded ones.
        s = [s0[n_b]]  # s[t] is s_t with s[0] = s_0; time runs t = 1..T
        z = [None]
        for t in range(1, T + 1):
            if t <= n:
                z_t = U @ xs[n_b, t - 1] + W @ s[t - 1] + b
                z.append(z_t)
                s.append(f(z_t))
            else:
                z.append(None)
                s.append(s[t - 1])
        # Loss terms and dL_t/do_t on valid steps.
        e = [None] * (T + 1)
        for t in range(1, n + 1):
            o_t = V @ s[t] + c
            e[t] = o_t - targets[n_b, t - 1]
            loss += 0.5 * float(e[t] @ e[t])
        # Backward: delta_t = dL/ds_t (total derivative), from t = T down to 1:
        #   delta_t = V^T e_t [t valid] + (W^T (f'(z_{t+1}) * delta_{t+1})  if step t+1 is valid
        #                                  else delta_{t+1}                  (padded: s_{t+1} = s_t)).
        # The final-state term, if any, seeds delta_T; s_T is s_n carried unchanged through the padding.
        delta = [None] * (T + 1)
        d = np.zeros_like(s0[n_b])
        if final_targets is not None:
            r = s[T] - f64(final_targets)[n_b]
            loss += 0.5 * float(r @ r)
            d = r
        for t in range(T, 0, -1):
            if t < T:
                d = W.T @ (f_prime(z[t + 1]) * delta[t + 1]) if t + 1 <= n else delta[t + 1]
            if t <= n:
                d = d + V.T @ e[t]
            delta[t] = d
        # Parameter and input gradients: sum over valid steps of (f'(z_t) ⊙ delta_t) times the step's inputs.
        for t in range(1, n + 1):
            a = f_prime(z[t]) * delta[t]  # dL/dz_t
            grads["W"] += np.outer(a, s[t - 1])
            grads["U"] += np.outer(a, xs[n_b, t - 1])
            grads["b"] += a
            grads["xs"][n_b, t - 1] = U.T @ a
            grads["V"] += np.outer(e[t], s[t])
            grads["c"] += e[t]
        grads["s0"][n_b] = (W.T @ (f_prime(z[1]) * delta[1])) if n >= 1 else delta[1]
    return loss, grads


def elman_jacobian_chain(W, zs, f_prime=lambda z: 1.0 - np.tanh(z) ** 2):
    """``∂s_T/∂s_0 = Π_{k=T..1} diag(f'(z_k)) W`` for pre-activations ``zs[T, H]`` of one sequence."""
    W = f64(W)
    J = np.eye(W.shape[0])
    for z in f64(zs):
        J = (f_prime(z)[:, None] * W) @ J
    return J


# ----------------------------------------------------------------------------------------------------------------
# Cases shared by the test files: a jrnn cell and the reference step that should agree with it.
# ----------------------------------------------------------------------------------------------------------------

class Case(NamedTuple):
    name: str
    cell: object  # a jrnn cell
    ref_step: Callable  # params -> ((state, x[I]) -> (state, y)), in NumPy


def cell_cases():
    """Every cell configuration the brief names, each with its NumPy step."""
    import jax

    import jrnn

    def elman_ref(f):
        return lambda p: (lambda s, x: elman_step(p, s, x, f))

    def gru_ref(reset_after):
        return lambda p: (lambda s, x: gru_step(p, s, x, reset_after))

    lstm_ref = lambda p: (lambda s, x: lstm_step(p, s, x))  # noqa: E731
    return [
        Case("elman_tanh", jrnn.elman(4), elman_ref(np.tanh)),
        Case("elman_relu", jrnn.elman(4, jax.nn.relu), elman_ref(relu)),
        Case("elman_nobias", jrnn.elman(4, bias=False), elman_ref(np.tanh)),
        Case("lstm", jrnn.lstm(4), lstm_ref),
        Case("lstm_proj", jrnn.lstm(5, proj_size=3), lstm_ref),
        Case("lstm_nobias", jrnn.lstm(4, bias=False), lstm_ref),
        Case("lstm_proj_nobias", jrnn.lstm(5, proj_size=2, bias=False), lstm_ref),
        Case("gru_reset_after", jrnn.gru(4), gru_ref(True)),
        Case("gru_reset_before", jrnn.gru(4, reset_after=False), gru_ref(False)),
        Case("gru_nobias", jrnn.gru(4, reset_after=False, bias=False), gru_ref(False)),
    ]


def device(a, dtype=np.float32):
    """A NumPy array on the device as ``dtype``, cast on the host (``jnp.asarray`` compiles a small XLA program per
    new shape in this JAX version; ``jax.device_put`` of a host array of the right dtype does not)."""
    import jax

    return jax.device_put(np.asarray(a, dtype=dtype))


def random_params(cell, seed: int, input_size: int, scale: float = 0.6, dtype=None):
    """``cell.init``'s structure with every array drawn from N(0, scale²), so biases are non-zero too.

    Only the structure is taken from ``cell.init`` (through ``jax.eval_shape``, which compiles nothing).
    """
    import jax

    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda k: cell.init(k, input_size), jax.random.key(seed))
    return jax.tree_util.tree_map(lambda a: device(scale * rng.standard_normal(a.shape), dtype or a.dtype), shapes)


def random_state(cell, batch: int, seed: int, scale: float = 0.5, dtype=None):
    """A random state with batch shape ``[batch]`` and the structure of ``cell.initial_state``."""
    import jax

    rng = np.random.default_rng(seed)
    zero = jax.eval_shape(lambda: cell.initial_state((batch,), dtype))
    return jax.tree_util.tree_map(lambda a: device(scale * rng.standard_normal(a.shape), a.dtype), zero)


def state_rows(state, batch: int):
    """A jrnn state with batch shape ``[batch]`` as a list of per-sequence NumPy states."""
    if hasattr(state, "h") and hasattr(state, "c"):
        h, c = f64(state.h), f64(state.c)
        return [LSTMState(h[b], c[b]) for b in range(batch)]
    state = f64(state)
    return [state[b] for b in range(batch)]


def stack_states(states):
    """The inverse of :func:`state_rows`: a list of per-sequence NumPy states as one batched state."""
    if isinstance(states[0], LSTMState):
        return LSTMState(np.stack([s.h for s in states]), np.stack([s.c for s in states]))
    return np.stack(states)


def state_arrays(state):
    """The arrays of a (jrnn or reference) state in a fixed order: ``[h, c]`` for an LSTM, ``[s]`` otherwise."""
    if hasattr(state, "h") and hasattr(state, "c"):
        return [f64(state.h), f64(state.c)]
    return [f64(state)]


def assert_states_close(actual, expected, **tol):
    a, e = state_arrays(actual), state_arrays(expected)
    assert len(a) == len(e)
    for x, y in zip(a, e, strict=True):
        np.testing.assert_allclose(x, y, **tol)


def assert_uniform(w, low: float, high: float, what: str) -> None:
    """``w``'s entries lie in ``[low, high]`` (to 1e-6 relative) and pass a Kolmogorov-Smirnov test against
    U(low, high) at p > 0.001: an initialisation drawn as the reference code draws it."""
    from scipy import stats

    w = np.asarray(w, np.float64).ravel()
    assert low - 1e-6 * abs(low) <= w.min() and w.max() <= high + 1e-6 * abs(high), what
    assert stats.kstest(w, stats.uniform(low, high - low).cdf).pvalue > 0.001, what
