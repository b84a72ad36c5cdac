"""The fused scan: :func:`jrnn.scan`'s semantics for the built-in cells, computed as cuDNN computes an RNN layer.

``fused_scan(cell, params, xs, ...)`` returns what ``jrnn.scan(cell, params, xs, ...)`` returns (outputs, final
state, and every gradient) for :func:`jrnn.elman`, :func:`jrnn.lstm` and :func:`jrnn.gru` cells; any other cell
is handed to ``jrnn.scan``. What it does differently:

1. The input projections of all time steps are one GEMM before the loop, ``xp[T, B, G·H] = X U^T + b``, laid out
   time-major so that step t reads one contiguous ``[B, G·H]`` block.
2. Each step is one ``[B, P] x [P, G·H]`` matmul for all gates and one wide elementwise pass.
3. A custom VJP (:func:`jax.custom_vjp`): the backward loop carries only the state's gradient and stacks the
   gradients of the step's pre-activations; the weight, bias and input gradients are single large GEMMs after
   the loop (``dW = DZ^T S_prev``, ``dU = DZ^T X``, ``dX = DZ U``), as in cuDNN (Appleyard et al. 2016).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src import checks
from jrnn._src.fused_cells import kernel_for
from jrnn._src.scan import scan
from jrnn._src.types import Cell

DEFAULT_UNROLL = 1


def fused_scan(cell: Cell, params: Any, xs: jax.Array, *, lengths: jax.Array | None = None,
               initial_state: Any = None, reverse: bool = False, unroll: int | bool = DEFAULT_UNROLL,
               matmul_dtype: Any = None) -> tuple[jax.Array, Any]:
    """:func:`jrnn.scan` for the built-in cells, fused: ``(c -> x -> (c, y)) -> c -> [B, T, F] -> ([B, T, O], c)``.

    Same arguments, same results and the same gradients as ``jrnn.scan`` (up to float rounding), faster: see the
    module docstring. Cells other than ``jrnn.elman``, ``jrnn.lstm`` and ``jrnn.gru`` go to ``jrnn.scan``.

    Args:
      cell: any :class:`jrnn.Cell`.
      params: the cell's parameters.
      xs: ``[B, T, F]`` inputs.
      lengths: optional ``[B]`` integer valid lengths: sequence b's state stops changing after step
        ``lengths[b] - 1`` and its outputs at padded steps are 0.
      initial_state: optional state with batch shape ``[B]``; zeros by default.
      reverse: run each sequence from its own last valid element back to step 0; ``ys`` in the original order.
      unroll: passed to both ``jax.lax.scan`` loops (forward and backward).
      matmul_dtype: None (default) computes in the dtype of ``xs``; ``jnp.bfloat16`` runs every matmul and GEMM
        on bfloat16 operands with accumulation, state and elementwise math in ``xs``'s dtype (mixed precision).

    Returns:
      ``(ys[B, T, output_size], final_state)``.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> from jrnn._src.fused import fused_scan
      >>> cell = jrnn.lstm(8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> ys, state = fused_scan(cell, params, jnp.ones((2, 5, 3)), lengths=jnp.array([5, 2]))
      >>> ys.shape, state.c.shape
      ((2, 5, 8), (2, 8))
    """
    kernel = kernel_for(cell, matmul_dtype)
    if kernel is None:
        return scan(cell, params, xs, lengths=lengths, initial_state=initial_state, reverse=reverse, unroll=unroll)
    where = f"jrnn.fused_scan({type(cell).__name__})"
    batch, time = checks.sequence(xs, cell.input_size(params), where)
    lengths = checks.lengths(lengths, batch, where)
    expected = cell.initial_state((batch,), xs.dtype)
    state = expected if initial_state is None else checks.state_like(initial_state, expected, where)
    if time == 0:
        return jnp.zeros((batch, 0, cell.output_size), xs.dtype), state

    xs_tm = jnp.swapaxes(xs, 0, 1)
    if reverse:
        xs_tm = reverse_time_major(xs_tm, lengths)
    ys_tm, final_state = _fused_layer(kernel, int(unroll), params, xs_tm, state, lengths)
    if reverse:
        ys_tm = reverse_time_major(ys_tm, lengths)
    return jnp.swapaxes(ys_tm, 0, 1), final_state


# ------------------------------------------------------------------------------------------------------------
# Length-aware reversal of a time-major array, its own inverse (so its VJP is itself).
# ------------------------------------------------------------------------------------------------------------

@jax.custom_vjp
def reverse_time_major(xs: jax.Array, lengths: jax.Array | None) -> jax.Array:
    """``out[t, b] = xs[n_b - 1 - t, b]`` for ``t < n_b = min(lengths[b], T)``, else ``xs[t, b]``."""
    if lengths is None:
        return jnp.flip(xs, axis=0)
    time = xs.shape[0]
    t = jnp.arange(time)[:, None]
    n = jnp.minimum(lengths, time)[None, :]
    index = jnp.where(t < n, n - 1 - t, t)
    return jnp.take_along_axis(xs, index.reshape(index.shape + (1,) * (xs.ndim - 2)), axis=0)


def _reverse_fwd(xs, lengths):
    return reverse_time_major(xs, lengths), lengths


def _reverse_bwd(lengths, g):
    return reverse_time_major(g, lengths), None


reverse_time_major.defvjp(_reverse_fwd, _reverse_bwd)


# ------------------------------------------------------------------------------------------------------------
# The layer: forward loop, and a custom VJP whose backward loop carries only the state's gradient.
# ------------------------------------------------------------------------------------------------------------

def _where_rows(valid: jax.Array, new: Any, old: Any) -> Any:
    def pick(n, o):
        return jnp.where(valid.reshape(valid.shape + (1,) * (n.ndim - 1)), n, o)

    return jax.tree_util.tree_map(pick, new, old)


def _forward(kernel, unroll, params, xs_tm, state0, lengths, save):
    time = xs_tm.shape[0]
    xp = kernel.project(params, xs_tm)
    consts = kernel.consts(params)

    def body(carry, inputs):
        xp_t, t = inputs
        new, y, res = kernel.step(consts, carry, xp_t, save)
        if lengths is not None:
            valid = t < lengths
            new = _where_rows(valid, new, carry)
            y = jnp.where(valid[:, None], y, jnp.zeros_like(y))
        return new, (y, res)

    steps = None if lengths is None else jnp.arange(time, dtype=lengths.dtype)
    carry, (ys, res) = jax.lax.scan(body, kernel.carry(state0), (xp, steps), unroll=unroll)
    return ys, kernel.state(carry), res


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _fused_layer(kernel, unroll, params, xs_tm, state0, lengths):
    ys, final, _ = _forward(kernel, unroll, params, xs_tm, state0, lengths, save=False)
    return ys, final


def _fused_layer_fwd(kernel, unroll, params, xs_tm, state0, lengths):
    ys, final, res = _forward(kernel, unroll, params, xs_tm, state0, lengths, save=True)
    return (ys, final), (params, xs_tm, state0, lengths, ys, res)


def _fused_layer_bwd(kernel, unroll, saved, cotangents):
    params, xs_tm, state0, lengths, ys, res = saved
    dys, dfinal = cotangents
    time = xs_tm.shape[0]
    s0 = kernel.state_output(state0)
    S_prev = jnp.concatenate([s0[None].astype(ys.dtype), ys[:-1]], axis=0)  # [T, B, P]: the state before step t
    consts = kernel.consts(params)

    def body(dcarry, inputs):
        dy, res_t, s_prev, y, t = inputs
        dprev, dxp, dhw, extra = kernel.step_bwd(consts, dcarry, dy, res_t, s_prev, y)
        if lengths is not None:
            valid = t < lengths
            dprev = _where_rows(valid, dprev, dcarry)
            dxp, dhw, extra = _where_rows(valid, (dxp, dhw, extra), jax.tree_util.tree_map(
                jnp.zeros_like, (dxp, dhw, extra)))
        return dprev, (dxp, dhw, extra)

    steps = None if lengths is None else jnp.arange(time, dtype=lengths.dtype)
    inputs = (dys, res, S_prev, ys if kernel.needs_y else None, steps)
    dcarry0, (DXP, DHW, extra) = jax.lax.scan(body, kernel.carry(dfinal), inputs, reverse=True, unroll=unroll)
    dparams, dxs_tm = kernel.grads(params, xs_tm, S_prev, DXP, DHW, extra, res, ys)
    return dparams, dxs_tm, kernel.state(dcarry0), None


_fused_layer.defvjp(_fused_layer_fwd, _fused_layer_bwd)
