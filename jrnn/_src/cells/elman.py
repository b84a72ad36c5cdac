"""The Elman RNN cell: ``s_t = f(U x_t + W s_{t-1} + b)``."""

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


class ElmanParams(NamedTuple):
    """Parameters of :func:`elman`, in the seed's notation (PyTorch's layout ``[out, in]``).

    Attributes:
      U: ``[H, I]`` input-to-hidden (torch ``weight_ih``).
      W: ``[H, H]`` hidden-to-hidden, the matrix that ties the time steps together (torch ``weight_hh``).
      b_U: ``[H]`` bias added with ``U x_t`` (torch ``bias_ih``), or None without bias.
      b_W: ``[H]`` bias added with ``W s_{t-1}`` (torch ``bias_hh``), or None. Only ``b = b_U + b_W`` matters
        to the function; both are kept so that PyTorch weights and gradients round-trip exactly.
    """

    U: jax.Array
    W: jax.Array
    b_U: jax.Array | None
    b_W: jax.Array | None


@dataclasses.dataclass(frozen=True)
class ElmanCell(StateMaskable, RecurrentMatrix):
    """An Elman cell; build it with :func:`elman`. State ``s`` is an array ``[..., H]`` and ``y_t = s_t``."""

    hidden_size: int
    activation: Callable[[jax.Array], jax.Array] = jnp.tanh
    bias: bool = True
    U_init: Callable = initializers.glorot_uniform
    W_init: Callable = initializers.orthogonal()
    b_init: Callable = initializers.zeros
    dtype: Any = jnp.float32

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def init(self, key: jax.Array, input_size: int) -> ElmanParams:
        input_size = checks.positive_int("input_size", input_size, "elman.init")
        return ElmanParams(*gates.init_gated(
            key, num_gates=1, hidden_size=self.hidden_size, input_size=input_size,
            recurrent_size=self.hidden_size, U_init=self.U_init, W_init=self.W_init, b_init=self.b_init,
            bias=self.bias, dtype=self.dtype))

    def initial_state(self, batch_shape=(), dtype=None) -> jax.Array:
        return gates.zeros_state(batch_shape, self.hidden_size, dtype or self.dtype)

    def step(self, params: ElmanParams, state: jax.Array, x: jax.Array, *,
             state_mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """One step; ``state_mask[..., H]`` (:func:`jrnn.recurrent_dropout`) multiplies ``s_{t-1}`` in ``W s_{t-1}``."""
        s_in = gates.masked(state, state_mask)
        s = self.activation(gates.affine(x, params.U, params.b_U) + gates.affine(s_in, params.W, params.b_W))
        return s, s

    def input_size(self, params: ElmanParams) -> int:
        return params.U.shape[1]


def elman(hidden_size: int, activation: Callable[[jax.Array], jax.Array] = jnp.tanh, *, bias: bool = True,
          U_init: Callable | None = None, W_init: Callable | None = None, b_init: Callable | None = None,
          init: str | None = None, dtype: Any = jnp.float32) -> ElmanCell:
    """The Elman RNN cell of the seed note::

        s_t = f(U x_t + b_U + W s_{t-1} + b_W)        y_t = s_t

    ``f`` is any elementwise activation: ``jnp.tanh`` (default, PyTorch ``nonlinearity='tanh'``),
    ``jax.nn.relu`` (PyTorch ``'relu'``; with ``W_init=jrnn.init.identity()`` the IRNN of Le et al. 2015), ...

    Args:
      hidden_size: H, the size of ``s_t``.
      activation: the elementwise ``f``.
      bias: whether ``b_U`` and ``b_W`` exist.
      U_init: initializer (``jrnn.init``) of ``U`` ``[H, I]``; default ``glorot_uniform``.
      W_init: initializer of ``W`` ``[H, H]``; default ``orthogonal()``.
      b_init: initializer of both biases; default ``zeros``.
      init: None (jrnn's defaults), or ``"pytorch"`` / ``"flax"`` / ``"keras"``: that library's (``nn.RNN``,
        ``SimpleCell``, ``SimpleRNN``) default initialisers (docs: porting, "Matching a run from another library");
        an explicit ``*_init`` argument wins.
      dtype: dtype of the parameters and the default state.

    Returns:
      An :class:`ElmanCell` with ``init(key, input_size)``, ``initial_state(batch_shape)`` and
      ``step(params, s, x[..., I]) -> (s[..., H], y[..., H])``.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.elman(4)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> s, y = cell.step(params, cell.initial_state((2,)), jnp.ones((2, 3)))
      >>> y.shape
      (2, 4)
    """
    hidden_size = checks.positive_int("hidden_size", hidden_size, "jrnn.elman")
    if not callable(activation):
        raise TypeError(f"jrnn.elman: expected a callable activation, got {activation!r}")
    U_init, W_init, b_init = presets.defaults("jrnn.elman", init, hidden_size, U_init=U_init, W_init=W_init,
                                              b_init=b_init)
    checks.initializers("jrnn.elman", U_init=U_init, W_init=W_init, b_init=b_init)
    return ElmanCell(hidden_size, activation, bias, U_init, W_init, b_init, dtype)


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


register_fused_kernel(ElmanCell, ElmanKernel)
