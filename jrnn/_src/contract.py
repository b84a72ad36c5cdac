"""The contracts every jrnn building block keeps, written down once: the cell, the sequence layer, and the optional
capabilities a cell may declare.

A **cell** is one step of a recurrence. Its contract is the order of ``lax.scan``::

    step : (params, state, x) -> (state, y)

with ``x`` of shape ``[..., input_size]``, ``y`` of shape ``[..., output_size]`` and a state whose leaves have
the same leading batch shape ``[...]``. A **sequence layer** maps a whole batch-major sequence ``[B, T, F]`` to
``([B, T, output_size], final_state)``; :class:`jrnn.RNN`, :class:`jrnn.Bidirectional` and :class:`jrnn.Deep`
are the three.

A cell may declare more than the contract by deriving from the capability classes below; every consumer (the
scan and its solvers, :func:`jrnn.checkpointed_scan`, :func:`jrnn.truncated_bptt`, the diagnostics) checks them
with ``isinstance`` and nothing else:

- :class:`InputShaped`: ``input_shape(params)``, one step's input shape after its batch axes when it is more
  than ``(input_size,)`` (:func:`jrnn.conv_lstm` reads ``[B, T, H, W, C]``);
- :class:`Preparable`: ``prepare(params)``, per-sequence work done once before the time loop
  (:func:`jrnn.exprnn`'s matrix exponential);
- :class:`LinearRecurrence`: ``coefficients(params, xs)``, a recurrence ``s_t = a_t ⊙ s_{t-1} + b_t`` linear in
  the state with coefficients of any sign (or complex), which :func:`jrnn.associative` and the Newton solvers
  solve in parallel over time (:func:`jrnn.min_gru`, :func:`jrnn.min_lstm`);
- :class:`StateMaskable`: a ``step`` that takes ``state_mask=``, variational dropout's mask on the state where
  it enters the recurrent matmul (:func:`jrnn.elman`, :func:`jrnn.lstm`, :func:`jrnn.gru`);
- :class:`RecurrentMatrix`: a hidden-to-hidden matrix ``params.W`` that weight drop may mask;
- :class:`Windowed`: a step that reads the last ``width`` inputs through a causal convolution over time (the
  width-4 convolutions of Mamba and Hawk); the state carries that window, and :func:`jrnn.scan` builds every
  step's window at once, so a windowed cell that is also a :class:`LinearRecurrence` stays parallel in time.

A cell's own fast kernel is not a capability of the cell object but an entry in the fused solver's open registry
(:func:`jrnn.register_fused_kernel`), made from the cell's own module.

:class:`Wrapper` is the base of what wraps cells (:class:`jrnn.RNN`, :class:`jrnn.Deep`,
:class:`jrnn.Bidirectional`, :class:`jrnn.TruncatedBPTT`, the diagnostics' probes): it forwards ``input_shape``
and ``prepare`` to what it wraps.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

Array = jax.Array
PRNGKey = jax.Array
Params = Any  # a pytree of arrays (a NamedTuple for every jrnn block)
State = Any  # an array or a NamedTuple of arrays, each with leading batch shape
Shape = Sequence[int]


@runtime_checkable
class Cell(Protocol):
    """One step of a recurrence: ``step(params, state, x) -> (state, y)``.

    A cell may also declare the capabilities of ``jrnn/_src/contract.py``: :class:`jrnn.InputShaped`,
    :class:`jrnn.Preparable`, :class:`jrnn.LinearRecurrence`, :class:`jrnn.StateMaskable`,
    :class:`jrnn.RecurrentMatrix` (docs/concepts/custom-cells.md shows a cell of your own that does).

    Attributes:
      hidden_size: size of the recurrent state ``s_t``.
      output_size: size of ``y_t`` (the hidden size, or an LSTM's ``proj_size``); for a cell with a larger
        ``input_shape``, the size of the last axis of ``y_t``.
    """

    hidden_size: int
    output_size: int

    def init(self, key: PRNGKey, input_size: int) -> Params:
        """Returns fresh parameters for inputs of ``input_size`` features."""

    def initial_state(self, batch_shape: Shape = (), dtype: Any = None) -> State:
        """Returns the zero state ``s_0`` with leaves of shape ``[*batch_shape, ...]``."""

    def step(self, params: Params, state: State, x: Array) -> tuple[State, Array]:
        """Advances the recurrence by one time step."""

    def input_size(self, params: Params) -> int:
        """Reads the input feature size off ``params``."""


class InputShaped(abc.ABC):
    """Capability: one step's input has the shape ``input_shape(params)`` after its batch axes, more than
    ``(input_size(params),)`` (:func:`jrnn.conv_lstm`: ``(H, W, C)``). ``input_size`` stays the size of the last
    axis, which is what :func:`jrnn.deep` chains from one layer's ``output_size`` to the next."""

    @abc.abstractmethod
    def input_shape(self, params: Params) -> tuple[int, ...]:
        """The shape of one step's ``x`` after its batch axes."""


class Preparable(abc.ABC):
    """Capability: ``prepare(params) -> params``, work that depends on the parameters only, done once per sequence
    before the time loop rather than at every step (:func:`jrnn.exprnn` computes ``W = expm(A - A^T)`` there).

    ``step`` must give the same result for ``params`` and ``prepare(params)`` (so that a bare
    ``cell.step(params, ...)`` stays correct), ``prepare(prepare(p))`` must be ``prepare(p)`` (so a consumer that
    prepares once can hand the result to another that prepares again at no cost), and ``input_size`` must read
    both."""

    @abc.abstractmethod
    def prepare(self, params: Params) -> Params:
        """The parameters with the per-sequence work done."""


class LinearRecurrence(abc.ABC):
    """Capability: the recurrence is linear in the state, with coefficients that depend on the inputs alone::

        s_t = a_t ⊙ s_{t-1} + b_t        (diagonal: a_t [B, T, H])
        s_t = A_t s_{t-1} + b_t          (dense: A_t [B, T, H, H])
        y_t = readout(params, s_t, x_t)  (default: y_t = s_t)

    ``a`` and ``b`` may have either sign, or be complex; the state is one array ``[..., H]``. A cell that declares
    it is solved in ``O(log T)`` depth by :func:`jrnn.associative` (``jax.lax.associative_scan``) and in one
    Newton iteration by :func:`jrnn.deer`. ``step`` stays the definition: ``coefficients`` and ``readout`` must
    compute the same function, which the contract tests check for every registered cell.

    Attributes:
      log_space: False: ``coefficients`` returns ``(a, b)``. True: it returns ``(log a, log b)`` of positive
        ``a``, ``b``, and the solve runs in log space, where products of many small ``a`` keep their range
        (Feng et al. 2024's form for minGRU and minLSTM).
      parallel: None: :func:`jrnn.auto` decides by backend. True or False is what the deprecated
        ``min_gru(parallel=...)`` sets; pass ``solver=jrnn.associative()`` or ``jrnn.sequential()`` instead.
      expands: True when the coefficients are many times larger than a step's input and output (Mamba: ``E``
        channels in, ``E·N`` coefficients): built for the whole sequence they move ``N`` times the data that a
        step loop keeps in cache, so on a CPU :func:`jrnn.auto` steps such a cell (:func:`jrnn.sequential`)
        instead of building them (``python -m benchmarks linear`` measures both).

    ``coefficients`` and ``readout`` are pointwise in time: step ``t``'s values read step ``t`` alone, so they
    take any two leading axes (``jrnn.associative(method="loop")`` calls them time-major, ``[T, B, ...]``).
    """

    log_space: bool = False
    parallel: bool | None = None
    expands: bool = False

    @abc.abstractmethod
    def coefficients(self, params: Params, xs: Array) -> tuple[Array, Array]:
        """``(a, b)`` (or ``(log a, log b)``) for every step of ``xs [B, T, F]``: each ``[B, T, H]``, or ``a``
        ``[B, T, H, H]``."""

    def readout(self, params: Params, states: Array, xs: Array) -> Array:
        """``ys [B, T, output_size]`` from the states ``[B, T, H]`` and the inputs ``[B, T, F]``; ``y_t = s_t``."""
        return states


class Chunkwise(abc.ABC):
    """Capability: the cell evaluates a chunk of consecutive steps at once, its outputs from matrix products inside
    the chunk and the state carried only from chunk to chunk (Mamba-2's state space duality, the chunkwise forms of
    linear attention). :func:`jrnn.chunked` runs a ``jax.lax.scan`` over chunks of it, so differentiating the scan
    stores one state per chunk instead of one per step.

    ``chunk`` must compute what ``C`` calls of ``step`` compute, for any ``C``, with these extras:

    - ``valid [B, C]`` bool or None (every step valid): a prefix of each row; the state is unchanged by an invalid
      step (the padding after a sequence's end) and its output is ignored;
    - ``resets [B, C]`` bool or None: where True, the state before that step is ``restart`` (a segment starts), not
      the previous step's.

    For a :class:`Windowed` cell, ``chunk`` receives the inner state and a :class:`WindowInputs` whose leaves are
    ``[B, C, ...]``, as ``coefficients`` does.

    ``chunk_size`` is the ``C`` :func:`jrnn.auto` runs the cell with (``jrnn.chunked(cell.chunk_size)``); 64 unless
    the cell says otherwise (a cell with small heads does less work in smaller chunks).
    """

    chunk_size: int = 64

    @abc.abstractmethod
    def chunk(self, params: Params, state: State, xs: Any, valid: Array | None, resets: Array | None,
              restart: State) -> tuple[State, Array]:
        """``(state after the chunk's last valid step, ys [B, C, output_size])`` from ``xs [B, C, ...]``."""


class StateMaskable:
    """Capability: ``step(params, state, x, *, state_mask=None)`` takes variational dropout's state mask
    ``[..., P]`` (:func:`jrnn.recurrent_dropout`) and multiplies the part of the state that enters the recurrent
    matmul, ``W (m ⊙ s_{t-1})``, by it, and nothing else. Only such a cell takes state dropout; every cell takes
    input, output and (with :class:`RecurrentMatrix`) weight dropout."""


class RecurrentMatrix:
    """Capability: the parameters hold the hidden-to-hidden matrix as a NamedTuple field ``W``, which weight drop
    (:func:`jrnn.recurrent_dropout`'s ``weight``) masks before the time loop. Override both methods for another
    layout."""

    def recurrent_matrix(self, params: Params) -> Array:
        """The matrix weight drop masks."""
        return params.W

    def with_recurrent_matrix(self, params: Params, W: Array) -> Params:
        """``params`` with the matrix replaced."""
        return params._replace(W=W)


class WindowState(NamedTuple):
    """The state of a :class:`Windowed` cell.

    Attributes:
      window: ``[..., width - 1, C]``, the last ``width - 1`` window inputs ``u``, oldest first (zeros at the
        start: the causal convolution's zero padding).
      fresh: ``[..., 1]``, 1 while no step has been taken since this state was the initial one, else 0. A scan
        with ``resets`` returns to the initial state, ``fresh`` included, where a segment starts.
      inner: the cell's own recurrent state (an array ``[..., H]`` for a :class:`LinearRecurrence`).
    """

    window: jax.Array
    fresh: jax.Array
    inner: Any


class WindowInputs(NamedTuple):
    """What a :class:`Windowed` cell's ``window_step``, ``coefficients`` and ``readout`` read at each step.

    Attributes:
      window: ``[..., width, C]``: ``u_{t-width+1}, ..., u_t``, oldest first, ``u = window_input(params, x)``.
      x: ``[..., F]``: the step's own input.
      fresh: ``[..., 1]``: 1 at the first step since the initial state (step 0, and each reset), else 0;
        recurrentgemma's RG-LRU skips its normalisation there.
    """

    window: jax.Array
    x: jax.Array
    fresh: jax.Array


class Windowed(abc.ABC):
    """Capability: the step reads a window of the last ``width`` inputs, a causal convolution over time, as
    Mamba's and Hawk's blocks do before their recurrence::

        u_t = window_input(params, x_t)                       [..., C], pointwise in time
        (inner_t, y_t) = window_step(params, inner_{t-1}, WindowInputs([u_{t-width+1} .. u_t], x_t, fresh_t))

    The cell implements ``window_input``, ``window_step`` and ``inner_initial_state``; ``step`` and
    ``initial_state`` (a :class:`WindowState`) follow from them. :func:`jrnn.scan` builds every step's window
    from the sequence at once (with lengths, resets, reversal and the initial window) and hands the solver a cell
    of the inner state alone, so a windowed cell that is also a :class:`LinearRecurrence` is solved by
    :func:`jrnn.associative` and the Newton solvers on its inner state; its ``coefficients(params, inputs)``
    and ``readout(params, states, inputs)`` then read a :class:`WindowInputs` whose leaves are ``[B, T, ...]``.

    Attributes:
      width: the number of steps the window holds, the current one included (1: no convolution; only ``fresh``).
      window_size: ``C``, the size of ``u``.
    """

    width: int
    window_size: int

    @abc.abstractmethod
    def window_input(self, params: Params, x: Array) -> Array:
        """``u [..., C]`` from ``x [..., F]`` (any leading axes: called on one step or a whole sequence)."""

    @abc.abstractmethod
    def window_step(self, params: Params, inner: State, inputs: WindowInputs) -> tuple[State, Array]:
        """One step of the inner recurrence from the window: ``(inner, y)``."""

    @abc.abstractmethod
    def inner_initial_state(self, batch_shape: Shape = (), dtype: Any = None) -> State:
        """The zero inner state."""

    def initial_state(self, batch_shape: Shape = (), dtype: Any = None) -> WindowState:
        inner = self.inner_initial_state(batch_shape, dtype)
        dtype = jnp.real(jax.tree_util.tree_leaves(inner)[0]).dtype if dtype is None else dtype
        batch_shape = tuple(batch_shape)
        return WindowState(jnp.zeros((*batch_shape, self.width - 1, self.window_size), dtype),
                           jnp.ones((*batch_shape, 1), dtype), inner)

    def step(self, params: Params, state: WindowState, x: Array) -> tuple[WindowState, Array]:
        u = self.window_input(params, x)
        window = jnp.concatenate([state.window.astype(u.dtype), u[..., None, :]], axis=-2)
        inner, y = self.window_step(params, state.inner, WindowInputs(window, x, state.fresh))
        return WindowState(window[..., 1:, :].astype(state.window.dtype), jnp.zeros_like(state.fresh), inner), y


def input_shape(cell: Any, params: Params) -> tuple[int, ...]:
    """The shape of one step's input after its batch axes: ``cell.input_shape(params)`` for an
    :class:`InputShaped` cell, else ``(cell.input_size(params),)``.

    Example:
      >>> import jax, jrnn
      >>> from jrnn._src.contract import input_shape
      >>> input_shape(jrnn.gru(4), jrnn.gru(4).init(jax.random.key(0), 3))
      (3,)
    """
    if isinstance(cell, InputShaped):
        return tuple(cell.input_shape(params))
    return (cell.input_size(params),)


def prepare(cell: Any, params: Params) -> Params:
    """``cell.prepare(params)`` for a :class:`Preparable` cell (or sequence layer), else ``params``: the
    per-sequence work done once before a time loop. Idempotent by contract.

    Example:
      >>> import jax, jrnn
      >>> from jrnn._src.contract import prepare
      >>> cell = jrnn.gru(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> prepare(cell, params) is params
      True
    """
    return cell.prepare(params) if isinstance(cell, Preparable) else params


class Wrapper(InputShaped, Preparable):
    """The base of everything built around one cell or layer, ``wrapped``, with the same parameters
    (:class:`jrnn.RNN`, :class:`jrnn.TruncatedBPTT`): its ``input_shape`` and ``prepare`` are the wrapped one's,
    whether or not that one declares them. A wrapper of several (:class:`jrnn.Deep`, :class:`jrnn.Bidirectional`)
    or with parameters of its own (the probes) overrides both."""

    @property
    def wrapped(self) -> Any:
        """The cell or layer inside."""
        raise NotImplementedError(f"{type(self).__name__} must define wrapped or override input_shape and prepare")

    def input_size(self, params: Params) -> int:
        return self.wrapped.input_size(params)

    def input_shape(self, params: Params) -> tuple[int, ...]:
        return input_shape(self.wrapped, params)

    def prepare(self, params: Params) -> Params:
        return prepare(self.wrapped, params)


@runtime_checkable
class SequenceLayer(Protocol):
    """A whole-sequence map ``apply(params, xs[B, T, F], ...) -> (ys[B, T, output_size], final_state)``."""

    output_size: int

    def init(self, key: PRNGKey, input_size: int) -> Params:
        """Returns fresh parameters for inputs of ``input_size`` features."""

    def initial_state(self, batch_shape: Shape = (), dtype: Any = None) -> State:
        """Returns the zero initial state."""

    def apply(self, params: Params, xs: Array, *, lengths: Array | None = None,
              initial_state: State | None = None, key: PRNGKey | None = None) -> tuple[Array, State]:
        """Runs the layer over a batch-major sequence."""


class CannotStep(ValueError):
    """Raised by the ``step`` of a network that cannot advance one input at a time (a reverse or bidirectional
    layer, whose output at step t depends on later inputs). ``reason`` says why, without the caller's name."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason
