"""One time step of each built-in cell, forward and backward by hand, for :func:`jrnn.fused_scan`.

A *kernel* is the fused path's view of a cell. It splits the cell's affine maps into the part that reads
``x_t`` (hoisted out of the loop as one GEMM, ``xp = X U^T + b_x``) and the part that reads the state (one
``[B, P] x [P, G·H]`` matmul per step), and writes the step's backward pass out by hand, as cuDNN does:

- ``step(consts, carry, xp_t, save) -> (carry, y_t, residuals_t)`` runs one step on the hoisted ``xp_t``;
- ``step_bwd(consts, dcarry, dy_t, residuals_t, s_prev_t, y_t) -> (dcarry_prev, dxp_t, dhw_t, extra_t)``
  takes the state's gradient one step back and returns the gradients of the step's pre-activations: ``dxp_t``
  for the input projection, ``dhw_t`` for the recurrent one (None when it equals ``dxp_t``), ``extra_t`` for
  whatever else the weight gradients need;
- ``grads(...)`` turns the stacked step gradients into parameter and input gradients with a few large GEMMs
  after the loop.

Every kernel computes exactly its cell's docstring equations. One identity is used: ``σ(v) = ½ + ½ tanh(v/2)``,
so the gates of a step go through a single ``tanh`` over a contiguous ``[B, G·H]`` block (XLA's CPU loop
fusions are much faster on one wide elementwise op than on several gate slices).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jrnn._src.elman import ElmanCell, ElmanParams
from jrnn._src.gru import GRUCell, GRUParams
from jrnn._src.lstm import LSTMCell, LSTMParams, LSTMState


def _mm(a: jax.Array, b: jax.Array, dtype: Any) -> jax.Array:
    """``a @ b``, with both operands cast to ``dtype`` (if given) and the product accumulated in ``a``'s dtype."""
    if dtype is None:
        return a @ b
    return jnp.matmul(a.astype(dtype), b.astype(dtype), preferred_element_type=a.dtype)


def _sum_rows(d: jax.Array) -> jax.Array:
    return d.reshape(-1, d.shape[-1]).sum(0)


def _flat(a: jax.Array) -> jax.Array:
    return a.reshape(-1, a.shape[-1])


def _maybe(b: Any, value: Any) -> Any:
    """``value`` if the parameter ``b`` exists (bias on), else None."""
    return None if b is None else value


def _add(a: jax.Array | None, b: jax.Array | None) -> jax.Array | None:
    if a is None:
        return b
    return a if b is None else a + b


@dataclasses.dataclass(frozen=True)
class Kernel:
    """What every kernel shares: the cell, the matmul dtype, and the after-loop GEMMs."""

    cell: Any
    matmul_dtype: Any = None

    def mm(self, a, b):
        return _mm(a, b, self.matmul_dtype)

    def project(self, params, xs_tm):
        """``xp[T, B, G·H] = X U^T + b_x``: every input projection of the sequence in one GEMM."""
        U, b = self.projection(params)
        T, B, I = xs_tm.shape
        xp = self.mm(xs_tm.reshape(T * B, I), U.T)
        if b is not None:
            xp = xp + b
        return xp.reshape(T, B, -1)

    def input_grads(self, params, xs_tm, DXP):
        """``dU = DXP^T X``, ``db_U = Σ DXP``, ``dX = DXP U`` as three GEMM-sized ops."""
        T, B, I = xs_tm.shape
        D = _flat(DXP)
        dU = self.mm(D.T, xs_tm.reshape(T * B, I))
        dX = self.mm(D, params.U).reshape(T, B, I)
        return dU, _maybe(params.b_U, D.sum(0)), dX

    def recurrent_grads(self, params, DHW, S_prev):
        """``dW = DHW^T S_prev``, ``db_W = Σ DHW``."""
        D = _flat(DHW)
        return self.mm(D.T, _flat(S_prev)), _maybe(params.b_W, D.sum(0))


# ------------------------------------------------------------------------------------------------------------
# Elman: s_t = f(U x_t + b_U + W s_{t-1} + b_W)
# ------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ElmanKernel(Kernel):

    @property
    def _kind(self) -> str:
        act = self.cell.activation
        if act is jnp.tanh:
            return "tanh"
        if act is jax.nn.relu:
            return "relu"
        return "generic"

    needs_y = True

    def projection(self, params: ElmanParams):
        return params.U, _add(params.b_U, params.b_W)

    def consts(self, params: ElmanParams):
        return params.W.T, params.W

    def carry(self, state):
        return state

    def state(self, carry):
        return carry

    def state_output(self, state):
        return state

    def step(self, consts, s, xp, save):
        W_T, _ = consts
        z = xp + self.mm(s, W_T)
        s = self.cell.activation(z)
        res = z if (save and self._kind == "generic") else None
        return s, s, res

    def step_bwd(self, consts, ds, dy, res, s_prev, y):
        _, W = consts
        ds = ds + dy
        kind = self._kind
        if kind == "tanh":
            dz = ds * (1.0 - y * y)
        elif kind == "relu":
            dz = jnp.where(y > 0, ds, jnp.zeros_like(ds))
        else:
            _, dz = jax.jvp(self.cell.activation, (res,), (ds,))
        return self.mm(dz, W), dz, None, None

    def grads(self, params: ElmanParams, xs_tm, S_prev, DXP, DHW, extra, res, ys):
        dU, db_U, dX = self.input_grads(params, xs_tm, DXP)
        dW, db_W = self.recurrent_grads(params, DXP, S_prev)
        return ElmanParams(dU, dW, db_U, db_W), dX


# ------------------------------------------------------------------------------------------------------------
# LSTM: gates i, f, g, o; c_t = σ(f) c_{t-1} + σ(i) tanh(g); h_t = R σ(o) tanh(c_t)
# ------------------------------------------------------------------------------------------------------------

def _lstm_gates(a: jax.Array, H: int):
    """``a = tanh(s ⊙ z)`` with ``s = (½, ½, 1, ½)`` per gate block → ``σ(i), σ(f), tanh(g), σ(o)``."""
    i = 0.5 + 0.5 * a[..., :H]
    f = 0.5 + 0.5 * a[..., H:2 * H]
    g = a[..., 2 * H:3 * H]
    o = 0.5 + 0.5 * a[..., 3 * H:]
    return i, f, g, o


@dataclasses.dataclass(frozen=True)
class LSTMKernel(Kernel):

    needs_y = False

    def projection(self, params: LSTMParams):
        return params.U, _add(params.b_U, params.b_W)

    def consts(self, params: LSTMParams):
        H = self.cell.hidden_size
        dtype = params.W.dtype
        half = jnp.full((H,), 0.5, dtype)
        scale = jnp.concatenate([half, half, jnp.ones((H,), dtype), half])
        R = params.R
        return params.W.T, params.W, scale, None if R is None else R.T, R

    def carry(self, state: LSTMState):
        return (state.h, state.c)

    def state(self, carry) -> LSTMState:
        return LSTMState(*carry)

    def state_output(self, state: LSTMState):
        return state.h

    def step(self, consts, carry, xp, save):
        W_T, _, scale, R_T, _ = consts
        h, c = carry
        H = self.cell.hidden_size
        a = jnp.tanh((xp + self.mm(h, W_T)) * scale)
        i, f, g, o = _lstm_gates(a, H)
        c_new = f * c + i * g
        m = o * jnp.tanh(c_new)
        h_new = m if R_T is None else self.mm(m, R_T)
        return (h_new, c_new), h_new, ((a, c) if save else None)

    def step_bwd(self, consts, dcarry, dy, res, s_prev, y):
        _, W, _, _, R = consts
        dh, dc = dcarry
        a, c_prev = res
        H = self.cell.hidden_size
        i, f, g, o = _lstm_gates(a, H)
        c = f * c_prev + i * g
        tc = jnp.tanh(c)
        dh = dh + dy
        dm = dh if R is None else self.mm(dh, R)
        do = dm * tc * o * (1.0 - o)
        dc = dc + dm * o * (1.0 - tc * tc)
        di = dc * g * i * (1.0 - i)
        df = dc * c_prev * f * (1.0 - f)
        dg = dc * i * (1.0 - g * g)
        dz = jnp.concatenate([di, df, dg, do], axis=-1)
        return (self.mm(dz, W), dc * f), dz, None, (None if R is None else dh)

    def grads(self, params: LSTMParams, xs_tm, S_prev, DXP, DHW, extra, res, ys):
        dU, db_U, dX = self.input_grads(params, xs_tm, DXP)
        dW, db_W = self.recurrent_grads(params, DXP, S_prev)
        dR = None
        if params.R is not None:
            A, C_prev = res
            i, f, g, o = _lstm_gates(A, self.cell.hidden_size)
            M = o * jnp.tanh(f * C_prev + i * g)
            dR = self.mm(_flat(extra).T, _flat(M))
        return LSTMParams(dU, dW, db_U, db_W, dR), dX


# ------------------------------------------------------------------------------------------------------------
# GRU: gates r, z, n; s_t = (1 - z) n + z s_{t-1}
# ------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class GRUKernel(Kernel):

    needs_y = False

    def projection(self, params: GRUParams):
        H = self.cell.hidden_size
        b_W = params.b_W
        if b_W is not None and self.cell.reset_after:  # b_Wn sits inside r ⊙ (W_n s + b_Wn): keep it in the loop
            b_W = jnp.concatenate([b_W[:2 * H], jnp.zeros((H,), b_W.dtype)])
        return params.U, _add(params.b_U, b_W)

    def consts(self, params: GRUParams):
        H = self.cell.hidden_size
        W = params.W
        b_n = None if params.b_W is None else params.b_W[2 * H:]
        if self.cell.reset_after:
            return W.T, W, b_n
        return W[:2 * H].T, W[:2 * H], W[2 * H:].T, W[2 * H:]

    def carry(self, state):
        return state

    def state(self, carry):
        return carry

    def state_output(self, state):
        return state

    def step(self, consts, s, xp, save):
        H = self.cell.hidden_size
        if self.cell.reset_after:
            W_T, _, b_n = consts
            hw = self.mm(s, W_T)
            a = jnp.tanh(0.5 * (xp[:, :2 * H] + hw[:, :2 * H]))
            r = 0.5 + 0.5 * a[:, :H]
            z = 0.5 + 0.5 * a[:, H:]
            hn = hw[:, 2 * H:] if b_n is None else hw[:, 2 * H:] + b_n
            n = jnp.tanh(xp[:, 2 * H:] + r * hn)
            s_new = n + z * (s - n)
            return s_new, s_new, ((a, n, hn) if save else None)
        Wrz_T, _, Wn_T, _ = consts
        a = jnp.tanh(0.5 * (xp[:, :2 * H] + self.mm(s, Wrz_T)))
        r = 0.5 + 0.5 * a[:, :H]
        z = 0.5 + 0.5 * a[:, H:]
        n = jnp.tanh(xp[:, 2 * H:] + self.mm(r * s, Wn_T))
        s_new = n + z * (s - n)
        return s_new, s_new, ((a, n) if save else None)

    def step_bwd(self, consts, ds, dy, res, s_prev, y):
        H = self.cell.hidden_size
        ds = ds + dy
        if self.cell.reset_after:
            _, W, _ = consts
            a, n, hn = res
        else:
            _, Wrz, _, Wn = consts
            a, n = res
        r = 0.5 + 0.5 * a[:, :H]
        z = 0.5 + 0.5 * a[:, H:]
        dn = ds * (1.0 - n * n) * (1.0 - z)
        dz = ds * (s_prev - n) * z * (1.0 - z)
        if self.cell.reset_after:
            dr = dn * hn * r * (1.0 - r)
            dxp = jnp.concatenate([dr, dz, dn], axis=-1)
            dhw = jnp.concatenate([dr, dz, dn * r], axis=-1)
            return ds * z + self.mm(dhw, W), dxp, dhw, None
        drs = self.mm(dn, Wn)
        dr = drs * s_prev * r * (1.0 - r)
        drz = jnp.concatenate([dr, dz], axis=-1)
        dxp = jnp.concatenate([drz, dn], axis=-1)
        return ds * z + drs * r + self.mm(drz, Wrz), dxp, None, None

    def grads(self, params: GRUParams, xs_tm, S_prev, DXP, DHW, extra, res, ys):
        H = self.cell.hidden_size
        dU, db_U, dX = self.input_grads(params, xs_tm, DXP)
        if self.cell.reset_after:
            dW, db_W = self.recurrent_grads(params, DHW, S_prev)
        else:
            a = res[0]
            RS = (0.5 + 0.5 * a[..., :H]) * S_prev
            D = _flat(DXP)
            dW = jnp.concatenate([self.mm(D[:, :2 * H].T, _flat(S_prev)), self.mm(D[:, 2 * H:].T, _flat(RS))])
            db_W = _maybe(params.b_W, db_U)
        return GRUParams(dU, dW, db_U, db_W), dX


def kernel_for(cell: Any, matmul_dtype: Any = None) -> Kernel | None:
    """The kernel of a built-in cell (exact type match), or None for any other cell."""
    kernels: dict[type, Callable] = {ElmanCell: ElmanKernel, LSTMCell: LSTMKernel, GRUCell: GRUKernel}
    make = kernels.get(type(cell))
    return None if make is None else make(cell, matmul_dtype)
