"""The contracts every jrnn building block keeps, written down once.

A **cell** is one step of a recurrence. Its contract is the order of ``lax.scan``::

    step : (params, state, x) -> (state, y)

with ``x`` of shape ``[..., input_size]``, ``y`` of shape ``[..., output_size]`` and a state whose leaves have
the same leading batch shape ``[...]``. A **sequence layer** maps a whole batch-major sequence ``[B, T, F]`` to
``([B, T, output_size], final_state)``; :class:`jrnn.RNN`, :class:`jrnn.Bidirectional` and :class:`jrnn.Deep`
are the three.

Three parts of the cell contract are optional; a cell without them gets the defaults that :func:`input_shape`
and :func:`prepare` below supply, and every consumer of cells (:func:`jrnn.scan` on each of its paths,
:func:`jrnn.checkpointed_scan`, :func:`jrnn.truncated_bptt`, the diagnostics) reads them through those two:

- ``input_shape(params) -> tuple[int, ...]``: the shape of one step's ``x`` after its batch axes, when that is
  more than ``(input_size(params),)``. :func:`jrnn.conv_lstm` reads ``[B, T, H, W, C]`` sequences, so its
  ``input_shape`` is ``(H, W, C)``; its ``input_size`` stays the size of the last axis, C, which is what
  :func:`jrnn.deep` chains from one layer's ``output_size`` to the next.
- ``prepare(params) -> params``: work that depends on the parameters only, done once per sequence before the time
  loop rather than at every step (:func:`jrnn.exprnn` computes ``W = expm(A - A^T)`` there). ``step`` must give
  the same result for ``params`` and ``prepare(params)`` (so that a bare ``cell.step(params, ...)`` stays
  correct), ``prepare(prepare(p))`` must be ``prepare(p)`` (so a consumer that prepares once can hand the result
  to another that prepares again at no cost), and ``input_size`` must read both.
- ``log_coefficients(params, xs[B, T, ...]) -> (log_a, log_b)``, each ``[B, T, H]``: for a cell whose
  recurrence is linear and diagonal in the state, ``s_t = a_t ⊙ s_{t-1} + b_t`` with ``a_t > 0`` and
  ``b_t > 0`` functions of ``x_t`` alone, and ``y_t = s_t``. :func:`jrnn.scan` can then evaluate the whole
  sequence in parallel over time (``jax.lax.associative_scan``) instead of step by step, which it does when the
  cell's ``parallel`` attribute is True, or None on a GPU or TPU backend (always for a cell without the
  attribute; ``jrnn/_src/solvers/associative.py``); ``step`` is still the definition (:func:`jrnn.min_gru`,
  :func:`jrnn.min_lstm`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import jax

Array = jax.Array
PRNGKey = jax.Array
Params = Any  # a pytree of arrays (a NamedTuple for every jrnn block)
State = Any  # an array or a NamedTuple of arrays, each with leading batch shape
Shape = Sequence[int]


@runtime_checkable
class Cell(Protocol):
    """One step of a recurrence: ``step(params, state, x) -> (state, y)``.

    Optional methods, read through defaults by every consumer (details in ``jrnn/_src/contract.py``):
    ``input_shape(params)``, the per-step input shape when it is more than ``(input_size,)`` (ConvLSTM);
    ``prepare(params)``, per-sequence work done once before the time loop (expRNN's matrix exponential);
    ``log_coefficients(params, xs)``, a recurrence linear and diagonal in the state, which :func:`jrnn.scan`
    evaluates in parallel over time (minGRU, minLSTM).

    Optionally, ``step`` may also take a keyword ``state_mask`` (``[..., output_size]`` or None): variational
    dropout's mask (:func:`jrnn.recurrent_dropout`), to multiply the part of the state that enters the recurrent
    matmul, ``W (m ⊙ s_{t-1})``, and nothing else. The built-in cells do; a cell without it still takes input,
    output and weight dropout.

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


def input_shape(cell: Cell, params: Params) -> tuple[int, ...]:
    """The shape of one step's input after its batch axes: ``cell.input_shape(params)`` if the cell defines it,
    else ``(cell.input_size(params),)``.

    Example:
      >>> import jax, jrnn
      >>> from jrnn._src.contract import input_shape
      >>> input_shape(jrnn.gru(4), jrnn.gru(4).init(jax.random.key(0), 3))
      (3,)
    """
    method = getattr(cell, "input_shape", None)
    return (cell.input_size(params),) if method is None else tuple(method(params))


def prepare(cell: Any, params: Params) -> Params:
    """``cell.prepare(params)`` if the cell (or sequence layer) defines it, else ``params``: the per-sequence work
    done once before a time loop. Idempotent by contract.

    Example:
      >>> import jax, jrnn
      >>> from jrnn._src.contract import prepare
      >>> cell = jrnn.gru(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> prepare(cell, params) is params
      True
    """
    method = getattr(cell, "prepare", None)
    return params if method is None else method(params)


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
