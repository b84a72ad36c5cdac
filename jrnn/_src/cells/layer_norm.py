"""Layer-normalised LSTM and GRU (Ba, Kiros & Hinton 2016, "Layer normalization", arXiv 1607.06450).

Layer normalisation of a vector ``v`` of n summed inputs, with a gain ``g`` and a bias ``β`` per unit::

    LN(v; g, β) = g ⊙ (v - μ) / sqrt(σ² + ε) + β,     μ = mean(v),  σ² = mean((v - μ)²),  ε = 1e-5

The statistics are those of one time step of one sequence, so the normalisation is the same in training and at
test time and needs no running averages (unlike batch normalisation through time). The paper normalises the
input projection ``U x_t`` and the recurrent projection ``W s_{t-1}`` *separately*, so that neither can drown
the other whatever the scale of ``W``; ε and the GRU's grouping follow the authors' code (ryankiros/layer-norm).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src import checks, initializers, presets
from jrnn._src.cells import gates
from jrnn._src.cells.lstm import LSTMState
from jrnn._src.contract import RecurrentMatrix

EPSILON = 1e-5


def layer_norm(v: jax.Array, gain: jax.Array, bias: jax.Array, eps: float = EPSILON) -> jax.Array:
    """``LN(v; g, β)`` over the last axis of ``v[..., n]``, with ``gain``, ``bias`` ``[n]``."""
    mean = jnp.mean(v, axis=-1, keepdims=True)
    centred = v - mean
    variance = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
    normalised = centred * jax.lax.rsqrt(variance + eps)
    return jnp.broadcast_to(gain, v.shape) * normalised + jnp.broadcast_to(bias, v.shape)


class LayerNormLSTMParams(NamedTuple):
    """Parameters of :func:`layer_norm_lstm`; gates packed in PyTorch's order ``i, f, g, o`` along axis 0.

    Attributes:
      U: ``[4H, I]`` input-to-hidden.
      W: ``[4H, H]`` hidden-to-hidden.
      g_U: ``[4H]`` gain of ``LN(U x_t)``.
      b_U: ``[4H]`` bias of ``LN(U x_t)`` (it carries the forget-gate bias).
      g_W: ``[4H]`` gain of ``LN(W h_{t-1})``.
      b_W: ``[4H]`` bias of ``LN(W h_{t-1})``.
      g_c: ``[H]`` gain of ``LN(c_t)``.
      b_c: ``[H]`` bias of ``LN(c_t)``.
    """

    U: jax.Array
    W: jax.Array
    g_U: jax.Array
    b_U: jax.Array
    g_W: jax.Array
    b_W: jax.Array
    g_c: jax.Array
    b_c: jax.Array


class LayerNormGRUParams(NamedTuple):
    """Parameters of :func:`layer_norm_gru`; gates packed in PyTorch's order ``r, z, n`` along axis 0.

    Attributes:
      U: ``[3H, I]`` input-to-hidden.
      W: ``[3H, H]`` hidden-to-hidden.
      g_U: ``[3H]`` gains of ``LN(U_rz x_t)`` (first 2H) and ``LN(U_n x_t)`` (last H).
      b_U: ``[3H]`` the matching biases.
      g_W: ``[3H]`` gains of ``LN(W_rz s_{t-1})`` and ``LN(W_n s_{t-1})``.
      b_W: ``[3H]`` the matching biases; the ``n`` part sits inside the reset gate's product.
    """

    U: jax.Array
    W: jax.Array
    g_U: jax.Array
    b_U: jax.Array
    g_W: jax.Array
    b_W: jax.Array


def _init_ln(cell, key, input_size: int, num_gates: int, where: str):
    input_size = checks.positive_int("input_size", input_size, where)
    H = cell.hidden_size
    U, W, _, _ = gates.init_gated(key, num_gates=num_gates, hidden_size=H, input_size=input_size,
                                  recurrent_size=H, U_init=cell.U_init, W_init=cell.W_init,
                                  b_init=initializers.zeros, bias=False, dtype=cell.dtype)
    ones, zeros = jnp.ones(num_gates * H, cell.dtype), jnp.zeros(num_gates * H, cell.dtype)
    return U, W, ones, zeros


@dataclasses.dataclass(frozen=True)
class LayerNormLSTMCell(RecurrentMatrix):
    """A layer-normalised LSTM cell; build it with :func:`layer_norm_lstm`. State :class:`jrnn.LSTMState`."""

    hidden_size: int
    forget_bias: float = 1.0
    U_init: Callable = initializers.glorot_uniform
    W_init: Callable = initializers.orthogonal()
    dtype: Any = jnp.float32

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def init(self, key: jax.Array, input_size: int) -> LayerNormLSTMParams:
        U, W, ones, zeros = _init_ln(self, key, input_size, 4, "layer_norm_lstm.init")
        H = self.hidden_size
        b_U = zeros.at[H:2 * H].add(self.forget_bias)
        return LayerNormLSTMParams(U, W, ones, b_U, ones, zeros, jnp.ones(H, self.dtype), jnp.zeros(H, self.dtype))

    def initial_state(self, batch_shape=(), dtype=None) -> LSTMState:
        dtype = dtype or self.dtype
        zeros = gates.zeros_state(batch_shape, self.hidden_size, dtype)
        return LSTMState(zeros, zeros)

    def step(self, params: LayerNormLSTMParams, state: LSTMState, x: jax.Array) -> tuple[LSTMState, jax.Array]:
        z = (layer_norm(x @ params.U.T, params.g_U, params.b_U)
             + layer_norm(state.h @ params.W.T, params.g_W, params.b_W))
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * state.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(layer_norm(c, params.g_c, params.b_c))
        return LSTMState(h, c), h

    def input_size(self, params: LayerNormLSTMParams) -> int:
        return params.U.shape[1]


@dataclasses.dataclass(frozen=True)
class LayerNormGRUCell(RecurrentMatrix):
    """A layer-normalised GRU cell; build it with :func:`layer_norm_gru`. State ``s`` ``[..., H]``, ``y_t = s_t``."""

    hidden_size: int
    U_init: Callable = initializers.glorot_uniform
    W_init: Callable = initializers.orthogonal()
    dtype: Any = jnp.float32

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def init(self, key: jax.Array, input_size: int) -> LayerNormGRUParams:
        U, W, ones, zeros = _init_ln(self, key, input_size, 3, "layer_norm_gru.init")
        return LayerNormGRUParams(U, W, ones, zeros, ones, zeros)

    def initial_state(self, batch_shape=(), dtype=None) -> jax.Array:
        return gates.zeros_state(batch_shape, self.hidden_size, dtype or self.dtype)

    def _normalised(self, v, gain, bias):
        """``[LN(v_rz); LN(v_n)]``: the two gates share statistics, the candidate has its own."""
        H2 = 2 * self.hidden_size
        return (layer_norm(v[..., :H2], gain[:H2], bias[:H2]), layer_norm(v[..., H2:], gain[H2:], bias[H2:]))

    def step(self, params: LayerNormGRUParams, state: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x_rz, x_n = self._normalised(x @ params.U.T, params.g_U, params.b_U)
        h_rz, h_n = self._normalised(state @ params.W.T, params.g_W, params.b_W)
        r, z = jnp.split(jax.nn.sigmoid(x_rz + h_rz), 2, axis=-1)
        n = jnp.tanh(x_n + r * h_n)
        s = (1.0 - z) * n + z * state
        return s, s

    def input_size(self, params: LayerNormGRUParams) -> int:
        return params.U.shape[1]


def layer_norm_lstm(hidden_size: int, *, forget_bias: float = 1.0, U_init: Callable = initializers.glorot_uniform,
                    W_init: Callable = initializers.orthogonal(), init: str | None = None,
                    dtype: Any = jnp.float32) -> LayerNormLSTMCell:
    """The layer-normalised LSTM of Ba, Kiros & Hinton (2016, arXiv 1607.06450, eq. 20-22), gates ``i, f, g, o``::

        [i; f; g; o] = LN(U x_t; g_U, b_U) + LN(W h_{t-1}; g_W, b_W)      (each LN over all 4H units)
        c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g)
        h_t = σ(o) ⊙ tanh(LN(c_t; g_c, b_c))                               y_t = h_t

    ``LN(v; g, β) = g ⊙ (v - mean(v)) / sqrt(var(v) + 1e-5) + β`` per step and sequence. The paper's separate
    bias ``b`` is the sum ``b_U + b_W`` here (the two LN biases), as PyTorch's LSTM keeps ``b_ih`` and ``b_hh``.
    The memory ``c_t`` is carried *unnormalised*, as in the paper and the authors' code; only the copy that feeds
    the output is normalised (TF Addons' ``LayerNormLSTMCell`` carries the normalised one instead). Use it where
    the scale of the summed inputs drifts over time or differs between inputs: long sequences, deep stacks, large
    learning rates; a step costs three normalisations more than :func:`jrnn.lstm`, and it runs on the sequential solver
    of :func:`jrnn.scan`.

    Args:
      hidden_size: H, the size of ``h_t`` and ``c_t``.
      forget_bias: added to the forget gate's part of ``b_U`` at initialisation (1 by default, as
        :func:`jrnn.lstm`).
      U_init: initializer (``jrnn.init``) of ``U``, applied per gate block.
      W_init: initializer of ``W``, applied per gate block.
      init: None (jrnn's defaults); none of PyTorch, Flax or Keras has a layer-normalised LSTM, so ``"pytorch"``,
        ``"flax"`` and ``"keras"`` are a ValueError.
      dtype: dtype of the parameters and the default state. Gains start at 1, biases at 0.

    Returns:
      A :class:`LayerNormLSTMCell`; its state is :class:`jrnn.LSTMState` ``(h[..., H], c[..., H])``.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.layer_norm_lstm(8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> ys, state = jrnn.scan(cell, params, jnp.ones((2, 5, 3)), lengths=jnp.array([5, 2]))
      >>> ys.shape, state.c.shape
      ((2, 5, 8), (2, 8))
    """
    presets.preset("jrnn.layer_norm_lstm", init)
    hidden_size = checks.positive_int("hidden_size", hidden_size, "jrnn.layer_norm_lstm")
    checks.initializers("jrnn.layer_norm_lstm", U_init=U_init, W_init=W_init)
    return LayerNormLSTMCell(hidden_size, forget_bias, U_init, W_init, dtype)


def layer_norm_gru(hidden_size: int, *, U_init: Callable = initializers.glorot_uniform,
                   W_init: Callable = initializers.orthogonal(), init: str | None = None,
                   dtype: Any = jnp.float32) -> LayerNormGRUCell:
    """The layer-normalised GRU of Ba, Kiros & Hinton (2016, arXiv 1607.06450), gates ``r, z, n``::

        [a_r; a_z] = LN(U_rz x_t; g, β) + LN(W_rz s_{t-1}; g, β)      (each LN over the 2H gate units together)
        r = σ(a_r),   z = σ(a_z)
        n = tanh(LN(U_n x_t; g, β) + r ⊙ LN(W_n s_{t-1}; g, β))       (each LN over the H candidate units)
        s_t = (1 - z) ⊙ n + z ⊙ s_{t-1}                                y_t = s_t

    The reset gate multiplies the normalised recurrent candidate, PyTorch's reset-after form (:func:`jrnn.gru`);
    the gates and the candidate are normalised separately, as in the authors' code (ryankiros/layer-norm). Gains
    and biases of the four normalisations are packed in ``g_U, b_U`` and ``g_W, b_W`` ``[3H]`` in gate order.

    Args:
      hidden_size: H, the size of ``s_t``.
      U_init: initializer (``jrnn.init``) of ``U``, applied per gate block.
      W_init: initializer of ``W``, applied per gate block.
      init: None (jrnn's defaults); none of PyTorch, Flax or Keras has a layer-normalised GRU, so ``"pytorch"``,
        ``"flax"`` and ``"keras"`` are a ValueError.
      dtype: dtype of the parameters and the default state. Gains start at 1, biases at 0.

    Returns:
      A :class:`LayerNormGRUCell`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.layer_norm_gru(4)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> s, y = cell.step(params, cell.initial_state((2,)), jnp.ones((2, 3)))
      >>> y.shape
      (2, 4)
    """
    presets.preset("jrnn.layer_norm_gru", init)
    hidden_size = checks.positive_int("hidden_size", hidden_size, "jrnn.layer_norm_gru")
    checks.initializers("jrnn.layer_norm_gru", U_init=U_init, W_init=W_init)
    return LayerNormGRUCell(hidden_size, U_init, W_init, dtype)
