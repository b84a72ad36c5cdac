"""Flax NNX modules over jrnn's pure sequence layers: ``jrnn.flax.nnx.RNN``, ``Bidirectional``, ``Deep``, ``Recurrent``.

Each module holds one pure jrnn layer (static) and its parameter pytree, the very NamedTuples of the pure API, with
one :class:`flax.nnx.Param` per array, under the attribute ``rnn``. ``module(xs)`` is ``layer.apply(params, xs)[0]``
and ``module.run(xs)`` the whole ``(ys, final_state)``; ``module.params`` reads the pure pytree back and
``module.load(params)`` writes one in (from :func:`jrnn.from_torch` or a pure-API training run).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
from flax import nnx

from jrnn._src.bidirectional import bidirectional
from jrnn._src.contract import Cell, SequenceLayer
from jrnn._src.deep import deep
from jrnn._src.flax import common as flax_common
from jrnn._src.regularisation import RecurrentDropout
from jrnn._src.scan import RNN as PureRNN
from jrnn._src.solvers.base import Solver
from jrnn._src.solvers.deprecated import UNSET, solver_from_keywords

__all__ = ["Bidirectional", "Deep", "RNN", "Recurrent"]


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


class Recurrent(nnx.Module):
    """Any jrnn sequence layer as an NNX module (the base of :class:`RNN`, :class:`Bidirectional`, :class:`Deep`).

    Args:
      layer: a pure jrnn sequence layer: ``jrnn.RNN(cell)``, ``jrnn.bidirectional(...)``, ``jrnn.deep([...])``,
        or the ``network`` of what :func:`jrnn.from_torch` returns.
      input_size: F, the number of input features.
      params: the layer's parameter pytree (what ``layer.init(key, input_size)`` or :func:`jrnn.from_torch`
        returns); None to initialise fresh ones from ``rngs.params()``.
      rngs: an ``nnx.Rngs``; its ``params`` stream initialises (when ``params`` is None), its ``dropout`` stream
        draws the dropout keys of a layer with dropout (a ``dropout`` rate, or :func:`jrnn.recurrent_dropout` on
        any of its layers).
      deterministic: turns dropout off; ``model.eval()`` sets it, ``model.train()`` clears it.

    Example:
      >>> import jax.numpy as jnp, jrnn, jrnn.flax
      >>> from flax import nnx
      >>> layer = jrnn.deep([jrnn.bidirectional(jrnn.lstm(8))] * 2, dropout=0.1)
      >>> model = jrnn.flax.nnx.Recurrent(layer, input_size=3, rngs=nnx.Rngs(params=0, dropout=1))
      >>> ys = model(jnp.ones((2, 5, 3)), lengths=jnp.array([5, 3]))
      >>> ys.shape
      (2, 5, 16)
      >>> same = jrnn.flax.nnx.Recurrent(layer, input_size=3, params=model.params)   # loading is one argument
    """

    def __init__(self, layer: SequenceLayer, input_size: int, *, params: Any = None, rngs: nnx.Rngs | None = None,
                 deterministic: bool = False):
        where = f"jrnn.flax.nnx.{type(self).__name__}"
        self.layer = flax_common.sequence_layer(layer, where)
        self.input_size = flax_common.input_size(input_size, where)
        if params is None:
            if rngs is None:
                raise TypeError(f"{where}: expected rngs (an nnx.Rngs) to initialise the parameters, or params=; "
                                "got neither")
            params = layer.init(rngs.params(), self.input_size)
        else:
            params = flax_common.check_params(params, layer, self.input_size, where)
        self.rnn = nnx.data(jax.tree_util.tree_map(nnx.Param, params))  # one nnx.Param per array of the pytree
        self.deterministic = deterministic
        if rngs is not None and flax_common.uses_dropout(layer):
            self.rngs = rngs["dropout"].fork()
        else:
            self.rngs = nnx.data(None)

    @property
    def params(self) -> Any:
        """The pure parameter pytree (NamedTuples of arrays), as ``layer.apply`` and :func:`jrnn.to_torch` take it."""
        return jax.tree_util.tree_map(lambda v: v.get_value(), self.rnn,
                                      is_leaf=_is_variable)

    def load(self, params: Any) -> None:
        """Writes ``params`` (same structure and shapes as :attr:`params`) into the module's ``nnx.Param``\\ s in place,
        so an ``nnx.Optimizer`` made before keeps tracking them."""
        params = flax_common.check_params(params, self.layer, self.input_size,
                                          f"jrnn.flax.nnx.{type(self).__name__}.load")
        jax.tree_util.tree_map(lambda v, p: v.set_value(p), self.rnn, params,
                               is_leaf=_is_variable)

    def run(self, xs: jax.Array, *, lengths: jax.Array | None = None, initial_state: Any = None,
            deterministic: bool | None = None,
            rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None) -> tuple[jax.Array, Any]:
        """``layer.apply``: ``xs[B, T, input_size] -> (ys[B, T, output_size], final_state)``.

        Args:
          xs: batch-major inputs.
          lengths: optional ``[B]`` valid lengths (padded outputs are 0; final states are each sequence's own).
          initial_state: optional, as ``layer.initial_state((B,))``.
          deterministic: overrides the attribute for this call.
          rngs: overrides the module's dropout stream for this call (an ``nnx.Rngs``, a stream or a key).
        """
        deterministic = self.deterministic if deterministic is None else deterministic
        key = None
        if not deterministic and flax_common.uses_dropout(self.layer):
            key = self._dropout_key(self.rngs if rngs is None else rngs)
        return self.layer.apply(self.params, xs, lengths=lengths, initial_state=initial_state, key=key)

    def __call__(self, xs: jax.Array, *, lengths: jax.Array | None = None, initial_state: Any = None,
                 deterministic: bool | None = None,
                 rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None) -> jax.Array:
        """``ys[B, T, output_size]`` (see :meth:`run`); without the final state, so it chains in ``nnx.Sequential``."""
        return self.run(xs, lengths=lengths, initial_state=initial_state, deterministic=deterministic, rngs=rngs)[0]

    def _dropout_key(self, rngs: Any) -> jax.Array:
        if isinstance(rngs, nnx.Rngs):
            return rngs["dropout"]()
        if isinstance(rngs, nnx.RngStream):
            return rngs()
        if isinstance(rngs, jax.Array):
            return rngs
        raise ValueError(f"jrnn.flax.nnx.{type(self).__name__}: dropout is on (deterministic=False, dropout="
                         f"{getattr(self.layer, 'dropout', None)}) but there is no dropout key: expected "
                         f"rngs=nnx.Rngs(dropout=...) at construction or call, or deterministic=True (model.eval()); "
                         f"got rngs={rngs!r}")


class RNN(Recurrent):
    """One recurrent layer, :class:`jrnn.RNN`, as an NNX module; ``params`` are the cell's (e.g. ``LSTMParams``).

    Args:
      cell: a jrnn cell, e.g. ``jrnn.lstm(64)``.
      input_size: F, the number of input features.
      reverse: run each sequence backwards (length-aware).
      solver: None (:func:`jrnn.auto`) or any solver, as in :func:`jrnn.scan`.
      dropout: :func:`jrnn.recurrent_dropout` rates (variational dropout, weight drop), drawn from the
        ``dropout`` stream while ``deterministic`` is False.
      params: as for :class:`Recurrent`.
      rngs: as for :class:`Recurrent`.
      deterministic: as for :class:`Recurrent`.
      unroll: deprecated; pass ``solver=jrnn.sequential(unroll)`` or ``jrnn.fused(unroll=...)``.
    """

    def __init__(self, cell: Cell, input_size: int, *, reverse: bool = False, solver: Solver | None = None,
                 dropout: RecurrentDropout | None = None, params: Any = None, rngs: nnx.Rngs | None = None,
                 deterministic: bool = False, unroll: Any = UNSET):
        if not isinstance(cell, Cell):
            raise TypeError(f"jrnn.flax.nnx.RNN: expected a jrnn cell (jrnn.elman/lstm/gru(...)), got {cell!r}")
        solver = solver_from_keywords("jrnn.flax.nnx.RNN", solver, unroll=unroll)
        super().__init__(PureRNN(cell, reverse, solver, dropout), input_size, params=params, rngs=rngs,
                         deterministic=deterministic)


class Bidirectional(Recurrent):
    """A bidirectional layer, :func:`jrnn.bidirectional`, as an NNX module; ``params`` are a
    :class:`jrnn.BidirectionalParams`.

    Args:
      forward: the forward cell.
      input_size: F, the number of input features.
      backward: the backward cell (default: configured like ``forward``, own parameters).
      merge: ``'concat'``, ``'sum'``, ``'mean'``, ``'product'``, ``jrnn.seed_merge(...)`` or a callable.
      solver: None (:func:`jrnn.auto`) or any solver, for both directions, as in :func:`jrnn.scan`.
      dropout: :func:`jrnn.recurrent_dropout` rates for both directions, drawn from the ``dropout`` stream while
        ``deterministic`` is False.
      params: as for :class:`Recurrent`.
      rngs: as for :class:`Recurrent`.
      deterministic: as for :class:`Recurrent`.
      unroll: deprecated; pass ``solver=jrnn.sequential(unroll)`` or ``jrnn.fused(unroll=...)``.
    """

    def __init__(self, forward: Cell, input_size: int, *, backward: Cell | None = None, merge: Any = "concat",
                 solver: Solver | None = None, dropout: RecurrentDropout | None = None, params: Any = None,
                 rngs: nnx.Rngs | None = None, deterministic: bool = False, unroll: Any = UNSET):
        solver = solver_from_keywords("jrnn.flax.nnx.Bidirectional", solver, unroll=unroll)
        super().__init__(bidirectional(forward, backward, merge, solver=solver, dropout=dropout), input_size,
                         params=params, rngs=rngs, deterministic=deterministic)


class Deep(Recurrent):
    """A stack of layers, :func:`jrnn.deep`, as an NNX module; ``params`` are a tuple with one entry per layer
    (what :func:`jrnn.from_torch` returns).

    Args:
      layers: cells (run forward) or pure sequence layers, bottom first.
      input_size: F, the number of input features.
      dropout: the rate of dropout between layers (PyTorch's), drawn from the ``dropout`` stream while
        ``deterministic`` is False.
      residual: add each layer's input to its output from layer 2 on.
      solver: the solver of every layer given as a bare cell (None: :func:`jrnn.auto`), as in :func:`jrnn.deep`.
      params: as for :class:`Recurrent`.
      rngs: as for :class:`Recurrent`.
      deterministic: as for :class:`Recurrent`.
    """

    def __init__(self, layers: Sequence[Any], input_size: int, *, dropout: float = 0.0, residual: bool = False,
                 solver: Solver | None = None, params: Any = None, rngs: nnx.Rngs | None = None,
                 deterministic: bool = False):
        super().__init__(deep(layers, dropout=dropout, residual=residual, solver=solver), input_size,
                         params=params, rngs=rngs, deterministic=deterministic)
