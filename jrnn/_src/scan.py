"""The recurrence over time: ``jrnn.scan`` (plain path here, fused path in ``fused.py``) and the layer ``RNN``."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src import checks, regularisation
from jrnn._src.contract import CannotStep, Cell, input_shape, prepare
from jrnn._src.regularisation import RecurrentDropout
from jrnn._src.sequences import batch_like, carry_dtype, keep_where, per_step, reverse_sequences, valid_mask
from jrnn._src.solvers import associative as parallel
from jrnn._src.solvers import newton
from jrnn._src.solvers.fused import fused_layer
from jrnn._src.solvers.kernels import kernel_for


def scan(cell: Cell, params: Any, xs: jax.Array, *, lengths: jax.Array | None = None,
         initial_state: Any = None, reverse: bool = False, unroll: int | bool = 1, fused: bool = True,
         matmul_dtype: Any = None, dropout: RecurrentDropout | None = None,
         key: jax.Array | None = None, solver: newton.Solver | None = None) -> tuple[jax.Array, Any]:
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

    With ``dropout=jrnn.recurrent_dropout(...)`` and a ``key``, the masks of variational dropout and weight drop
    are drawn from the key once per call and reused at every step (see :func:`jrnn.recurrent_dropout`); without a
    key the scan is exactly the one without ``dropout`` (evaluation).

    Three paths compute it, with the same results and gradients to float rounding (tested in float64 and against
    PyTorch):

    - the fused path (``fused=True``, the default) for the built-in cells, :func:`jrnn.elman`, :func:`jrnn.lstm`
      and :func:`jrnn.gru` (exact types): every input projection in one GEMM before the loop, one matmul per step,
      and a custom VJP whose backward loop carries only the state gradient, with the weight, bias and input
      gradients as single GEMMs after the loop, as cuDNN does (``jrnn/_src/solvers/fused.py``; speed in BENCHMARKS.md);
    - the parallel path (``fused=True``) for a cell whose recurrence is linear and diagonal in the state and
      declares it with ``log_coefficients`` (:func:`jrnn.min_gru`, :func:`jrnn.min_lstm`): every step at once
      with ``jax.lax.associative_scan`` in log space, ``O(log T)`` deep instead of ``T`` (``jrnn/_src/solvers/associative.py``).
      The cell's ``parallel`` option chooses it: by default on a GPU or TPU, not on a CPU, where the loop is faster;
    - the plain path: ``jax.lax.scan`` over ``cell.step``, differentiated by JAX, for every other cell and with
      ``fused=False``. Use it for forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``), which
      a custom VJP does not support.

    A ``solver`` other than :func:`jrnn.sequential` evaluates any cell (or stepping network) in parallel over
    time by Newton's method instead, to its tolerance, with exact gradients by implicit differentiation:
    :func:`jrnn.deer`, :func:`jrnn.quasi_deer`, :func:`jrnn.elk` (:func:`jrnn.newton_scan` also returns how many
    iterations it took; docs/concepts/parallel-in-time.md).

    A one-directional network is a cell too: a forward :class:`jrnn.RNN`, or a :func:`jrnn.deep` stack of
    forward layers, whose state is the tuple of its layers' states. With ``fused=True`` it runs through its own
    ``apply``, layer by layer, each layer on its own path (a reversed scan is the length-aware reversal of
    ``xs``, the network's ``apply``, and the reversal of ``ys``, which is what scanning its ``step`` backwards
    computes); with ``fused=False`` it is the ``lax.scan`` over its ``step`` above. A network that cannot step
    (one with a reverse or bidirectional layer) raises the error its ``step`` raises.

    Args:
      cell: any :class:`jrnn.Cell`, or a one-directional network (:class:`jrnn.RNN`, :class:`jrnn.Deep`).
      params: the cell's parameters.
      xs: ``[B, T, F]`` inputs, F the cell's input size (``[B, T, *cell.input_shape(params)]`` for a cell with a
        larger per-step input, such as :func:`jrnn.conv_lstm`'s ``[B, T, H, W, C]``).
      lengths: optional ``[B]`` integer valid lengths.
      initial_state: optional state with batch shape ``[B]``; zeros by default.
      reverse: run each sequence backwards in time.
      unroll: time steps per loop iteration (``True``: all of them); a speed knob only. 1 measured fastest for
        the fused path on XLA:CPU (BENCHMARKS.md, ablation). A network's own ``apply`` takes its layers' own.
      fused: take the fused path for the built-in cells, the parallel path for the cells that have one, and a
        network's own ``apply`` for a network; False forces the plain path, one ``step`` after another.
      matmul_dtype: None computes every matmul in its operands' dtype. ``jnp.bfloat16`` (fused path only) runs the
        matmuls on bfloat16 operands with float32 accumulation, keeping the state, the elementwise math and the
        outputs in the dtype of ``xs``: mixed precision, about 3 significant digits. A network takes it from
        its :class:`jrnn.RNN` layers, not from here.
      dropout: None, or a :func:`jrnn.recurrent_dropout` (input, state, output and weight rates). A network
        takes it from its :class:`jrnn.RNN` layers, not from here.
      key: a PRNG key draws the dropout masks (training); None draws none (evaluation). Needs ``dropout``; a
        network's fused scan passes it to the network's ``apply`` (its layers' dropout).
      solver: None or :func:`jrnn.sequential` (one step after another, the paths above), or a parallel-in-time
        Newton solver, :func:`jrnn.deer`, :func:`jrnn.quasi_deer` or :func:`jrnn.elk`. A network given a Newton
        solver is solved as one cell (its layers' states together); its layers' own options then do not apply.

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
    batch, time, lengths, state = _prelude(cell, params, xs, lengths, initial_state, where)
    parallel_in_time = newton.is_parallel(solver, where)
    if parallel_in_time and matmul_dtype is not None:
        raise ValueError(f"{where}: expected matmul_dtype=None with the Newton solver {solver.method!r} (mixed "
                         f"precision is a fused-path option), got {matmul_dtype!r}")
    if is_network(cell):
        for name, value in (("matmul_dtype", matmul_dtype), ("dropout", dropout)):
            if value is not None:
                raise ValueError(f"{where}: expected {name}=None for a network; set {name} on its jrnn.RNN "
                                 f"layers instead, got {value!r}")
        # Tracing one step raises the network's own error when it cannot step (a reverse or bidirectional layer).
        jax.eval_shape(cell.step, params, state, jax.ShapeDtypeStruct((batch,) + xs.shape[2:], xs.dtype))
        if parallel_in_time and time > 0:
            return newton.newton_layer(cell, params, xs, state, lengths, reverse, solver)[:2]
        if fused:
            return _network_scan(cell, params, xs, lengths, state, reverse, key)
    kernel = kernel_for(cell, checks.matmul_dtype(matmul_dtype, where)) if fused and not parallel_in_time else None
    if matmul_dtype is not None and kernel is None:
        raise ValueError(f"{where}: matmul_dtype={matmul_dtype!r} needs the fused path, which runs the built-in "
                         f"cells jrnn.elman, jrnn.lstm and jrnn.gru with fused=True; got fused={fused!r} and a "
                         f"{type(cell).__name__}")
    dropout = regularisation.check(dropout, key, cell, params, where)
    masks = None
    if dropout is not None and time > 0:
        masks = regularisation.draw_masks(
            dropout, key, batch=batch, input_size=xs.shape[-1], state_size=cell.output_size,
            output_size=cell.output_size, weight_shape=getattr(getattr(params, "W", None), "shape", ()),
            dtype=carry_dtype(xs, params))
        params, xs = regularisation.apply_before(masks, params, xs)
    state_mask = None if masks is None else masks.state
    if kernel is not None and time > 0:
        ys, final_state = fused_layer(kernel, time if unroll is True else max(1, int(unroll)), params, xs, state,
                                      lengths, reverse, state_mask)
    else:
        params = prepare(cell, params)  # once per sequence, outside the time loop
        if time == 0:
            x = jax.ShapeDtypeStruct((batch,) + xs.shape[2:], xs.dtype)
            y = jax.eval_shape(lambda p, s, x: cell.step(p, s, x)[1], params, state, x)
            return jnp.zeros((batch, 0) + y.shape[1:], carry_dtype(xs, params)), state
        if parallel_in_time:
            if solver.fallback != "sequential":
                raise ValueError(f"{where}: expected fallback='sequential' for a solver given to jrnn.scan, which "
                                 f"cannot report a run that did not converge; got fallback={solver.fallback!r} "
                                 f"(jrnn.newton_scan returns the iterate and its info)")
            ys, final_state, _ = newton.newton_layer(cell, params, xs, state, lengths, reverse, solver, state_mask)
        elif fused and state_mask is None and parallel.wanted(cell):
            ys, final_state = parallel.parallel_scan(cell, params, xs, state, lengths, reverse)
        else:
            ys, final_state = _plain(cell, params, xs, state, lengths, reverse, unroll, state_mask)
    if masks is not None and masks.output is not None:
        ys = ys * masks.output[:, None, :].astype(ys.dtype)
    return ys, final_state


def _prelude(cell, params, xs, lengths, initial_state, where):
    """The checks every scan starts with: ``(batch, time, lengths, state)``, the state shaped like ``xs``."""
    batch, time = checks.sequence(xs, input_shape(cell, params), where)
    lengths = checks.lengths(lengths, batch, where)
    expected = cell.initial_state((batch,), carry_dtype(xs, params))
    state = expected if initial_state is None else checks.state_like(initial_state, expected, where)
    return batch, time, lengths, batch_like(state, xs)


def newton_scan(cell: Cell, params: Any, xs: jax.Array, *, solver: newton.Solver | None = None,
                lengths: jax.Array | None = None, initial_state: Any = None,
                reverse: bool = False) -> tuple[jax.Array, Any, newton.NewtonInfo]:
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
    solver = newton.deer() if solver is None else solver
    if not newton.is_parallel(solver, where):
        raise ValueError(f"{where}: expected a Newton solver (jrnn.deer, jrnn.quasi_deer or jrnn.elk), got "
                         f"{solver!r}")
    batch, time, lengths, state = _prelude(cell, params, xs, lengths, initial_state, where)
    if is_network(cell):
        jax.eval_shape(cell.step, params, state, jax.ShapeDtypeStruct((batch,) + xs.shape[2:], xs.dtype))
    if time == 0:
        ys, state = scan(cell, params, xs, lengths=lengths, initial_state=state, fused=False)
        info = newton.NewtonInfo(jnp.int32(0), jnp.zeros((), ys.dtype), jnp.bool_(True))
        return ys, state, info
    return newton.newton_layer(cell, params, xs, state, lengths, reverse, solver)


def _plain(cell, params, xs, state, lengths, reverse, unroll, state_mask):
    """:func:`scan`'s plain path: ``jax.lax.scan`` over ``cell.step``."""
    batch, time = xs.shape[:2]
    step = cell.step if state_mask is None else functools.partial(cell.step, state_mask=state_mask)

    if reverse:
        xs = reverse_sequences(xs, lengths)
    mask = valid_mask(lengths, batch, time)
    if mask is not None:  # padded inputs never reach the cell, so not even a NaN there touches a gradient
        xs = jnp.where(per_step(mask, xs), xs, jnp.zeros_like(xs))

    def body(state, inputs):
        x, valid = inputs
        new_state, y = step(params, state, x)
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


def is_network(cell: Any) -> bool:
    """Whether ``cell`` is a sequence layer that also keeps the cell contract (``apply`` and ``step``)."""
    return callable(getattr(cell, "apply", None)) and callable(getattr(cell, "step", None))


def _network_scan(network: Any, params: Any, xs: jax.Array, lengths: jax.Array | None, state: Any,
                  reverse: bool, key: jax.Array | None = None) -> tuple[jax.Array, Any]:
    """A network's scan through its own ``apply``; reversed, between two length-aware reversals."""
    if reverse:
        xs = reverse_sequences(xs, lengths)
    ys, final_state = network.apply(params, xs, lengths=lengths, initial_state=state, key=key)
    if reverse:
        ys = reverse_sequences(ys, lengths)
    return ys, final_state


REVERSE_CANNOT_STEP = (
    "a reverse RNN cannot step forward one input at a time: its output at step t is computed from the inputs at "
    "t, t + 1, ..., up to each sequence's last element, which a step has not seen yet; run it over whole "
    "sequences with apply, or use reverse=False")


@dataclasses.dataclass(frozen=True)
class RNN:
    """A one-directional sequence layer: ``apply`` is :func:`jrnn.scan` of ``cell``.

    A forward RNN keeps the cell contract too: ``step(params, state, x) -> (state, y)`` is its cell's step, so a
    forward RNN goes wherever a cell goes (:func:`jrnn.scan`, :func:`jrnn.bidirectional`, a language model's
    token-by-token :meth:`jrnn.LanguageModel.step`). A reverse RNN cannot step (see :meth:`step`).

    Attributes:
      cell: the :class:`jrnn.Cell`.
      reverse: run each sequence backwards (length-aware).
      unroll: time steps per loop iteration, as in :func:`jrnn.scan`.
      fused: the fused path for the built-in cells, as in :func:`jrnn.scan`.
      matmul_dtype: e.g. ``jnp.bfloat16`` for mixed-precision matmuls, as in :func:`jrnn.scan`.
      dropout: None, or :func:`jrnn.recurrent_dropout` rates, active when ``apply`` gets a ``key``.
      solver: None (sequential), or a parallel-in-time solver such as :func:`jrnn.deer`, as in :func:`jrnn.scan`.
    """

    cell: Cell
    reverse: bool = False
    unroll: int | bool = 1
    fused: bool = True
    matmul_dtype: Any = None
    dropout: RecurrentDropout | None = None
    solver: newton.Solver | None = None

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

    def input_size(self, params: Any) -> int:
        return self.cell.input_size(params)

    def step(self, params: Any, state: Any, x: jax.Array) -> tuple[Any, jax.Array]:
        """``(state, x[..., F]) -> (state, y[..., output_size])``, the cell's step; scanning it over time is
        :meth:`apply`. Raises ``ValueError`` for a reverse RNN, whose output at step t depends on later inputs."""
        if self.reverse:
            raise CannotStep(f"jrnn.RNN.step: {REVERSE_CANNOT_STEP}", REVERSE_CANNOT_STEP)
        return self.cell.step(params, state, x)

    def prepare(self, params: Any) -> Any:
        """The cell's per-sequence work (``cell.prepare``), or ``params`` unchanged."""
        return prepare(self.cell, params)

    def apply(self, params: Any, xs: jax.Array, *, lengths: jax.Array | None = None, initial_state: Any = None,
              key: jax.Array | None = None) -> tuple[jax.Array, Any]:
        """``(ys[B, T, output_size], final_state)``; a ``key`` draws the masks of ``dropout`` (ignored without)."""
        return scan(self.cell, params, xs, lengths=lengths, initial_state=initial_state, reverse=self.reverse,
                    unroll=self.unroll, fused=self.fused, matmul_dtype=self.matmul_dtype, dropout=self.dropout,
                    key=None if self.dropout is None else key, solver=self.solver)
