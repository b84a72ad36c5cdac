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
import numpy as np

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
    "chunkwise": jrnn.Chunkwise,
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
    # one head: d_qk = int(H / 2), d_v = H (the layer norm of a single value feature would be 0)
    Entry("mlstm", lambda H, dtype: jrnn.mlstm(H, num_heads=1, dtype=dtype)),
    # residual, so its width is the contract tests' input size (F = 2): d_qk = 1, d_v = 2, a feed-forward of 6
    Entry("mlstm_block", lambda H, dtype: jrnn.mlstm_block(2, num_heads=1, ffn_round_up_to_multiple_of=1, dtype=dtype)),
    Entry("slstm", lambda H, dtype: jrnn.slstm(H, num_heads=1, dtype=dtype)),
    # E = 4H in 2H heads of P = 2, two heads per (B, C) group: state E·N = 24 for H = 3
    Entry("mamba2", lambda H, dtype: jrnn.mamba2(H, state_size=2, expand=4, head_dim=2, n_groups=H, dtype=dtype)),
    # one key head serving two value heads, d_k = d_v = 2: memories S [2, 2, 2], a width-4 window of 8 channels
    Entry("gated_delta_net", lambda H, dtype: jrnn.gated_delta_net(H, num_heads=1, head_k_dim=2, head_v_dim=2,
                                                                   num_v_heads=2, dtype=dtype)),
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


def scan_loss(cell, solver, lengths, resets, reverse):
    """``(params, xs, s0) -> loss``: ``jrnn.scan`` with these options, reduced to a weighted sum of the outputs
    plus ``sin`` of every final-state leaf, so that each output's and each state entry's gradient is distinct (the
    per-cell gradient tests of ``tests/cells``)."""

    def loss(params, xs, s0):
        ys, final = jrnn.scan(cell, params, xs, lengths=lengths, initial_state=s0, reverse=reverse, resets=resets,
                              solver=solver)
        weights = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype).reshape(ys.shape))
        return jnp.sum(weights * ys) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree_util.tree_leaves(final))

    return loss


def assert_chunks_equal_steps(cell, params, xs, s0, size, lengths, resets, **tol):
    """``jrnn.chunked(size)`` against ``jrnn.sequential()``, which steps the cell: outputs, final state and the
    gradients of :func:`scan_loss` with respect to the parameters, the inputs and the initial state, forward and in
    reverse, with and without ``resets``, with ``lengths``; every chunked leaf finite."""

    @jax.jit
    def run(params, xs, s0):
        out = {}
        for name, solver in (("chunked", jrnn.chunked(size)), ("sequential", jrnn.sequential())):
            for reverse in (False, True):
                for r in (None, resets):
                    loss = scan_loss(cell, solver, lengths, r, reverse)
                    ys, final = jrnn.scan(cell, params, xs, lengths=lengths, initial_state=s0, reverse=reverse,
                                          resets=r, solver=solver)
                    out[name, reverse, r is None] = (ys, final, jax.grad(loss, argnums=(0, 1, 2))(params, xs, s0))
        return out

    out = run(params, xs, s0)
    for (_, reverse, plain), got in out.items():
        want = out["sequential", reverse, plain]
        for a, e in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
            assert bool(jnp.all(jnp.isfinite(a)))
            np.testing.assert_allclose(a, e, err_msg=f"size {size}, reverse={reverse}, resets={not plain}", **tol)
