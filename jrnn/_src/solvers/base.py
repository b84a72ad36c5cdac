"""What every solver is: one way of evaluating a recurrence over time, after :func:`jrnn.scan`'s frame.

:func:`jrnn.scan` does everything that does not depend on how the recurrence is evaluated, once: the checks, the
initial state, dropout's masks, ``prepare``, the length-aware reversal and the zeroing of padded inputs. A solver
then receives a :class:`Problem` and returns the outputs and the final state; the frame reverses the outputs back
and applies the output mask. A new way of evaluating a recurrence is one class with one method.
"""

from __future__ import annotations

import abc
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src.contract import StateMaskable
from jrnn._src.sequences import reverse_sequences


class Problem(NamedTuple):
    """One recurrence to evaluate, as :func:`jrnn.scan`'s frame hands it to a solver.

    Attributes:
      cell: the cell (static).
      params: its parameters, already prepared (``cell.prepare``) and with dropout's weight mask applied.
      xs: ``[B, T, ...]`` inputs in the order the recurrence reads them (a reverse scan's are already reversed
        within each sequence's valid prefix), zero at padded steps, input mask applied; ``T >= 1``.
      state: the initial state, batch ``[B]``, typed like ``xs`` (``sequences.batch_like``).
      lengths: ``[B]`` valid lengths, or None (every step valid).
      mask: ``[B, T]`` bool, ``t < lengths[b]``, or None.
      state_mask: ``[B, P]`` variational dropout's state mask, or None.
      resets: ``[B, T]`` bool, True where a new segment starts (the state before that step is ``restart``, not the
        previous step's), in the order the recurrence reads the steps and False at padded steps; or None.
      restart: the state a segment starts from, the cell's own ``initial_state`` (a constant, batch ``[B]``);
        None without ``resets``.
    """

    cell: Any
    params: Any
    xs: jax.Array
    state: Any
    lengths: jax.Array | None
    mask: jax.Array | None
    state_mask: jax.Array | None
    resets: jax.Array | None = None
    restart: Any = None


class Solver(abc.ABC):
    """How :func:`jrnn.scan` evaluates a recurrence over time: :func:`jrnn.auto` (the default),
    :func:`jrnn.sequential`, :func:`jrnn.fused`, :func:`jrnn.associative`, :func:`jrnn.chunked`, :func:`jrnn.deer`,
    :func:`jrnn.quasi_deer`, :func:`jrnn.elk`.

    A solver is a frozen dataclass of static options (hashable: it can be a static argument of ``jax.jit``). Its
    :meth:`solve` must return what the sequential loop returns: ``ys [B, T, output_size]`` with zeros at padded
    steps, and each sequence's state after its own last valid step (its initial state for an empty one); with
    ``resets``, the state before a step where a segment starts is ``restart``.
    """

    name: str = "solver"

    def check(self, cell: Any, where: str, *, state_mask: bool = False) -> None:
        """Raises, naming what was expected, when this solver cannot evaluate ``cell`` (with a state mask when
        ``state_mask``). Called before any work. By default: a state mask needs a :class:`jrnn.StateMaskable`
        cell."""
        if state_mask and not isinstance(cell, StateMaskable):
            raise TypeError(f"{where}: state dropout needs a cell whose step takes state_mask= (a "
                            f"jrnn.StateMaskable: jrnn.elman, jrnn.lstm, jrnn.gru), got {type(cell).__name__}")

    def reverse(self, xs: jax.Array, lengths: jax.Array | None) -> jax.Array:
        """The length-aware reversal the frame applies before and after :meth:`solve` for a reverse scan."""
        return reverse_sequences(xs, lengths)

    @abc.abstractmethod
    def solve(self, problem: Problem) -> tuple[jax.Array, Any]:
        """``(ys [B, T, output_size], final_state)`` of ``problem``."""


def last_valid(states: jax.Array, problem: Problem, time_axis: int = 1) -> jax.Array:
    """Each sequence's state after its last valid step, from every step's state ``[B, T, ...]`` (``[T, B, ...]``
    with ``time_axis=0``; the prefix never depends on later steps), or the initial state for an empty sequence."""
    if problem.lengths is None:
        return jnp.take(states, -1, axis=time_axis)
    n = jnp.clip(problem.lengths, 0, states.shape[time_axis])
    index = jnp.maximum(n - 1, 0)
    if time_axis == 0:
        last = states[index, jnp.arange(states.shape[1])]
    else:
        last = jnp.take_along_axis(states, index.reshape((-1,) + (1,) * (states.ndim - 1)), axis=1)[:, 0]
    return jnp.where((n > 0).reshape((-1,) + (1,) * (last.ndim - 1)), last, problem.state.astype(last.dtype))


def zero_padded(ys: jax.Array, mask: jax.Array | None) -> jax.Array:
    """``ys [B, T, ...]`` with zeros at the padded steps of ``mask [B, T]``."""
    if mask is None:
        return ys
    return jnp.where(mask.reshape(mask.shape + (1,) * (ys.ndim - 2)), ys, jnp.zeros_like(ys))
