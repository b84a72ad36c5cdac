"""Weight initializers, each ``init(key, shape, dtype) -> Array`` like ``jax.nn.initializers``.

One convention: every ``*_init`` argument of a jrnn cell, readout or merge takes an *initializer*, a function
``(key, shape, dtype) -> Array``. An initializer without a setting is given as it is (``zeros``,
``glorot_uniform``, ``lecun_normal``, ``he_normal``, ``henaff``, ``cayley``); one with a setting is made by a
*factory* that you call (``orthogonal(scale=1.0)``, ``identity(scale=1.0)``, ``constant(value)``,
``uniform(bound)``, ``uniform_range(low, high)``, ``normal(stddev)``, ``pytorch_uniform(hidden_size)``), even
with its defaults: ``W_init=jrnn.init.orthogonal()``, not ``W_init=jrnn.init.orthogonal``. A factory passed
uncalled is a ``TypeError`` when the cell is built, naming the call that fixes it (so are ``jax.nn.initializers``'
factories, e.g. ``jax.nn.initializers.orthogonal`` for ``jax.nn.initializers.orthogonal()``).

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


def _factory(make: Callable[..., Initializer]) -> Callable[..., Initializer]:
    """Marks ``make`` as a factory of initializers, so that passing it uncalled as a ``*_init`` is named as such
    (:func:`jrnn._src.checks.initializer`)."""
    make._jrnn_initializer_factory = f"jrnn.init.{make.__name__}"
    return make


def _fans(shape) -> tuple[int, int]:
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) > 2:  # a convolution kernel in PyTorch's [out, in, *window] layout (jrnn.conv_lstm)
        window = math.prod(shape[2:])
        return shape[1] * window, shape[0] * window
    return shape[-1], shape[-2]  # [out, in] layout, as ``U`` and ``W`` are stored


def zeros(key, shape, dtype=jnp.float32):
    """All zeros."""
    del key
    return jnp.zeros(shape, dtype)


@_factory
def constant(value: float) -> Initializer:
    """Every entry equal to ``value``."""

    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.full(shape, value, dtype)

    return init


@_factory
def uniform(bound: float) -> Initializer:
    """U(-bound, bound)."""
    if not bound > 0:
        raise ValueError(f"uniform: expected a positive bound, got {bound!r}")

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


@_factory
def uniform_range(low: float, high: float) -> Initializer:
    """U(low, high); IndRNN draws its recurrent weights from U(0, 1) or U(0, 2^(1/T)) (Li et al. 2018).

    Example:
      >>> import jax, jrnn
      >>> w = jrnn.init.uniform_range(0.0, 1.0)(jax.random.key(0), (1000,))
      >>> bool((w >= 0).all() and (w < 1).all())
      True
    """
    if not low < high:
        raise ValueError(f"uniform_range: expected low < high, got {low!r} and {high!r}")

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, low, high)

    return init


@_factory
def normal(stddev: float) -> Initializer:
    """N(0, stddev²); Le et al. 2015 draw the IRNN's input weights from N(0, 0.001²)."""
    if not stddev > 0:
        raise ValueError(f"normal: expected a positive stddev, got {stddev!r}")

    def init(key, shape, dtype=jnp.float32):
        return stddev * jax.random.normal(key, shape, dtype)

    return init


@_factory
def pytorch_uniform(hidden_size: int) -> Initializer:
    """PyTorch's default for every RNN weight and bias: U(-1/√H, 1/√H), H the hidden size."""
    if not (isinstance(hidden_size, int) and hidden_size > 0):
        raise ValueError(f"pytorch_uniform: expected a positive int hidden_size, got {hidden_size!r}")
    return uniform(1.0 / math.sqrt(hidden_size))


def glorot_uniform(key, shape, dtype=jnp.float32):
    """Glorot & Bengio 2010: U(-a, a) with a = √(6 / (fan_in + fan_out)); Keras' default input kernel.

    For a convolution kernel ``[out, in, *window]`` the fans are ``in·|window|`` and ``out·|window|``.
    """
    fan_in, fan_out = _fans(shape)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def lecun_normal(key, shape, dtype=jnp.float32):
    """LeCun 1998: truncated N(0, 1/fan_in) for a ``[out, in]`` matrix; Flax's default kernel."""
    return jax.nn.initializers.lecun_normal(in_axis=-1, out_axis=-2)(key, shape, dtype)


def he_normal(key, shape, dtype=jnp.float32):
    """He et al. 2015: N(0, 2/fan_in) for a ``[out, in]`` matrix (PyTorch's ``kaiming_normal_`` for ReLU); the
    input weights of expRNN (Lezcano-Casado & Martínez-Rubio 2019).

    Example:
      >>> import jax, jrnn
      >>> U = jrnn.init.he_normal(jax.random.key(0), (2000, 50))
      >>> round(float(U.std() ** 2 * 50), 1)
      2.0
    """
    fan_in, _ = _fans(shape)
    return math.sqrt(2.0 / fan_in) * jax.random.normal(key, shape, dtype)


@_factory
def orthogonal(scale: float = 1.0) -> Initializer:
    """A (semi-)orthogonal matrix times ``scale``: every singular value equals ``scale`` (Saxe et al. 2014)."""

    def init(key, shape, dtype=jnp.float32):
        if len(shape) != 2:
            raise ValueError(f"orthogonal: expected a 2-D shape, got {tuple(shape)}")
        return jax.nn.initializers.orthogonal(scale)(key, shape, dtype)

    return init


@_factory
def identity(scale: float = 1.0) -> Initializer:
    """``scale`` times the identity (IRNN, Le, Jaitly & Hinton 2015); rectangular shapes get ``scale·eye(m, n)``."""

    def init(key, shape, dtype=jnp.float32):
        del key
        if len(shape) != 2:
            raise ValueError(f"identity: expected a 2-D shape, got {tuple(shape)}")
        return scale * jnp.eye(shape[0], shape[1], dtype=dtype)

    return init


def _skew_blocks(angles: jax.Array, size: int, dtype) -> jax.Array:
    """The strictly upper-triangular ``A`` ``[size, size]`` with ``A[2k, 2k + 1] = angles[k]``: ``A - A^T`` is
    block-diagonal with 2x2 blocks ``[[0, θ_k], [-θ_k, 0]]``, and ``expm(A - A^T)`` rotates plane k by ``θ_k``."""
    A = jnp.zeros((size, size), dtype)
    rows = 2 * jnp.arange(angles.shape[0])
    return A.at[rows, rows + 1].set(angles.astype(dtype))


def henaff(key, shape, dtype=jnp.float32):
    """Henaff, Szlam & LeCun 2016's initialisation of an orthogonal RNN's log-parameter ``A`` ``[H, H]``:
    ``expm(A - A^T)`` is block-diagonal, each 2x2 block a rotation by ``θ ~ U(-π, π)`` (the default of
    :func:`jrnn.exprnn`; Lezcano-Casado & Martínez-Rubio 2019). With H odd the last unit is left unrotated.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> A = jrnn.init.henaff(jax.random.key(0), (6, 6))
      >>> W = jax.scipy.linalg.expm(A - A.T)
      >>> bool(jnp.allclose(W @ W.T, jnp.eye(6), atol=1e-6))
      True
    """
    _square(shape, "henaff")
    angles = jax.random.uniform(key, (shape[0] // 2,), jnp.float32, -math.pi, math.pi)
    return _skew_blocks(angles, shape[0], dtype)


def cayley(key, shape, dtype=jnp.float32):
    """The Cayley initialisation of an orthogonal RNN's log-parameter ``A`` ``[H, H]`` (Helfrich et al. 2018's
    scoRNN, used by expRNN): ``θ ~ U(0, π/2)`` and block entry ``-sqrt((1 - cos θ) / (1 + cos θ)) = -tan(θ/2)``,
    which the Cayley transform maps to a rotation by ``θ``; under :func:`jrnn.exprnn`'s ``expm`` each block rotates
    by ``-tan(θ/2)``, between -1 and 0 radians, as in the expRNN authors' code.

    Example:
      >>> import jax, jrnn
      >>> A = jrnn.init.cayley(jax.random.key(0), (4, 4))
      >>> bool((A[0, 1] <= 0) & (A[0, 1] >= -1))
      True
    """
    _square(shape, "cayley")
    theta = jax.random.uniform(key, (shape[0] // 2,), jnp.float32, 0.0, math.pi / 2)
    return _skew_blocks(-jnp.sqrt((1.0 - jnp.cos(theta)) / (1.0 + jnp.cos(theta))), shape[0], dtype)


def _square(shape, name: str) -> None:
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"{name}: expected a square 2-D shape, got {tuple(shape)}")


def packed(init: Initializer) -> Initializer:
    """``init`` drawn once over a whole gate-packed matrix ``[G·H, ...]`` instead of once per gate block: Keras'
    one ``(in, 4u)`` kernel, whose Glorot bound and orthogonality span all gates (``jrnn._src.presets``)."""

    def whole(key, shape, dtype=jnp.float32):
        return init(key, shape, dtype)

    whole._jrnn_packed = True
    return whole


def gate_blocks(init: Initializer, key, num_gates: int, block_shape: tuple, dtype) -> jax.Array:
    """Draws ``num_gates`` blocks of ``block_shape`` with ``init`` and stacks them along axis 0 (one draw of the
    stacked shape for an initializer made by :func:`packed`)."""
    if getattr(init, "_jrnn_packed", False):
        return init(key, (num_gates * block_shape[0], *block_shape[1:]), dtype)
    keys = jax.random.split(key, num_gates)
    return jnp.concatenate([init(k, block_shape, dtype) for k in keys], axis=0)


def draw_bias(init: Initializer, key, shape: tuple, fan_in: int, dtype) -> jax.Array:
    """A layer's bias from ``init``; an initializer that needs the layer's fan-in (PyTorch's ``nn.Linear`` bias,
    U(±1/√fan_in), in ``jrnn._src.presets``) is given it."""
    if getattr(init, "_jrnn_fan_in", False):
        return init(key, shape, dtype, fan_in=fan_in)
    return init(key, shape, dtype)
