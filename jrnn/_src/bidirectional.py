"""The bidirectional RNN: a forward scan, a length-aware reversed scan, and a merge."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src import merge as merges
from jrnn._src.compiled import jit_when_eager
from jrnn._src.contract import CannotStep, Cell, Wrapper, input_shape, prepare
from jrnn._src.regularisation import RecurrentDropout
from jrnn._src.scan import scan
from jrnn._src.sequences import per_step, valid_mask
from jrnn._src.solvers.base import Solver
from jrnn._src.solvers.deprecated import UNSET, solver_from_keywords


class BidirectionalParams(NamedTuple):
    """``forward`` and ``backward`` cell parameters and the merge's (None for a parameter-free merge)."""

    forward: Any
    backward: Any
    merge: Any = None


class BidirectionalState(NamedTuple):
    """The forward cell's state and the backward cell's state."""

    forward: Any
    backward: Any


BIDIRECTIONAL_CANNOT_STEP = (
    "a bidirectional layer cannot step one input at a time: its output at step t merges the backward direction's "
    "state A'_t, which is computed from the inputs after t (back from each sequence's last element), and a step "
    "has not seen them yet; run it over whole sequences with apply")


@dataclasses.dataclass(frozen=True)
class Bidirectional(Wrapper):
    """Two RNNs running in opposite directions, merged at every step (the seed's section 2)::

        A_t  = f(U x_t + W A_{t-1})        forward, t = 1..T
        A'_t = f(U' x_t + W' A'_{t+1})     backward, t = T..1, from each sequence's own last valid step
        y_t  = merge(A_t, A'_t)            concat (default), sum, mean, product, seed_merge: g(V A_t + V' A'_t)

    Outputs at padded steps are 0. The final state is a :class:`BidirectionalState`: the forward state after
    each sequence's last valid step and the backward state after step 0.
    Build it with :func:`jrnn.bidirectional`.

    It cannot step one input at a time: :meth:`step` raises, since ``y_t`` needs ``A'_t``, which is computed from
    the inputs after ``t``.
    """

    forward: Cell
    backward: Cell
    merge: Any = merges.MERGES["concat"]
    solver: Solver | None = None
    dropout: RecurrentDropout | None = None

    @property
    def hidden_size(self) -> int:
        return self.forward.hidden_size + self.backward.hidden_size

    @property
    def output_size(self) -> int:
        return self.merge.output_size(self.forward.output_size, self.backward.output_size)

    def input_size(self, params: BidirectionalParams) -> int:
        return self.forward.input_size(params.forward)

    def input_shape(self, params: BidirectionalParams) -> tuple[int, ...]:
        return input_shape(self.forward, params.forward)

    def step(self, params: BidirectionalParams, state: BidirectionalState, x: jax.Array) -> tuple[Any, jax.Array]:
        """Always raises :class:`ValueError`: a bidirectional layer's output at step t needs the backward state
        ``A'_t``, computed from the inputs at ``t + 1, ...``, which a step does not have yet."""
        raise CannotStep(f"jrnn.Bidirectional.step: {BIDIRECTIONAL_CANNOT_STEP}", BIDIRECTIONAL_CANNOT_STEP)

    @property
    def _scan_options(self) -> dict:
        return dict(solver=self.solver, dropout=self.dropout)

    def init(self, key: jax.Array, input_size: int) -> BidirectionalParams:
        kf, kb, km = jax.random.split(key, 3)
        return BidirectionalParams(self.forward.init(kf, input_size), self.backward.init(kb, input_size),
                                   self.merge.init(km, self.forward.output_size, self.backward.output_size))

    def initial_state(self, batch_shape=(), dtype=None) -> BidirectionalState:
        return BidirectionalState(self.forward.initial_state(batch_shape, dtype),
                                  self.backward.initial_state(batch_shape, dtype))

    def prepare(self, params: BidirectionalParams) -> BidirectionalParams:
        """Each direction's per-sequence work (``cell.prepare``)."""
        return params._replace(forward=prepare(self.forward, params.forward),
                               backward=prepare(self.backward, params.backward))

    @jit_when_eager(static_argnums=(0,))
    def apply(self, params: BidirectionalParams, xs: jax.Array, *, lengths: jax.Array | None = None,
              initial_state: BidirectionalState | None = None, key: jax.Array | None = None,
              resets: jax.Array | None = None) -> tuple[jax.Array, BidirectionalState]:
        """``xs[B, T, F] -> (ys[B, T, output_size], BidirectionalState)``; ``resets [B, T]`` marks where packed
        segments start, and each direction runs within each segment (:func:`jrnn.scan`).

        A ``key`` draws the masks of ``dropout`` (ignored without): ``k_forward, k_backward =
        jax.random.split(key)``, so each direction has masks of its own.
        """
        keys = (None, None) if key is None or self.dropout is None else tuple(jax.random.split(key))
        if initial_state is None:
            initial_state = BidirectionalState(None, None)
        elif not isinstance(initial_state, BidirectionalState):
            raise TypeError("jrnn.Bidirectional: expected initial_state to be a BidirectionalState(forward, "
                            f"backward), got {type(initial_state).__name__}")
        a, final_fw = scan(self.forward, params.forward, xs, lengths=lengths, resets=resets,
                           initial_state=initial_state.forward, key=keys[0], **self._scan_options)
        a_rev, final_bw = scan(self.backward, params.backward, xs, lengths=lengths, resets=resets,
                               initial_state=initial_state.backward, reverse=True, key=keys[1], **self._scan_options)
        ys = self.merge.apply(params.merge, a, a_rev)
        mask = valid_mask(lengths, *xs.shape[:2])
        if mask is not None:
            ys = jnp.where(per_step(mask, ys), ys, jnp.zeros_like(ys))
        return ys, BidirectionalState(final_fw, final_bw)


def bidirectional(forward: Cell, backward: Cell | None = None, merge: Any = "concat", *,
                  solver: Solver | None = None, dropout: RecurrentDropout | None = None, unroll: Any = UNSET,
                  fused: Any = UNSET, matmul_dtype: Any = UNSET) -> Bidirectional:
    """A bidirectional layer from two cells (``backward`` defaults to a cell configured like ``forward``, with
    its own parameters).

    Args:
      forward: the cell for ``A_t``, or a one-directional network (a forward :class:`jrnn.RNN`, a
        :func:`jrnn.deep` stack of forward layers): every cell is one.
      backward: the cell (or network) for ``A'_t``, run backwards over each sequence.
      merge: ``'concat'`` (PyTorch's), ``'sum'``, ``'mean'``, ``'product'``, ``jrnn.seed_merge(O, g)`` for the
        seed's ``y_t = g(V A_t + V' A'_t)``, or any callable ``(A[B, T, H], A_rev[B, T, H']) -> y[B, T, O]``.
      solver: passed to both directions' :func:`jrnn.scan`: None (:func:`jrnn.auto`) or any solver.
      dropout: :func:`jrnn.recurrent_dropout` rates for both directions (each draws its own masks), active when
        ``apply`` gets a ``key``.
      unroll: deprecated, folded into ``solver`` with a ``DeprecationWarning`` (as in :func:`jrnn.scan`).
      fused: deprecated, as ``unroll``.
      matmul_dtype: deprecated, as ``unroll``.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> layer = jrnn.bidirectional(jrnn.lstm(4), merge="sum")
      >>> params = layer.init(jax.random.key(0), input_size=3)
      >>> ys, state = layer.apply(params, jnp.ones((2, 5, 3)), lengths=jnp.array([5, 2]))
      >>> ys.shape
      (2, 5, 4)
    """
    for name, cell in (("forward", forward), ("backward", backward)):
        if cell is not None and not isinstance(cell, Cell):
            raise TypeError(f"jrnn.bidirectional: expected {name} to be a jrnn cell, got {cell!r}")
    merge = merges.as_merge(merge)
    backward = forward if backward is None else backward
    try:
        merge.output_size(forward.output_size, backward.output_size)
    except (TypeError, ValueError) as error:
        raise ValueError(f"jrnn.bidirectional: the merge {getattr(merge, 'name', merge)!r} cannot combine forward "
                         f"outputs of size {forward.output_size} with backward outputs of size "
                         f"{backward.output_size}: {error}") from None
    if dropout is not None and not isinstance(dropout, RecurrentDropout):
        raise TypeError(f"jrnn.bidirectional: expected dropout to be None or jrnn.recurrent_dropout(...), "
                        f"got {dropout!r}")
    solver = solver_from_keywords("jrnn.bidirectional", solver, unroll=unroll, fused=fused,
                                  matmul_dtype=matmul_dtype)
    if solver is not None and not isinstance(solver, Solver):
        raise TypeError(f"jrnn.bidirectional: expected solver to be None or a jrnn solver (jrnn.auto(), "
                        f"jrnn.sequential(), jrnn.deer(...), ...), got {solver!r}")
    return Bidirectional(forward, backward, merge, solver, dropout)
