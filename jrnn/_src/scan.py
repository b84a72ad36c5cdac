"""The recurrence over time: ``jrnn.scan`` (plain path here, fused path in ``fused.py``) and the layer ``RNN``."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src import checks, parallel
from jrnn._src.fused import fused_layer
from jrnn._src.fused_cells import kernel_for
from jrnn._src.sequences import carry_dtype, keep_where, per_step, reverse_sequences, valid_mask
from jrnn._src.types import Cell, input_shape, prepare


def scan(cell: Cell, params: Any, xs: jax.Array, *, lengths: jax.Array | None = None,
         initial_state: Any = None, reverse: bool = False, unroll: int | bool = 1, fused: bool = True,
         matmul_dtype: Any = None) -> tuple[jax.Array, Any]:
    """Runs ``cell`` over the batch-major sequence ``xs``: ``(c -> x -> (c, y)) -> c -> [B, T, F] -> ([B, T, O], c)``.

    Without ``lengths`` and with ``reverse=False`` it is exactly this Python loop::

        state = initial_state or cell.initial_state((B,))
        params = cell.prepare(params)            # only for a cell that has prepare (jrnn.exprnn)
        ys = []
        for t in range(T):
            state, y = cell.step(params, state, xs[:, t])
            ys.append(y)
        return jnp.stack(ys, axis=1), state

    With ``lengths``, sequence ``b`` is only ``xs[b, :lengths[b]]``: its state stops changing after step
    ``lengths[b] - 1``, its outputs at padded steps are 0, and the returned final state is its own last state.
    With ``reverse=True`` each sequence runs from its own last valid element back to step 0 (the seed's
    ``A'_t``), and ``ys`` comes back in the original time order. Lengths above T count as T, below 0 as 0
    (values are not checked: they may be traced). Padded inputs are replaced by zeros before the cell sees them.
    The state is carried in the dtype that ``xs`` and ``params`` promote to (an ``initial_state`` is cast to it).

    Three paths compute it, with the same results and gradients to float rounding (tested in float64 and against
    PyTorch):

    - the fused path (``fused=True``, the default) for the built-in cells, :func:`jrnn.elman`, :func:`jrnn.lstm`
      and :func:`jrnn.gru` (exact types): every input projection in one GEMM before the loop, one matmul per step,
      and a custom VJP whose backward loop carries only the state gradient, with the weight, bias and input
      gradients as single GEMMs after the loop, as cuDNN does (``jrnn/_src/fused.py``; speed in BENCHMARKS.md);
    - the parallel path (``fused=True``) for a cell whose recurrence is linear and diagonal in the state and
      declares it with ``log_coefficients`` (:func:`jrnn.min_gru`, :func:`jrnn.min_lstm`): every step at once
      with ``jax.lax.associative_scan`` in log space, ``O(log T)`` deep instead of ``T`` (``jrnn/_src/parallel.py``).
      The cell's ``parallel`` option chooses it: by default on a GPU or TPU, not on a CPU, where the loop is faster;
    - the plain path: ``jax.lax.scan`` over ``cell.step``, differentiated by JAX, for every other cell and with
      ``fused=False``. Use it for forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``), which
      a custom VJP does not support.

    Args:
      cell: any :class:`jrnn.Cell`.
      params: the cell's parameters.
      xs: ``[B, T, F]`` inputs, F the cell's input size (``[B, T, *cell.input_shape(params)]`` for a cell with a
        larger per-step input, such as :func:`jrnn.conv_lstm`'s ``[B, T, H, W, C]``).
      lengths: optional ``[B]`` integer valid lengths.
      initial_state: optional state with batch shape ``[B]``; zeros by default.
      reverse: run each sequence backwards in time.
      unroll: time steps per loop iteration (``True``: all of them); a speed knob only. 1 measured fastest for
        the fused path on XLA:CPU (BENCHMARKS.md, ablation).
      fused: take the fused path for the built-in cells and the parallel path for the cells that have one; False
        forces the plain path, one ``cell.step`` after another.
      matmul_dtype: None computes every matmul in its operands' dtype. ``jnp.bfloat16`` (fused path only) runs the
        matmuls on bfloat16 operands with float32 accumulation, keeping the state, the elementwise math and the
        outputs in the dtype of ``xs``: mixed precision, about 3 significant digits.

    Returns:
      ``(ys[B, T, output_size], final_state)``.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.lstm(8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> ys, state = jrnn.scan(cell, params, jnp.ones((2, 5, 3)), lengths=jnp.array([5, 2]))
      >>> ys.shape, state.c.shape
      ((2, 5, 8), (2, 8))
    """
    where = f"jrnn.scan({type(cell).__name__})"
    batch, time = checks.sequence(xs, input_shape(cell, params), where)
    lengths = checks.lengths(lengths, batch, where)
    expected = cell.initial_state((batch,), carry_dtype(xs, params))
    state = expected if initial_state is None else checks.state_like(initial_state, expected, where)
    kernel = kernel_for(cell, checks.matmul_dtype(matmul_dtype, where)) if fused else None
    if matmul_dtype is not None and kernel is None:
        raise ValueError(f"{where}: matmul_dtype={matmul_dtype!r} needs the fused path, which runs the built-in "
                         f"cells jrnn.elman, jrnn.lstm and jrnn.gru with fused=True; got fused={fused!r} and a "
                         f"{type(cell).__name__}")
    if kernel is not None and time > 0:
        return fused_layer(kernel, time if unroll is True else max(1, int(unroll)), params, xs, state, lengths,
                           reverse)
    params = prepare(cell, params)  # once per sequence, outside the time loop
    if time == 0:
        x = jax.ShapeDtypeStruct((batch,) + xs.shape[2:], xs.dtype)
        y = jax.eval_shape(lambda p, s, x: cell.step(p, s, x)[1], params, state, x)
        return jnp.zeros((batch, 0) + y.shape[1:], carry_dtype(xs, params)), state
    if fused and parallel.wanted(cell):
        return parallel.parallel_scan(cell, params, xs, state, lengths, reverse)

    if reverse:
        xs = reverse_sequences(xs, lengths)
    mask = valid_mask(lengths, batch, time)
    if mask is not None:  # padded inputs never reach the cell, so not even a NaN there touches a gradient
        xs = jnp.where(per_step(mask, xs), xs, jnp.zeros_like(xs))

    def body(state, inputs):
        x, valid = inputs
        new_state, y = cell.step(params, state, x)
        if valid is not None:
            new_state = keep_where(valid, new_state, state)
            y = jnp.where(per_step(valid, y), y, jnp.zeros_like(y))
        return new_state, y

    time_major = (jnp.swapaxes(xs, 0, 1), None if mask is None else mask.T)
    final_state, ys = jax.lax.scan(body, state, time_major, unroll=unroll)
    ys = jnp.swapaxes(ys, 0, 1)
    if reverse:
        ys = reverse_sequences(ys, lengths)
    return ys, final_state


@dataclasses.dataclass(frozen=True)
class RNN:
    """A one-directional sequence layer: ``apply`` is :func:`jrnn.scan` of ``cell``.

    Attributes:
      cell: the :class:`jrnn.Cell`.
      reverse: run each sequence backwards (length-aware).
      unroll: time steps per loop iteration, as in :func:`jrnn.scan`.
      fused: the fused path for the built-in cells, as in :func:`jrnn.scan`.
      matmul_dtype: e.g. ``jnp.bfloat16`` for mixed-precision matmuls, as in :func:`jrnn.scan`.
    """

    cell: Cell
    reverse: bool = False
    unroll: int | bool = 1
    fused: bool = True
    matmul_dtype: Any = None

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    def init(self, key: jax.Array, input_size: int) -> Any:
        return self.cell.init(key, input_size)

    def initial_state(self, batch_shape=(), dtype=None) -> Any:
        return self.cell.initial_state(batch_shape, dtype)

    def prepare(self, params: Any) -> Any:
        """The cell's per-sequence work (``cell.prepare``), or ``params`` unchanged."""
        return prepare(self.cell, params)

    def apply(self, params: Any, xs: jax.Array, *, lengths: jax.Array | None = None, initial_state: Any = None,
              key: jax.Array | None = None) -> tuple[jax.Array, Any]:
        """``(ys[B, T, output_size], final_state)``; ``key`` is unused (no randomness)."""
        del key
        return scan(self.cell, params, xs, lengths=lengths, initial_state=initial_state, reverse=self.reverse,
                    unroll=self.unroll, fused=self.fused, matmul_dtype=self.matmul_dtype)
