"""Argument checks that raise at trace time, naming what was expected and what was received."""

from __future__ import annotations

import inspect
import operator
from typing import Any

import jax
import jax.numpy as jnp


def positive_int(name: str, value: Any, where: str) -> int:
    """Returns ``value`` if it is a positive int, else raises."""
    if isinstance(value, bool):
        raise TypeError(f"{where}: expected {name} to be a positive int, got {value!r}")
    try:
        as_int = operator.index(value)
    except TypeError:
        raise TypeError(f"{where}: expected {name} to be a positive int, got {value!r}") from None
    if as_int <= 0:
        raise ValueError(f"{where}: expected {name} to be a positive int, got {value!r}")
    return as_int


def initializer(name: str, value: Any, where: str) -> Any:
    """Returns ``value`` if it can be called as an initializer ``init(key, shape, dtype) -> Array``, else raises.

    A factory passed where its initializer is expected (``jrnn.init.orthogonal`` for ``jrnn.init.orthogonal()``,
    or one of ``jax.nn.initializers``' factories) is named, with the call that fixes it.
    """
    expected = f"{where}: expected {name} to be an initializer (key, shape, dtype) -> array"
    if not callable(value):
        raise TypeError(f"{expected}, got {value!r}")
    factory = _initializer_factory(value)
    if factory is not None:
        spelled, takes_arguments = factory
        call = f"{spelled}(...)" if takes_arguments else f"{spelled}()"
        raise TypeError(f"{expected}, got the factory {spelled}; call it: {call}")
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):  # a builtin without a signature: trust it
        return value
    try:
        signature.bind(None, None, None)
    except TypeError:
        raise TypeError(f"{expected}, got {value!r}, which cannot be called with (key, shape, dtype): {signature}"
                        ) from None
    return value


def initializers(where: str, **inits: Any) -> None:
    """Checks every ``name=value`` with :func:`initializer`."""
    for name, value in inits.items():
        initializer(name, value, where)


def _initializer_factory(value: Any) -> tuple[str, bool] | None:
    """``(its public name, whether it needs arguments)`` when ``value`` makes initializers rather than being one."""
    spelled = getattr(value, "_jrnn_initializer_factory", None)
    if spelled is None and inspect.isfunction(value) and (value.__module__ or "").startswith("jax."):
        # jax.nn.initializers: every initializer's first parameter is ``key``; a factory's is not.
        parameters = list(inspect.signature(value).parameters)
        if parameters and parameters[0] != "key" and getattr(jax.nn.initializers, value.__name__, None) is value:
            spelled = f"jax.nn.initializers.{value.__name__}"
    if spelled is None:
        return None
    required = [p for p in inspect.signature(value).parameters.values()
                if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return spelled, bool(required)


def sequence(xs: Any, input_shape: int | tuple[int, ...], where: str) -> tuple[int, int]:
    """Checks a batch-major ``[B, T, *input_shape]`` array (``[B, T, input_size]`` for an int); returns ``(B, T)``."""
    feature = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    shape = jnp.shape(xs)
    spelled = ", ".join(str(d) for d in feature)
    if len(shape) != 2 + len(feature):
        raise ValueError(f"{where}: expected xs of shape [batch, time, {spelled}], got shape {shape}")
    if tuple(shape[2:]) != feature:
        if len(feature) == 1:
            raise ValueError(f"{where}: expected xs with {feature[0]} input features (shape [batch, time, "
                             f"{spelled}]), got shape {shape}")
        raise ValueError(f"{where}: expected xs of shape [batch, time, {spelled}], got shape {shape}")
    return shape[0], shape[1]


def batch_major(xs: Any, where: str) -> tuple[int, int]:
    """Checks an array with at least the two leading axes ``[B, T, ...]`` and a feature axis; returns ``(B, T)``."""
    shape = jnp.shape(xs)
    if len(shape) < 3:
        raise ValueError(f"{where}: expected xs of shape [batch, time, features], got shape {shape}")
    return shape[0], shape[1]


def lengths(value: Any, batch: int, where: str) -> jax.Array | None:
    """Checks ``lengths`` of shape ``[batch]`` with an integer dtype."""
    if value is None:
        return None
    arr = jnp.asarray(value)
    if arr.shape != (batch,):
        raise ValueError(f"{where}: expected lengths of shape ({batch},), one per sequence, got shape {arr.shape}")
    if not jnp.issubdtype(arr.dtype, jnp.integer):
        raise TypeError(f"{where}: expected integer lengths, got dtype {arr.dtype}")
    return arr


def resets(value: Any, batch: int, time: int, where: str) -> jax.Array | None:
    """Checks ``resets`` of shape ``[batch, time]``, bool (or integer 0/1); returns it as bool."""
    if value is None:
        return None
    arr = jnp.asarray(value)
    if arr.shape != (batch, time):
        raise ValueError(f"{where}: expected resets of shape ({batch}, {time}), [batch, time] like xs, got shape "
                         f"{arr.shape}")
    if not (arr.dtype == jnp.bool_ or jnp.issubdtype(arr.dtype, jnp.integer)):
        raise TypeError(f"{where}: expected resets of dtype bool (True where a segment starts), got dtype "
                        f"{arr.dtype}")
    return arr.astype(bool)


def state_like(state: Any, expected: Any, where: str, name: str = "initial_state") -> Any:
    """Checks that ``state`` has the pytree structure and leaf shapes of ``expected``; casts to its dtypes."""
    exp_leaves, exp_def = jax.tree_util.tree_flatten(expected)
    try:
        leaves = exp_def.flatten_up_to(state)
    except (ValueError, TypeError):
        raise ValueError(
            f"{where}: expected {name} structured as {_describe(expected)}, got {_describe(state)}") from None
    for leaf, exp in zip(leaves, exp_leaves):  # a tuple where an array belongs is a wrong structure, not an array
        if isinstance(leaf, (tuple, list, dict)) or jnp.shape(leaf) != jnp.shape(exp):
            raise ValueError(
                f"{where}: expected {name} structured as {_describe(expected)}, got {_describe(state)}")
    cast = [jnp.asarray(leaf, exp.dtype) for leaf, exp in zip(leaves, exp_leaves)]
    return jax.tree_util.tree_unflatten(exp_def, cast)


def _describe(tree: Any) -> str:
    shapes = jax.tree_util.tree_map(lambda leaf: tuple(jnp.shape(leaf)), tree)
    return str(shapes)


def matmul_dtype(value: Any, where: str) -> Any:
    """Checks a ``matmul_dtype`` option: None or a floating dtype; returns it as a ``jnp.dtype`` (or None)."""
    if value is None:
        return None
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{where}: expected matmul_dtype to be None or a floating dtype such as jnp.bfloat16, "
                         f"got {value!r}")
    return dtype
