"""What the NNX and the Linen modules share: checking loaded parameters, and whether a layer draws dropout keys.

Kept apart so that neither API copies the other's helpers; nothing here imports Flax.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src import checks
from jrnn._src.bidirectional import Bidirectional
from jrnn._src.contract import SequenceLayer
from jrnn._src.deep import Deep
from jrnn._src.scan import RNN
from jrnn._src.tbptt import TruncatedBPTT


def sequence_layer(layer: Any, where: str) -> SequenceLayer:
    """``layer`` if it is a jrnn sequence layer (:class:`jrnn.RNN`, ``Bidirectional``, ``Deep``), or raises."""
    if not isinstance(layer, SequenceLayer):
        raise TypeError(f"{where}: expected a jrnn sequence layer (jrnn.RNN, jrnn.bidirectional(...), "
                        f"jrnn.deep(...)), got {layer!r}")
    return layer


def uses_dropout(layer: Any) -> bool:
    """Whether ``layer.apply`` uses its ``key``: a layer with a nonzero ``dropout`` rate (:class:`jrnn.Deep`) or
    an active :func:`jrnn.recurrent_dropout` (:class:`jrnn.RNN`, :class:`jrnn.Bidirectional`), or a stack or a
    wrapper (:func:`jrnn.truncated_bptt`) of such layers."""
    if isinstance(layer, (RNN, Bidirectional)):
        return layer.dropout is not None and layer.dropout.active
    if isinstance(layer, Deep):
        return bool(layer.dropout) or any(uses_dropout(sub) for sub in layer.layers)
    if isinstance(layer, TruncatedBPTT):
        return uses_dropout(layer.layer)
    return False  # a layer of your own: its apply gets a key only if it is one of these


def template(layer: SequenceLayer, input_size: int) -> Any:
    """The ``jax.ShapeDtypeStruct`` pytree of ``layer.init(key, input_size)``, computed without any FLOPs."""
    try:
        return _cached_template(layer, input_size)
    except TypeError:  # an unhashable user layer: no cache
        return _template(layer, input_size)


def _template(layer: SequenceLayer, input_size: int) -> Any:
    return jax.eval_shape(lambda key: layer.init(key, input_size), jax.random.key(0))


_cached_template = functools.lru_cache(maxsize=128)(_template)


def check_params(params: Any, layer: SequenceLayer, input_size: int, where: str) -> Any:
    """Checks that ``params`` has the pytree structure (NamedTuple types included) and leaf shapes that
    ``layer.init(key, input_size)`` returns; returns them with every leaf a ``jax.Array``.

    Raises:
      ValueError: naming the expected structure (shapes) and the one received.
    """
    expected = template(layer, input_size)
    exp_leaves, exp_def = jax.tree_util.tree_flatten(expected)
    try:
        leaves = exp_def.flatten_up_to(params)
    except (ValueError, TypeError):
        leaves = None
    if leaves is None or any(jnp.shape(a) != e.shape for a, e in zip(leaves, exp_leaves)):
        raise ValueError(f"{where}: expected params for {type(layer).__name__} with input_size {input_size}, "
                         f"structured as {describe(expected)}, got {describe(params)}")
    return jax.tree_util.tree_unflatten(exp_def, [jnp.asarray(leaf) for leaf in leaves])


def describe(tree: Any) -> str:
    """A pytree with every array replaced by its shape (NamedTuple field names kept)."""
    def shape(leaf):
        return tuple(leaf.shape) if hasattr(leaf, "shape") else type(leaf).__name__

    return str(jax.tree_util.tree_map(shape, tree))


def input_size(value: Any, where: str) -> int:
    return checks.positive_int("input_size", value, where)
