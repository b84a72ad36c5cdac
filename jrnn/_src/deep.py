"""The deep (stacked) RNN: layer l reads the output sequence of layer l - 1."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src import checks
from jrnn._src.scan import RNN
from jrnn._src.types import Cell, SequenceLayer, prepare


@dataclasses.dataclass(frozen=True)
class Deep:
    """A stack of sequence layers; build it with :func:`jrnn.deep`. For layers ``l = 1..L``::

        h^0_t = x_t
        h^l   = layer_l(dropout(h^{l-1}))            (+ h^{l-1} with residual, for l >= 2)
        y_t   = h^L_t

    Params and states are tuples with one entry per layer.
    """

    layers: tuple
    dropout: float = 0.0
    residual: bool = False

    @property
    def output_size(self) -> int:
        return self.layers[-1].output_size

    def init(self, key: jax.Array, input_size: int) -> tuple:
        input_size = checks.positive_int("input_size", input_size, "jrnn.Deep.init")
        keys = jax.random.split(key, len(self.layers))
        params, size = [], input_size
        for layer, k in zip(self.layers, keys):
            params.append(layer.init(k, size))
            size = layer.output_size
        return tuple(params)

    def initial_state(self, batch_shape=(), dtype=None) -> tuple:
        return tuple(layer.initial_state(batch_shape, dtype) for layer in self.layers)

    def prepare(self, params: Sequence[Any]) -> tuple:
        """Every layer's per-sequence work (``cell.prepare``)."""
        return tuple(prepare(layer, p) for layer, p in zip(self.layers, params))

    def apply(self, params: Sequence[Any], xs: jax.Array, *, lengths: jax.Array | None = None,
              initial_state: Sequence[Any] | None = None, key: jax.Array | None = None) -> tuple[jax.Array, tuple]:
        """``xs[B, T, F] -> (ys[B, T, output_size], per-layer final states)``.

        Args:
          params: one entry per layer.
          xs: ``[B, T, F]`` inputs.
          lengths: optional ``[B]`` valid lengths, shared by every layer.
          initial_state: None, or one entry per layer (each None for zeros).
          key: a PRNG key turns dropout between layers on (training); None turns it off (evaluation).
        """
        n = len(self.layers)
        if not isinstance(params, (tuple, list)) or len(params) != n:
            raise ValueError(f"jrnn.Deep: expected params for {n} layers (a tuple), got {type(params).__name__}"
                             + (f" of length {len(params)}" if isinstance(params, (tuple, list)) else ""))
        if initial_state is None:
            initial_state = (None,) * n
        elif not isinstance(initial_state, (tuple, list)) or len(initial_state) != n:
            got = type(initial_state).__name__
            if isinstance(initial_state, (tuple, list)):
                got += f" of length {len(initial_state)}"
            raise ValueError(f"jrnn.Deep: expected initial_state to be None or a tuple of {n} per-layer states, "
                             f"got {got}")
        drop_keys = (None,) * n if key is None or not self.dropout else tuple(jax.random.split(key, n))
        h, finals = xs, []
        for l, (layer, p, s0, k) in enumerate(zip(self.layers, params, initial_state, drop_keys)):
            inputs = h if l == 0 or k is None else _dropout(k, self.dropout, h)
            out, final = layer.apply(p, inputs, lengths=lengths, initial_state=s0)
            h = out + h if self.residual and l > 0 else out
            finals.append(final)
        return h, tuple(finals)


def _dropout(key: jax.Array, rate: float, x: jax.Array) -> jax.Array:
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def as_layer(layer: Any) -> SequenceLayer:
    """A cell becomes a forward :class:`jrnn.RNN`; a sequence layer stays as it is."""
    if isinstance(layer, Cell):
        return RNN(layer)
    if isinstance(layer, SequenceLayer):
        return layer
    raise TypeError(f"jrnn.deep: expected each layer to be a jrnn cell or sequence layer, got {layer!r}")


def deep(layers: Sequence[Any], *, dropout: float = 0.0, residual: bool = False) -> Deep:
    """A deep RNN from a sequence of layers: cells (run forward) or sequence layers
    (:class:`jrnn.RNN`, :class:`jrnn.Bidirectional`, ...).

    Args:
      layers: one entry per layer, bottom first.
      dropout: the rate of dropout on the inputs of layers 2..L (PyTorch's ``dropout``), active only when
        ``apply`` gets a ``key``.
      residual: add each layer's input to its output from layer 2 on (Wu et al. 2016); needs equal sizes.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> net = jrnn.deep([jrnn.bidirectional(jrnn.gru(8)), jrnn.lstm(4)], dropout=0.1)
      >>> params = net.init(jax.random.key(0), input_size=3)
      >>> ys, states = net.apply(params, jnp.ones((2, 5, 3)), key=jax.random.key(1))
      >>> ys.shape, len(states)
      ((2, 5, 4), 2)
    """
    layers = tuple(as_layer(layer) for layer in layers)
    if not layers:
        raise ValueError("jrnn.deep: expected at least one layer, got none")
    if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
        raise ValueError(f"jrnn.deep: expected 0 <= dropout < 1, got {dropout!r}")
    if residual:
        for l in range(1, len(layers)):
            if layers[l].output_size != layers[l - 1].output_size:
                raise ValueError(
                    f"jrnn.deep: residual connections need layer {l + 1}'s input size "
                    f"({layers[l - 1].output_size}) to equal its output size ({layers[l].output_size})")
    return Deep(layers, float(dropout), bool(residual))
