"""The default solver, :func:`jrnn.auto`: a decision list over the cell's capabilities, made at trace time."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from jrnn._src.contract import Chunkwise, LinearRecurrence
from jrnn._src.solvers.associative import Associative
from jrnn._src.solvers.base import Problem, Solver
from jrnn._src.solvers.chunked import Chunked
from jrnn._src.solvers.fused import Fused, kernel_for
from jrnn._src.solvers.sequential import Sequential


@dataclasses.dataclass(frozen=True)
class Auto(Solver):
    """The solver :func:`jrnn.auto` describes; :meth:`choose` names the one it takes for a cell."""

    unroll: int | bool = dataclasses.field(default=1, repr=False)  # the deprecated unroll= keyword, for the loops
    name = "auto"

    def choose(self, cell: Any, *, state_mask: bool = False) -> Solver:
        """The solver taken for ``cell``, with state dropout when ``state_mask``."""
        if kernel_for(cell) is not None:
            return Fused(None, self.unroll)
        if isinstance(cell, Chunkwise) and not state_mask:
            return Chunked(cell.chunk_size)
        if isinstance(cell, LinearRecurrence) and not state_mask:
            preferred = cell.parallel  # None, or the deprecated min_gru(parallel=...)
            if preferred is not None:
                return Associative() if preferred else Sequential(self.unroll)
            if jax.default_backend() != "cpu":
                return Associative()
            if not cell.expands:
                return Associative("loop")
        return Sequential(self.unroll)

    def check(self, cell: Any, where: str, *, state_mask: bool = False) -> None:
        self.choose(cell, state_mask=state_mask).check(cell, where, state_mask=state_mask)

    def reverse(self, xs: jax.Array, lengths: jax.Array | None) -> jax.Array:
        raise AssertionError("jrnn.auto() is resolved to a solver before the frame runs")

    def solve(self, problem: Problem) -> tuple[jax.Array, Any]:
        raise AssertionError("jrnn.auto() is resolved to a solver before the frame runs")


def auto() -> Auto:
    """The default solver of :func:`jrnn.scan` and every layer: the fastest exact one for the cell, chosen by this
    decision list, first match wins:

    1. a network that steps (a forward :class:`jrnn.RNN`, a :func:`jrnn.deep` stack of them): its own ``apply``,
       layer by layer, each layer with its own solver;
    2. a cell with a registered fused kernel (:func:`jrnn.elman`, :func:`jrnn.lstm`, :func:`jrnn.gru`, or one of
       yours, :func:`jrnn.register_fused_kernel`): :func:`jrnn.fused`;
    3. a :class:`jrnn.Chunkwise` cell (:func:`jrnn.mamba2`, :func:`jrnn.gated_delta_net`, :func:`jrnn.mlstm`,
       :func:`jrnn.mlstm_block`) without state dropout: :func:`jrnn.chunked` with the cell's ``chunk_size`` (64 for
       Mamba-2; for the delta rule and the mLSTM the value size per head rounded up to a power of two, between 16
       and 64), measured fastest for training on this CPU (``python -m benchmarks linear``);
    4. a :class:`jrnn.LinearRecurrence` cell (:func:`jrnn.min_gru`, :func:`jrnn.lru`, :func:`jrnn.s5`,
       :func:`jrnn.rg_lru`, :func:`jrnn.hawk_block`, :func:`jrnn.mamba`, ...) without state dropout:
       :func:`jrnn.associative` on a GPU or TPU backend; on a CPU ``jrnn.associative(method="loop")``, which
       measured fastest there, except for a cell whose coefficients expand its inputs (``expands``:
       :func:`jrnn.mamba`, :func:`jrnn.s6`), which rule 5 steps, as measured faster;
    5. every other cell: :func:`jrnn.sequential`.

    The Newton solvers (:func:`jrnn.deer`, :func:`jrnn.quasi_deer`, :func:`jrnn.elk`) are never chosen: they trade
    exactness to a tolerance and extra work for depth, which pays only in the cases their page measures.

    Example:
      >>> import jrnn
      >>> jrnn.auto().choose(jrnn.lstm(8)), jrnn.auto().choose(jrnn.indrnn(8))
      (Fused(matmul_dtype=None, unroll=1), Sequential(unroll=1))
      >>> jrnn.auto().choose(jrnn.lru(8, 4))   # on a CPU
      Associative(method='loop')
    """
    return Auto()
