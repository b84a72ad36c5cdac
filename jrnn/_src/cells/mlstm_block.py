"""xLSTM-7B's block (transformers' ``xLSTMBlock``): the mLSTM layer (:mod:`jrnn._src.cells.mlstm`) and a gated
feed-forward, each after an RMSNorm, each in a residual; one :class:`jrnn.Chunkwise` cell."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src import checks, presets
from jrnn._src.cells import gates
from jrnn._src.cells.mlstm import MLSTMCell, MLSTMParams, MLSTMState, _layer
from jrnn._src.contract import Chunkwise
from jrnn._src.residual import rms_norm


class MLSTMBlockParams(NamedTuple):
    """Parameters of :func:`mlstm_block`, named as transformers' ``xLSTMBlock`` (``weight_mode="single"``; ``D`` the
    model width, ``P`` the feed-forward's); weights ``[out, in]``.

    Attributes:
      norm_mlstm_weight: ``[D]``, the scale of the RMSNorm before the layer; ``norm_mlstm_bias`` ``[D]`` or None.
      mlstm_layer: the layer's :class:`MLSTMParams`.
      norm_ffn_weight: ``[D]``, the scale of the RMSNorm before the feed-forward; ``norm_ffn_bias`` ``[D]`` or None.
      proj_up_gate_weight, proj_up_weight: ``[P, D]``, the feed-forward's gate and value; biases ``[P]`` or None.
      proj_down_weight: ``[D, P]``; ``proj_down_bias`` ``[D]`` or None.
    """

    norm_mlstm_weight: jax.Array
    norm_mlstm_bias: jax.Array | None
    mlstm_layer: MLSTMParams
    norm_ffn_weight: jax.Array
    norm_ffn_bias: jax.Array | None
    proj_up_gate_weight: jax.Array
    proj_up_gate_bias: jax.Array | None
    proj_up_weight: jax.Array
    proj_up_bias: jax.Array | None
    proj_down_weight: jax.Array
    proj_down_bias: jax.Array | None


def _rms_norm(x: jax.Array, weight: jax.Array, bias: jax.Array | None, eps: float) -> jax.Array:
    """:func:`jrnn._src.residual.rms_norm` with xLSTM's optional bias."""
    y = rms_norm(x, weight, eps)
    return y if bias is None else y + jnp.broadcast_to(bias, x.shape)


@dataclasses.dataclass(frozen=True)
class MLSTMBlockCell(Chunkwise):
    """xLSTM-7B's block as one cell; build it with :func:`mlstm_block`. ``layer`` is its :class:`MLSTMCell`; the
    state is the layer's :class:`MLSTMState`; input and output have the model width ``hidden_size``. A
    :class:`jrnn.Chunkwise` cell (its layer's :meth:`MLSTMCell.chunk` between the pointwise parts), which
    :func:`jrnn.auto` runs with ``jrnn.chunked(chunk_size)``."""

    layer: MLSTMCell
    ffn_size: int

    @property
    def hidden_size(self) -> int:
        return self.layer.hidden_size

    @property
    def output_size(self) -> int:
        return self.layer.hidden_size

    @property
    def chunk_size(self) -> int:  # type: ignore[override]
        """The layer's (:attr:`MLSTMCell.chunk_size`)."""
        return self.layer.chunk_size

    def init(self, key: jax.Array, input_size: int) -> MLSTMBlockParams:
        """The layer as :meth:`MLSTMCell.init`; the feed-forward as transformers' ``_init_weights``:
        ``proj_up_gate`` zero (its name holds "gate"), ``proj_up`` from N(0, 2 / (5D)), ``proj_down`` from
        N(0, (2 / num_layers / √P)²); the norms' scales 1; every bias 0."""
        D = checks.positive_int("input_size", input_size, "jrnn.mlstm_block.init")
        if D != self.hidden_size:
            raise ValueError(f"jrnn.mlstm_block.init: expected input_size equal to hidden_size {self.hidden_size} "
                             f"(the block is residual), got {D}")
        P, dtype, layer = self.ffn_size, self.layer.dtype, self.layer
        k_layer, k_up, k_down = jax.random.split(key, 3)
        zeros = (lambda n: jnp.zeros((n,), dtype)) if layer.bias else (lambda n: None)
        params = MLSTMBlockParams(
            jnp.ones((D,), dtype), zeros(D), layer.init(k_layer, D), jnp.ones((D,), dtype), zeros(D),
            jnp.zeros((P, D), dtype), zeros(P),
            math.sqrt(2 / (5 * D)) * jax.random.normal(k_up, (P, D), dtype), zeros(P),
            2 / layer.num_layers / math.sqrt(P) * jax.random.normal(k_down, (D, P), dtype), zeros(D))
        return presets.finish(layer.preset, params, key, keep=("mlstm_layer",))  # the layer's is its own

    def initial_state(self, batch_shape=(), dtype=None) -> MLSTMState:
        return self.layer.initial_state(batch_shape, dtype)

    def step(self, params: MLSTMBlockParams, state: MLSTMState, x: jax.Array) -> tuple[MLSTMState, jax.Array]:
        p = params
        state, y = self.layer.step(p.mlstm_layer, state, _rms_norm(x, p.norm_mlstm_weight, p.norm_mlstm_bias,
                                                                   self.layer.norm_eps))
        return state, self._feed_forward(p, x + y)

    def chunk(self, params: MLSTMBlockParams, state: MLSTMState, xs: jax.Array, valid: jax.Array | None,
              resets: jax.Array | None, restart: MLSTMState) -> tuple[MLSTMState, jax.Array]:
        """``C`` steps at once (:class:`jrnn.Chunkwise`): the RMSNorm of ``xs [B, C, D]``, the layer's
        :meth:`MLSTMCell.chunk`, then the residual and the feed-forward, pointwise in time."""
        p = params
        normed = _rms_norm(xs, p.norm_mlstm_weight, p.norm_mlstm_bias, self.layer.norm_eps)
        state, ys = self.layer.chunk(p.mlstm_layer, state, normed, valid, resets, restart)
        return state, self._feed_forward(p, xs + ys)

    def _feed_forward(self, params: MLSTMBlockParams, x: jax.Array) -> jax.Array:
        """``x + V_down (silu(U_gate r) ⊙ U_up r)``, ``r = RMSNorm'(x)``: the block's second half on ``x [..., D]``."""
        p = params
        u = _rms_norm(x, p.norm_ffn_weight, p.norm_ffn_bias, self.layer.norm_eps)
        gate = jax.nn.silu(gates.affine(u, p.proj_up_gate_weight, p.proj_up_gate_bias))
        return x + gates.affine(gate * gates.affine(u, p.proj_up_weight, p.proj_up_bias), p.proj_down_weight,
                                p.proj_down_bias)

    def input_size(self, params: MLSTMBlockParams) -> int:
        return params.norm_mlstm_weight.shape[-1]


def mlstm_block(hidden_size: int, *, num_heads: int = 4, qk_dim_factor: float = 0.5, v_dim_factor: float = 1.0,
                ffn_proj_factor: float = 2.667, ffn_round_up_to_multiple_of: int = 64, bias: bool = False,
                gate_soft_cap: float | None = 15.0, eps: float = 1e-6, norm_eps: float = 1e-6, num_layers: int = 1,
                init: str | None = None, dtype: Any = jnp.float32) -> MLSTMBlockCell:
    """xLSTM-7B's block (Beck et al. 2025, "xLSTM 7B", arXiv 2503.13427; transformers' ``xLSTMBlock``, which
    :func:`jrnn.from_torch` converts): the :func:`mlstm` layer and a SiLU-gated feed-forward, each after an RMSNorm
    and inside a residual::

        (s_t, u_t) = mlstm(s_{t-1}, RMSNorm(x_t))             the layer's step, state s = (C, n, m)
        x'_t = x_t + u_t
        y_t  = x'_t + V_down (silu(U_gate r_t) ⊙ U_up r_t),   r_t = RMSNorm'(x'_t)

    ``RMSNorm(x) = x / √(mean(x²) + norm_eps) ⊙ w (+ b)``. The input size is ``hidden_size`` (the residual). A
    :class:`jrnn.Chunkwise` cell: a chunk is the RMSNorm of its inputs, the layer's chunk (:meth:`MLSTMCell.chunk`),
    then the residual and the feed-forward, pointwise in time; :func:`jrnn.auto` takes
    ``jrnn.chunked(cell.chunk_size)``.

    Args:
      hidden_size: D, the model width: the size of ``x_t`` and ``y_t``.
      num_heads: the layer's number of heads, as :func:`mlstm`.
      qk_dim_factor: the layer's query and key size over ``hidden_size``, as :func:`mlstm`.
      v_dim_factor: the layer's value size over ``hidden_size``, as :func:`mlstm`.
      bias: whether the layer (as :func:`mlstm`), the two RMSNorms and the feed-forward have biases.
      gate_soft_cap: the layer's soft cap of its gates' preactivations, as :func:`mlstm`.
      eps: ``ε`` of the layer's denominator, as :func:`mlstm`.
      norm_eps: the epsilon of the layer's norm and of the two RMSNorms.
      num_layers: the number of blocks of the stack, which scales ``V``'s and ``proj_down``'s initialisation.
      ffn_proj_factor: the feed-forward's width is ``D · ffn_proj_factor`` rounded up to a multiple of
        ``ffn_round_up_to_multiple_of``.
      ffn_round_up_to_multiple_of: see ``ffn_proj_factor``.
      init: None (jrnn's defaults), or ``"pytorch"``: transformers' ``xLSTMBlock`` constructor's draw (without
        ``_init_weights``): every weight and gate bias as ``nn.Linear``'s, U(±1/√fan_in); norms 1 (docs: porting,
        "Matching a run from another library"); ``"flax"`` and ``"keras"`` are a ValueError.
      dtype: dtype of the parameters and the default state.

    Returns:
      An :class:`MLSTMBlockCell` with parameters :class:`MLSTMBlockParams` and state :class:`MLSTMState`.

    Example:
      >>> import jax, jrnn
      >>> cell = jrnn.mlstm_block(8, num_heads=2, ffn_round_up_to_multiple_of=8)
      >>> params = cell.init(jax.random.key(0), input_size=8)
      >>> ys, state = jrnn.scan(cell, params, jax.random.normal(jax.random.key(1), (3, 10, 8)))
      >>> ys.shape, params.proj_up_weight.shape, state.C.shape
      ((3, 10, 8), (24, 8), (3, 2, 2, 4))
    """
    layer = _layer("jrnn.mlstm_block", hidden_size, num_heads, qk_dim_factor, v_dim_factor, bias, gate_soft_cap, eps,
                   norm_eps, num_layers, dtype, init)
    multiple = checks.positive_int("ffn_round_up_to_multiple_of", ffn_round_up_to_multiple_of, "jrnn.mlstm_block")
    if isinstance(ffn_proj_factor, bool) or not isinstance(ffn_proj_factor, (int, float)) or ffn_proj_factor <= 0:
        raise ValueError(f"jrnn.mlstm_block: expected a positive ffn_proj_factor, got {ffn_proj_factor!r}")
    return MLSTMBlockCell(layer, int((hidden_size * ffn_proj_factor + multiple - 1) // multiple * multiple))
