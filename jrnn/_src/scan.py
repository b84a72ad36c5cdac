"""The recurrence over time: ``jrnn.scan``, the length-aware reversal, and the one-directional layer ``RNN``."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src import checks
from jrnn._src.types import Cell


def valid_mask(lengths: jax.Array | None, batch: int, time: int) -> jax.Array | None:
    """``mask[b, t] = t < lengths[b]`` as a ``[B, T]`` bool array (None when every step is valid)."""
    if lengths is None:
        return None
    return jnp.arange(time)[None, :] < lengths[:, None]


def reverse_sequences(xs: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
    """Reverses each sequence of ``xs[B, T, ...]`` within its own valid prefix; padding stays where it is.

    ``out[b, t] = xs[b, lengths[b] - 1 - t]`` for ``t < lengths[b]`` and ``xs[b, t]`` otherwise (Flax's
    ``flip_sequences``). Lengths above T count as T. Without ``lengths`` this is ``jnp.flip(xs, axis=1)``.
    The map is its own inverse.
    """
    if lengths is None:
        return jnp.flip(xs, axis=1)
    time = xs.shape[1]
    t = jnp.arange(time)[None, :]
    n = jnp.minimum(lengths, time)[:, None]
    index = jnp.where(t < n, n - 1 - t, t)
    index = index.reshape(index.shape + (1,) * (xs.ndim - 2))
    return jnp.take_along_axis(xs, index, axis=1)


def carry_dtype(xs: jax.Array, params: Any) -> Any:
    """The dtype the recurrence's state is carried in: that of ``xs`` promoted with every parameter's."""
    return jnp.result_type(xs.dtype, *(leaf.dtype for leaf in jax.tree_util.tree_leaves(params)))


def _keep_where(mask: jax.Array, new: Any, old: Any) -> Any:
    """``new`` where ``mask[b]``, else ``old``, for every leaf with leading batch axis."""
    def pick(n, o):
        return jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - 1)), n, o)

    return jax.tree_util.tree_map(pick, new, old)


def scan(cell: Cell, params: Any, xs: jax.Array, *, lengths: jax.Array | None = None,
         initial_state: Any = None, reverse: bool = False, unroll: int | bool = 1) -> tuple[jax.Array, Any]:
    """Runs ``cell`` over the batch-major sequence ``xs``: ``(c -> x -> (c, y)) -> c -> [B, T, F] -> ([B, T, O], c)``.

    Without ``lengths`` and with ``reverse=False`` it is exactly this Python loop::

        state = initial_state or cell.initial_state((B,))
        ys = []
        for t in range(T):
            state, y = cell.step(params, state, xs[:, t])
            ys.append(y)
        return jnp.stack(ys, axis=1), state

    With ``lengths``, sequence ``b`` is only ``xs[b, :lengths[b]]``: its state stops changing after step
    ``lengths[b] - 1``, its outputs at padded steps are 0, and the returned final state is its own last state.
    With ``reverse=True`` each sequence runs from its own last valid element back to step 0 (the seed's
    ``A'_t``), and ``ys`` comes back in the original time order. Lengths above T count as T, below 0 as 0
    (values are not checked: they may be traced). Padded inputs are replaced by zeros before the cell sees them.
    The state is carried in the dtype that ``xs`` and ``params`` promote to (an ``initial_state`` is cast to it).

    Args:
      cell: any :class:`jrnn.Cell`.
      params: the cell's parameters.
      xs: ``[B, T, F]`` inputs, F the cell's input size.
      lengths: optional ``[B]`` integer valid lengths.
      initial_state: optional state with batch shape ``[B]``; zeros by default.
      reverse: run each sequence backwards in time.
      unroll: passed to ``jax.lax.scan``.

    Returns:
      ``(ys[B, T, output_size], final_state)``.
    """
    where = f"jrnn.scan({type(cell).__name__})"
    batch, time = checks.sequence(xs, cell.input_size(params), where)
    lengths = checks.lengths(lengths, batch, where)
    expected = cell.initial_state((batch,), carry_dtype(xs, params))
    state = expected if initial_state is None else checks.state_like(initial_state, expected, where)

    if reverse:
        xs = reverse_sequences(xs, lengths)
    mask = valid_mask(lengths, batch, time)
    if mask is not None:  # padded inputs never reach the cell, so not even a NaN there touches a gradient
        xs = jnp.where(mask[:, :, None], xs, jnp.zeros_like(xs))

    def body(state, inputs):
        x, valid = inputs
        new_state, y = cell.step(params, state, x)
        if valid is not None:
            new_state = _keep_where(valid, new_state, state)
            y = jnp.where(valid[:, None], y, jnp.zeros_like(y))
        return new_state, y

    time_major = (jnp.swapaxes(xs, 0, 1), None if mask is None else mask.T)
    final_state, ys = jax.lax.scan(body, state, time_major, unroll=unroll)
    ys = jnp.swapaxes(ys, 0, 1)
    if reverse:
        ys = reverse_sequences(ys, lengths)
    return ys, final_state


@dataclasses.dataclass(frozen=True)
class RNN:
    """A one-directional sequence layer: ``apply`` is :func:`jrnn.scan` of ``cell``.

    Attributes:
      cell: the :class:`jrnn.Cell`.
      reverse: run each sequence backwards (length-aware).
      unroll: passed to ``jax.lax.scan``.
    """

    cell: Cell
    reverse: bool = False
    unroll: int | bool = 1

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    def init(self, key: jax.Array, input_size: int) -> Any:
        return self.cell.init(key, input_size)

    def initial_state(self, batch_shape=(), dtype=None) -> Any:
        return self.cell.initial_state(batch_shape, dtype)

    def apply(self, params: Any, xs: jax.Array, *, lengths: jax.Array | None = None, initial_state: Any = None,
              key: jax.Array | None = None) -> tuple[jax.Array, Any]:
        """``(ys[B, T, output_size], final_state)``; ``key`` is unused (no randomness)."""
        del key
        return scan(self.cell, params, xs, lengths=lengths, initial_state=initial_state, reverse=self.reverse,
                    unroll=self.unroll)
