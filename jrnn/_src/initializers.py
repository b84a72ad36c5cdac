"""Weight initializers, each ``init(key, shape, dtype) -> Array`` like ``jax.nn.initializers``.

jrnn calls them once per gate block: an LSTM's ``U`` of shape ``[4H, I]`` is four ``[H, I]`` blocks, each drawn
separately, so that ``orthogonal`` and ``identity`` give every gate its own orthogonal (or identity) matrix.

Remedies for vanishing and exploding gradients (Pascanu et al. 2013) that live here: an orthogonal recurrent
matrix keeps every singular value of ``W`` at 1 (Saxe et al. 2014); the scaled identity with ReLU is the IRNN of
Le, Jaitly & Hinton 2015.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Initializer = Callable[[jax.Array, tuple, Any], jax.Array]


def _fans(shape) -> tuple[int, int]:
    if len(shape) == 1:
        return shape[0], shape[0]
    return shape[-1], shape[-2]  # [out, in] layout, as ``U`` and ``W`` are stored


def zeros(key, shape, dtype=jnp.float32):
    """All zeros."""
    del key
    return jnp.zeros(shape, dtype)


def constant(value: float) -> Initializer:
    """Every entry equal to ``value``."""

    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.full(shape, value, dtype)

    return init


def uniform(bound: float) -> Initializer:
    """U(-bound, bound)."""
    if not bound > 0:
        raise ValueError(f"uniform: expected a positive bound, got {bound!r}")

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def normal(stddev: float) -> Initializer:
    """N(0, stddev²); Le et al. 2015 draw the IRNN's input weights from N(0, 0.001²)."""
    if not stddev > 0:
        raise ValueError(f"normal: expected a positive stddev, got {stddev!r}")

    def init(key, shape, dtype=jnp.float32):
        return stddev * jax.random.normal(key, shape, dtype)

    return init


def pytorch_uniform(hidden_size: int) -> Initializer:
    """PyTorch's default for every RNN weight and bias: U(-1/√H, 1/√H), H the hidden size."""
    if not (isinstance(hidden_size, int) and hidden_size > 0):
        raise ValueError(f"pytorch_uniform: expected a positive int hidden_size, got {hidden_size!r}")
    return uniform(1.0 / math.sqrt(hidden_size))


def glorot_uniform(key, shape, dtype=jnp.float32):
    """Glorot & Bengio 2010: U(-a, a) with a = √(6 / (fan_in + fan_out)); Keras' default input kernel."""
    fan_in, fan_out = _fans(shape)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def lecun_normal(key, shape, dtype=jnp.float32):
    """LeCun 1998: truncated N(0, 1/fan_in) for a ``[out, in]`` matrix; Flax's default kernel."""
    return jax.nn.initializers.lecun_normal(in_axis=-1, out_axis=-2)(key, shape, dtype)


def orthogonal(scale: float = 1.0) -> Initializer:
    """A (semi-)orthogonal matrix times ``scale``: every singular value equals ``scale`` (Saxe et al. 2014)."""

    def init(key, shape, dtype=jnp.float32):
        if len(shape) != 2:
            raise ValueError(f"orthogonal: expected a 2-D shape, got {tuple(shape)}")
        return jax.nn.initializers.orthogonal(scale)(key, shape, dtype)

    return init


def identity(scale: float = 1.0) -> Initializer:
    """``scale`` times the identity (IRNN, Le, Jaitly & Hinton 2015); rectangular shapes get ``scale·eye(m, n)``."""

    def init(key, shape, dtype=jnp.float32):
        del key
        if len(shape) != 2:
            raise ValueError(f"identity: expected a 2-D shape, got {tuple(shape)}")
        return scale * jnp.eye(shape[0], shape[1], dtype=dtype)

    return init


def gate_blocks(init: Initializer, key, num_gates: int, block_shape: tuple, dtype) -> jax.Array:
    """Draws ``num_gates`` blocks of ``block_shape`` with ``init`` and stacks them along axis 0."""
    keys = jax.random.split(key, num_gates)
    return jnp.concatenate([init(k, block_shape, dtype) for k in keys], axis=0)
