"""Losses that respect sequence lengths: masked MSE, masked cross-entropy, and each sequence's last valid output.

Every loss here is a mean over the *valid* steps only: for ``lengths`` ``[B]`` the valid steps of sequence ``b`` are
``t < lengths[b]`` (lengths above T count as T), exactly the steps :func:`jrnn.scan` runs. Padded steps contribute
nothing to the value and receive a zero gradient, whatever the network put there.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from jrnn._src import checks
from jrnn._src.sequences import valid_mask


def _step_mask(shape: tuple, lengths: jax.Array | None, where: str) -> jax.Array | None:
    """The ``[B, T]`` validity mask for arrays of ``shape`` ``[B, T, ...]``, or None without lengths."""
    if lengths is None:
        return None
    if len(shape) < 2:
        raise ValueError(f"{where}: with lengths, expected batch-major arrays [batch, time, ...], got shape {shape}")
    lengths = checks.lengths(lengths, shape[0], where)
    return valid_mask(lengths, shape[0], shape[1])


def _masked_mean(per_step: jax.Array, mask: jax.Array, features: int) -> jax.Array:
    """``sum(per_step * mask) / (count(mask) * features)``; 0 when no step is valid."""
    total = jnp.sum(jnp.where(mask, per_step, jnp.zeros_like(per_step)))
    count = jnp.sum(mask) * features
    return total / jnp.maximum(count, 1).astype(per_step.dtype)


def masked_mse(predictions: jax.Array, targets: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
    """The mean squared error over the valid steps::

        L = sum_{b, t < lengths[b], i} (p[b, t, i] - y[b, t, i])^2  /  (sum_b min(lengths[b], T) * F)

    with F the number of features per step. Without ``lengths`` it is ``mean((p - y)^2)`` over every element,
    for arrays of any shape (for instance the ``[B, O]`` outputs of :func:`last_valid`). A batch with no valid
    step gives 0.

    Args:
      predictions: ``[B, T, ...]`` network outputs.
      targets: targets of the same shape.
      lengths: optional ``[B]`` integer valid lengths.

    Returns:
      A scalar.

    Example:
      >>> import jax.numpy as jnp, jrnn
      >>> p = jnp.array([[[1.0], [2.0], [9.0]]]); y = jnp.zeros((1, 3, 1))
      >>> float(jrnn.masked_mse(p, y, jnp.array([2])))  # (1 + 4) / 2; the padded 9 is ignored
      2.5
    """
    where = "jrnn.masked_mse"
    p, y = jnp.asarray(predictions), jnp.asarray(targets)
    if p.shape != y.shape:
        raise ValueError(f"{where}: expected predictions and targets of the same shape, got {p.shape} and {y.shape}")
    mask = _step_mask(p.shape, lengths, where)
    sq = jnp.square(p - y)
    if mask is None:
        return jnp.mean(sq)
    per_step = jnp.sum(sq.reshape(sq.shape[:2] + (-1,)), axis=-1)
    return _masked_mean(per_step, mask, math.prod(sq.shape[2:]))


def masked_cross_entropy(logits: jax.Array, labels: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
    """The softmax cross-entropy averaged over the valid steps::

        L = -(1 / N) sum_{b, t < lengths[b]} log softmax(logits[b, t])[labels[b, t]]       N = sum_b min(lengths[b], T)

    ``labels`` are either integer class indices of shape ``logits.shape[:-1]``, or probability vectors of the
    same shape as ``logits`` (one-hot or soft targets: ``-sum_c labels_c log softmax(logits)_c``). Without
    ``lengths`` it is the mean over every position, for arrays of any shape (e.g. ``[B, C]`` logits of the last
    valid step). A batch with no valid step gives 0.

    Args:
      logits: ``[B, T, C]`` unnormalised scores.
      labels: ``[B, T]`` integer classes, or ``[B, T, C]`` probabilities.
      lengths: optional ``[B]`` integer valid lengths.

    Returns:
      A scalar.

    Example:
      >>> import jax.numpy as jnp, jrnn
      >>> logits = jnp.zeros((1, 3, 4)); labels = jnp.array([[0, 1, 2]])
      >>> round(float(jrnn.masked_cross_entropy(logits, labels, jnp.array([2]))), 4)  # ln 4
      1.3863
    """
    where = "jrnn.masked_cross_entropy"
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    if logits.ndim < 1:
        raise ValueError(f"{where}: expected logits with a class axis [..., C], got shape {logits.shape}")
    if labels.shape == logits.shape:
        per_position = optax.softmax_cross_entropy(logits, labels)
    elif labels.shape == logits.shape[:-1]:
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            raise TypeError(f"{where}: expected integer class labels of shape {logits.shape[:-1]}, "
                            f"got dtype {labels.dtype}")
        per_position = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    else:
        raise ValueError(f"{where}: expected labels of shape {logits.shape[:-1]} (classes) or {logits.shape} "
                         f"(probabilities) for logits of shape {logits.shape}, got shape {labels.shape}")
    mask = _step_mask(per_position.shape, lengths, where)
    if mask is None:
        return jnp.mean(per_position)
    per_step = jnp.sum(per_position.reshape(per_position.shape[:2] + (-1,)), axis=-1)
    return _masked_mean(per_step, mask, math.prod(per_position.shape[2:]))


def last_valid(ys: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
    """Each sequence's output at its own last valid step: ``out[b] = ys[b, lengths[b] - 1]``.

    The many-to-one readout (classify or regress from the end of each sequence). Without ``lengths`` it is
    ``ys[:, -1]``. Lengths above T count as T; a sequence of length 0 gives zeros.

    Args:
      ys: ``[B, T, ...]`` outputs.
      lengths: optional ``[B]`` integer valid lengths.

    Returns:
      ``[B, ...]``.

    Example:
      >>> import jax.numpy as jnp, jrnn
      >>> ys = jnp.arange(6.0).reshape(2, 3, 1)
      >>> jrnn.last_valid(ys, jnp.array([3, 1]))[:, 0].tolist()
      [2.0, 3.0]
    """
    where = "jrnn.last_valid"
    ys = jnp.asarray(ys)
    if ys.ndim < 2:
        raise ValueError(f"{where}: expected batch-major outputs [batch, time, ...], got shape {ys.shape}")
    if lengths is None:
        return ys[:, -1]
    batch, time = ys.shape[:2]
    lengths = checks.lengths(lengths, batch, where)
    index = jnp.clip(lengths - 1, 0, time - 1)
    out = jnp.take_along_axis(ys, index.reshape((batch, 1) + (1,) * (ys.ndim - 2)), axis=1)[:, 0]
    keep = (lengths > 0).reshape((batch,) + (1,) * (ys.ndim - 2))
    return jnp.where(keep, out, jnp.zeros_like(out))
