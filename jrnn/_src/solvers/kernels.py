"""One time step of each built-in cell, forward and backward by hand, for the fused path of :func:`jrnn.scan`.

A *kernel* is the fused path's view of a cell. It splits the cell's affine maps into the part that reads
``x_t`` (hoisted out of the loop as one GEMM, ``xp = X U^T + b_x``) and the part that reads the state (one
``[B, P] x [P, G·H]`` matmul per step), and writes the step's backward pass out by hand, as cuDNN does:

- ``step(consts, carry, xp_t, save) -> (carry, y_t, a_t, extra_t)`` runs one step on the hoisted ``xp_t``
  (``[B, G·H]``, without bias: the bias is added inside the step's elementwise pass). With ``save``, ``a_t`` (the
  shape of ``xp_t``, or None) is the residual written over ``xp_t`` in place and ``extra_t`` a tuple of other
  per-step residuals;
- ``step_bwd(consts, dcarry, dy_t, a_t, extra_t, s_prev_t, y_t) -> (dcarry_prev, dz_t, dextra_t)`` takes the
  state's gradient one step back; ``dz_t`` (the gradient of the step's input pre-activation, written over
  ``a_t`` in place) and ``dextra_t`` (a tuple) are stacked for the weight gradients;
- ``grads(params, X, S_in, DZ, dextras, extras) -> (dparams, dX)`` computes every parameter and input
  gradient with a few large GEMMs after the loop (``S_in``: the states as they enter the recurrent matmul).

``consts(params, state_mask)`` holds what every step reads: the weights and, under variational dropout
(:func:`jrnn.recurrent_dropout`), the state mask ``m[B, P]``, constant over the sequence. The forward step then
multiplies the state by it as it enters the recurrent matmul, ``(m ⊙ s_{t-1}) W^T``, and the backward step the
gradient that leaves that matmul, ``(dz W) ⊙ m``; ``S_in`` is ``m ⊙ S_prev``. The input mask and weight drop never
reach the kernels: they act on ``X`` and ``W`` before the loop.

Every kernel computes exactly its cell's docstring equations. One identity is used: ``σ(v) = ½ + ½ tanh(v/2)``,
so the gates of a step go through a single ``tanh`` over a contiguous ``[B, G·H]`` block (XLA's CPU loop
fusions are much faster on one wide elementwise op than on several gate slices), and their derivatives are
``σ' = (1 - a²)/4`` and ``tanh' = 1 - a²`` of that same ``a``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src.cells.elman import ElmanCell, ElmanParams
from jrnn._src.cells.gru import GRUCell, GRUParams
from jrnn._src.cells.lstm import LSTMCell, LSTMParams, LSTMState


def _mm(a: jax.Array, b: jax.Array, dtype: Any) -> jax.Array:
    """``a @ b``; with ``dtype``, on operands cast to it, accumulated and returned in ``a``'s dtype."""
    if dtype is None:
        return a @ b
    return jnp.matmul(a.astype(dtype), b.astype(dtype), preferred_element_type=a.dtype)


def _einsum(spec: str, a: jax.Array, b: jax.Array, dtype: Any, **options) -> jax.Array:
    """``jnp.einsum(spec, a, b)``; with ``dtype``, on operands cast to it, accumulated and returned in ``a``'s dtype."""
    if dtype is None:
        return jnp.einsum(spec, a, b, **options)
    return jnp.einsum(spec, a.astype(dtype), b.astype(dtype), preferred_element_type=a.dtype, **options)


def _gram(a: jax.Array, b: jax.Array, dtype: Any) -> jax.Array:
    """``Σ_{t,b} a[t, b]ᵀ b[t, b]`` of two ``[T, B, k]`` arrays: one GEMM over all the sequence's steps.

    As ``[T·B, k]`` matrices (a reshape XLA turns into a free bitcast), except under a mesh with ``Explicit`` axes,
    where the batch axis is sharded and cannot be merged with time: there it is a contraction over both axes with
    a replicated result (the all-reduce of the per-device sums). The two are the same GEMM; XLA:CPU runs the
    reshaped one measurably faster (it copies the operands of the other), so it is the default.
    """
    if _explicit(a):
        return _einsum("tbi,tbj->ij", a, b, dtype, out_sharding=jax.sharding.PartitionSpec())
    return _mm(_flat(a).T, _flat(b), dtype)


def _flat(a: jax.Array) -> jax.Array:
    return a.reshape(-1, a.shape[-1])


def _explicit(a: jax.Array) -> bool:
    """Whether ``a`` is traced under a mesh with ``Explicit`` axes, where JAX asks how a sum over a sharded axis is
    to be sharded."""
    mesh = getattr(jax.typeof(a).sharding, "mesh", None)
    return any(t == jax.sharding.AxisType.Explicit for t in getattr(mesh, "axis_types", ()))


def _colsum(D: jax.Array) -> jax.Array:
    """``Σ_{t,b} D[t, b]`` of a ``[T, B, k]`` array as a matrix-vector product: XLA then reads ``D`` only through
    dots (a reduce beside the dots makes it copy the whole buffer once per consumer)."""
    return _gram(jnp.ones(D.shape[:2] + (1,), D.dtype), D, None)[0]


def _maybe(b: Any, value: Any) -> Any:
    """``value`` if the parameter ``b`` exists (bias on), else None."""
    return None if b is None else value


def _add(a: jax.Array | None, b: jax.Array | None) -> jax.Array | None:
    if a is None:
        return b
    return a if b is None else a + b


def _plus(v: jax.Array, b: jax.Array | None) -> jax.Array:
    return v if b is None else v + b


def _row(b: jax.Array | None) -> jax.Array | None:
    """A ``[k]`` vector as a ``[1, k]`` row, to broadcast against ``[B, k]`` explicitly (strict rank promotion)."""
    return None if b is None else b[None, :]


def _blocks(values, H: int, dtype) -> jax.Array:
    """``[[v_1] * H + [v_2] * H + ...]``: a per-gate constant row over a packed ``[1, G·H]`` axis."""
    return jnp.concatenate([jnp.full((H,), v, dtype) for v in values])[None, :]


@dataclasses.dataclass(frozen=True)
class Kernel:
    """What every kernel shares: the cell, the matmul dtype, the input GEMM and the after-loop GEMMs."""

    cell: Any
    matmul_dtype: Any = None  # operand dtype of the large GEMMs (input projection, weight and input gradients)
    step_dtype: Any = None  # operand dtype of the per-step matmuls

    needs_y = False  # whether step_bwd reads y_t

    def seq(self, spec, a, b):
        """A GEMM over whole sequences that keeps their ``[T, B]`` axes, in the large GEMMs' dtype.

        Written over the ``[T, B, k]`` arrays as they are, not reshaped to ``[T·B, k]``: XLA computes the same
        single GEMM, and a batch axis that is sharded (``jit`` with a batch-sharded input, an ``Explicit`` mesh)
        stays an axis of its own, so each device computes only its part of the batch.
        """
        return _einsum(spec, a, b, self.matmul_dtype)

    def gram(self, a, b):
        """``Σ_{t,b} a[t, b]ᵀ b[t, b]``, a weight gradient, in the large GEMMs' dtype (:func:`_gram`)."""
        return _gram(a, b, self.matmul_dtype)

    def smm(self, a, b):
        return _mm(a, b, self.step_dtype)

    def weight(self, w):
        """A matrix read every step, cast once to the step's matmul dtype."""
        return w if self.step_dtype is None else w.astype(self.step_dtype)

    def project(self, params, xs):
        """``xp[T, B, G·H] = X U^T``: every input projection of the sequence in one GEMM (the bias is added in
        the step's elementwise pass, where it costs nothing)."""
        return self.seq("tbi,gi->tbg", xs, params.U)

    def input_grads(self, params, xs, DZ):
        """``dU = DZ^T X``, ``db_U = 1^T DZ``, ``dX = DZ U``."""
        dU = self.gram(DZ, xs)
        dX = self.seq("tbg,gi->tbi", DZ, params.U)
        return dU, _maybe(params.b_U, _colsum(DZ)), dX

    def recurrent_grads(self, DZ, S_in):
        """``dW = DZ^T S_in`` and ``1^T DZ``."""
        return self.gram(DZ, S_in), _colsum(DZ)

    def mask(self, consts, s):
        """``m ⊙ s``: the state as it enters the recurrent matmul (``s`` without a state mask). Also the backward
        step's ``(dz W) ⊙ m``: the mask is diagonal."""
        m = consts["m"]
        return s if m is None else s * m

    def carry(self, state):
        return state

    def state(self, carry):
        return carry

    def state_output(self, state):
        return state


# ------------------------------------------------------------------------------------------------------------
# Elman: s_t = f(U x_t + b_U + W s_{t-1} + b_W)
# ------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ElmanKernel(Kernel):

    needs_y = True

    @property
    def _kind(self) -> str:
        act = self.cell.activation
        if act is jnp.tanh:
            return "tanh"  # f' = 1 - s²
        if act is jax.nn.relu:
            return "relu"  # f' = [s > 0]
        return "generic"  # f' from jax.jvp at the stored pre-activation

    def consts(self, params: ElmanParams, state_mask=None):
        return dict(W_T=self.weight(params.W.T), W=self.weight(params.W), b=_row(_add(params.b_U, params.b_W)),
                    m=state_mask)

    def step(self, consts, s, xp, save):
        z = _plus(xp + self.smm(self.mask(consts, s), consts["W_T"]), consts["b"])
        s = self.cell.activation(z)
        return s, s, (z if self._kind == "generic" else None), ()

    def step_bwd(self, consts, ds, dy, z, extra, s_prev, y):
        ds = ds + dy
        kind = self._kind
        if kind == "tanh":
            dz = ds * (1.0 - y * y)
        elif kind == "relu":
            dz = jnp.where(y > 0, ds, jnp.zeros_like(ds))
        else:
            _, dz = jax.jvp(self.cell.activation, (z,), (ds,))
        return self.mask(consts, self.smm(dz, consts["W"])), dz, ()

    def grads(self, params: ElmanParams, xs, S_in, DZ, dextras, extras):
        dU, db_U, dX = self.input_grads(params, xs, DZ)
        dW, db = self.recurrent_grads(DZ, S_in)
        return ElmanParams(dU, dW, db_U, _maybe(params.b_W, db)), dX


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
    """Residuals per step: the gates ``a_t`` (in place), ``c_{t-1}`` and ``tanh(c_t)`` (and ``m_t`` with
    ``proj_size``). ``pack_carry`` carries ``[h, c]`` as one array (the benchmarks' ablation: 6 % faster
    forward+backward at B = 1, 4 % slower at B = 32; off by default)."""

    pack_carry: bool = False

    def consts(self, params: LSTMParams, state_mask=None):
        H = self.cell.hidden_size
        dtype = params.W.dtype
        scale = _blocks((0.5, 0.5, 1.0, 0.5), H, dtype)
        dscale = _blocks((0.25, 0.25, 1.0, 0.25), H, dtype)  # σ' = (1 - a²)/4, tanh' = 1 - a²
        b = _row(_add(params.b_U, params.b_W))
        R = params.R
        return dict(W_T=self.weight(params.W.T), W=self.weight(params.W), b=None if b is None else b * scale,
                    scale=scale, dscale=dscale, R_T=None if R is None else self.weight(R.T),
                    R=None if R is None else self.weight(R), m=state_mask)

    def carry(self, state: LSTMState):
        return jnp.concatenate([state.h, state.c], axis=-1) if self.pack_carry else (state.h, state.c)

    def _split(self, carry):
        if self.pack_carry:
            P = self.cell.output_size
            return carry[..., :P], carry[..., P:]
        return carry

    def _join(self, h, c):
        return jnp.concatenate([h, c], axis=-1) if self.pack_carry else (h, c)

    def state(self, carry) -> LSTMState:
        return LSTMState(*self._split(carry))

    def state_output(self, state: LSTMState):
        return state.h

    def step(self, consts, carry, xp, save):
        h, c = self._split(carry)
        H = self.cell.hidden_size
        a = jnp.tanh(_plus((xp + self.smm(self.mask(consts, h), consts["W_T"])) * consts["scale"], consts["b"]))
        i, f, g, o = _lstm_gates(a, H)
        c_new = f * c + i * g
        tc = jnp.tanh(c_new)
        m = o * tc
        if consts["R_T"] is None:
            return self._join(m, c_new), m, a, (c, tc)
        h_new = self.smm(m, consts["R_T"])
        return self._join(h_new, c_new), h_new, a, (c, tc, m)

    def step_bwd(self, consts, dcarry, dy, a, extra, s_prev, y):
        dh, dc = self._split(dcarry)
        c_prev, tc = extra[0], extra[1]
        i, f, g, o = _lstm_gates(a, self.cell.hidden_size)
        dh = dh + dy
        dm = dh if consts["R"] is None else self.smm(dh, consts["R"])
        dc = dc + dm * o * (1.0 - tc * tc)
        # dz = [dc·g, dc·c_prev, dc·i, dm·tanh(c)] ⊙ (activation' of each gate): one full-width pass.
        dz = jnp.concatenate([dc * g, dc * c_prev, dc * i, dm * tc], axis=-1) * (1.0 - a * a) * consts["dscale"]
        dh_prev = self.mask(consts, self.smm(dz, consts["W"]))
        return self._join(dh_prev, dc * f), dz, (() if consts["R"] is None else (dh,))

    def grads(self, params: LSTMParams, xs, S_in, DZ, dextras, extras):
        dU, db_U, dX = self.input_grads(params, xs, DZ)
        dW, db = self.recurrent_grads(DZ, S_in)
        dR = None if params.R is None else self.gram(dextras[0], extras[2])
        return LSTMParams(dU, dW, db_U, _maybe(params.b_W, db), dR), dX


# ------------------------------------------------------------------------------------------------------------
# GRU: gates r, z, n; s_t = (1 - z) n + z s_{t-1}
# ------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class GRUKernel(Kernel):
    """Residuals per step: ``[tanh((r, z) pre-activations / 2), n]`` (in place) and ``W_n s + b_Wn`` (reset
    after) or ``r ⊙ s_{t-1}`` (reset before; ``r ⊙ m ⊙ s_{t-1}`` with a state mask)."""

    def consts(self, params: GRUParams, state_mask=None):
        H = self.cell.hidden_size
        W, b_U, b_W = params.W, params.b_U, params.b_W
        if self.cell.reset_after:  # b_Wn sits inside r ⊙ (W_n s + b_Wn): it stays apart
            b_x = _add(b_U, None if b_W is None else jnp.concatenate([b_W[:2 * H], jnp.zeros((H,), b_W.dtype)]))
            return dict(W_T=self.weight(W.T), W=self.weight(W), b_x=_row(b_x),
                        b_n=None if b_W is None else _row(b_W[2 * H:]), m=state_mask)
        return dict(Wrz_T=self.weight(W[:2 * H].T), Wrz=self.weight(W[:2 * H]), Wn_T=self.weight(W[2 * H:].T),
                    Wn=self.weight(W[2 * H:]), b_x=_row(_add(b_U, b_W)), m=state_mask)

    def step(self, consts, s, xp, save):
        H = self.cell.hidden_size
        xp = _plus(xp, consts["b_x"])
        s_in = self.mask(consts, s)  # the interpolation below reads the unmasked s
        if self.cell.reset_after:
            hw = self.smm(s_in, consts["W_T"])
            a = jnp.tanh(0.5 * (xp[:, :2 * H] + hw[:, :2 * H]))
            r = 0.5 + 0.5 * a[:, :H]
            z = 0.5 + 0.5 * a[:, H:]
            hn = _plus(hw[:, 2 * H:], consts["b_n"])
            n = jnp.tanh(xp[:, 2 * H:] + r * hn)
            extra = (hn,)
        else:
            a = jnp.tanh(0.5 * (xp[:, :2 * H] + self.smm(s_in, consts["Wrz_T"])))
            r = 0.5 + 0.5 * a[:, :H]
            z = 0.5 + 0.5 * a[:, H:]
            rs = r * s_in
            n = jnp.tanh(xp[:, 2 * H:] + self.smm(rs, consts["Wn_T"]))
            extra = (rs,)
        s_new = n + z * (s - n)
        return s_new, s_new, jnp.concatenate([a, n], axis=-1), extra

    def step_bwd(self, consts, ds, dy, a, extra, s_prev, y):
        H = self.cell.hidden_size
        ds = ds + dy
        r = 0.5 + 0.5 * a[:, :H]
        z = 0.5 + 0.5 * a[:, H:2 * H]
        n = a[:, 2 * H:]
        dn = ds * (1.0 - n * n) * (1.0 - z)
        dz = ds * (s_prev - n) * z * (1.0 - z)
        if self.cell.reset_after:
            (hn,) = extra
            dr = dn * hn * r * (1.0 - r)
            dnr = dn * r
            dhw = jnp.concatenate([dr, dz, dnr], axis=-1)
            dprev = ds * z + self.mask(consts, self.smm(dhw, consts["W"]))
            return dprev, jnp.concatenate([dr, dz, dn], axis=-1), (dnr,)
        drs = self.smm(dn, consts["Wn"])
        dr = drs * self.mask(consts, s_prev) * r * (1.0 - r)
        drz = jnp.concatenate([dr, dz], axis=-1)
        dprev = ds * z + self.mask(consts, drs * r + self.smm(drz, consts["Wrz"]))
        return dprev, jnp.concatenate([drz, dn], axis=-1), ()

    def grads(self, params: GRUParams, xs, S_in, DZ, dextras, extras):
        H = self.cell.hidden_size
        dU, db_U, dX = self.input_grads(params, xs, DZ)
        # Every consumer reads DZ whole (a column slice as a GEMM operand makes XLA copy the buffer): the n rows
        # of the dW computed from DZ are then replaced by their own GEMM.
        dW_x, db_x = self.recurrent_grads(DZ, S_in)
        if self.cell.reset_after:
            dW_n, db_n = self.recurrent_grads(dextras[0], S_in)  # from dn ⊙ r
            db_W = jnp.concatenate([db_x[:2 * H], db_n])
        else:
            dW_n = self.gram(DZ, extras[0])[2 * H:]  # from dn and r ⊙ m ⊙ s_prev
            db_W = db_x
        return GRUParams(dU, jnp.concatenate([dW_x[:2 * H], dW_n]), db_U, _maybe(params.b_W, db_W)), dX


def kernel_for(cell: Any, matmul_dtype: Any = None) -> Kernel | None:
    """The kernel of a built-in cell (exact type match: a subclass may change the step), or None. ``matmul_dtype``
    applies to every matmul (bfloat16 for the per-step ones too: measured, bfloat16 only on the large GEMMs gains
    nothing on this CPU)."""
    kernels: dict[type, Callable] = {ElmanCell: ElmanKernel, LSTMCell: LSTMKernel, GRUCell: GRUKernel}
    make = kernels.get(type(cell))
    return None if make is None else make(cell, matmul_dtype, matmul_dtype)
