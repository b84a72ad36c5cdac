"""The sequential solver: ``jax.lax.scan`` over ``cell.step``, one step after another, for every cell."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src import checks
from jrnn._src.sequences import keep_where, per_step
from jrnn._src.solvers.base import Problem, Solver


@dataclasses.dataclass(frozen=True)
class Sequential(Solver):
    """``jax.lax.scan`` over ``cell.step``; build it with :func:`jrnn.sequential`."""

    unroll: int | bool = 1
    name = "sequential"

    def solve(self, problem: Problem) -> tuple[jax.Array, Any]:
        cell, params, xs, mask, state_mask, resets = (problem.cell, problem.params, problem.xs, problem.mask,
                                                      problem.state_mask, problem.resets)
        step = cell.step if state_mask is None else functools.partial(cell.step, state_mask=state_mask)

        def body(state, inputs):
            x, valid, reset = inputs
            if reset is not None:  # a new segment starts from the cell's initial state
                state = keep_where(reset, problem.restart, state)
            new_state, y = step(params, state, x)
            if valid is not None:
                new_state = keep_where(valid, new_state, state)
                y = jnp.where(per_step(valid, y), y, jnp.zeros_like(y))
            return new_state, y

        time_major = (jnp.swapaxes(xs, 0, 1), None if mask is None else mask.T, None if resets is None else resets.T)
        final_state, ys = jax.lax.scan(body, problem.state, time_major, unroll=self.unroll)
        return jnp.swapaxes(ys, 0, 1), final_state


def sequential(unroll: int | bool = 1) -> Sequential:
    """One step after another: ``jax.lax.scan`` over ``cell.step``, ``T`` steps deep, differentiated by JAX.

    It evaluates every cell and every stepping network, takes state dropout for a :class:`jrnn.StateMaskable`
    cell, and is the one solver that forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``) goes
    through: the fused and Newton solvers define custom VJPs.

    Args:
      unroll: time steps per loop iteration (``True``: all of them); a speed knob only.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.gru(4)
      >>> params = cell.init(jax.random.key(0), input_size=2)
      >>> xs = jnp.ones((3, 7, 2))
      >>> ys, _ = jrnn.scan(cell, params, xs, solver=jrnn.sequential())
      >>> bool(jnp.allclose(ys, jrnn.scan(cell, params, xs)[0], atol=1e-6))
      True
    """
    if unroll is not True:
        unroll = checks.positive_int("unroll", unroll, "jrnn.sequential")
    return Sequential(unroll)
