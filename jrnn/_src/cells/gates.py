"""What the three cells share: the affine map ``M v + b`` and drawing gate-packed parameters."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src import initializers


def affine(v: jax.Array, M: jax.Array, b: jax.Array | None) -> jax.Array:
    """``M v + b`` for a batch of row vectors ``v[..., in]``, ``M[out, in]``, ``b[out]`` (or no bias)."""
    y = v @ M.T
    return y if b is None else y + jnp.broadcast_to(b, y.shape)


def masked(v: jax.Array, mask: jax.Array | None) -> jax.Array:
    """``mask ⊙ v`` (a state as it enters the recurrent matmul under :func:`jrnn.recurrent_dropout`), or ``v``."""
    return v if mask is None else v * mask.astype(v.dtype)


def init_gated(key: jax.Array, *, num_gates: int, hidden_size: int, input_size: int, recurrent_size: int,
               U_init, W_init, b_init, bias: bool, dtype: Any):
    """Draws ``(U[G·H, I], W[G·H, R], b_U[G·H], b_W[G·H])`` one gate block at a time (biases None if not ``bias``)."""
    kU, kW, kbU, kbW = jax.random.split(key, 4)
    U = initializers.gate_blocks(U_init, kU, num_gates, (hidden_size, input_size), dtype)
    W = initializers.gate_blocks(W_init, kW, num_gates, (hidden_size, recurrent_size), dtype)
    if not bias:
        return U, W, None, None
    b_U = initializers.gate_blocks(b_init, kbU, num_gates, (hidden_size,), dtype)
    b_W = initializers.gate_blocks(b_init, kbW, num_gates, (hidden_size,), dtype)
    return U, W, b_U, b_W


def zeros_state(batch_shape, size: int, dtype: Any) -> jax.Array:
    return jnp.zeros((*tuple(batch_shape), size), dtype)
