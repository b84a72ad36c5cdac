"""Sequence helpers shared by every recurrence: the valid-step mask, the length-aware reversal, the carry dtype."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


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


def batch_like(tree: Any, like: jax.Array, axis: int | None = 0) -> Any:
    """``tree`` unchanged in value, typed like the batch of ``like``: each leaf (batch on ``axis``) plus zeros made
    from ``like`` (batch on ``axis`` too; ``axis=None``: a scalar zero, for leaves without a batch axis).

    What jrnn creates must have the type of what the recurrence computes from the inputs: inside ``jax.shard_map``
    a loop carry (the zero initial state, an output buffer) must vary over the same mesh axes as ``xs``, and so must
    the parameters entering the fused solver's custom VJP, whose gradients vary with the data (the sum over devices
    is then JAX's own transpose of that broadcast); under ``jit`` with a batch-sharded ``xs`` the state should be
    sharded along the batch as ``xs`` is, or the whole recurrence comes back replicated. ``jnp.zeros_like`` of the
    inputs carries both, so adding it does the same. XLA removes the addition of zeros: it costs nothing.
    """
    if like.size == 0:  # an empty sequence: no step runs, so there is no carry to match
        return tree
    if axis is None:
        zero = jax.lax.full_like(like, 0, shape=())
        return jax.tree_util.tree_map(lambda leaf: leaf + zero.astype(leaf.dtype), tree)
    zero = jnp.zeros_like(like[tuple(slice(None) if i == axis else 0 for i in range(like.ndim))])  # [B]

    def add(leaf):
        shape = tuple(zero.shape[0] if i == axis else 1 for i in range(leaf.ndim))
        return leaf + zero.reshape(shape).astype(leaf.dtype)

    return jax.tree_util.tree_map(add, tree)


def per_step(mask: jax.Array, x: jax.Array) -> jax.Array:
    """``mask`` ``[B, T]`` (or ``[B]``) with trailing unit axes to broadcast against ``x`` ``[B, T, ...]``."""
    return mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))


def keep_where(mask: jax.Array, new: Any, old: Any) -> Any:
    """``new`` where ``mask[b]``, else ``old``, for every leaf with leading batch axis."""
    def pick(n, o):
        return jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - 1)), n, o)

    return jax.tree_util.tree_map(pick, new, old)
