"""The LSTM cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000), PyTorch's variant."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src import checks, initializers, presets
from jrnn._src.cells import gates
from jrnn._src.contract import RecurrentMatrix, StateMaskable
from jrnn._src.solvers.fused import register_fused_kernel
from jrnn._src.solvers.kernels import Kernel, _add, _blocks, _maybe, _plus, _row


class LSTMParams(NamedTuple):
    """Parameters of :func:`lstm`; gates packed in PyTorch's order ``i, f, g, o`` along axis 0.

    Attributes:
      U: ``[4H, I]`` input-to-hidden (torch ``weight_ih``).
      W: ``[4H, P]`` hidden-to-hidden, P = proj_size or H (torch ``weight_hh``).
      b_U: ``[4H]`` (torch ``bias_ih``) or None.
      b_W: ``[4H]`` (torch ``bias_hh``) or None.
      R: ``[P, H]`` the projection of ``h`` (torch ``weight_hr``), or None without ``proj_size``.
    """

    U: jax.Array
    W: jax.Array
    b_U: jax.Array | None
    b_W: jax.Array | None
    R: jax.Array | None = None


class LSTMState(NamedTuple):
    """An LSTM's state: ``h`` ``[..., P]`` the (projected) output, ``c`` ``[..., H]`` the memory cell."""

    h: jax.Array
    c: jax.Array


@dataclasses.dataclass(frozen=True)
class LSTMCell(StateMaskable, RecurrentMatrix):
    """An LSTM cell; build it with :func:`lstm`."""

    hidden_size: int
    proj_size: int = 0
    forget_bias: float = 1.0
    bias: bool = True
    U_init: Callable = initializers.glorot_uniform
    W_init: Callable = initializers.orthogonal()
    b_init: Callable = initializers.zeros
    R_init: Callable = initializers.glorot_uniform
    dtype: Any = jnp.float32

    @property
    def output_size(self) -> int:
        return self.proj_size or self.hidden_size

    def init(self, key: jax.Array, input_size: int) -> LSTMParams:
        input_size = checks.positive_int("input_size", input_size, "lstm.init")
        k_gates, k_proj = jax.random.split(key)
        H = self.hidden_size
        U, W, b_U, b_W = gates.init_gated(
            k_gates, num_gates=4, hidden_size=H, input_size=input_size, recurrent_size=self.output_size,
            U_init=self.U_init, W_init=self.W_init, b_init=self.b_init, bias=self.bias, dtype=self.dtype)
        if b_U is not None and self.forget_bias:
            b_U = b_U.at[H:2 * H].add(self.forget_bias)
        R = self.R_init(k_proj, (self.proj_size, H), self.dtype) if self.proj_size else None
        return LSTMParams(U, W, b_U, b_W, R)

    def initial_state(self, batch_shape=(), dtype=None) -> LSTMState:
        dtype = dtype or self.dtype
        return LSTMState(gates.zeros_state(batch_shape, self.output_size, dtype),
                         gates.zeros_state(batch_shape, self.hidden_size, dtype))

    def step(self, params: LSTMParams, state: LSTMState, x: jax.Array, *,
             state_mask: jax.Array | None = None) -> tuple[LSTMState, jax.Array]:
        """One step; ``state_mask[..., P]`` (:func:`jrnn.recurrent_dropout`) multiplies ``h_{t-1}`` in ``W h_{t-1}``
        (``c_{t-1}`` is never masked)."""
        h_in = gates.masked(state.h, state_mask)
        z = gates.affine(x, params.U, params.b_U) + gates.affine(h_in, params.W, params.b_W)
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * state.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        if params.R is not None:
            h = h @ params.R.T
        return LSTMState(h, c), h

    def input_size(self, params: LSTMParams) -> int:
        return params.U.shape[1]


def lstm(hidden_size: int, *, proj_size: int = 0, forget_bias: float | None = None, bias: bool = True,
         U_init: Callable | None = None, W_init: Callable | None = None, b_init: Callable | None = None,
         R_init: Callable | None = None, init: str | None = None, dtype: Any = jnp.float32) -> LSTMCell:
    """The LSTM cell, exactly as PyTorch's ``nn.LSTM`` computes it. In the seed's notation, gates ``i, f, g, o``::

        [i; f; g; o] = U x_t + b_U + W h_{t-1} + b_W          (packed in this order along axis 0)
        c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g)
        h_t = R (σ(o) ⊙ tanh(c_t))                              (R only with proj_size; else R = I)
        y_t = h_t

    The memory ``c_t`` is the additive path through time that lets gradients survive long lags: while
    ``σ(f) ≈ 1``, ``∂c_t/∂c_{t-1} = σ(f)`` is close to the identity.

    Args:
      hidden_size: H, the size of ``c_t`` and of each gate.
      proj_size: P > 0 projects ``h_t`` to P features with ``R[P, H]`` (Sak et al. 2014, PyTorch's
        ``proj_size``); 0 for none.
      forget_bias: added to the forget gate's part of ``b_U`` at initialisation (Gers et al. 2000;
        Jozefowicz et al. 2015 recommend 1, the default; Keras' ``unit_forget_bias``). Use 0 (or
        ``init="pytorch"``) for PyTorch's.
      bias: whether ``b_U`` and ``b_W`` exist.
      U_init: initializer (``jrnn.init``) of ``U``, applied per gate block; default ``glorot_uniform``.
      W_init: initializer of ``W``, applied per gate block; default ``orthogonal()``.
      b_init: initializer of both biases, applied per gate block; default ``zeros``.
      R_init: initializer of the projection ``R``; default ``glorot_uniform`` (PyTorch's under ``"pytorch"``).
      init: None (jrnn's defaults), or ``"pytorch"`` / ``"flax"`` / ``"keras"``: that library's (``nn.LSTM``,
        ``LSTMCell``, ``LSTM``) default initialisers (docs: porting, "Matching a run from another library"); an
        explicit ``*_init`` argument wins.
      dtype: dtype of the parameters and the default state.

    Returns:
      An :class:`LSTMCell`; its state is :class:`LSTMState` ``(h[..., P], c[..., H])``.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.lstm(8, proj_size=4)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> state, y = cell.step(params, cell.initial_state((2,)), jnp.ones((2, 3)))
      >>> y.shape, state.c.shape
      ((2, 4), (2, 8))
    """
    hidden_size = checks.positive_int("hidden_size", hidden_size, "jrnn.lstm")
    if proj_size:
        proj_size = checks.positive_int("proj_size", proj_size, "jrnn.lstm")
        if proj_size >= hidden_size:
            raise ValueError(f"jrnn.lstm: expected proj_size < hidden_size ({hidden_size}), got {proj_size}")
    elif proj_size != 0:
        raise ValueError(f"jrnn.lstm: expected proj_size >= 0, got {proj_size!r}")
    U_init, W_init, b_init, R_init, forget_bias = presets.defaults(
        "jrnn.lstm", init, hidden_size, U_init=U_init, W_init=W_init, b_init=b_init, R_init=R_init,
        forget_bias=forget_bias)
    checks.initializers("jrnn.lstm", U_init=U_init, W_init=W_init, b_init=b_init, R_init=R_init)
    return LSTMCell(hidden_size, proj_size, forget_bias, bias, U_init, W_init, b_init, R_init, dtype)


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
    ``proj_size``). ``pack_carry`` carries ``[h, c]`` as one array (off by default: faster at B = 1 and slower
    at B = 32 in the benchmarks' ablation, BENCHMARKS.md)."""

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


register_fused_kernel(LSTMCell, LSTMKernel)
