"""Zero "probes" added to every step's state, so that ``jax.grad`` with respect to them is ``dL/ds_t``.

For a recurrence ``s_t = F(s_{t-1}, x_t)``, insert ``s_t <- s_t + p_t`` after each step, with ``p_t = 0``. The
forward pass is unchanged, and ``dL/dp_t`` is the total derivative ``dL/ds_t``: through the output ``y_t`` and
through every later state. This module does it for any jrnn network without touching :func:`jrnn.scan`: each cell
is wrapped in a cell that carries a step counter and reads its probe from its parameters, and the network (a cell,
:class:`jrnn.RNN`, :class:`jrnn.Bidirectional`, :class:`jrnn.Deep`, nested freely) is rebuilt around the wrapped
cells with ``dataclasses.replace``. It also lists a network's recurrences with the inputs each one sees.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src.bidirectional import Bidirectional, BidirectionalState
from jrnn._src.cells.elman import ElmanCell
from jrnn._src.cells.gru import GRUCell
from jrnn._src.cells.lstm import LSTMState
from jrnn._src.contract import Cell, Wrapper, input_shape, prepare
from jrnn._src.deep import Deep
from jrnn._src.scan import RNN


def output_of_state(cell: Cell, state: Any, y: jax.Array) -> jax.Array:
    """``y_t`` as a function of ``s_t`` for jrnn's cells (Elman, GRU: ``y = s``; LSTM: ``y = h``), else ``y``.

    :class:`ProbedCell` also takes ``y_t = s_t`` for any cell whose ``step`` returns its new state itself as the
    output (``return s, s``). For another cell, the probe cannot reach ``y_t`` and ``dL/ds_t`` counts only the
    path through later states.
    """
    if isinstance(state, LSTMState):
        return state.h
    if isinstance(cell, (ElmanCell, GRUCell)):
        return state
    return y


class ProbedParams(NamedTuple):
    """The wrapped cell's parameters and its probes, each leaf ``[T, B, ...]`` like the state's."""

    inner: Any
    probes: Any


class ProbedState(NamedTuple):
    """The wrapped cell's state and the step counter ``t`` ``[B]`` (int32) that indexes the probes."""

    inner: Any
    t: jax.Array


@dataclasses.dataclass(frozen=True)
class ProbedCell(Wrapper):
    """A cell whose step is ``cell``'s followed by ``s_t <- s_t + probes[t]`` (and ``y_t`` re-read from ``s_t``)."""

    cell: Cell

    @property
    def hidden_size(self) -> int:
        return self.cell.hidden_size

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    def init(self, key, input_size):
        raise NotImplementedError("ProbedCell wraps existing parameters; it has no init")

    def initial_state(self, batch_shape=(), dtype=None) -> ProbedState:
        return ProbedState(self.cell.initial_state(batch_shape, dtype), jnp.zeros(tuple(batch_shape), jnp.int32))

    def step(self, params: ProbedParams, state: ProbedState, x: jax.Array) -> tuple[ProbedState, jax.Array]:
        new, y = self.cell.step(params.inner, state.inner, x)
        rows = jnp.arange(state.t.shape[0])
        probed = jax.tree_util.tree_map(lambda s, p: s + p[state.t, rows], new, params.probes)
        y = probed if y is new else output_of_state(self.cell, probed, y)  # a cell whose output is its state
        return ProbedState(probed, state.t + 1), y

    def input_size(self, params: ProbedParams) -> int:
        return self.cell.input_size(params.inner)

    def input_shape(self, params: ProbedParams) -> tuple[int, ...]:
        return input_shape(self.cell, params.inner)

    def prepare(self, params: ProbedParams) -> ProbedParams:
        return ProbedParams(prepare(self.cell, params.inner), params.probes)


def _unsupported(network: Any) -> TypeError:
    return TypeError("jrnn diagnostics: expected a jrnn cell, RNN, Bidirectional or Deep network (nested freely), "
                     f"got {type(network).__name__}")


def as_network(network: Any) -> Any:
    """A bare cell becomes a forward :class:`jrnn.RNN`; the three layer types stay; anything else raises."""
    if isinstance(network, (RNN, Bidirectional, Deep)):
        return network
    if isinstance(network, Cell):
        return RNN(network)
    raise _unsupported(network)


def probed_network(net: Any) -> Any:
    """``net`` with every cell replaced by its :class:`ProbedCell`."""
    if isinstance(net, RNN):
        return dataclasses.replace(net, cell=ProbedCell(net.cell))
    if isinstance(net, Bidirectional):
        return dataclasses.replace(net, forward=ProbedCell(net.forward), backward=ProbedCell(net.backward))
    if isinstance(net, Deep):
        return dataclasses.replace(net, layers=tuple(probed_network(as_network(l)) for l in net.layers))
    raise _unsupported(net)


def probed_params(net: Any, params: Any, probes: Any) -> Any:
    """``net``'s parameters with each cell's entry paired with its probes (probes mirror the state's structure)."""
    if isinstance(net, RNN):
        return ProbedParams(params, probes)
    if isinstance(net, Bidirectional):
        return params._replace(forward=ProbedParams(params.forward, probes.forward),
                               backward=ProbedParams(params.backward, probes.backward))
    if isinstance(net, Deep):
        return tuple(probed_params(as_network(l), p, q) for l, p, q in zip(net.layers, params, probes))
    raise _unsupported(net)


def zero_probes(net: Any, batch: int, time: int, dtype: Any) -> Any:
    """Zeros shaped like ``net``'s state with a leading time axis: leaves ``[T, B, ...]``."""
    if isinstance(net, RNN):
        state = net.cell.initial_state((batch,), dtype)
        return jax.tree_util.tree_map(lambda s: jnp.zeros((time,) + s.shape, s.dtype), state)
    if isinstance(net, Bidirectional):
        return BidirectionalState(zero_probes(RNN(net.forward), batch, time, dtype),
                                  zero_probes(RNN(net.backward), batch, time, dtype))
    if isinstance(net, Deep):
        return tuple(zero_probes(as_network(l), batch, time, dtype) for l in net.layers)
    raise _unsupported(net)


def probed_state(net: Any, state: Any, batch: int) -> Any:
    """A user's initial state for ``net`` (None allowed anywhere) turned into one for ``probed_network(net)``."""
    if state is None:
        return None
    if isinstance(net, RNN):
        return ProbedState(state, jnp.zeros((batch,), jnp.int32))
    if isinstance(net, Bidirectional):
        return BidirectionalState(probed_state(RNN(net.forward), state.forward, batch),
                                  probed_state(RNN(net.backward), state.backward, batch))
    if isinstance(net, Deep):
        return tuple(probed_state(as_network(l), s, batch) for l, s in zip(net.layers, state))
    raise _unsupported(net)


class Recurrence(NamedTuple):
    """One recurrence of a network, with everything needed to re-run it alone.

    Attributes:
      name: where it sits, e.g. ``"rnn"``, ``"forward"``, ``"layers[1].backward"``.
      cell: its cell.
      params: its cell's parameters.
      inputs: ``[B, T, F]``, the sequence it reads (the network's input, or the layer below's output).
      reverse: whether it runs backwards in time.
      initial_state: its initial state, or None for zeros.
    """

    name: str
    cell: Cell
    params: Any
    inputs: jax.Array
    reverse: bool
    initial_state: Any


def recurrences(net: Any, params: Any, xs: jax.Array, lengths: jax.Array | None, initial_state: Any = None,
                prefix: str = "") -> list[Recurrence]:
    """Every recurrence of ``net`` in the order of ``jax.tree_util.tree_leaves`` of its state (layers bottom
    first; forward before backward). Deep stacks are evaluated without dropout."""
    def name(suffix):
        return f"{prefix}.{suffix}" if prefix else suffix

    if isinstance(net, RNN):
        return [Recurrence(prefix or "rnn", net.cell, params, xs, net.reverse, initial_state)]
    if isinstance(net, Bidirectional):
        s = initial_state if initial_state is not None else BidirectionalState(None, None)
        return [Recurrence(name("forward"), net.forward, params.forward, xs, False, s.forward),
                Recurrence(name("backward"), net.backward, params.backward, xs, True, s.backward)]
    if isinstance(net, Deep):
        states = initial_state if initial_state is not None else (None,) * len(net.layers)
        found = []
        for l, (layer, p, s) in enumerate(zip(net.layers, params, states)):
            inputs = xs
            if l > 0:  # the input of layer l is the output of the sub-stack below it, computed by Deep itself
                below = dataclasses.replace(net, layers=net.layers[:l])
                inputs, _ = below.apply(params[:l], xs, lengths=lengths, initial_state=tuple(states[:l]))
            found += recurrences(as_network(layer), p, inputs, lengths, s, name(f"layers[{l}]"))
        return found
    raise _unsupported(net)
