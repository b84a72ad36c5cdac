"""The associative solver: a recurrence linear in the state, from its coefficients for the whole sequence.

A :class:`jrnn.LinearRecurrence` cell gives the coefficients of ``s_t = a_t ⊙ s_{t-1} + b_t`` (or
``A_t s_{t-1} + b_t``) for every step at once; the solver composes them, and the cell's ``readout`` gives the
outputs. Two ways to compose: ``"tree"`` runs ``jax.lax.associative_scan`` (``linear.py``, in log space for a cell
whose ``log_space`` is True), ``O(log T)`` deep with about twice the work; ``"loop"`` runs ``jax.lax.scan`` over the
coefficients, time-major, ``T`` deep, its body one multiply-add. Either way the input-dependent work (projections,
gates, convolutions) runs once over the whole sequence instead of once per step, as :func:`jrnn.sequential` runs it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src.contract import LinearRecurrence
from jrnn._src.solvers.base import Problem, Solver, last_valid, zero_padded
from jrnn._src.solvers.linear import linear_loop, linear_scan, log_linear_scan

METHODS = ("tree", "loop")


@dataclasses.dataclass(frozen=True)
class Associative(Solver):
    """A linear cell's coefficients composed over time; build it with :func:`jrnn.associative`."""

    method: str = "tree"
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
        if self.method == "loop":
            return _solve_by_loop(problem)
        cell, params, xs, state = problem.cell, problem.params, problem.xs, problem.state
        a, b = cell.coefficients(params, xs)
        resets, restart = problem.resets, problem.restart
        states = (log_linear_scan(a, b, state, resets, restart) if cell.log_space
                  else linear_scan(a, b, state, resets=resets, restart=restart))
        final = last_valid(states, problem).astype(state.dtype)
        ys = cell.readout(params, states.astype(state.dtype), xs)
        return zero_padded(ys, problem.mask), final


def _solve_by_loop(problem: Problem) -> tuple[jax.Array, Any]:
    """The ``"loop"`` method: coefficients and readout time-major (they are pointwise in time, so any two leading
    axes do), ``jax.lax.scan`` between them; no transpose of anything of the state's size."""
    cell, params, state = problem.cell, problem.params, problem.state
    xs = jnp.swapaxes(problem.xs, 0, 1)  # [T, B, ...]
    a, b = cell.coefficients(params, xs)
    if cell.log_space:  # the loop multiplies one step at a time: no product of many small a to keep in range
        a, b = jnp.exp(a), jnp.exp(b)
    resets = None if problem.resets is None else problem.resets.T
    states = linear_loop(a, b, state, resets, problem.restart)  # [T, B, H]
    final = last_valid(states, problem, time_axis=0).astype(state.dtype)
    ys = jnp.swapaxes(cell.readout(params, states.astype(state.dtype), xs), 0, 1)
    return zero_padded(ys, problem.mask), final


def associative(method: str = "tree") -> Associative:
    """Every step's coefficients at once for a cell whose recurrence is linear in the state
    (:class:`jrnn.LinearRecurrence`: :func:`jrnn.min_gru`, :func:`jrnn.lru`, :func:`jrnn.mamba`, or a cell of
    your own), composed over time, then the cell's readout. Coefficients may have either sign or be complex,
    diagonal or dense. Equal to :func:`jrnn.sequential` in values and gradients to float rounding.

    Args:
      method: how the pairs ``(a_t, b_t)`` are composed. ``"tree"``: ``jax.lax.associative_scan``, ``O(log T)``
        deep instead of ``T`` (``jrnn/_src/solvers/linear.py``; in log space for a ``log_space`` cell), about twice
        the work: it pays on a GPU or TPU, where :func:`jrnn.auto` picks it. ``"loop"``: ``jax.lax.scan`` over the
        coefficients, one multiply-add per step, with the projections and the readout done once for the whole
        sequence: on a CPU it measured faster than stepping the cell (``python -m benchmarks linear``), and
        :func:`jrnn.auto` picks it there.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.min_gru(8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 50, 3))
      >>> tree, _ = jrnn.scan(cell, params, xs, solver=jrnn.associative())
      >>> loop, _ = jrnn.scan(cell, params, xs, solver=jrnn.associative(method="loop"))
      >>> sequential, _ = jrnn.scan(cell, params, xs, solver=jrnn.sequential())
      >>> bool(jnp.allclose(tree, sequential, atol=1e-5)), bool(jnp.allclose(loop, sequential, atol=1e-5))
      (True, True)
    """
    if method not in METHODS:
        raise ValueError(f"jrnn.associative: expected method 'tree' or 'loop', got {method!r}")
    return Associative(method)
