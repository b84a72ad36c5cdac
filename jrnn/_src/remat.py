"""Memory-bounded BPTT: :func:`jrnn.scan` with gradient checkpointing in segments.

Plain BPTT through ``lax.scan`` stores every step's residuals (the activations the backward pass needs): memory
``O(T)`` in the sequence length. Cutting the sequence into segments of ``S`` steps and rematerialising each
segment during the backward pass (Chen et al. 2016, "Training deep nets with sublinear memory cost",
arXiv 1604.06174; Gruslys et al. 2016, "Memory-efficient backpropagation through time", arXiv 1606.03401) keeps
only the ``T / S`` states at segment boundaries plus one segment's residuals at a time: ``O(T / S + S)``, least
at ``S = sqrt(T)``, for about one extra forward pass of compute. The gradient is the same as plain BPTT's: the
segment is recomputed with the same operations on the same values.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src import checks
from jrnn._src.contract import Cell, input_shape, prepare
from jrnn._src.regularisation import RecurrentDropout
from jrnn._src.scan import scan
from jrnn._src.sequences import batch_like, carry_dtype, reverse_sequences
from jrnn._src.solvers.base import Solver
from jrnn._src.solvers.deprecated import UNSET, solver_from_keywords


def checkpointed_scan(cell: Cell, params: Any, xs: jax.Array, *, lengths: jax.Array | None = None,
                      initial_state: Any = None, reverse: bool = False, solver: Solver | None = None,
                      segment_length: int | None = None, dropout: RecurrentDropout | None = None,
                      key: jax.Array | None = None, unroll: Any = UNSET) -> tuple[jax.Array, Any]:
    """:func:`jrnn.scan` with the same signature, the same results and the same gradients, in ``O(sqrt T)`` memory.

    An outer ``lax.scan`` over segments of ``S`` steps whose body is ``jax.checkpoint`` of an inner
    :func:`jrnn.scan` over one segment. T is padded up to a multiple of ``S``; the pad steps are masked (the state
    holds, outputs are 0) and cut off the outputs. Equivalent to::

        state, ys = initial_state, []
        for start in range(0, T, S):                          # each segment is rematerialised on the way back
            y, state = jrnn.scan(cell, params, xs[:, start:start + S], lengths=clip(lengths - start, 0, S),
                                 initial_state=state)
            ys.append(y)
        return concatenate(ys, axis=1), state

    with ``reverse=True`` applied, as in :func:`jrnn.scan`, by a length-aware reversal of ``xs`` before and of
    ``ys`` after.

    Args:
      cell: any :class:`jrnn.Cell`.
      params: the cell's parameters.
      xs: ``[B, T, F]`` inputs (``[B, T, *cell.input_shape(params)]``, as :func:`jrnn.scan`).
      lengths: optional ``[B]`` integer valid lengths.
      initial_state: optional state with batch shape ``[B]``; zeros by default.
      reverse: run each sequence backwards in time (length-aware).
      solver: the solver of each segment's :func:`jrnn.scan` (None: :func:`jrnn.auto`).
      segment_length: ``S``, steps per checkpointed segment; ``ceil(sqrt(T))`` by default.
      dropout: :func:`jrnn.recurrent_dropout` rates, as in :func:`jrnn.scan`. Every segment gets the same ``key``,
        and the masks depend on the key and the shapes only, so the whole sequence has one set of masks.
      key: a PRNG key draws the dropout masks (training); None draws none.
      unroll: deprecated; pass ``solver=jrnn.sequential(unroll)`` or ``jrnn.fused(unroll=...)``.

    Returns:
      ``(ys[B, T, output_size], final_state)``, as :func:`jrnn.scan`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.gru(8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> xs = jnp.ones((2, 100, 3))
      >>> ys, s = jrnn.checkpointed_scan(cell, params, xs, segment_length=10)
      >>> bool(jnp.allclose(ys, jrnn.scan(cell, params, xs)[0]))
      True
    """
    where = f"jrnn.checkpointed_scan({type(cell).__name__})"
    solver = solver_from_keywords(where, solver, unroll=unroll, stacklevel=3)
    batch, time = checks.sequence(xs, input_shape(cell, params), where)
    lengths = checks.lengths(lengths, batch, where)
    if segment_length is None:
        segment_length = max(1, math.ceil(math.sqrt(time)))
    segment = min(checks.positive_int("segment_length", segment_length, where), max(time, 1))
    expected = cell.initial_state((batch,), carry_dtype(xs, params))
    state = batch_like(expected if initial_state is None else checks.state_like(initial_state, expected, where), xs)
    params = prepare(cell, params)  # once for the whole sequence; the segments' scans find it done
    if time == 0:
        return scan(cell, params, xs, lengths=lengths, initial_state=state, solver=solver, dropout=dropout, key=key)

    if reverse:
        xs = reverse_sequences(xs, lengths)
    num_segments = -(-time // segment)
    pad = num_segments * segment - time
    xs = jnp.pad(xs, ((0, 0), (0, pad)) + ((0, 0),) * (xs.ndim - 2))
    segments = jnp.swapaxes(xs.reshape(batch, num_segments, segment, *xs.shape[2:]), 0, 1)  # [N, B, S, F]
    if lengths is None and pad == 0:
        segment_lengths = None
    else:
        full = jnp.full((batch,), time, jnp.int32) if lengths is None else jnp.minimum(lengths, time)
        starts = segment * jnp.arange(num_segments, dtype=full.dtype)
        segment_lengths = jnp.clip(full[None, :] - starts[:, None], 0, segment)  # [N, B]

    @jax.checkpoint
    def run_segment(params, state, x, seg_lengths):
        ys, state = scan(cell, params, x, lengths=seg_lengths, initial_state=state, solver=solver, dropout=dropout,
                         key=key)
        return state, ys

    def body(state, inputs):
        x, seg_lengths = inputs
        return run_segment(params, state, x, seg_lengths)

    final_state, ys = jax.lax.scan(body, state, (segments, segment_lengths))
    ys = jnp.swapaxes(ys, 0, 1).reshape(batch, num_segments * segment, *ys.shape[3:])[:, :time]
    if reverse:
        ys = reverse_sequences(ys, lengths)
    return ys, final_state
