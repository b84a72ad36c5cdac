"""Flax Linen modules over jrnn's pure sequence layers: ``jrnn.flax.linen.RNN``, ``Bidirectional``, ``Deep``,
``Recurrent``.

Each module stores the pure layer's whole parameter pytree, the very NamedTuples of the pure API, as the one
parameter ``rnn``: its variables are ``{'params': {'rnn': params}}``, so parameters from :func:`jrnn.from_torch` or
a pure-API run load by putting them there. ``module(xs)`` is ``layer.apply(params, xs)[0]``;
``module.apply(variables, xs, method='run')`` returns the whole ``(ys, final_state)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jrnn._src.bidirectional import bidirectional
from jrnn._src.contract import Cell, SequenceLayer
from jrnn._src.deep import deep
from jrnn._src.flax import common as flax_common
from jrnn._src.regularisation import RecurrentDropout
from jrnn._src.scan import RNN as PureRNN
from jrnn._src.solvers.base import Solver
from jrnn._src.solvers.deprecated import UNSET, solver_from_keywords

__all__ = ["Bidirectional", "Deep", "RNN", "Recurrent"]


class _Base(nn.Module):
    """``run`` and ``__call__`` for a Linen module whose ``_layer()`` is a pure jrnn sequence layer."""

    def _layer(self) -> SequenceLayer:
        raise NotImplementedError

    @nn.compact
    def run(self, xs: jax.Array, *, lengths: jax.Array | None = None, initial_state: Any = None,
            deterministic: bool | None = None) -> tuple[jax.Array, Any]:
        """``layer.apply``: ``xs[B, T, F] -> (ys[B, T, output_size], final_state)``; F is read off ``xs``.

        Args:
          xs: batch-major inputs.
          lengths: optional ``[B]`` valid lengths (padded outputs are 0; final states are each sequence's own).
          initial_state: optional, as ``layer.initial_state((B,))``.
          deterministic: overrides the attribute (layers with dropout only); when False, the dropout key comes
            from ``self.make_rng('dropout')``, so ``apply`` needs ``rngs={'dropout': key}``.
        """
        where = f"jrnn.flax.linen.{type(self).__name__}"
        layer = flax_common.sequence_layer(self._layer(), where)
        if len(jnp.shape(xs)) < 3:
            raise ValueError(f"{where}: expected xs of shape [batch, time, features], got shape {jnp.shape(xs)}")
        input_size = xs.shape[-1]
        if self.has_variable("params", "rnn"):  # loaded ones: check them before Flax does
            flax_common.check_params(self.get_variable("params", "rnn"), layer, input_size, where)
        params = self.param("rnn", lambda key: layer.init(key, input_size))
        key = None
        if flax_common.uses_dropout(layer):
            if deterministic is None:
                deterministic = getattr(self, "deterministic", None)
            if deterministic is None:
                raise ValueError(f"{where}: expected deterministic=True or False, as an attribute or at call time, "
                                 f"for a layer with dropout={getattr(layer, 'dropout', None)}; got neither")
            if not deterministic:
                key = self.make_rng("dropout")
        return layer.apply(params, xs, lengths=lengths, initial_state=initial_state, key=key)

    def __call__(self, xs: jax.Array, *, lengths: jax.Array | None = None, initial_state: Any = None,
                 deterministic: bool | None = None) -> jax.Array:
        """``ys[B, T, output_size]`` (see :meth:`run`)."""
        return self.run(xs, lengths=lengths, initial_state=initial_state, deterministic=deterministic)[0]


class Recurrent(_Base):
    """Any jrnn sequence layer as a Linen module.

    Attributes:
      layer: a pure jrnn sequence layer (``jrnn.RNN(cell)``, ``jrnn.bidirectional(...)``, ``jrnn.deep([...])``, or
        the ``network`` of what :func:`jrnn.from_torch` returns).
      deterministic: turns dropout off (layers with dropout only); may be given at call time instead.

    Example:
      >>> import jax.numpy as jnp, torch, jrnn, jrnn.flax
      >>> fn, params = jrnn.from_torch(torch.nn.GRU(3, 4, num_layers=2, batch_first=True))
      >>> module = jrnn.flax.linen.Recurrent(fn.network)
      >>> ys = module.apply({"params": {"rnn": params}}, jnp.ones((2, 5, 3)))
      >>> bool(jnp.allclose(ys, fn(params, jnp.ones((2, 5, 3)))[0])), ys.shape
      (True, (2, 5, 4))
    """

    layer: Any
    deterministic: bool | None = None

    def _layer(self) -> SequenceLayer:
        return self.layer


class RNN(_Base):
    """One recurrent layer, :class:`jrnn.RNN`, as a Linen module; its ``rnn`` parameter is the cell's params.

    Attributes:
      cell: a jrnn cell, e.g. ``jrnn.lstm(64)``.
      reverse: run each sequence backwards (length-aware).
      solver: None (:func:`jrnn.auto`) or any solver, as in :func:`jrnn.scan`.
      dropout: :func:`jrnn.recurrent_dropout` rates, drawn from the ``'dropout'`` RNG when not ``deterministic``.
      deterministic: turns dropout off; may be given at call time instead.
      unroll: deprecated; pass ``solver=jrnn.sequential(unroll)`` or ``jrnn.fused(unroll=...)``.
    """

    cell: Cell
    reverse: bool = False
    solver: Solver | None = None
    dropout: RecurrentDropout | None = None
    deterministic: bool | None = None
    unroll: Any = UNSET

    def _layer(self) -> SequenceLayer:
        if not isinstance(self.cell, Cell):
            raise TypeError(f"jrnn.flax.linen.RNN: expected a jrnn cell (jrnn.elman/lstm/gru(...)), got {self.cell!r}")
        solver = solver_from_keywords("jrnn.flax.linen.RNN", self.solver, unroll=self.unroll)
        return PureRNN(self.cell, self.reverse, solver, self.dropout)


class Bidirectional(_Base):
    """A bidirectional layer, :func:`jrnn.bidirectional`, as a Linen module; its ``rnn`` parameter is a
    :class:`jrnn.BidirectionalParams`.

    Attributes:
      forward: the forward cell.
      backward: the backward cell (default: configured like ``forward``, own parameters).
      merge: ``'concat'``, ``'sum'``, ``'mean'``, ``'product'``, ``jrnn.seed_merge(...)`` or a callable.
      solver: None (:func:`jrnn.auto`) or any solver, for both directions, as in :func:`jrnn.scan`.
      dropout: :func:`jrnn.recurrent_dropout` rates for both directions, drawn from the ``'dropout'`` RNG when not
        ``deterministic``.
      deterministic: turns dropout off; may be given at call time instead.
      unroll: deprecated; pass ``solver=jrnn.sequential(unroll)`` or ``jrnn.fused(unroll=...)``.
    """

    forward: Cell
    backward: Cell | None = None
    merge: Any = "concat"
    solver: Solver | None = None
    dropout: RecurrentDropout | None = None
    deterministic: bool | None = None
    unroll: Any = UNSET

    def _layer(self) -> SequenceLayer:
        solver = solver_from_keywords("jrnn.flax.linen.Bidirectional", self.solver, unroll=self.unroll)
        return bidirectional(self.forward, self.backward, self.merge, solver=solver, dropout=self.dropout)


class Deep(_Base):
    """A stack of layers, :func:`jrnn.deep`, as a Linen module; its ``rnn`` parameter is a tuple with one entry
    per layer (what :func:`jrnn.from_torch` returns).

    Attributes:
      layers: a tuple of cells (run forward) or pure sequence layers, bottom first.
      dropout: the rate of dropout between layers, active when not ``deterministic``.
      residual: add each layer's input to its output from layer 2 on.
      deterministic: turns dropout off; may be given at call time instead.
      solver: the solver of every layer given as a bare cell (None: :func:`jrnn.auto`), as in :func:`jrnn.deep`.
    """

    layers: Sequence[Any]
    dropout: float = 0.0
    residual: bool = False
    deterministic: bool | None = None
    solver: Solver | None = None

    def _layer(self) -> SequenceLayer:
        return deep(tuple(self.layers), dropout=self.dropout, residual=self.residual, solver=self.solver)
