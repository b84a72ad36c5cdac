"""The sLSTM cell of xLSTM (Beck et al. 2024, arXiv 2405.04517, section 2.2): a scalar memory with exponential
gating, a normaliser and a stabiliser, mixed across units only within a head (block-diagonal recurrent matrices).

The numerics are those of the official ``xlstm`` package's vanilla sLSTM (``slstm_forward_pointwise``), gate order
``i, f, z, o``, the forget gate a sigmoid in log space.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src import checks, presets
from jrnn._src.cells import gates


class SLSTMParams(NamedTuple):
    """Parameters of :func:`slstm` (``F`` inputs, ``H = NH · d`` units in ``NH`` heads of ``d``).

    Attributes:
      U: ``[4H, F]`` input-to-hidden, gate blocks ``i, f, z, o`` in this order along axis 0.
      W: ``[4, NH, d, d]`` hidden-to-hidden, block-diagonal: ``W[g, j]`` (``[out, in]``) maps head ``j`` of
        ``h_{t-1}`` to head ``j`` of gate ``g`` (the official ``recurrent_kernel [NH, d, 4, d]``, as
        ``W[g, j] = R[j, :, g, :]ᵀ``).
      b: ``[4H]``, gate blocks ``i, f, z, o``.
    """

    U: jax.Array
    W: jax.Array
    b: jax.Array


class SLSTMState(NamedTuple):
    """The sLSTM's state, each ``[..., H]`` (the official ``(y, c, n, m)``).

    Attributes:
      h: the output ``h_t``, which the recurrent matrices read.
      c: the memory, ``e^{-m}`` times the paper's.
      n: the normaliser, ``e^{-m}`` times the paper's.
      m: the stabiliser.
    """

    h: jax.Array
    c: jax.Array
    n: jax.Array
    m: jax.Array


@dataclasses.dataclass(frozen=True)
class SLSTMCell:
    """An sLSTM cell; build it with :func:`slstm`. Its state is an :class:`SLSTMState`."""

    hidden_size: int
    num_heads: int = 4
    dtype: Any = jnp.float32

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def init(self, key: jax.Array, input_size: int) -> SLSTMParams:
        """The official sLSTM's initialisation (``bias_init="powerlaw_blockdependent"``,
        ``recurrent_weight_init="zeros"``, one block): ``W = 0``; ``b_f[j, k] = 5 - 12 (k / (d - 1))^0.3`` in each
        head ``j`` (from 5 down to -7; 5 when ``d = 1``), the other biases 0; ``U`` from N(0, 2 / (5F)), the small
        init of the official layer's input projections."""
        F = checks.positive_int("input_size", input_size, "jrnn.slstm.init")
        H, NH, dtype = self.hidden_size, self.num_heads, self.dtype
        d = H // NH
        ramp = jnp.arange(d, dtype=dtype) / max(d - 1, 1)
        b_f = jnp.tile(5.0 - 12.0 * ramp ** 0.3, NH)
        b = jnp.zeros((4 * H,), dtype).at[H:2 * H].set(b_f)
        U = math.sqrt(2 / (5 * F)) * jax.random.normal(key, (4 * H, F), dtype)
        return SLSTMParams(U, jnp.zeros((4, NH, d, d), dtype), b)

    def initial_state(self, batch_shape=(), dtype=None) -> SLSTMState:
        zero = gates.zeros_state(batch_shape, self.hidden_size, dtype or self.dtype)
        return SLSTMState(zero, zero, zero, zero)

    def step(self, params: SLSTMParams, state: SLSTMState, x: jax.Array) -> tuple[SLSTMState, jax.Array]:
        G, NH, d, _ = params.W.shape
        h_heads = state.h.reshape(*state.h.shape[:-1], NH, d)
        recurrent = jnp.einsum("...ji,gjoi->...gjo", h_heads, params.W).reshape(*state.h.shape[:-1], G * NH * d)
        i, f, z, o = jnp.split(gates.affine(x, params.U, params.b) + recurrent, 4, axis=-1)
        log_f_m = jax.nn.log_sigmoid(f) + state.m
        empty = state.n == 0  # nothing remembered (the zero state): the official first step, m = ĩ
        m = jnp.where(empty, i, jnp.maximum(i, log_f_m))
        f_gate = jnp.exp(jnp.where(empty, -jnp.inf, log_f_m - m))
        i_gate = jnp.exp(i - m)
        c = f_gate * state.c + i_gate * jnp.tanh(z)
        n = f_gate * state.n + i_gate
        h = jax.nn.sigmoid(o) * c / n
        return SLSTMState(h, c, n, m), h

    def input_size(self, params: SLSTMParams) -> int:
        return params.U.shape[-1]


def slstm(hidden_size: int, *, num_heads: int = 4, init: str | None = None, dtype: Any = jnp.float32) -> SLSTMCell:
    """The sLSTM cell of xLSTM (Beck et al. 2024, "xLSTM: extended long short-term memory", arXiv 2405.04517,
    section 2.2, equations 8-17), as the official ``xlstm`` package's vanilla sLSTM computes it. In the seed's
    notation, ``s_t = (h_t, c_t, n_t, m_t)``, gates ``i, f, z, o``::

        [ĩ; f̃; z̃; õ] = U x_t + W h_{t-1} + b                 (packed in this order; W block-diagonal per head)
        m_t = max(log σ(f̃) + m_{t-1}, ĩ)                     (m_t = ĩ where n_{t-1} = 0: nothing is remembered)
        i' = exp(ĩ - m_t),  f' = exp(log σ(f̃) + m_{t-1} - m_t)
        c_t = f' ⊙ c_{t-1} + i' ⊙ tanh(z̃)
        n_t = f' ⊙ n_{t-1} + i'
        h_t = σ(õ) ⊙ c_t / n_t,   y_t = h_t

    The input gate is exponential, ``exp(ĩ)``, and the stabiliser ``m`` keeps it finite: ``(c, n)`` are the paper's
    memory and normaliser times ``e^{-m}``, which ``h_t`` does not see. ``W`` mixes units only within each of the
    ``NH`` heads of ``d = H / NH`` units (one ``[d, d]`` block per gate and head), as the paper's "memory mixing".
    Where ``n_{t-1} = 0`` (the zero state) the official code starts the stabiliser at ``ĩ``, so that ``i' = 1``
    and ``n_t`` cannot underflow to 0; elsewhere the two forms differ only in how ``(c, n)`` are scaled. In the
    official sLSTM layer a causal convolution feeds the input and forget gates and a group norm follows; this is
    the cell alone.

    Initialisation: see :meth:`SLSTMCell.init` (the official ``powerlaw_blockdependent`` forget-gate biases, zero
    recurrent matrices).

    Args:
      hidden_size: H, the size of ``h_t``, ``c_t`` and each gate.
      num_heads: NH, the number of heads; it must divide ``hidden_size``.
      init: None (jrnn's defaults); the sLSTM is in none of PyTorch (transformers' xLSTM is mLSTM only), Flax or
        Keras, so ``"pytorch"``, ``"flax"`` and ``"keras"`` are a ValueError.
      dtype: dtype of the parameters and the default state.

    Returns:
      An :class:`SLSTMCell` with parameters :class:`SLSTMParams` and state :class:`SLSTMState`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.slstm(8, num_heads=2)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> ys, state = jrnn.scan(cell, params, jax.random.normal(jax.random.key(1), (2, 5, 3)))
      >>> ys.shape, params.W.shape, bool(jnp.all(state.n > 0))
      ((2, 5, 8), (4, 2, 4, 4), True)
    """
    presets.preset("jrnn.slstm", init)
    where = "jrnn.slstm"
    hidden_size = checks.positive_int("hidden_size", hidden_size, where)
    num_heads = checks.positive_int("num_heads", num_heads, where)
    if hidden_size % num_heads:
        raise ValueError(f"{where}: expected num_heads to divide hidden_size ({hidden_size}), got {num_heads}")
    return SLSTMCell(hidden_size, num_heads, dtype)
