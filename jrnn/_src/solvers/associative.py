"""The associative solver: a recurrence linear in the state, every step at once in ``O(log T)`` depth.

A :class:`jrnn.LinearRecurrence` cell gives the coefficients of ``s_t = a_t ⊙ s_{t-1} + b_t`` (or
``A_t s_{t-1} + b_t``) for the whole sequence; ``linear.py`` composes them with ``jax.lax.associative_scan`` (in log
space for a cell whose ``log_space`` is True), and the cell's ``readout`` gives the outputs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from jrnn._src.contract import LinearRecurrence
from jrnn._src.solvers.base import Problem, Solver, last_valid, zero_padded
from jrnn._src.solvers.linear import linear_scan, log_linear_scan


@dataclasses.dataclass(frozen=True)
class Associative(Solver):
    """``jax.lax.associative_scan`` over a linear cell's coefficients; build it with :func:`jrnn.associative`."""

    name = "associative"

    def check(self, cell: Any, where: str, *, state_mask: bool = False) -> None:
        if not isinstance(cell, LinearRecurrence):
            raise ValueError(f"{where}: jrnn.associative() needs a cell whose recurrence is linear in the state "
                             f"(a jrnn.LinearRecurrence, such as jrnn.min_gru), got a {type(cell).__name__}; use "
                             f"jrnn.auto(), jrnn.sequential() or a Newton solver (jrnn.deer())")
        if state_mask:
            raise ValueError(f"{where}: jrnn.associative() takes no state dropout (it has no recurrent matmul to "
                             f"mask); use jrnn.sequential() for it")

    def solve(self, problem: Problem) -> tuple[jax.Array, Any]:
        cell, params, xs, state = problem.cell, problem.params, problem.xs, problem.state
        a, b = cell.coefficients(params, xs)
        resets, restart = problem.resets, problem.restart
        states = (log_linear_scan(a, b, state, resets, restart) if cell.log_space
                  else linear_scan(a, b, state, resets=resets, restart=restart))
        final = last_valid(states, problem).astype(state.dtype)
        ys = cell.readout(params, states.astype(state.dtype), xs)
        return zero_padded(ys, problem.mask), final


def associative() -> Associative:
    """Every step at once for a cell whose recurrence is linear in the state (:class:`jrnn.LinearRecurrence`:
    :func:`jrnn.min_gru`, :func:`jrnn.min_lstm`, or a cell of your own): ``jax.lax.associative_scan`` over the
    pairs ``(a_t, b_t)``, ``O(log T)`` deep instead of ``T`` (``jrnn/_src/solvers/linear.py``). Coefficients may
    have either sign or be complex, diagonal or dense; a ``log_space`` cell is solved in log space. Equal to
    :func:`jrnn.sequential` in values and gradients to float rounding. It does about twice the work of the loop, so
    it pays on a GPU or TPU, and :func:`jrnn.auto` picks it there (docs/concepts/modern-cells.md has the CPU
    measurements).

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
    return Associative()
