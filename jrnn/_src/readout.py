"""The readout ``o_t = g(V s_t)`` of the seed note."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src import checks, initializers, presets
from jrnn._src.cells import gates


def _identity(x):
    return x


class ReadoutParams(NamedTuple):
    """``V`` ``[O, H]`` hidden-to-output and ``b`` ``[O]`` (or None)."""

    V: jax.Array
    b: jax.Array | None


@dataclasses.dataclass(frozen=True)
class Readout:
    """``o_t = g(V s_t + b)`` applied at every step; build it with :func:`readout`."""

    output_size: int
    activation: Callable[[jax.Array], jax.Array] = _identity
    bias: bool = True
    V_init: Callable = initializers.lecun_normal
    dtype: Any = jnp.float32
    b_init: Callable = initializers.zeros

    def init(self, key: jax.Array, input_size: int) -> ReadoutParams:
        input_size = checks.positive_int("input_size", input_size, "readout.init")
        V = self.V_init(key, (self.output_size, input_size), self.dtype)
        b = None
        if self.bias:
            b = initializers.draw_bias(self.b_init, jax.random.fold_in(key, 1), (self.output_size,), input_size,
                                       self.dtype)
        return ReadoutParams(V, b)

    def apply(self, params: ReadoutParams, s: jax.Array) -> jax.Array:
        """``s[..., H] -> o[..., O]``."""
        if s.shape[-1] != params.V.shape[1]:
            raise ValueError(f"jrnn.Readout: expected inputs with {params.V.shape[1]} features, got shape {s.shape}")
        return self.activation(gates.affine(s, params.V, params.b))


def readout(output_size: int, activation: Callable[[jax.Array], jax.Array] = _identity, *, bias: bool = True,
            V_init: Callable | None = None, b_init: Callable | None = None, init: str | None = None,
            dtype: Any = jnp.float32) -> Readout:
    """The seed's output layer ``o_t = g(V s_t + b)``, V hidden-to-output ``[O, H]``.

    Args:
      output_size: O, the size of ``o_t``.
      activation: the elementwise ``g``.
      bias: whether ``b`` exists.
      V_init: initializer (``jrnn.init``) of ``V``; default ``lecun_normal``.
      b_init: initializer of ``b``; default ``zeros``.
      init: None (jrnn's defaults), or ``"pytorch"`` / ``"flax"`` / ``"keras"``: that library's dense layer's
        default initialisers (``nn.Linear``: U(±1/√H) weight and bias; ``nn.Dense``; ``Dense``) (docs: porting,
        "Matching a run from another library"); an explicit ``V_init`` or ``b_init`` wins.
      dtype: dtype of the parameters.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> head = jrnn.readout(10, jax.nn.log_softmax)
      >>> params = head.init(jax.random.key(0), input_size=4)
      >>> head.apply(params, jnp.ones((2, 7, 4))).shape
      (2, 7, 10)
    """
    output_size = checks.positive_int("output_size", output_size, "jrnn.readout")
    if not callable(activation):
        raise TypeError(f"jrnn.readout: expected a callable activation, got {activation!r}")
    V_init, b_init = presets.defaults("jrnn.readout", init, V_init=V_init, b_init=b_init)
    checks.initializers("jrnn.readout", V_init=V_init, b_init=b_init)
    return Readout(output_size, activation, bias, V_init, dtype, b_init)
