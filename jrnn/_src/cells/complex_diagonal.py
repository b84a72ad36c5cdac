"""What the cells with a complex diagonal state share (:func:`jrnn.lru`, :func:`jrnn.s5`).

Their state ``s_t`` is complex, ``[..., H]``, and their parameters are real arrays, a complex matrix stored as its
real and imaginary parts (``B_re``, ``B_im``), so that optax, ``jax.tree_util`` and checkpoints see ordinary real
pytrees. The scan hands ``initial_state`` the real carry dtype (float32, float64); the state is its complex
counterpart. The complex products are written as real matmuls, which every backend has.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def complex_dtype(dtype: Any) -> jnp.dtype:
    """The complex dtype that carries a state of real ``dtype``: complex64 for float32 (and narrower), complex128
    for float64 (when ``jax_enable_x64`` is on); a complex dtype is kept.

    Example:
      >>> import jax.numpy as jnp
      >>> from jrnn._src.cells.complex_diagonal import complex_dtype
      >>> complex_dtype(jnp.float32), complex_dtype(jnp.bfloat16)
      (dtype('complex64'), dtype('complex64'))
    """
    return jnp.result_type(dtype, jnp.complex64)


def zeros_state(batch_shape, size: int, dtype: Any) -> jax.Array:
    """The complex zero state ``[*batch_shape, size]`` for the real carry ``dtype``."""
    return jnp.zeros((*tuple(batch_shape), size), complex_dtype(dtype))


def project_in(M_re: jax.Array, M_im: jax.Array, u: jax.Array) -> jax.Array:
    """``M u``, complex ``[..., H]``, for ``M = M_re + i M_im`` ``[H, I]`` and a real ``u [..., I]``."""
    return jax.lax.complex(u @ M_re.T, u @ M_im.T)


def real_project_out(M_re: jax.Array, M_im: jax.Array, s: jax.Array) -> jax.Array:
    """``Re(M s)``, real ``[..., O]``, for ``M = M_re + i M_im`` ``[O, H]`` and a complex ``s [..., H]``."""
    return jnp.real(s) @ M_re.T - jnp.imag(s) @ M_im.T


def per_unit(v: jax.Array, like: jax.Array) -> jax.Array:
    """A per-unit vector ``v [H]`` broadcast to ``like``'s shape ``[..., H]`` (explicitly: jrnn's tests make an
    implicit rank promotion an error)."""
    return jnp.broadcast_to(v, like.shape)
