"""Every cell jrnn ships, once: the registry the contract tests (``tests/test_contract.py``) run over, and where the
per-file cell lists take their cells from.

Each :class:`Entry` is a name and a factory ``make(hidden_size, dtype) -> cell`` for one configuration that
matters (an activation, a projection, a gate placement, a feature-map input). What an entry can do is never
written here: :func:`capabilities` reads it off the built cell, with ``isinstance`` on the capability classes of
``jrnn/_src/contract.py`` and the fused solver's registry (``kernel_for``), exactly as the library decides. A new
cell joins by one line in :data:`ENTRIES`; every contract test then runs on it.

A variant of a cell is an entry of its own where a solver runs different code for it (the fused kernels' tanh and
ReLU, the LSTM's projection, the GRU's two gate placements); a variant that changes only ``step`` (``jrnn.mgu``'s
``reset_after=False``, a cell without biases) is compared with its NumPy equations in ``tests/cells`` instead.

Example:
  >>> import jax.numpy as jnp, registry
  >>> cell = registry.make("lstm_proj", 5, jnp.float32)
  >>> cell.output_size, sorted(registry.capabilities(cell))
  (3, ['fused', 'recurrent_matrix', 'state_maskable'])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import jrnn
from jrnn._src.contract import input_shape
from jrnn._src.solvers.fused import kernel_for

SPATIAL = (2, 2)  # conv_lstm's feature maps: the smallest that still has neighbours on both axes

CAPABILITIES = {
    "input_shaped": jrnn.InputShaped,
    "preparable": jrnn.Preparable,
    "linear_recurrence": jrnn.LinearRecurrence,
    "state_maskable": jrnn.StateMaskable,
    "recurrent_matrix": jrnn.RecurrentMatrix,
    "windowed": jrnn.Windowed,
}


class Entry(NamedTuple):
    """One cell configuration: ``make(hidden_size, dtype)`` builds it."""

    name: str
    make: Callable[[int, Any], Any]


ENTRIES = (
    Entry("elman_tanh", lambda H, dtype: jrnn.elman(H, dtype=dtype)),
    Entry("elman_relu", lambda H, dtype: jrnn.elman(H, jax.nn.relu, dtype=dtype)),
    Entry("lstm", lambda H, dtype: jrnn.lstm(H, dtype=dtype)),
    Entry("lstm_proj", lambda H, dtype: jrnn.lstm(H, proj_size=(H + 1) // 2, dtype=dtype)),  # P = ⌈H/2⌉ < H
    Entry("gru", lambda H, dtype: jrnn.gru(H, dtype=dtype)),  # reset after W_n s (cuDNN, PyTorch, Keras 3)
    Entry("gru_reset_before", lambda H, dtype: jrnn.gru(H, reset_after=False, dtype=dtype)),  # Cho et al. 2014
    Entry("layer_norm_lstm", lambda H, dtype: jrnn.layer_norm_lstm(H, dtype=dtype)),
    Entry("layer_norm_gru", lambda H, dtype: jrnn.layer_norm_gru(H, dtype=dtype)),
    Entry("indrnn", lambda H, dtype: jrnn.indrnn(H, dtype=dtype)),
    Entry("exprnn", lambda H, dtype: jrnn.exprnn(H, dtype=dtype)),
    Entry("min_gru", lambda H, dtype: jrnn.min_gru(H, dtype=dtype)),
    Entry("min_lstm", lambda H, dtype: jrnn.min_lstm(H, dtype=dtype)),
    Entry("mgu", lambda H, dtype: jrnn.mgu(H, dtype=dtype)),
    Entry("conv_lstm", lambda H, dtype: jrnn.conv_lstm(H, SPATIAL, kernel_size=2, peephole=True, dtype=dtype)),
    # The RG-LRU maps its width to itself, so its width is the contract tests' input size (F = 2), not H.
    Entry("rg_lru", lambda H, dtype: jrnn.rg_lru(2, dtype=dtype)),
    Entry("hawk_block", lambda H, dtype: jrnn.hawk_block(H, dtype=dtype)),  # a width-4 convolution
    # D ⊙ x is elementwise, so y has the input's size: 2, the contract tests' input size F
    Entry("lru", lambda H, dtype: jrnn.lru(H, 2, dtype=dtype)),
    Entry("s5", lambda H, dtype: jrnn.s5(H, 2, clip_eigs=True, dtype=dtype)),  # Re Λ < 0: stable at any params
    Entry("mamba", lambda H, dtype: jrnn.mamba(H, state_size=2, dtype=dtype)),  # E = 2H, state E·N = 12
)
NAMES = tuple(entry.name for entry in ENTRIES)
_BY_NAME = {entry.name: entry for entry in ENTRIES}


def make(name: str, hidden_size: int, dtype: Any = jnp.float32) -> Any:
    """The cell of entry ``name`` with ``hidden_size`` units (channels for conv_lstm) and parameters of ``dtype``."""
    return _BY_NAME[name].make(hidden_size, dtype)


def capabilities(cell: Any) -> frozenset[str]:
    """What ``cell`` declares (the keys of :data:`CAPABILITIES` it is an instance of), plus ``"fused"`` when the
    fused solver has a kernel registered for its type."""
    found = {name for name, cls in CAPABILITIES.items() if isinstance(cell, cls)}
    if kernel_for(cell) is not None:
        found.add("fused")
    return frozenset(found)


def step_input_shape(cell: Any, input_size: int) -> tuple[int, ...]:
    """The shape of one step's input after the batch axes for inputs of ``input_size`` features (channels):
    ``(input_size,)``, or ``(*spatial, input_size)`` for a :class:`jrnn.InputShaped` cell; read off the cell's
    parameter shapes (``jax.eval_shape``: nothing is computed)."""
    params = jax.eval_shape(lambda key: cell.init(key, input_size), jax.random.key(0))
    return input_shape(cell, params)


def with_capability(name: str, hidden_size: int = 3) -> tuple[str, ...]:
    """The names of the entries whose cell has capability ``name`` (a key of :data:`CAPABILITIES` or ``"fused"``)."""
    return tuple(entry.name for entry in ENTRIES if name in capabilities(entry.make(hidden_size, jnp.float32)))
