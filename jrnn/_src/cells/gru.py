"""The GRU cell (Cho et al. 2014), in PyTorch's/cuDNN's reset-after form by default."""

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
from jrnn._src.solvers.kernels import Kernel, _add, _maybe, _plus, _row


class GRUParams(NamedTuple):
    """Parameters of :func:`gru`; gates packed in PyTorch's order ``r, z, n`` along axis 0.

    Attributes:
      U: ``[3H, I]`` input-to-hidden (torch ``weight_ih``).
      W: ``[3H, H]`` hidden-to-hidden (torch ``weight_hh``).
      b_U: ``[3H]`` (torch ``bias_ih``) or None.
      b_W: ``[3H]`` (torch ``bias_hh``) or None; its ``n`` part sits inside the reset gate's product.
    """

    U: jax.Array
    W: jax.Array
    b_U: jax.Array | None
    b_W: jax.Array | None


@dataclasses.dataclass(frozen=True)
class GRUCell(StateMaskable, RecurrentMatrix):
    """A GRU cell; build it with :func:`gru`. State ``s`` is an array ``[..., H]`` and ``y_t = s_t``."""

    hidden_size: int
    reset_after: bool = True
    bias: bool = True
    U_init: Callable = initializers.glorot_uniform
    W_init: Callable = initializers.orthogonal()
    b_init: Callable = initializers.zeros
    dtype: Any = jnp.float32

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def init(self, key: jax.Array, input_size: int) -> GRUParams:
        input_size = checks.positive_int("input_size", input_size, "gru.init")
        return GRUParams(*gates.init_gated(
            key, num_gates=3, hidden_size=self.hidden_size, input_size=input_size,
            recurrent_size=self.hidden_size, U_init=self.U_init, W_init=self.W_init, b_init=self.b_init,
            bias=self.bias, dtype=self.dtype))

    def initial_state(self, batch_shape=(), dtype=None) -> jax.Array:
        return gates.zeros_state(batch_shape, self.hidden_size, dtype or self.dtype)

    def step(self, params: GRUParams, state: jax.Array, x: jax.Array, *,
             state_mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """One step; ``state_mask[..., H]`` (:func:`jrnn.recurrent_dropout`) multiplies ``s_{t-1}`` where it enters
        ``W`` (the interpolation ``z ⊙ s_{t-1}`` reads the unmasked state)."""
        H = self.hidden_size
        s_in = gates.masked(state, state_mask)
        xr, xz, xn = jnp.split(gates.affine(x, params.U, params.b_U), 3, axis=-1)
        if self.reset_after:
            hr, hz, hn = jnp.split(gates.affine(s_in, params.W, params.b_W), 3, axis=-1)
            r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
            n = jnp.tanh(xn + r * hn)
        else:
            b_rz, b_n = (None, None) if params.b_W is None else (params.b_W[:2 * H], params.b_W[2 * H:])
            hr, hz = jnp.split(gates.affine(s_in, params.W[:2 * H], b_rz), 2, axis=-1)
            r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
            n = jnp.tanh(xn + gates.affine(r * s_in, params.W[2 * H:], b_n))
        s = (1.0 - z) * n + z * state
        return s, s

    def input_size(self, params: GRUParams) -> int:
        return params.U.shape[1]


def gru(hidden_size: int, *, reset_after: bool = True, bias: bool = True, U_init: Callable | None = None,
        W_init: Callable | None = None, b_init: Callable | None = None, init: str | None = None,
        dtype: Any = jnp.float32) -> GRUCell:
    """The GRU cell. In the seed's notation, gates ``r, z, n`` packed in this order along axis 0::

        r = σ(U_r x_t + b_Ur + W_r s_{t-1} + b_Wr)          reset gate
        z = σ(U_z x_t + b_Uz + W_z s_{t-1} + b_Wz)          update gate
        n = tanh(U_n x_t + b_Un + r ⊙ (W_n s_{t-1} + b_Wn))   reset_after=True  (PyTorch, cuDNN; default)
        n = tanh(U_n x_t + b_Un + W_n (r ⊙ s_{t-1}) + b_Wn)   reset_after=False (Cho et al. 2014)
        s_t = (1 - z) ⊙ n + z ⊙ s_{t-1}                     y_t = s_t

    Args:
      hidden_size: H, the size of ``s_t``.
      reset_after: apply the reset gate after the recurrent matmul (PyTorch) or before it (Cho et al.).
      bias: whether ``b_U`` and ``b_W`` exist.
      U_init: initializer (``jrnn.init``) of ``U``, applied per gate block; default ``glorot_uniform``.
      W_init: initializer of ``W``, applied per gate block; default ``orthogonal()``.
      b_init: initializer of both biases, applied per gate block; default ``zeros``.
      init: None (jrnn's defaults), or ``"pytorch"`` / ``"flax"`` / ``"keras"``: that library's (``nn.GRU``,
        ``GRUCell``, ``GRU``) default initialisers (docs: porting, "Matching a run from another library"); an
        explicit ``*_init`` argument wins.
      dtype: dtype of the parameters and the default state.

    Returns:
      A :class:`GRUCell`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.gru(4)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> s, y = cell.step(params, cell.initial_state((2,)), jnp.ones((2, 3)))
      >>> y.shape
      (2, 4)
    """
    hidden_size = checks.positive_int("hidden_size", hidden_size, "jrnn.gru")
    U_init, W_init, b_init = presets.defaults("jrnn.gru", init, hidden_size, U_init=U_init, W_init=W_init,
                                              b_init=b_init)
    checks.initializers("jrnn.gru", U_init=U_init, W_init=W_init, b_init=b_init)
    return GRUCell(hidden_size, bool(reset_after), bias, U_init, W_init, b_init, dtype)


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


register_fused_kernel(GRUCell, GRUKernel)
