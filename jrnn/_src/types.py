"""The contracts every jrnn building block keeps, written down once.

A **cell** is one step of a recurrence. Its contract is the order of ``lax.scan``::

    step : (params, state, x) -> (state, y)

with ``x`` of shape ``[..., input_size]``, ``y`` of shape ``[..., output_size]`` and a state whose leaves have
the same leading batch shape ``[...]``. A **sequence layer** maps a whole batch-major sequence ``[B, T, F]`` to
``([B, T, output_size], final_state)``; :class:`jrnn.RNN`, :class:`jrnn.Bidirectional` and :class:`jrnn.Deep`
are the three.
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

    Optionally, ``step`` may also take a keyword ``state_mask`` (``[..., output_size]`` or None): variational
    dropout's mask (:func:`jrnn.recurrent_dropout`), to multiply the part of the state that enters the recurrent
    matmul, ``W (m ⊙ s_{t-1})``, and nothing else. The built-in cells do; a cell without it still takes input,
    output and weight dropout.

    Attributes:
      hidden_size: size of the recurrent state ``s_t``.
      output_size: size of ``y_t`` (the hidden size, or an LSTM's ``proj_size``).
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
