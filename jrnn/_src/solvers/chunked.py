"""The chunked solver: a ``jax.lax.scan`` over chunks of steps, each chunk evaluated at once by the cell.

A :class:`jrnn.Chunkwise` cell computes a chunk of ``C`` steps with matrix products inside the chunk (Mamba-2's
state space duality, chunkwise linear attention) and hands the state to the next chunk. Differentiating the scan then
stores ``T / C`` states instead of ``T``: for a cell whose state is large (a ``P × N`` matrix per head) that is the
difference between fitting and not, and the work inside a chunk is matmuls rather than ``C`` dependent steps.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src import checks
from jrnn._src.contract import Chunkwise
from jrnn._src.solvers.base import Problem, Solver, zero_padded


@dataclasses.dataclass(frozen=True)
class Chunked(Solver):
    """Chunks of ``size`` steps, each evaluated at once by a :class:`jrnn.Chunkwise` cell; build it with
    :func:`jrnn.chunked`."""

    size: int = 64
    name = "chunked"

    def check(self, cell: Any, where: str, *, state_mask: bool = False) -> None:
        if not isinstance(cell, Chunkwise):
            raise ValueError(f"{where}: jrnn.chunked() needs a cell that evaluates a chunk of steps at once (a "
                             f"jrnn.Chunkwise, such as jrnn.mamba2), got a {type(cell).__name__}; use jrnn.auto() "
                             f"or jrnn.sequential()")
        if state_mask:
            raise ValueError(f"{where}: jrnn.chunked() takes no state dropout; use jrnn.sequential() for it")

    def solve(self, problem: Problem) -> tuple[jax.Array, Any]:
        cell, params, xs, state = problem.cell, problem.params, problem.xs, problem.state
        batch, time = xs.shape[:2]
        size = min(self.size, time)
        count = -(-time // size)
        pad = count * size - time
        valid, resets = problem.mask, problem.resets
        if pad and valid is None:
            valid = jnp.ones((batch, time), bool)

        def chunks(a, fill):  # [B, T, ...] -> [count, B, size, ...], padded at the end
            if a is None:
                return None
            a = jnp.pad(a, [(0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 2), constant_values=fill)
            return jnp.swapaxes(a.reshape(batch, count, size, *a.shape[2:]), 0, 1)

        def body(s, inputs):
            x, v, r = inputs
            return cell.chunk(params, s, x, v, r, problem.restart)

        final, ys = jax.lax.scan(body, state, (chunks(xs, 0), chunks(valid, False), chunks(resets, False)))
        ys = jnp.swapaxes(ys, 0, 1).reshape(batch, count * size, *ys.shape[3:])[:, :time]
        return zero_padded(ys, problem.mask), final


def chunked(size: int = 64) -> Chunked:
    """Chunks of ``size`` steps, each evaluated at once, the state carried from chunk to chunk by a
    ``jax.lax.scan``: the training form of the matrix-state recurrences (Mamba-2's SSD). The cell says how a chunk
    is computed (:class:`jrnn.Chunkwise`); ``size`` need not divide ``T`` (the last chunk is padded). Equal to
    :func:`jrnn.sequential` in values and gradients to float rounding, with lengths, resets, reverse and initial
    and final states.

    Args:
      size: steps per chunk (a positive int): the matrices inside a chunk are ``size × size``; differentiating
        stores one state per chunk.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.mamba2(8, state_size=4, head_dim=4)
      >>> params = cell.init(jax.random.key(0), input_size=8)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 50, 8))
      >>> chunks, _ = jrnn.scan(cell, params, xs, solver=jrnn.chunked(16))
      >>> steps, _ = jrnn.scan(cell, params, xs, solver=jrnn.sequential())
      >>> bool(jnp.allclose(chunks, steps, atol=1e-5))
      True
    """
    return Chunked(checks.positive_int("size", size, "jrnn.chunked"))
