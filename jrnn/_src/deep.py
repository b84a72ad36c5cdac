"""The deep (stacked) RNN: layer l reads the output sequence of layer l - 1."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src import checks
from jrnn._src.compiled import jit_when_eager
from jrnn._src.contract import CannotStep, Cell, SequenceLayer, Wrapper, input_shape, prepare
from jrnn._src.scan import RNN
from jrnn._src.solvers.base import Solver


@dataclasses.dataclass(frozen=True)
class Deep(Wrapper):
    """A stack of sequence layers; build it with :func:`jrnn.deep`. For layers ``l = 1..L``::

        h^0_t = x_t
        h^1   = layer_1(h^0)                           (the input is never dropped)
        h^l   = layer_l(dropout(h^{l-1}))             for l >= 2 (+ h^{l-1} with residual)
        y_t   = h^L_t

    Dropout sits between layers only, as PyTorch's ``nn.LSTM(dropout=p)``: on the inputs of layers 2..L, never
    on ``x`` and never on the top layer's output (drop ``x`` or ``y`` yourself where you want that).

    Params and states are tuples with one entry per layer. A key is split per layer, ``k_l =
    jax.random.split(key, L)[l]``, and each ``k_l`` into the key of the dropout before layer l (unused for l = 1)
    and the key
    layer l's own ``apply`` gets (for its :func:`jrnn.recurrent_dropout`): ``jax.random.split(k_l)``.

    A stack of one-directional layers is a cell: :meth:`step` advances every layer by one step, bottom first,
    so scanning it over time is :meth:`apply` (without dropout), and the stack goes wherever a cell goes
    (:func:`jrnn.scan`, :func:`jrnn.bidirectional`, :func:`jrnn.language_model`). A stack with a reverse or
    bidirectional layer cannot step; it is still a sequence layer.
    """

    layers: tuple
    dropout: float = 0.0
    residual: bool = False

    @property
    def hidden_size(self) -> int:
        """The width of the whole state ``s_t``: the sum of the layers' hidden sizes."""
        return sum(layer.hidden_size for layer in self.layers)

    @property
    def output_size(self) -> int:
        return self.layers[-1].output_size

    def input_size(self, params: Sequence[Any]) -> int:
        return self.layers[0].input_size(params[0])

    def init(self, key: jax.Array, input_size: int) -> tuple:
        input_size = checks.positive_int("input_size", input_size, "jrnn.Deep.init")
        keys = jax.random.split(key, len(self.layers))
        params, size = [], input_size
        for layer, k in zip(self.layers, keys):
            params.append(layer.init(k, size))
            size = layer.output_size
        return tuple(params)

    def initial_state(self, batch_shape=(), dtype=None) -> tuple:
        return tuple(layer.initial_state(batch_shape, dtype) for layer in self.layers)

    def input_shape(self, params: Sequence[Any]) -> tuple[int, ...]:
        """The first layer's per-step input shape (:class:`jrnn.InputShaped`)."""
        return input_shape(self.layers[0], params[0])

    def prepare(self, params: Sequence[Any]) -> tuple:
        """Every layer's per-sequence work (``cell.prepare``)."""
        return tuple(prepare(layer, p) for layer, p in zip(self.layers, params))

    @jit_when_eager(static_argnums=(0,))
    def apply(self, params: Sequence[Any], xs: jax.Array, *, lengths: jax.Array | None = None,
              initial_state: Sequence[Any] | None = None, key: jax.Array | None = None,
              resets: jax.Array | None = None) -> tuple[jax.Array, tuple]:
        """``xs[B, T, F] -> (ys[B, T, output_size], per-layer final states)``.

        Args:
          params: one entry per layer.
          xs: ``[B, T, F]`` inputs.
          lengths: optional ``[B]`` valid lengths, shared by every layer.
          initial_state: None, or one entry per layer (each None for zeros).
          key: a PRNG key turns dropout on (training), between layers and inside each layer that has its own
            (:func:`jrnn.recurrent_dropout`); None turns it off (evaluation).
          resets: optional ``[B, T]`` bool, where packed segments start (:func:`jrnn.scan`), shared by every layer.
        """
        n = len(self.layers)
        if not isinstance(params, (tuple, list)) or len(params) != n:
            raise ValueError(f"jrnn.Deep: expected params for {n} layers (a tuple), got {type(params).__name__}"
                             + (f" of length {len(params)}" if isinstance(params, (tuple, list)) else ""))
        if initial_state is None:
            initial_state = (None,) * n
        elif not isinstance(initial_state, (tuple, list)) or len(initial_state) != n:
            got = type(initial_state).__name__
            if isinstance(initial_state, (tuple, list)):
                got += f" of length {len(initial_state)}"
            raise ValueError(f"jrnn.Deep: expected initial_state to be None or a tuple of {n} per-layer states, "
                             f"got {got}")
        keys = [(None, None)] * n if key is None else [tuple(jax.random.split(k)) for k in jax.random.split(key, n)]
        h, finals = xs, []
        for l, (layer, p, s0, (k_drop, k_layer)) in enumerate(zip(self.layers, params, initial_state, keys)):
            inputs = h if l == 0 or k_drop is None or not self.dropout else _dropout(k_drop, self.dropout, h)
            options = {} if resets is None else {"resets": resets}
            out, final = layer.apply(p, inputs, lengths=lengths, initial_state=s0, key=k_layer, **options)
            h = out + h if self.residual and l > 0 else out
            finals.append(final)
        return h, tuple(finals)

    def step(self, params: Sequence[Any], state: Sequence[Any], x: jax.Array) -> tuple[tuple, jax.Array]:
        """One time step of every layer, bottom first: ``(state, x[..., F]) -> (state, y[..., output_size])``::

            h^0 = x
            s^l, h^l = layer_l.step(params[l], state[l], h^{l-1})      (+ h^{l-1} with residual, for l >= 2)
            y = h^L

        Dropout is off (a step has no key: it is the evaluation-time network). Scanning it over a sequence
        equals :meth:`apply` without a key. Raises ``ValueError`` when a layer cannot step (a reverse or
        bidirectional layer: its output at step t depends on later inputs).

        Args:
          params: one entry per layer.
          state: one state per layer, each with leading batch shape ``[...]``.
          x: ``[..., F]`` inputs of one time step.

        Returns:
          ``(new_state, y)``, the new per-layer states (a tuple) and the top layer's output.
        """
        n = len(self.layers)
        for name, tree in (("params", params), ("state", state)):
            if not isinstance(tree, (tuple, list)) or len(tree) != n:
                got = type(tree).__name__ + (f" of length {len(tree)}" if isinstance(tree, (tuple, list)) else "")
                raise ValueError(f"jrnn.Deep.step: expected {name} for {n} layers (a tuple), got {got}")
        h, new_states = x, []
        for l, (layer, p, s) in enumerate(zip(self.layers, params, state)):
            if not isinstance(layer, Cell):
                raise TypeError(f"jrnn.Deep.step: layer {l + 1} ({type(layer).__name__}) has no step method; a "
                                "stack steps only when every layer does (cells, forward jrnn.RNN, jrnn.Deep)")
            try:
                s, out = layer.step(p, s, h)
            except CannotStep as error:
                reason = f"layer {l + 1} ({type(layer).__name__}) cannot step: {error.reason}"
                raise CannotStep(f"jrnn.Deep.step: {reason}", reason) from None
            h = out + h if self.residual and l > 0 else out
            new_states.append(s)
        return tuple(new_states), h


def _dropout(key: jax.Array, rate: float, x: jax.Array) -> jax.Array:
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def as_layer(layer: Any, solver: Solver | None = None) -> SequenceLayer:
    """A cell becomes a forward :class:`jrnn.RNN` (with ``solver``); a sequence layer (a network cell included)
    stays as it is."""
    if isinstance(layer, SequenceLayer):
        return layer
    if isinstance(layer, Cell):
        return RNN(layer, solver=solver)
    raise TypeError(f"jrnn.deep: expected each layer to be a jrnn cell or sequence layer, got {layer!r}")


def deep(layers: Sequence[Any], *, dropout: float = 0.0, residual: bool = False,
         solver: Solver | None = None) -> Deep:
    """A deep RNN from a sequence of layers: cells (run forward) or sequence layers
    (:class:`jrnn.RNN`, :class:`jrnn.Bidirectional`, ...).

    Args:
      layers: one entry per layer, bottom first.
      dropout: the rate of dropout between layers, on the inputs of layers 2..L only: the stack's input (layer
        1's) and its output are never dropped (PyTorch's ``nn.LSTM(dropout=p)``: a fresh mask at every step, so a
        one-layer stack has no dropout). Active only when ``apply`` gets a ``key``. For Gal's variational dropout
        (one mask per sequence) give the layers :func:`jrnn.recurrent_dropout` instead:
        ``jrnn.RNN(cell, dropout=...)``.
      residual: add each layer's input to its output from layer 2 on (Wu et al. 2016); needs equal sizes.
      solver: the solver of every layer given as a bare cell (:func:`jrnn.scan`'s; None: :func:`jrnn.auto`). A
        layer given as a :class:`jrnn.RNN` or :func:`jrnn.bidirectional` keeps its own.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> net = jrnn.deep([jrnn.bidirectional(jrnn.gru(8)), jrnn.lstm(4)], dropout=0.1)
      >>> params = net.init(jax.random.key(0), input_size=3)
      >>> ys, states = net.apply(params, jnp.ones((2, 5, 3)), key=jax.random.key(1))
      >>> ys.shape, len(states)
      ((2, 5, 4), 2)
    """
    if solver is not None and not isinstance(solver, Solver):
        raise TypeError(f"jrnn.deep: expected solver to be None or a jrnn solver, got {solver!r}")
    layers = tuple(as_layer(layer, solver) for layer in layers)
    if not layers:
        raise ValueError("jrnn.deep: expected at least one layer, got none")
    if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
        raise ValueError(f"jrnn.deep: expected 0 <= dropout < 1, got {dropout!r}")
    if residual:
        for l in range(1, len(layers)):
            if layers[l].output_size != layers[l - 1].output_size:
                raise ValueError(
                    f"jrnn.deep: residual connections need layer {l + 1}'s input size "
                    f"({layers[l - 1].output_size}) to equal its output size ({layers[l].output_size})")
    return Deep(layers, float(dropout), bool(residual))
