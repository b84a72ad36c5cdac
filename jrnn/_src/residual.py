"""The pre-norm residual block: the unit the modern recurrent models (Mamba, Hawk, xLSTM, Gated DeltaNet) are
stacked in, ``x + layer(RMSNorm(x))``."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src import checks
from jrnn._src.compiled import jit_when_eager
from jrnn._src.contract import Wrapper, prepare
from jrnn._src.deep import as_layer
from jrnn._src.sequences import valid_mask


class PreNormParams(NamedTuple):
    """Parameters of :func:`pre_norm`: the RMSNorm's scale ``norm [D]`` and the layer's own parameters."""

    norm: jax.Array
    layer: Any


def rms_norm(x: jax.Array, scale: jax.Array, eps: float) -> jax.Array:
    """``x / √(mean(x²) + eps) ⊙ scale`` over the last axis (Zhang & Sennrich 2019)."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps) * jnp.broadcast_to(scale, x.shape)


@dataclasses.dataclass(frozen=True)
class PreNorm(Wrapper):
    """A pre-norm residual block around one layer; build it with :func:`jrnn.pre_norm`. Its state is the layer's.

    Attributes:
      layer: the cell or sequence layer inside (a cell is run by :func:`jrnn.scan` with :func:`jrnn.auto`).
      eps: the RMSNorm's epsilon.
    """

    layer: Any
    eps: float = 1e-6

    @property
    def wrapped(self) -> Any:
        return self.layer

    @property
    def hidden_size(self) -> int:
        return self.layer.hidden_size

    @property
    def output_size(self) -> int:
        return self.layer.output_size

    def input_size(self, params: PreNormParams) -> int:
        return params.norm.shape[-1]

    def input_shape(self, params: PreNormParams) -> tuple[int, ...]:
        return (params.norm.shape[-1],)

    def prepare(self, params: PreNormParams) -> PreNormParams:
        return PreNormParams(params.norm, prepare(self.layer, params.layer))

    def init(self, key: jax.Array, input_size: int) -> PreNormParams:
        """The norm's scale 1, the layer's own initialisation for inputs of ``input_size``, which must be the
        layer's output size (the residual adds them)."""
        size = checks.positive_int("input_size", input_size, "jrnn.pre_norm.init")
        if size != self.layer.output_size:
            raise ValueError(f"jrnn.pre_norm.init: the residual adds the layer's output to its input, so the input "
                             f"size must be the layer's output size {self.layer.output_size}; got input_size={size}")
        params = self.layer.init(key, size)
        dtype = jax.tree.leaves(params)[0].dtype if jax.tree.leaves(params) else jnp.float32
        return PreNormParams(jnp.ones((size,), dtype), params)

    def initial_state(self, batch_shape=(), dtype=None) -> Any:
        return self.layer.initial_state(batch_shape, dtype)

    def step(self, params: PreNormParams, state: Any, x: jax.Array) -> tuple[Any, jax.Array]:
        """``(state, x[..., D]) -> (state, x + y)`` with ``(state, y) = layer.step(state, RMSNorm(x))``."""
        state, y = self.layer.step(params.layer, state, rms_norm(x, params.norm, self.eps))
        return state, x + y

    @jit_when_eager(static_argnums=(0,))
    def apply(self, params: PreNormParams, xs: jax.Array, *, lengths: jax.Array | None = None,
              initial_state: Any = None, key: jax.Array | None = None,
              resets: jax.Array | None = None) -> tuple[jax.Array, Any]:
        """``xs[B, T, D] -> (xs + layer(RMSNorm(xs)) [B, T, D], final_state)``, zero at padded steps; ``lengths``,
        ``initial_state``, ``key`` and ``resets`` go to the layer's ``apply``."""
        options = {} if resets is None else {"resets": resets}
        ys, final = self.layer.apply(params.layer, rms_norm(xs, params.norm, self.eps), lengths=lengths,
                                     initial_state=initial_state, key=key, **options)
        ys = xs + ys
        mask = valid_mask(lengths, *xs.shape[:2])
        if mask is not None:
            ys = jnp.where(mask[..., None], ys, jnp.zeros_like(ys))
        return ys, final


def pre_norm(layer: Any, *, eps: float = 1e-6) -> PreNorm:
    """A pre-norm residual block (Xiong et al. 2020; the block of Mamba, Hawk, xLSTM and Gated DeltaNet)::

        (s_t, u_t) = layer(s_{t-1}, RMSNorm(x_t)),   RMSNorm(x) = x / √(mean(x²) + eps) ⊙ g      g [D], init 1
        y_t = x_t + u_t

    The layer's output size must equal its input size ``D``. The block keeps the cell contract: its ``step`` is
    the layer's step between the norm and the sum, so it goes wherever a cell goes (:func:`jrnn.scan`,
    :func:`jrnn.deep`, :func:`jrnn.language_model`, :func:`jrnn.generate`); its ``apply`` runs the layer's solver
    over the whole sequence (a cell with :func:`jrnn.auto`: the chunked form of :func:`jrnn.mamba2`, the fused
    kernel of :func:`jrnn.lstm`, ...). A stack of them is ``jrnn.deep([jrnn.pre_norm(...) for ...])``, and
    ``jrnn.language_model(..., norm=True)`` adds the final norm before the readout.

    Args:
      layer: a cell (run by :func:`jrnn.scan` with :func:`jrnn.auto`) or a one-directional sequence layer
        (:class:`jrnn.RNN` with a solver of your choice, :func:`jrnn.deep`) whose output size is its input size.
      eps: the RMSNorm's epsilon.

    Returns:
      A :class:`PreNorm` with parameters :class:`PreNormParams` ``(norm, layer)``; its state is the layer's.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> stack = jrnn.deep([jrnn.pre_norm(jrnn.mamba2(8, state_size=4, head_dim=4)) for _ in range(2)])
      >>> model = jrnn.language_model(stack, vocab_size=11, embed_size=8, norm=True)
      >>> params = model.init(jax.random.key(0))
      >>> logits, state = model.apply(params, jnp.zeros((2, 5), int))
      >>> _, first = model.step(params, model.initial_state((2,)), jnp.zeros((2,), int))
      >>> logits.shape, bool(jnp.allclose(first, logits[:, 0], atol=1e-5))
      ((2, 5, 11), True)
    """
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps < 0:
        raise ValueError(f"jrnn.pre_norm: expected a non-negative eps, got {eps!r}")
    try:
        layer = as_layer(layer)
    except TypeError:
        raise TypeError(f"jrnn.pre_norm: expected a jrnn cell or sequence layer, got {layer!r}") from None
    return PreNorm(layer, float(eps))
