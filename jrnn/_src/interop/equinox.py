"""Equinox interop: ``jrnn.from_equinox(cell)`` and ``jrnn.to_equinox(params, cell)`` for ``eqx.nn.LSTMCell`` and
``eqx.nn.GRUCell``.

equinox is imported only inside these functions. Equinox's cells are one step on unbatched arrays in PyTorch's
layout (``[G·H, in]``, gates ``i, f, g, o`` and ``r, z, n``) with one input-side bias (and the GRU's ``bias_n``
inside the reset product), so the weights carry over as they are and the converted step is jrnn's cell.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jrnn._src.cells.gru import GRUCell
from jrnn._src.cells.lstm import LSTMCell, LSTMState
from jrnn._src.extras import require
from jrnn._src.interop import common as common

_FEATURE = "jrnn.from_equinox / jrnn.to_equinox"


@dataclasses.dataclass(frozen=True)
class EquinoxCell:
    """jrnn's cell equivalent to an ``eqx.nn.LSTMCell`` or ``eqx.nn.GRUCell``, called as Equinox calls it.

    ``fn(params, input, hidden, *, key=None) -> hidden``: ``input`` ``[..., I]``, ``hidden`` ``h`` ``[..., H]``
    (GRU) or ``(h, c)`` (LSTM, Equinox's order), and the new hidden state in the same form; ``key`` is unused, as
    in Equinox. Leading batch axes are allowed (Equinox's cell takes one example, jrnn's any batch). For whole
    sequences use ``fn.cell`` with :func:`jrnn.scan` (lengths, ``reverse``, the fused solver).

    Attributes:
      cell: the jrnn cell (:func:`jrnn.lstm` or :func:`jrnn.gru` with ``reset_after=True``).
    """

    cell: LSTMCell | GRUCell

    def __call__(self, params: Any, input: jax.Array, hidden: Any, *, key: Any = None) -> Any:
        del key
        if isinstance(self.cell, LSTMCell):
            if not (isinstance(hidden, (tuple, list)) and len(hidden) == 2):
                raise TypeError(f"jrnn.from_equinox: expected hidden = (h, c) for an LSTM cell, got "
                                f"{type(hidden).__name__}")
            state, _ = self.cell.step(params, LSTMState(*hidden), input)
            return state.h, state.c
        state, _ = self.cell.step(params, hidden, input)
        return state


def _kind(eqx: Any, cell: Any, where: str) -> str:
    if isinstance(cell, eqx.nn.LSTMCell):
        return "lstm"
    if isinstance(cell, eqx.nn.GRUCell):
        return "gru"
    raise TypeError(f"{where}: expected an eqx.nn.LSTMCell or eqx.nn.GRUCell, got {type(cell).__name__}")


def from_equinox(cell: Any) -> tuple[EquinoxCell, Any]:
    """Converts an ``eqx.nn.LSTMCell`` or ``eqx.nn.GRUCell``.

    The weights are copied as they are (Equinox uses PyTorch's layout and gate orders): ``weight_ih`` → ``U``,
    ``weight_hh`` → ``W``, ``bias`` → ``b_U``; the LSTM has no ``b_W`` (None); the GRU's ``bias_n``, inside
    ``tanh(U_n x + b_n + r ⊙ (W_n h + bias_n))``, is ``b_W``'s ``n`` part (zeros for ``r`` and ``z``), jrnn's
    ``gru(reset_after=True)``. Equinox's GRU update ``new + z ⊙ (h − new)`` is jrnn's
    ``(1 − z) ⊙ n + z ⊙ s_{t-1}``.

    Args:
      cell: the Equinox cell.

    Returns:
      ``(fn, params)``: jrnn's cell parameters and the :class:`EquinoxCell` step that runs them as Equinox's
      ``cell(input, hidden)``; ``fn.cell`` is the jrnn cell, for :func:`jrnn.scan` and every other jrnn layer.

    Example:
      >>> import equinox as eqx, jax, jax.numpy as jnp, jrnn
      >>> cell = eqx.nn.LSTMCell(3, 5, key=jax.random.key(0))
      >>> fn, params = jrnn.from_equinox(cell)
      >>> h, c = fn(params, jnp.ones(3), (jnp.zeros(5), jnp.zeros(5)))
      >>> ys, state = jrnn.scan(fn.cell, params, jnp.ones((2, 7, 3)), lengths=jnp.array([7, 4]))
      >>> h.shape, ys.shape
      ((5,), (2, 7, 5))
    """
    eqx = require("equinox", "equinox", _FEATURE)
    kind = _kind(eqx, cell, "jrnn.from_equinox")
    b_W = None
    if kind == "gru" and cell.bias_n is not None:
        b_W = jnp.concatenate([jnp.zeros((2 * cell.hidden_size,), cell.bias_n.dtype), cell.bias_n])
    jrnn_cell = common.cell_for(kind, cell.hidden_size, bias=cell.use_bias)
    return EquinoxCell(jrnn_cell), common.PARAMS_OF[kind](cell.weight_ih, cell.weight_hh, cell.bias, b_W)


def to_equinox(params: Any, cell: Any) -> Any:
    """A copy of the Equinox cell ``cell`` holding jrnn parameters (the inverse of :func:`from_equinox`).

    Equinox keeps one bias where jrnn keeps ``b_U`` and ``b_W``: they are added (exactly, where ``b_W`` is 0),
    except the GRU's ``b_W`` ``n`` part, which becomes ``bias_n``. A cell with ``use_bias=False`` refuses a
    non-zero bias with a ``ValueError``; parameters without biases write zeros into a cell with them.
    ``to_equinox(from_equinox(cell)[1], cell)`` holds the very same bits as ``cell``.

    Args:
      params: :class:`jrnn.LSTMParams` (without projection) or :class:`jrnn.GRUParams` of matching shapes.
      cell: the ``eqx.nn.LSTMCell`` or ``eqx.nn.GRUCell`` to copy (Equinox modules are immutable).

    Example:
      >>> import equinox as eqx, jax, jax.numpy as jnp, jrnn
      >>> params = jrnn.gru(5).init(jax.random.key(0), input_size=3)
      >>> cell = jrnn.to_equinox(params, eqx.nn.GRUCell(3, 5, key=jax.random.key(1)))
      >>> bool(jnp.all(cell.weight_ih == params.U))
      True
    """
    eqx = require("equinox", "equinox", _FEATURE)
    where = "jrnn.to_equinox"
    kind = _kind(eqx, cell, where)
    common.expect_params(params, kind, where, f"an eqx.nn.{type(cell).__name__}")
    H = cell.hidden_size
    weight_ih = common.expect_shape(np.asarray(params.U), cell.weight_ih.shape, where, "U (weight_ih)")
    weight_hh = common.expect_shape(np.asarray(params.W), cell.weight_hh.shape, where, "W (weight_hh)")
    b_W = None if params.b_W is None else np.asarray(params.b_W)
    bias_n = None
    if kind == "gru" and b_W is not None:  # r, z fold into bias; n stays inside r ⊙ (W_n h + bias_n)
        b_W, bias_n = np.concatenate([b_W[:2 * H], np.zeros((H,), b_W.dtype)]), b_W[2 * H:]
    bias = common.fold(params.b_U, b_W)
    names, values = ["weight_ih", "weight_hh"], [weight_ih, weight_hh]
    if cell.use_bias:
        names.append("bias")
        values.append(common.zeros_like(weight_ih, weight_ih.shape[0]) if bias is None else bias)
        if kind == "gru":
            names.append("bias_n")
            values.append(common.zeros_like(weight_ih, H) if bias_n is None else bias_n)
    elif not (common.is_zero(bias) and common.is_zero(bias_n)):
        raise common.unsupported(where, "use_bias", False, "a cell with use_bias=True for parameters with a bias")
    return eqx.tree_at(lambda c: [getattr(c, name) for name in names], cell,
                       [jnp.asarray(v, cell.weight_ih.dtype) for v in values])
