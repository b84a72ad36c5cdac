"""The recurrence over time: :func:`jrnn.scan`, the frame every solver runs in, and the layer :class:`jrnn.RNN`."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src import checks, regularisation, windowed
from jrnn._src.compiled import jit_when_eager
from jrnn._src.contract import CannotStep, Cell, SequenceLayer, Windowed, Wrapper, input_shape, prepare
from jrnn._src.regularisation import RecurrentDropout
from jrnn._src.sequences import batch_like, carry_dtype, per_step, reverse_sequences, valid_mask
from jrnn._src.solvers.associative import Associative
from jrnn._src.solvers.auto import Auto
from jrnn._src.solvers.base import Problem, Solver
from jrnn._src.solvers.chunked import Chunked
from jrnn._src.solvers.deprecated import UNSET, solver_from_keywords
from jrnn._src.solvers.fused import Fused
from jrnn._src.solvers.newton import Newton, NewtonInfo, deer
from jrnn._src.solvers.sequential import Sequential


def scan(cell: Cell, params: Any, xs: jax.Array, *, lengths: jax.Array | None = None,
         initial_state: Any = None, reverse: bool = False, resets: jax.Array | None = None,
         solver: Solver | None = None,
         dropout: RecurrentDropout | None = None, key: jax.Array | None = None, unroll: Any = UNSET,
         fused: Any = UNSET, matmul_dtype: Any = UNSET) -> tuple[jax.Array, Any]:
    """Runs ``cell`` over the batch-major sequence ``xs``: ``(c -> x -> (c, y)) -> c -> [B, T, F] -> ([B, T, O], c)``.

    Without ``lengths`` and with ``reverse=False`` it is exactly this Python loop::

        state = initial_state or cell.initial_state((B,))
        params = cell.prepare(params)            # only for a jrnn.Preparable cell (jrnn.exprnn)
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

    With ``resets``, several sequences are packed into one row: where ``resets[b, t]`` is True a new segment
    starts, and the state before step ``t`` is the cell's own ``initial_state`` (zeros; as Haiku's ``ResetCore``)
    rather than step ``t - 1``'s: the loop above with ``if resets[b, t]: state = cell.initial_state(...)`` before
    the step, row by row. ``initial_state`` is the first segment's (a state carried from the previous window of a
    stream), and the final state is the last segment's. Under ``reverse=True`` each segment runs backwards on its
    own. Every solver takes them.

    With ``dropout=jrnn.recurrent_dropout(...)`` and a ``key``, the masks of variational dropout and weight drop
    are drawn from the key once per call and reused at every step (see :func:`jrnn.recurrent_dropout`); without a
    key the scan is exactly the one without ``dropout`` (evaluation).

    The ``solver`` decides how the loop above is evaluated; every solver returns the same outputs, final state
    and gradients (to float rounding, or to a Newton solver's tolerance). The default, :func:`jrnn.auto`, takes
    the fastest exact one for the cell; its docstring is the decision list. The others are
    :func:`jrnn.sequential` (``lax.scan`` over ``step``; the one for forward-mode autodiff), :func:`jrnn.fused`
    (the cell's own kernel, with a custom VJP), :func:`jrnn.associative` (a :class:`jrnn.LinearRecurrence` cell
    in ``O(log T)`` depth) and the Newton solvers :func:`jrnn.deer`, :func:`jrnn.quasi_deer`, :func:`jrnn.elk`
    (:func:`jrnn.newton_scan` also returns how many iterations it took). This function does the checks, the
    reversal, the padding, ``prepare`` and dropout's masks once, then calls the solver
    (``jrnn/_src/solvers/base.py``).

    Forward-mode autodiff: ``jax.jvp`` and ``jax.jacfwd`` do not go through a custom VJP, and the default picks
    :func:`jrnn.fused` (custom VJP) for :func:`jrnn.elman`, :func:`jrnn.lstm` and :func:`jrnn.gru`; pass
    ``solver=jrnn.sequential()`` for them. Reverse mode (``jax.grad``, ``jax.vjp``, ``jax.jacrev``) goes
    through every solver.

    A one-directional network is a cell too: a forward :class:`jrnn.RNN`, or a :func:`jrnn.deep` stack of
    forward layers, whose state is the tuple of its layers' states. With :func:`jrnn.auto` it runs through its
    own ``apply``, layer by layer, each layer with its own solver (a reversed scan is the length-aware reversal of
    ``xs``, the network's ``apply``, and the reversal of ``ys``, which is what scanning its ``step`` backwards
    computes); :func:`jrnn.sequential` scans its ``step``, and a Newton solver solves it as one cell. A network
    that cannot step (one with a reverse or bidirectional layer) raises the error its ``step`` raises.

    Args:
      cell: any :class:`jrnn.Cell`, or a one-directional network (:class:`jrnn.RNN`, :class:`jrnn.Deep`).
      params: the cell's parameters.
      xs: ``[B, T, F]`` inputs, F the cell's input size (``[B, T, *cell.input_shape(params)]`` for a
        :class:`jrnn.InputShaped` cell, such as :func:`jrnn.conv_lstm`'s ``[B, T, H, W, C]``).
      lengths: optional ``[B]`` integer valid lengths.
      initial_state: optional state with batch shape ``[B]``; zeros by default.
      reverse: run each sequence backwards in time.
      resets: optional ``[B, T]`` bool, True at the first step of each packed segment after the first (True at
        step 0 starts from the cell's initial state instead of ``initial_state``).
      solver: None or :func:`jrnn.auto` (default), or any other solver above.
      dropout: None, or a :func:`jrnn.recurrent_dropout` (input, state, output and weight rates). A network
        takes it from its :class:`jrnn.RNN` layers, not from here.
      key: a PRNG key draws the dropout masks (training); None draws none (evaluation). Needs ``dropout``; a
        network run by :func:`jrnn.auto` passes it to the network's ``apply`` (its layers' dropout).
      unroll: deprecated; warns and names its replacement, ``jrnn.sequential(unroll)`` or
        ``jrnn.fused(unroll=...)`` (CHANGELOG.md, "Migrating to solvers", has the table).
      fused: deprecated; ``fused=False`` is ``solver=jrnn.sequential()``.
      matmul_dtype: deprecated; ``solver=jrnn.fused(matmul_dtype)``.

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
    solver = solver_from_keywords(where, solver, unroll=unroll, fused=fused, matmul_dtype=matmul_dtype,
                                  stacklevel=3)
    ys, final_state, _ = _frame(cell, params, xs, lengths, initial_state, reverse, solver, dropout, key, where,
                                resets=resets)
    return ys, final_state


def newton_scan(cell: Cell, params: Any, xs: jax.Array, *, solver: Newton | None = None,
                lengths: jax.Array | None = None, initial_state: Any = None, reverse: bool = False,
                resets: jax.Array | None = None) -> tuple[jax.Array, Any, NewtonInfo]:
    """:func:`jrnn.scan` by a parallel-in-time Newton solver, with what the solver did:
    ``(ys[B, T, output_size], final_state, info)``.

    Same contract as :func:`jrnn.scan` (lengths, reverse, initial state, any cell or stepping network); ``info``
    is a :class:`jrnn.NewtonInfo` (iterations, final residual, converged). With the solver's
    ``fallback="none"``, a run that did not converge returns its last iterate and ``info.converged`` is False;
    with the default ``"sequential"`` it returns the sequential answer and ``info`` still says that Newton did
    not converge. Differentiable (implicit gradients; docs/concepts/parallel-in-time.md).

    Args:
      cell: any :class:`jrnn.Cell`, or a one-directional network.
      params: the cell's parameters.
      xs: ``[B, T, F]`` inputs.
      solver: :func:`jrnn.deer` (the default), :func:`jrnn.quasi_deer` or :func:`jrnn.elk`.
      lengths: optional ``[B]`` valid lengths.
      initial_state: optional state with batch shape ``[B]``; zeros by default.
      reverse: run each sequence backwards in time.
      resets: optional ``[B, T]`` bool, the first step of each packed segment, as in :func:`jrnn.scan`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.elman(8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 100, 3))
      >>> ys, state, info = jrnn.newton_scan(cell, params, xs, solver=jrnn.deer())
      >>> bool(info.converged), int(info.iterations) < 100
      (True, True)
    """
    where = f"jrnn.newton_scan({type(cell).__name__})"
    solver = deer() if solver is None else solver
    if not isinstance(solver, Newton):
        raise ValueError(f"{where}: expected a Newton solver (jrnn.deer, jrnn.quasi_deer or jrnn.elk), got "
                         f"{solver!r}")
    return _frame(cell, params, xs, lengths, initial_state, reverse, solver, None, None, where, info=True,
                  resets=resets)


@jit_when_eager(static_argnums=(0, 5, 6, 7, 9), static_argnames=("info",))
def _frame(cell, params, xs, lengths, initial_state, reverse, solver, dropout, key, where, info=False, resets=None):
    """What every solver shares, done once: ``(ys, final_state, NewtonInfo or None)``; one compiled program per
    configuration when called eagerly (:mod:`jrnn._src.compiled`)."""
    solver = Auto() if solver is None else solver
    if not isinstance(solver, Solver):
        raise TypeError(f"{where}: expected solver to be None or a jrnn solver (jrnn.auto(), jrnn.sequential(), "
                        f"jrnn.fused(), jrnn.associative(), jrnn.chunked(), jrnn.deer(...), "
                        f"jrnn.quasi_deer(...), jrnn.elk(...)), got {solver!r}")
    batch, time, lengths, state = _prelude(cell, params, xs, lengths, initial_state, where)
    resets = checks.resets(resets, batch, time, where)
    if is_network(cell):
        if dropout is not None:
            raise ValueError(f"{where}: expected dropout=None for a network; set dropout on its jrnn.RNN layers "
                             f"instead, got {dropout!r}")
        # Tracing one step raises the network's own error when it cannot step (a reverse or bidirectional layer).
        jax.eval_shape(cell.step, params, state, jax.ShapeDtypeStruct((batch,) + xs.shape[2:], xs.dtype))
        if isinstance(solver, Auto):
            ys, final_state = _network_scan(cell, params, xs, lengths, state, reverse, key, resets)
            return ys, final_state, None
        if isinstance(solver, (Fused, Associative, Chunked)):
            raise ValueError(f"{where}: a network has no {solver.name} form of its own; its layers choose their "
                             f"own solvers (solver= on each jrnn.RNN) under jrnn.auto(), or pass "
                             f"jrnn.sequential() or a Newton solver to solve it as one cell")
    dropout = regularisation.check(dropout, key, cell, where)
    state_dropout = dropout is not None and bool(dropout.state)
    # A windowed cell is solved as the cell of its inner state, its windows built here; the loop steps it as it is.
    inner = windowed.inner_cell(cell) if isinstance(cell, Windowed) else None
    if isinstance(solver, Auto):
        solver = solver.choose(cell if inner is None else inner, state_mask=state_dropout)
    if isinstance(solver, Sequential):
        inner = None
    solver.check(cell if inner is None else inner, where, state_mask=state_dropout)
    if not info and isinstance(solver, Newton) and solver.fallback != "sequential":
        raise ValueError(f"{where}: expected fallback='sequential' for a solver given to jrnn.scan, which "
                         f"cannot report a run that did not converge; got fallback={solver.fallback!r} "
                         f"(jrnn.newton_scan returns the iterate and its info)")
    masks = None
    if dropout is not None and time > 0:
        masks = regularisation.draw(dropout, key, cell, params, batch=batch, input_size=xs.shape[-1],
                                    dtype=carry_dtype(xs, params))
        params, xs = regularisation.apply_before(masks, cell, params, xs)
    params = prepare(cell, params)  # once per sequence, outside the time loop
    if time == 0:
        x = jax.ShapeDtypeStruct((batch,) + xs.shape[2:], xs.dtype)
        y = jax.eval_shape(lambda p, s, x: cell.step(p, s, x)[1], params, state, x)
        ys = jnp.zeros((batch, 0) + y.shape[1:], carry_dtype(xs, params))
        return ys, state, (NewtonInfo(jnp.int32(0), jnp.zeros((), ys.dtype), jnp.bool_(True)) if info else None)
    mask = valid_mask(lengths, batch, time)
    if resets is not None and mask is not None:
        resets = resets & mask
    if reverse:
        xs = solver.reverse(xs, lengths)
        if resets is not None:  # a segment runs backwards from its last step, the step before the next one starts
            ends = jnp.concatenate([resets[:, 1:], jnp.zeros_like(resets[:, :1])], axis=1)
            resets = reverse_sequences(ends, lengths)
    if mask is not None:  # padded inputs never reach the cell, so not even a NaN there touches a gradient
        xs = jnp.where(per_step(mask, xs), xs, jnp.zeros_like(xs))
    finish, state_dtype = None, carry_dtype(xs, params)
    if inner is not None:
        xs, state, finish = windowed.windows(cell, params, xs, state, lengths, resets)
        cell = inner
    problem = Problem(cell, params, xs, state, lengths, mask, None if masks is None else masks.state, resets,
                      None if resets is None else batch_like(cell.initial_state((batch,), state_dtype), xs))
    if info:
        ys, final_state, newton_info = solver.solve_with_info(problem)
    else:
        (ys, final_state), newton_info = solver.solve(problem), None
    if finish is not None:
        final_state = finish(final_state)
    if reverse:
        ys = solver.reverse(ys, lengths)
    if masks is not None and masks.output is not None:
        ys = ys * masks.output[:, None, :].astype(ys.dtype)
    return ys, final_state, newton_info


def _prelude(cell, params, xs, lengths, initial_state, where):
    """The checks every scan starts with: ``(batch, time, lengths, state)``, the state shaped like ``xs``."""
    batch, time = checks.sequence(xs, input_shape(cell, params), where)
    lengths = checks.lengths(lengths, batch, where)
    expected = cell.initial_state((batch,), carry_dtype(xs, params))
    state = expected if initial_state is None else checks.state_like(initial_state, expected, where)
    return batch, time, lengths, batch_like(state, xs)


def is_network(cell: Any) -> bool:
    """Whether ``cell`` is a sequence layer (``apply``) that also keeps the cell contract (``step``)."""
    return isinstance(cell, SequenceLayer) and isinstance(cell, Cell)


def _network_scan(network: Any, params: Any, xs: jax.Array, lengths: jax.Array | None, state: Any,
                  reverse: bool, key: jax.Array | None = None,
                  resets: jax.Array | None = None) -> tuple[jax.Array, Any]:
    """A network's scan through its own ``apply``; reversed, between two length-aware reversals."""
    if resets is not None and lengths is not None:
        resets = resets & valid_mask(lengths, *resets.shape)
    if reverse:
        xs = reverse_sequences(xs, lengths)
        if resets is not None:
            ends = jnp.concatenate([resets[:, 1:], jnp.zeros_like(resets[:, :1])], axis=1)
            resets = reverse_sequences(ends, lengths)
    options = {} if resets is None else {"resets": resets}
    ys, final_state = network.apply(params, xs, lengths=lengths, initial_state=state, key=key, **options)
    if reverse:
        ys = reverse_sequences(ys, lengths)
    return ys, final_state


REVERSE_CANNOT_STEP = (
    "a reverse RNN cannot step forward one input at a time: its output at step t is computed from the inputs at "
    "t, t + 1, ..., up to each sequence's last element, which a step has not seen yet; run it over whole "
    "sequences with apply, or use reverse=False")


@dataclasses.dataclass(frozen=True)
class RNN(Wrapper):
    """A one-directional sequence layer: ``apply`` is :func:`jrnn.scan` of ``cell``.

    A forward RNN keeps the cell contract too: ``step(params, state, x) -> (state, y)`` is its cell's step, so a
    forward RNN goes wherever a cell goes (:func:`jrnn.scan`, :func:`jrnn.bidirectional`, a language model's
    token-by-token :meth:`jrnn.LanguageModel.step`). A reverse RNN cannot step (see :meth:`step`). It forwards
    its cell's ``input_shape`` and ``prepare`` (:class:`jrnn.Wrapper`), so an RNN of :func:`jrnn.conv_lstm`
    reads ``[B, T, H, W, C]`` as the cell does.

    Attributes:
      cell: the :class:`jrnn.Cell`.
      reverse: run each sequence backwards (length-aware).
      solver: None (:func:`jrnn.auto`) or any solver, as in :func:`jrnn.scan`.
      dropout: None, or :func:`jrnn.recurrent_dropout` rates, active when ``apply`` gets a ``key``.
      unroll, fused, matmul_dtype: deprecated keywords, folded into ``solver`` with a ``DeprecationWarning``.
    """

    cell: Cell
    reverse: bool = False
    solver: Solver | None = None
    dropout: RecurrentDropout | None = None
    unroll: Any = dataclasses.field(default=UNSET, kw_only=True, repr=False, compare=False)
    fused: Any = dataclasses.field(default=UNSET, kw_only=True, repr=False, compare=False)
    matmul_dtype: Any = dataclasses.field(default=UNSET, kw_only=True, repr=False, compare=False)

    def __post_init__(self):
        solver = solver_from_keywords("jrnn.RNN", self.solver, unroll=self.unroll, fused=self.fused,
                                      matmul_dtype=self.matmul_dtype, stacklevel=4)
        for name in ("unroll", "fused", "matmul_dtype"):
            object.__setattr__(self, name, UNSET)
        object.__setattr__(self, "solver", solver)

    @property
    def wrapped(self) -> Cell:
        return self.cell

    @property
    def hidden_size(self) -> int:
        return self.cell.hidden_size

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    def init(self, key: jax.Array, input_size: int) -> Any:
        return self.cell.init(key, input_size)

    def initial_state(self, batch_shape=(), dtype=None) -> Any:
        return self.cell.initial_state(batch_shape, dtype)

    def step(self, params: Any, state: Any, x: jax.Array) -> tuple[Any, jax.Array]:
        """``(state, x[..., F]) -> (state, y[..., output_size])``, the cell's step; scanning it over time is
        :meth:`apply`. Raises ``ValueError`` for a reverse RNN, whose output at step t depends on later inputs."""
        if self.reverse:
            raise CannotStep(f"jrnn.RNN.step: {REVERSE_CANNOT_STEP}", REVERSE_CANNOT_STEP)
        return self.cell.step(params, state, x)

    def apply(self, params: Any, xs: jax.Array, *, lengths: jax.Array | None = None, initial_state: Any = None,
              key: jax.Array | None = None, resets: jax.Array | None = None) -> tuple[jax.Array, Any]:
        """``(ys[B, T, output_size], final_state)``; a ``key`` draws the masks of ``dropout`` (ignored without);
        ``resets [B, T]`` marks where packed segments start (:func:`jrnn.scan`)."""
        return scan(self.cell, params, xs, lengths=lengths, initial_state=initial_state, reverse=self.reverse,
                    resets=resets, solver=self.solver, dropout=self.dropout,
                    key=None if self.dropout is None else key)
