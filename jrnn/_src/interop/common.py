"""What the Keras, Flax and Equinox converters share: gate blocks in and out of jrnn's ``[out, in]`` layout, the
exact bias fold, jrnn's cell for a foreign one, and the checks that refuse what jrnn cannot represent.

Every conversion here moves numbers without arithmetic (a transpose, a gate permutation, a concatenation), except
the bias fold, which adds only where the second bias is non-zero, so a round trip foreign → jrnn → foreign is
bitwise exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jrnn._src.cells.elman import ElmanParams, elman
from jrnn._src.cells.gru import GRUParams, gru
from jrnn._src.cells.lstm import LSTMParams, LSTMState, lstm

# jrnn's (PyTorch's) gate orders along the packed axis.
LSTM_GATES = ("i", "f", "g", "o")
GRU_GATES = ("r", "z", "n")
PARAMS_OF = {"elman": ElmanParams, "lstm": LSTMParams, "gru": GRUParams}


def reorder(value: Any, source: Sequence[str], target: Sequence[str], axis: int) -> np.ndarray:
    """The gate blocks of ``value`` along ``axis``, moved from the order ``source`` to the order ``target``."""
    blocks = np.split(np.asarray(value), len(source), axis=axis)
    return np.concatenate([blocks[source.index(gate)] for gate in target], axis=axis)


def from_kernel(kernel: Any, gates: Sequence[str] | None = None) -> jax.Array:
    """A kernel in the ``x @ K`` layout ``[in, G·H]`` (Keras, Flax), gates in the order ``gates``, as jrnn's
    ``[G·H, in]`` in jrnn's gate order (``gates`` None: one block, or already jrnn's order)."""
    kernel = np.asarray(kernel)
    if gates is not None:
        kernel = reorder(kernel, gates, _jrnn_order(gates), axis=-1)
    return jnp.asarray(kernel.T)


def to_kernel(matrix: Any, gates: Sequence[str] | None = None) -> np.ndarray:
    """Inverse of :func:`from_kernel`: jrnn's ``[G·H, in]`` as ``[in, G·H]`` with gates in the order ``gates``."""
    kernel = np.asarray(matrix).T
    if gates is not None:
        kernel = reorder(kernel, _jrnn_order(gates), gates, axis=-1)
    return np.ascontiguousarray(kernel)


def from_bias(bias: Any, gates: Sequence[str] | None = None) -> jax.Array | None:
    """A packed bias ``[G·H]`` in the order ``gates`` as jrnn's order (None stays None)."""
    if bias is None:
        return None
    bias = np.asarray(bias)
    return jnp.asarray(bias if gates is None else reorder(bias, gates, _jrnn_order(gates), axis=-1))


def to_bias(bias: Any, gates: Sequence[str] | None = None) -> np.ndarray | None:
    """Inverse of :func:`from_bias`."""
    if bias is None:
        return None
    bias = np.asarray(bias)
    return bias if gates is None else reorder(bias, _jrnn_order(gates), gates, axis=-1)


def _jrnn_order(gates: Sequence[str]) -> tuple[str, ...]:
    return LSTM_GATES if len(gates) == 4 else GRU_GATES


def fold(a: Any, b: Any) -> np.ndarray | None:
    """``a + b`` for two biases that enter the same sum (either may be None), exact where ``b`` is 0: ``a`` itself
    is kept there, so folding a zero bias changes no bit (not even the sign of a zero)."""
    if a is None or b is None:
        return None if a is None and b is None else np.asarray(b if a is None else a)
    a, b = np.asarray(a), np.asarray(b)
    return np.where(b == 0, a, a + b)


def is_zero(value: Any) -> bool:
    """True for None or an all-zero array."""
    return value is None or not np.any(np.asarray(value))


def zeros_like(reference: Any, size: int) -> np.ndarray:
    return np.zeros((size,), np.asarray(reference).dtype)


def cell_for(kind: str, hidden_size: int, *, bias: bool, activation: Any = jnp.tanh, reset_after: bool = True,
             forget_bias: float = 0.0):
    """jrnn's cell for a foreign ``'elman'``, ``'lstm'`` or ``'gru'`` of ``hidden_size`` units."""
    if kind == "elman":
        return elman(hidden_size, activation, bias=bias)
    if kind == "lstm":
        return lstm(hidden_size, bias=bias, forget_bias=forget_bias)
    return gru(hidden_size, reset_after=reset_after, bias=bias)


def kind_of(params: Any) -> str | None:
    """``'elman'``, ``'lstm'`` or ``'gru'`` for jrnn cell parameters, else None."""
    for kind, param_type in PARAMS_OF.items():
        if isinstance(params, param_type):
            return kind
    return None


def expect_params(params: Any, kind: str, where: str, what: str):
    """Checks that ``params`` are jrnn parameters of a ``kind`` cell (an LSTM without projection) for ``what``."""
    if kind_of(params) != kind:
        raise TypeError(f"{where}: expected {PARAMS_OF[kind].__name__} for {what}, got {type(params).__name__}")
    if kind == "lstm" and params.R is not None:
        raise ValueError(f"{where}: {what} has no projection; got LSTMParams with R (proj_size "
                         f"{np.shape(params.R)[0]}), which it cannot represent")


def expect_shape(value: np.ndarray, shape: tuple, where: str, name: str) -> np.ndarray:
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{where}: expected {name} of shape {tuple(shape)}, got {tuple(value.shape)}")
    return value


def unsupported(where: str, option: str, value: Any, supported: str) -> ValueError:
    """The error for an option jrnn cannot represent exactly, naming it."""
    return ValueError(f"{where}: {option}={value!r} cannot be represented exactly by jrnn's cells "
                      f"(supported: {supported}); refusing to convert to a different network")


def output_of(state: Any) -> jax.Array:
    """A cell state's output part: ``h`` of an :class:`jrnn.LSTMState`, else the state itself."""
    return state.h if isinstance(state, LSTMState) else state
