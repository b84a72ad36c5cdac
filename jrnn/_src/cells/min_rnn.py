"""minGRU and minLSTM (Feng et al. 2024): gates of the input alone, so the recurrence is linear in the state.

Feng, Tung, Ahmed, Bengio & Hajimirsadeghi, "Were RNNs all we needed?" (arXiv 2410.01201). Taking ``s_{t-1}`` out
of every gate of the GRU and the LSTM leaves ``s_t = a_t ⊙ s_{t-1} + b_t`` with ``a_t, b_t`` functions of ``x_t``:
a recurrence that :func:`jrnn.scan` can evaluate in parallel over time (:func:`jrnn.associative`). Both cells use the
paper's log-space form throughout: the candidate ``h̃_t = g(·)`` is kept positive by

    g(v) = v + 1/2 for v >= 0,   σ(v) for v < 0          (continuous, increasing, g > 0)

so that ``log b_t`` exists; ``step`` (the sequential mode) computes the same function directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src import checks, initializers, presets
from jrnn._src.cells import gates
from jrnn._src.contract import LinearRecurrence
from jrnn._src.solvers import deprecated


def positive_candidate(v: jax.Array) -> jax.Array:
    """Feng et al.'s ``g(v)``: ``v + 1/2`` for ``v >= 0``, ``σ(v)`` below; positive, so ``log g`` exists."""
    return jnp.where(v >= 0, v + 0.5, jax.nn.sigmoid(v))


def log_positive_candidate(v: jax.Array) -> jax.Array:
    """``log g(v)``, written so that neither branch overflows or takes the log of 0."""
    return jnp.where(v >= 0, jnp.log(jax.nn.relu(v) + 0.5), -jax.nn.softplus(-v))


class MinGRUParams(NamedTuple):
    """Parameters of :func:`min_gru`, blocks ``z, h`` packed in this order along axis 0.

    Attributes:
      U: ``[2H, I]`` input-to-hidden; no hidden-to-hidden matrix exists.
      b: ``[2H]`` or None.
    """

    U: jax.Array
    b: jax.Array | None


class MinLSTMParams(NamedTuple):
    """Parameters of :func:`min_lstm`, blocks ``f, i, h`` packed in this order along axis 0.

    Attributes:
      U: ``[3H, I]`` input-to-hidden; no hidden-to-hidden matrix exists.
      b: ``[3H]`` or None.
    """

    U: jax.Array
    b: jax.Array | None


def _parallel(value, where: str) -> bool | None:
    """The deprecated ``parallel=`` option: checked, and a warning naming the solver that replaces it."""
    if value is None:
        return None
    if not isinstance(value, bool):
        raise TypeError(f"{where}: expected parallel to be None, True or False, got {value!r}")
    deprecated.warn(where, f"parallel={value!r}", "solver=jrnn.associative()" if value else "solver=jrnn.sequential()")
    return value


def _init(cell, key, input_size: int, blocks: int, where: str):
    input_size = checks.positive_int("input_size", input_size, where)
    kU, kb = jax.random.split(key)
    U = initializers.gate_blocks(cell.U_init, kU, blocks, (cell.hidden_size, input_size), cell.dtype)
    b = initializers.gate_blocks(cell.b_init, kb, blocks, (cell.hidden_size,), cell.dtype) if cell.bias else None
    return U, b


@dataclasses.dataclass(frozen=True)
class MinGRUCell(LinearRecurrence):
    """A minGRU cell; build it with :func:`min_gru`. State ``s`` is an array ``[..., H]`` and ``y_t = s_t``."""

    hidden_size: int
    parallel: bool | None = None  # deprecated: pass solver=jrnn.associative() or jrnn.sequential()
    bias: bool = True
    U_init: Callable = initializers.glorot_uniform
    b_init: Callable = initializers.zeros
    dtype: Any = jnp.float32

    log_space = True

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def init(self, key: jax.Array, input_size: int) -> MinGRUParams:
        return MinGRUParams(*_init(self, key, input_size, 2, "min_gru.init"))

    def initial_state(self, batch_shape=(), dtype=None) -> jax.Array:
        return gates.zeros_state(batch_shape, self.hidden_size, dtype or self.dtype)

    def step(self, params: MinGRUParams, state: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        k_z, k_h = jnp.split(gates.affine(x, params.U, params.b), 2, axis=-1)
        z = jax.nn.sigmoid(k_z)
        s = (1.0 - z) * state + z * positive_candidate(k_h)
        return s, s

    def coefficients(self, params: MinGRUParams, xs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(log(1 - z), log(z ⊙ h̃))``, each ``[B, T, H]`` (:class:`jrnn.LinearRecurrence`, in log space)."""
        k_z, k_h = jnp.split(gates.affine(xs, params.U, params.b), 2, axis=-1)
        return -jax.nn.softplus(k_z), -jax.nn.softplus(-k_z) + log_positive_candidate(k_h)

    def input_size(self, params: MinGRUParams) -> int:
        return params.U.shape[1]


@dataclasses.dataclass(frozen=True)
class MinLSTMCell(LinearRecurrence):
    """A minLSTM cell; build it with :func:`min_lstm`. State ``s`` is an array ``[..., H]`` and ``y_t = s_t``."""

    hidden_size: int
    parallel: bool | None = None  # deprecated: pass solver=jrnn.associative() or jrnn.sequential()
    bias: bool = True
    U_init: Callable = initializers.glorot_uniform
    b_init: Callable = initializers.zeros
    dtype: Any = jnp.float32

    log_space = True

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def init(self, key: jax.Array, input_size: int) -> MinLSTMParams:
        return MinLSTMParams(*_init(self, key, input_size, 3, "min_lstm.init"))

    def initial_state(self, batch_shape=(), dtype=None) -> jax.Array:
        return gates.zeros_state(batch_shape, self.hidden_size, dtype or self.dtype)

    def step(self, params: MinLSTMParams, state: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        k_f, k_i, k_h = jnp.split(gates.affine(x, params.U, params.b), 3, axis=-1)
        f, i = jax.nn.sigmoid(k_f), jax.nn.sigmoid(k_i)
        s = (f / (f + i)) * state + (i / (f + i)) * positive_candidate(k_h)
        return s, s

    def coefficients(self, params: MinLSTMParams, xs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(log f', log(i' ⊙ h̃))``, each ``[B, T, H]`` (:class:`jrnn.LinearRecurrence`, in log space).

        With ``d = log i - log f = softplus(-k_f) - softplus(-k_i)``: ``log f' = -softplus(d)`` and
        ``log i' = -softplus(-d)`` (the paper's form, never dividing).
        """
        k_f, k_i, k_h = jnp.split(gates.affine(xs, params.U, params.b), 3, axis=-1)
        d = jax.nn.softplus(-k_f) - jax.nn.softplus(-k_i)
        return -jax.nn.softplus(d), -jax.nn.softplus(-d) + log_positive_candidate(k_h)

    def input_size(self, params: MinLSTMParams) -> int:
        return params.U.shape[1]


def min_gru(hidden_size: int, *, parallel: bool | None = None, bias: bool = True,
            U_init: Callable = initializers.glorot_uniform, b_init: Callable = initializers.zeros,
            init: str | None = None, dtype: Any = jnp.float32) -> MinGRUCell:
    """minGRU (Feng et al. 2024, arXiv 2410.01201): a GRU whose gate and candidate see only ``x_t``::

        z_t   = σ(U_z x_t + b_z)                    update gate, of the input alone
        h̃_t   = g(U_h x_t + b_h)                    g(v) = v + 1/2 (v >= 0), σ(v) (v < 0): positive
        s_t   = (1 - z_t) ⊙ s_{t-1} + z_t ⊙ h̃_t       y_t = s_t

    Linear in ``s_{t-1}`` (a :class:`jrnn.LinearRecurrence`): :func:`jrnn.associative` runs it in parallel over
    time with ``jax.lax.associative_scan`` in log space (``log a = -softplus(k_z)``,
    ``log b = -softplus(-k_z) + log g(k_h)``), every result equal to the sequential ``step``'s to float rounding.
    :func:`jrnn.auto` takes that solver on a GPU or TPU and the loop on a CPU, where it measured faster
    (docs/concepts/modern-cells.md). There is no ``W``: a single layer cannot mix its units over time, so the
    paper stacks layers (:func:`jrnn.deep`).

    Args:
      hidden_size: H, the size of ``s_t``.
      parallel: deprecated (a ``DeprecationWarning``); pass ``solver=jrnn.associative()`` (True) or
        ``solver=jrnn.sequential()`` (False) to :func:`jrnn.scan` or :class:`jrnn.RNN` instead.
      bias: whether ``b`` exists.
      U_init: initializer (``jrnn.init``) of ``U``, applied per block.
      b_init: initializer of ``b``, applied per block.
      init: None (jrnn's defaults); minGRU is in none of PyTorch, Flax or Keras, so ``"pytorch"``, ``"flax"`` and
        ``"keras"`` are a ValueError.
      dtype: dtype of the parameters and the default state.

    Returns:
      A :class:`MinGRUCell`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.min_gru(8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 50, 3))
      >>> parallel, _ = jrnn.scan(cell, params, xs, solver=jrnn.associative())
      >>> sequential, _ = jrnn.scan(cell, params, xs, solver=jrnn.sequential())
      >>> bool(jnp.allclose(parallel, sequential, atol=1e-5))
      True
    """
    presets.preset("jrnn.min_gru", init)
    hidden_size = checks.positive_int("hidden_size", hidden_size, "jrnn.min_gru")
    checks.initializers("jrnn.min_gru", U_init=U_init, b_init=b_init)
    return MinGRUCell(hidden_size, _parallel(parallel, "jrnn.min_gru"), bool(bias), U_init, b_init, dtype)


def min_lstm(hidden_size: int, *, parallel: bool | None = None, bias: bool = True,
             U_init: Callable = initializers.glorot_uniform, b_init: Callable = initializers.zeros,
             init: str | None = None, dtype: Any = jnp.float32) -> MinLSTMCell:
    """minLSTM (Feng et al. 2024, arXiv 2410.01201): an LSTM without ``s_{t-1}`` in its gates, gates normalised::

        f_t = σ(U_f x_t + b_f)      i_t = σ(U_i x_t + b_i)      h̃_t = g(U_h x_t + b_h)
        f'_t = f_t / (f_t + i_t)    i'_t = i_t / (f_t + i_t)     (so f' + i' = 1: time-independent scale)
        s_t = f'_t ⊙ s_{t-1} + i'_t ⊙ h̃_t                       y_t = s_t

    with ``g`` as in :func:`min_gru`. The memory cell and the output gate are gone: the state is ``s_t`` alone.
    :func:`jrnn.associative` runs it in parallel over time in log space as :func:`min_gru`.

    Args:
      hidden_size: H, the size of ``s_t``.
      parallel: deprecated, as for :func:`min_gru`.
      bias: whether ``b`` exists.
      U_init: initializer (``jrnn.init``) of ``U``, applied per block.
      b_init: initializer of ``b``, applied per block.
      init: None (jrnn's defaults); minLSTM is in none of PyTorch, Flax or Keras, so ``"pytorch"``, ``"flax"`` and
        ``"keras"`` are a ValueError.
      dtype: dtype of the parameters and the default state.

    Returns:
      A :class:`MinLSTMCell`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.min_lstm(8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> ys, s = jrnn.scan(cell, params, jnp.ones((2, 6, 3)), lengths=jnp.array([6, 2]), reverse=True)
      >>> ys.shape, s.shape
      ((2, 6, 8), (2, 8))
    """
    presets.preset("jrnn.min_lstm", init)
    hidden_size = checks.positive_int("hidden_size", hidden_size, "jrnn.min_lstm")
    checks.initializers("jrnn.min_lstm", U_init=U_init, b_init=b_init)
    return MinLSTMCell(hidden_size, _parallel(parallel, "jrnn.min_lstm"), bool(bias), U_init, b_init, dtype)
