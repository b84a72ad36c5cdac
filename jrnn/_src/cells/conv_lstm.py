"""ConvLSTM (Shi et al. 2015): the LSTM with convolutions in place of its matrix products, over images in time.

Shi, Chen, Wang, Yeung, Wong & Woo, "Convolutional LSTM network: a machine learning approach for precipitation
nowcasting", NeurIPS 2015, arXiv 1506.04214. Inputs, memory and outputs are feature maps ``[..., *spatial, C]``
(channels last); every gate at a position sees a window of the input and of the previous output around it, so the
state keeps the spatial layout and the parameters do not grow with the image. The per-step input is more than a
vector, so the cell declares ``input_shape`` (:class:`jrnn.InputShaped`, a capability of ``jrnn/_src/contract.py``)
and :func:`jrnn.scan` takes ``[B, T, *spatial, C]`` sequences.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src import checks, initializers, presets
from jrnn._src.cells.lstm import LSTMState
from jrnn._src.contract import InputShaped, RecurrentMatrix

_SPATIAL = "DHW"  # the letters of up to three spatial axes in lax's dimension-number strings


class ConvLSTMParams(NamedTuple):
    """Parameters of :func:`conv_lstm`; gates packed in PyTorch's LSTM order ``i, f, g, o`` along axis 0.

    Attributes:
      U: ``[4C, C_in, *kernel_size]`` input-to-hidden kernels (PyTorch's ``Conv2d.weight`` layout).
      W: ``[4C, C, *kernel_size]`` hidden-to-hidden kernels.
      b: ``[4C]`` or None.
      P: ``[3, *spatial_shape, C]`` the peephole weights ``W_ci, W_cf, W_co`` (elementwise), or None.
    """

    U: jax.Array
    W: jax.Array
    b: jax.Array | None
    P: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class ConvLSTMCell(InputShaped, RecurrentMatrix):
    """A ConvLSTM cell; build it with :func:`conv_lstm`. State :class:`jrnn.LSTMState` of ``[..., *spatial, C]``."""

    hidden_size: int
    spatial_shape: tuple[int, ...]
    kernel_size: tuple[int, ...]
    peephole: bool = False
    forget_bias: float = 1.0
    bias: bool = True
    U_init: Callable = initializers.glorot_uniform
    W_init: Callable = initializers.glorot_uniform
    b_init: Callable = initializers.zeros
    dtype: Any = jnp.float32

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def init(self, key: jax.Array, input_size: int) -> ConvLSTMParams:
        input_size = checks.positive_int("input_size", input_size, "conv_lstm.init")
        kU, kW, kb = jax.random.split(key, 3)
        C = self.hidden_size
        U = initializers.gate_blocks(self.U_init, kU, 4, (C, input_size, *self.kernel_size), self.dtype)
        W = initializers.gate_blocks(self.W_init, kW, 4, (C, C, *self.kernel_size), self.dtype)
        b = None
        if self.bias:
            b = initializers.gate_blocks(self.b_init, kb, 4, (C,), self.dtype)
            b = b.at[C:2 * C].add(self.forget_bias)
        P = jnp.zeros((3, *self.spatial_shape, C), self.dtype) if self.peephole else None
        return ConvLSTMParams(U, W, b, P)

    def initial_state(self, batch_shape=(), dtype=None) -> LSTMState:
        zeros = jnp.zeros((*tuple(batch_shape), *self.spatial_shape, self.hidden_size), dtype or self.dtype)
        return LSTMState(zeros, zeros)

    def _conv(self, v: jax.Array, kernel: jax.Array) -> jax.Array:
        """``kernel * v``: a 'same'-padded, stride-1 cross-correlation of ``v[..., *spatial, C_in]``."""
        n = len(self.spatial_shape)
        letters = _SPATIAL[-n:]
        batch = v.shape[:v.ndim - n - 1]
        flat = v.reshape((-1,) + v.shape[len(batch):])
        out = jax.lax.conv_general_dilated(flat, kernel.astype(flat.dtype), (1,) * n, "SAME",
                                           dimension_numbers=(f"N{letters}C", f"OI{letters}", f"N{letters}C"))
        return out.reshape(batch + out.shape[1:])

    def step(self, params: ConvLSTMParams, state: LSTMState, x: jax.Array) -> tuple[LSTMState, jax.Array]:
        z = self._conv(x, params.U) + self._conv(state.h, params.W)
        if params.b is not None:
            z = z + jnp.broadcast_to(params.b, z.shape)
        i, f, g, o = jnp.split(z, 4, axis=-1)
        if params.P is not None:
            p_i, p_f, p_o = (jnp.broadcast_to(p, state.c.shape) for p in params.P)
            i, f = i + p_i * state.c, f + p_f * state.c
        c = jax.nn.sigmoid(f) * state.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        if params.P is not None:
            o = o + p_o * c
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return LSTMState(h, c), h

    def input_size(self, params: ConvLSTMParams) -> int:
        return params.U.shape[1]

    def input_shape(self, params: ConvLSTMParams) -> tuple[int, ...]:
        """``(*spatial_shape, C_in)``: one step's input is a feature map."""
        return (*self.spatial_shape, self.input_size(params))


def conv_lstm(hidden_size: int, spatial_shape: Sequence[int], kernel_size: int | Sequence[int] = 3, *,
              peephole: bool = False, forget_bias: float | None = None, bias: bool = True,
              U_init: Callable | None = None, W_init: Callable | None = None, b_init: Callable | None = None,
              init: str | None = None, dtype: Any = jnp.float32) -> ConvLSTMCell:
    """The ConvLSTM of Shi et al. (2015, arXiv 1506.04214, eq. 3), gates ``i, f, g, o``; ``*`` a convolution::

        i_t = σ(U_i * X_t + W_i * H_{t-1} + P_i ⊙ C_{t-1} + b_i)
        f_t = σ(U_f * X_t + W_f * H_{t-1} + P_f ⊙ C_{t-1} + b_f)
        C_t = f_t ⊙ C_{t-1} + i_t ⊙ tanh(U_g * X_t + W_g * H_{t-1} + b_g)
        o_t = σ(U_o * X_t + W_o * H_{t-1} + P_o ⊙ C_t + b_o)
        H_t = o_t ⊙ tanh(C_t)                                                y_t = H_t

    ``X_t`` ``[..., *spatial, C_in]``, ``H_t`` and ``C_t`` ``[..., *spatial, C]``; each ``*`` is a stride-1
    cross-correlation with zero "same" padding, so the state keeps the spatial shape. The peephole terms ``P``
    are the paper's; Keras' ``ConvLSTM2D`` and Flax's ``ConvLSTMCell`` leave them out, as does
    ``peephole=False`` (the default). One to three spatial axes. :func:`jrnn.scan` runs it over
    ``[B, T, *spatial, C_in]`` sequences (with lengths, reverse, :func:`jrnn.bidirectional`, :func:`jrnn.deep`,
    whose layers chain by the channel count).

    Args:
      hidden_size: C, the number of channels of ``H_t`` and ``C_t``.
      spatial_shape: the feature maps' spatial shape, e.g. ``(H, W)``; fixed, since the state has it.
      kernel_size: the convolution window, one int per spatial axis or one for all.
      peephole: whether the peephole weights ``P`` ``[3, *spatial, C]`` exist (initialised to 0).
      forget_bias: added to the forget gate's bias at initialisation; default 1.
      bias: whether ``b`` exists.
      U_init: initializer (``jrnn.init``) of each gate's ``[C, C_in, *kernel_size]`` block; Glorot uniform over
        the window's fans (the default).
      W_init: initializer of each gate's ``[C, C, *kernel_size]`` block; default ``glorot_uniform``.
      b_init: initializer of ``b``, per gate block; default ``zeros``.
      init: None (jrnn's defaults), or ``"flax"`` / ``"keras"``: that library's (``ConvLSTMCell``, ``ConvLSTM2D``)
        default initialisers (docs: porting, "Matching a run from another library"); an explicit ``*_init`` argument
        wins.
      dtype: dtype of the parameters and the default state.

    Returns:
      A :class:`ConvLSTMCell`; its state is :class:`jrnn.LSTMState` ``(h, c)``, each ``[..., *spatial, C]``.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.conv_lstm(4, spatial_shape=(8, 8), kernel_size=3)
      >>> params = cell.init(jax.random.key(0), input_size=2)
      >>> ys, state = jrnn.scan(cell, params, jnp.ones((3, 5, 8, 8, 2)), lengths=jnp.array([5, 1, 3]))
      >>> ys.shape, state.c.shape
      ((3, 5, 8, 8, 4), (3, 8, 8, 4))
    """
    where = "jrnn.conv_lstm"
    hidden_size = checks.positive_int("hidden_size", hidden_size, where)
    spatial_shape = tuple(checks.positive_int("spatial_shape entry", d, where) for d in spatial_shape)
    if not 1 <= len(spatial_shape) <= len(_SPATIAL):
        raise ValueError(f"{where}: expected 1 to 3 spatial axes, got spatial_shape={spatial_shape}")
    if isinstance(kernel_size, int):
        kernel_size = (kernel_size,) * len(spatial_shape)
    kernel_size = tuple(checks.positive_int("kernel_size entry", k, where) for k in kernel_size)
    if len(kernel_size) != len(spatial_shape):
        raise ValueError(f"{where}: expected one kernel size per spatial axis ({len(spatial_shape)}), got "
                         f"kernel_size={kernel_size}")
    U_init, W_init, b_init, forget_bias = presets.defaults(
        where, init, hidden_size, U_init=U_init, W_init=W_init, b_init=b_init, forget_bias=forget_bias)
    checks.initializers("jrnn.conv_lstm", U_init=U_init, W_init=W_init, b_init=b_init)
    return ConvLSTMCell(hidden_size, spatial_shape, kernel_size, bool(peephole), forget_bias, bool(bias), U_init,
                        W_init, b_init, dtype)
