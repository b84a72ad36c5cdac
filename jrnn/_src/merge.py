"""How a bidirectional layer combines the forward states ``A_t`` and the backward states ``A'_t``.

A merge has ``init(key, forward_size, backward_size) -> params`` (None when it has none),
``output_size(forward_size, backward_size)`` and ``apply(params, A, A_rev) -> y``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src import checks, initializers
from jrnn._src.cells import gates


def _identity(x):
    return x


@dataclasses.dataclass(frozen=True)
class FunctionMerge:
    """A parameter-free merge ``y_t = fn(A_t, A'_t)``."""

    fn: Callable[[jax.Array, jax.Array], jax.Array]
    name: str = "callable"

    def init(self, key, forward_size: int, backward_size: int) -> None:
        del key, forward_size, backward_size
        return None

    def output_size(self, forward_size: int, backward_size: int) -> int:
        out = jax.eval_shape(self.fn, jax.ShapeDtypeStruct((1, forward_size), jnp.float32),
                             jax.ShapeDtypeStruct((1, backward_size), jnp.float32))
        return out.shape[-1]

    def apply(self, params: None, forward: jax.Array, backward: jax.Array) -> jax.Array:
        del params
        return self.fn(forward, backward)


class SeedMergeParams(NamedTuple):
    """``V`` ``[O, H]`` for the forward states, ``V_rev`` ``[O, H']`` for the backward ones, ``b`` ``[O]``."""

    V: jax.Array
    V_rev: jax.Array
    b: jax.Array | None


@dataclasses.dataclass(frozen=True)
class SeedMerge:
    """The seed's ``y_t = g(V A_t + V' A'_t + b)``; build it with :func:`seed_merge`."""

    features: int
    activation: Callable[[jax.Array], jax.Array] = _identity
    bias: bool = True
    V_init: Callable = initializers.lecun_normal
    dtype: Any = jnp.float32

    def init(self, key, forward_size: int, backward_size: int) -> SeedMergeParams:
        k1, k2 = jax.random.split(key)
        V = self.V_init(k1, (self.features, forward_size), self.dtype)
        V_rev = self.V_init(k2, (self.features, backward_size), self.dtype)
        return SeedMergeParams(V, V_rev, jnp.zeros((self.features,), self.dtype) if self.bias else None)

    def output_size(self, forward_size: int, backward_size: int) -> int:
        del forward_size, backward_size
        return self.features

    def apply(self, params: SeedMergeParams, forward: jax.Array, backward: jax.Array) -> jax.Array:
        y = gates.affine(forward, params.V, params.b) + backward @ params.V_rev.T
        return self.activation(y)


def seed_merge(output_size: int, activation: Callable[[jax.Array], jax.Array] = _identity, *,
               bias: bool = True, V_init: Callable = initializers.lecun_normal, dtype: Any = jnp.float32) -> SeedMerge:
    """The seed's bidirectional output ``y_t = g(V A_t + V' A'_t + b)`` with learned ``V``, ``V'`` and ``b``.

    Args:
      output_size: O, the size of ``y_t``.
      activation: the elementwise ``g`` (identity by default).
      bias: whether ``b`` exists.
      V_init: initializer of ``V`` ``[O, H]`` and ``V'`` ``[O, H']``.
      dtype: dtype of the parameters.
    """
    output_size = checks.positive_int("output_size", output_size, "jrnn.seed_merge")
    if not callable(activation):
        raise TypeError(f"jrnn.seed_merge: expected a callable activation, got {activation!r}")
    checks.initializers("jrnn.seed_merge", V_init=V_init)
    return SeedMerge(output_size, activation, bias, V_init, dtype)


MERGES = {
    "concat": FunctionMerge(lambda a, b: jnp.concatenate([a, b], axis=-1), "concat"),
    "sum": FunctionMerge(lambda a, b: a + b, "sum"),
    "mean": FunctionMerge(lambda a, b: (a + b) / 2, "mean"),
    "product": FunctionMerge(lambda a, b: a * b, "product"),
}


def as_merge(merge: Any) -> Any:
    """Turns ``'concat' | 'sum' | 'mean' | 'product'``, a merge object or a callable into a merge object."""
    if isinstance(merge, str):
        if merge not in MERGES:
            raise ValueError(f"jrnn.Bidirectional: expected merge to be one of {sorted(MERGES)}, a merge such as "
                             f"jrnn.seed_merge(...), or a callable (A, A_rev) -> y; got {merge!r}")
        return MERGES[merge]
    if isinstance(merge, (FunctionMerge, SeedMerge)):
        return merge
    if callable(merge):
        return FunctionMerge(merge)
    raise TypeError(f"jrnn.Bidirectional: expected merge to be a string, a merge or a callable, got {merge!r}")
