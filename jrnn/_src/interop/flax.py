"""Flax interop: ``jrnn.from_flax(module, variables)`` and ``jrnn.to_flax(params, module)`` for Flax's own recurrent
layers, ``nn.RNN`` / ``nn.Bidirectional`` over ``SimpleCell``, ``LSTMCell``, ``OptimizedLSTMCell`` and ``GRUCell``,
in Linen and in NNX.

flax is imported only inside these functions. (jrnn's own Flax modules, ``jrnn.flax``, are a different thing: they
wrap jrnn's cells; this converts Flax's.) The converted network runs on jrnn's cells and :class:`jrnn.RNN`;
Flax's conventions (kernels ``[in, H]`` per gate, the LSTM carry ``(c, h)``, ``seq_lengths``, ``time_major``,
``reverse`` / ``keep_order``, the merge) are converted at the edges.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn._src import merge as merges
from jrnn._src.bidirectional import BidirectionalParams
from jrnn._src.cells.lstm import LSTMState
from jrnn._src.extras import require
from jrnn._src.interop import common as common
from jrnn._src.scan import RNN

_FEATURE = "jrnn.from_flax / jrnn.to_flax"


class _Layout(NamedTuple):
    """Where a Flax cell keeps its weights: the submodules applied to the input and to the carry (one packed
    module, or one per gate in jrnn's gate order), and which of them have a bias (``'n'``: the GRU's candidate
    only, inside ``r ⊙ (W_n h + b_hn)``)."""

    kind: str
    inputs: tuple
    recurrents: tuple
    input_bias: bool
    recurrent_bias: str | None  # 'all', 'n' or None


_LINEN_LSTM = _Layout("lstm", ("ii", "if", "ig", "io"), ("hi", "hf", "hg", "ho"), False, "all")
_LAYOUTS = {
    ("linen", "LSTMCell"): _LINEN_LSTM,
    ("linen", "OptimizedLSTMCell"): _LINEN_LSTM,  # the same parameters, applied as two packed dots
    ("linen", "GRUCell"): _Layout("gru", ("ir", "iz", "in"), ("hr", "hz", "hn"), True, "n"),
    ("linen", "SimpleCell"): _Layout("elman", ("i",), ("h",), True, None),
    ("nnx", "LSTMCell"): _Layout("lstm", ("ii", "if_", "ig", "io"), ("hi", "hf", "hg", "ho"), False, "all"),
    ("nnx", "OptimizedLSTMCell"): _Layout("lstm", ("dense_i",), ("dense_h",), False, "all"),
    ("nnx", "GRUCell"): _Layout("gru", ("dense_i",), ("dense_h",), True, None),  # no b_hn (flax#5594)
    ("nnx", "SimpleCell"): _Layout("elman", ("dense_i",), ("dense_h",), True, None),
}


class _Direction(NamedTuple):
    """One Flax ``RNN``: jrnn's layer for its cell and the order in which Flax feeds it the sequence."""

    layer: RNN
    reverse: bool
    keep_order: bool


@dataclasses.dataclass(frozen=True)
class FlaxRNN:
    """The jrnn network equivalent to a Flax ``RNN`` or ``Bidirectional`` (Linen or NNX), called in Flax's layouts.

    ``fn(params, x, initial_carry=None, seq_lengths=None)``, as the Flax module's ``__call__``:

    - ``x``: ``[B, T, I]``, or ``[T, B, I]`` with ``time_major``;
    - ``initial_carry``: Flax's carry, ``(c, h)`` for an LSTM cell, ``h`` for GRU and Simple cells,
      ``(forward, backward)`` for ``Bidirectional``; zeros if None;
    - ``seq_lengths``: ``[B]`` valid lengths;
    - returns the outputs ``[B, T, O]`` (``[T, B, O]`` with ``time_major``), or ``(carry, outputs)`` with
      ``return_carry``.

    ``seq_lengths`` means what it means in Flax, reproduced exactly: the cell runs over every one of the T steps,
    padding included, so outputs at padded steps are the recurrence continued over the padding, not zero; only
    the returned carry is each sequence's own (the carry after step ``seq_lengths - 1``; Flax indexes its carry
    history there, so a length of 0 gives the carry after all T steps). ``reverse=True`` reverses each valid
    prefix and, after it, the padding (Flax's ``flip_sequences``), and returns outputs in that processing order
    unless ``keep_order``; ``Bidirectional`` runs its backward RNN with ``reverse=True, keep_order=True``.

    Attributes:
      directions: one entry per Flax RNN: the jrnn :class:`jrnn.RNN` of the converted cell (run forward over the
        sequence in Flax's processing order) and Flax's ``reverse`` and ``keep_order``.
      merge: ``Bidirectional``'s ``merge_fn`` as a jrnn merge (None for one RNN).
      time_major: Flax's ``time_major``.
      return_carry: Flax's ``return_carry``.
    """

    directions: tuple
    merge: Any
    time_major: bool
    return_carry: bool

    def __call__(self, params: Any, x: jax.Array, initial_carry: Any = None, seq_lengths: jax.Array | None = None):
        x = jnp.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"jrnn.from_flax: expected an input of 3 dimensions "
                             f"({'[T, B, I]' if self.time_major else '[B, T, I]'}), got shape {x.shape}")
        xs = jnp.swapaxes(x, 0, 1) if self.time_major else x
        batch = xs.shape[0]
        if seq_lengths is not None:
            seq_lengths = jnp.asarray(seq_lengths)
            if seq_lengths.shape != (batch,):
                raise ValueError(f"jrnn.from_flax: expected seq_lengths of shape ({batch},), got "
                                 f"{seq_lengths.shape}")
        bidi = self.merge is not None
        if bidi:
            carries = (None, None) if initial_carry is None else tuple(initial_carry)
            cell_params = (params.forward, params.backward)
        else:
            carries, cell_params = (initial_carry,), (params,)
        results = [_run(d, p, xs, seq_lengths, _from_carry(c), need_carry=self.return_carry)
                   for d, p, c in zip(self.directions, cell_params, carries)]
        if bidi:
            outputs = self.merge.apply(None, results[0][0], results[1][0])
            carry = (_to_carry(results[0][1]), _to_carry(results[1][1]))
        else:
            outputs, carry = results[0][0], _to_carry(results[0][1])
        if self.time_major:
            outputs = jnp.swapaxes(outputs, 0, 1)
        return (carry, outputs) if self.return_carry else outputs


def _run(direction: _Direction, params: Any, xs: jax.Array, seq_lengths: jax.Array | None, state0: Any,
         need_carry: bool) -> tuple[jax.Array, Any]:
    """One Flax RNN: a forward jrnn scan over the sequence in Flax's processing order, unmasked."""
    time = xs.shape[1]
    order = _flip_order(seq_lengths, xs.shape[0], time) if direction.reverse else None
    inputs = xs if order is None else _permute(xs, order)
    ys, carry = direction.layer.apply(params, inputs, initial_state=state0)
    if seq_lengths is not None and need_carry:  # Flax's carry history at index seq_lengths - 1
        last = seq_lengths - 1
        last = jnp.clip(jnp.where(last < 0, last + time, last), 0, time - 1)  # jnp indexing: wraps, then clamps
        _, carry = direction.layer.apply(params, inputs, lengths=last + 1, initial_state=state0)
    if direction.reverse and direction.keep_order:
        ys = _permute(ys, order)  # the permutation is its own inverse
    return ys, carry


def _flip_order(seq_lengths: jax.Array | None, batch: int, time: int) -> jax.Array:
    """Flax's ``flip_sequences`` as indices ``[B, T]``: ``(T - 1 - t + seq_lengths) mod T``, which reverses the
    valid prefix and then the padding (a plain flip without ``seq_lengths``)."""
    t = jnp.arange(time - 1, -1, -1)[None, :]
    if seq_lengths is None:
        return jnp.broadcast_to(t, (batch, time))
    return (t + seq_lengths[:, None]) % time


def _permute(xs: jax.Array, order: jax.Array) -> jax.Array:
    return jnp.take_along_axis(xs, order[:, :, None], axis=1)


def _from_carry(carry: Any) -> Any:
    """Flax's carry as jrnn's state: the LSTM's ``(c, h)`` becomes ``LSTMState(h, c)``."""
    if carry is None or not isinstance(carry, (tuple, list)):
        return carry
    if len(carry) != 2:
        raise ValueError(f"jrnn.from_flax: expected an LSTM carry (c, h), got a sequence of {len(carry)}")
    c, h = carry
    return LSTMState(h, c)


def _to_carry(state: Any) -> Any:
    return (state.c, state.h) if isinstance(state, LSTMState) else state


# ---------------------------------------------------------------------------------------------------------------
# Flax modules -> jrnn


def from_flax(module: Any, variables: Any = None) -> tuple[FlaxRNN, Any]:
    """Converts a Flax ``RNN`` or ``Bidirectional`` over ``SimpleCell``, ``LSTMCell``, ``OptimizedLSTMCell`` or
    ``GRUCell``: a Linen module with its variables, or an NNX module (which holds its own).

    The weights move without arithmetic: Flax's kernels ``[in, H]`` per gate (Linen, NNX ``LSTMCell``) or
    ``[in, G·H]`` packed (NNX ``OptimizedLSTMCell``, ``GRUCell``, ``SimpleCell``) become jrnn's ``[G·H, in]``; the
    gate orders (LSTM ``i, f, g, o``, GRU ``r, z, n``) are jrnn's. The LSTM's only bias, on the carry's side, is
    ``b_W`` (``b_U`` None); the GRU's input biases are ``b_U``, and Linen's ``hn`` bias is ``b_W``'s ``n`` part
    (zeros for ``r`` and ``z``), which NNX's GRU lacks (``b_W`` None, flax#5594); the Simple cell's bias is
    ``b_U``. Flax's GRU is jrnn's ``gru(reset_after=True)``; its SimpleCell's ``activation_fn`` is used as it is.

    What jrnn cannot represent exactly raises a ``ValueError`` naming the option: a ``gate_fn`` other than
    ``sigmoid`` or an ``activation_fn`` other than ``tanh`` (LSTM, GRU), ``residual=True`` (Simple), a computation
    ``dtype`` other than the parameters', a ``carry_init`` that is not zeros, another cell (``MGUCell``,
    ``ConvLSTMCell``) or RNN module.

    Args:
      module: ``flax.linen.RNN`` / ``flax.linen.Bidirectional`` (with ``variables``, or bound), or
        ``flax.nnx.RNN`` / ``flax.nnx.Bidirectional``.
      variables: a Linen module's variables (what ``module.init`` returns, or just its ``'params'``); None for
        NNX or a bound Linen module.

    Returns:
      ``(fn, params)``: ``params`` is jrnn's cell parameters (:class:`jrnn.BidirectionalParams` for
      ``Bidirectional``) and ``fn`` the :class:`FlaxRNN` that runs them as the module does; it can be jitted and
      differentiated.

    Example:
      >>> import flax.linen as nn, jax, jax.numpy as jnp, jrnn
      >>> module = nn.RNN(nn.LSTMCell(5), return_carry=True)
      >>> variables = module.init(jax.random.key(0), jnp.ones((2, 7, 3)))
      >>> fn, params = jrnn.from_flax(module, variables)
      >>> (c, h), y = fn(params, jnp.ones((2, 7, 3)), seq_lengths=jnp.array([7, 4]))
      >>> y.shape, c.shape
      ((2, 7, 5), (2, 5))
    """
    api, tree = _api_and_tree(module, variables)
    where = "jrnn.from_flax"
    if _is(module, api, "Bidirectional"):
        rnns = (module.forward_rnn, module.backward_rnn)
        trees = (None, None) if tree is None else (_sub(tree, "forward_rnn", where), _sub(tree, "backward_rnn", where))
        converted = [_convert(api, rnn, t, where) for rnn, t in zip(rnns, trees)]
        directions = (_Direction(converted[0][0], False, False), _Direction(converted[1][0], True, True))
        fn = FlaxRNN(directions, merges.as_merge(module.merge_fn), bool(module.time_major), bool(module.return_carry))
        return fn, BidirectionalParams(converted[0][1], converted[1][1])
    layer, params = _convert(api, module, tree, where)
    fn = FlaxRNN((_Direction(layer, bool(module.reverse), bool(module.keep_order)),), None, bool(module.time_major),
                 bool(module.return_carry))
    return fn, params


def _namespace(api: str) -> Any:
    """``flax.linen`` or ``flax.nnx``."""
    return require(f"flax.{api}", "flax", _FEATURE)


def _api_and_tree(module: Any, variables: Any) -> tuple[str, Any]:
    """``('linen', params tree or None)`` or ``('nnx', None)``."""
    if isinstance(module, _namespace("nnx").Module):
        if variables is not None:
            raise ValueError("jrnn.from_flax / to_flax: an NNX module holds its own variables; got variables too")
        return "nnx", None
    if not isinstance(module, _namespace("linen").Module):
        raise TypeError(f"jrnn.from_flax / to_flax: expected a Flax RNN or Bidirectional module (Linen or NNX), "
                        f"got {type(module).__name__}")
    if variables is None:
        if module.scope is None:
            return "linen", None
        variables = module.variables
    return "linen", variables.get("params", variables) if hasattr(variables, "get") else variables


def _is(module: Any, api: str, name: str) -> bool:
    return isinstance(module, getattr(_namespace(api), name))


def _sub(tree: Any, name: str, where: str) -> Any:
    try:
        return tree[name]
    except (KeyError, TypeError):
        raise ValueError(f"{where}: expected the Flax variables to hold {name!r}, got "
                         f"{sorted(tree) if hasattr(tree, 'keys') else type(tree).__name__}") from None


def _layout(api: str, rnn: Any, where: str) -> _Layout:
    if not _is(rnn, api, "RNN"):
        raise TypeError(f"{where}: expected a flax.{api}.RNN, got {type(rnn).__name__}")
    for (layout_api, name), layout in _LAYOUTS.items():
        if layout_api == api and type(rnn.cell) is getattr(_namespace(api), name):
            return layout
    raise TypeError(f"{where}: expected the RNN's cell to be flax.{api}'s SimpleCell, LSTMCell, OptimizedLSTMCell "
                    f"or GRUCell, got {type(rnn.cell).__name__}")


def _convert(api: str, rnn: Any, tree: Any, where: str) -> tuple[RNN, Any]:
    """One Flax RNN -> (jrnn RNN layer, jrnn params), refusing what jrnn cannot represent."""
    layout = _layout(api, rnn, where)
    cell = rnn.cell
    if api == "linen":
        if tree is None:
            raise ValueError(f"{where}: a Linen module needs its variables (what module.init returns)")
        tree = _sub(tree, "cell", where)

        def read(name, leaf):
            value = _sub(tree, name, where).get(leaf)
            return None if value is None else np.asarray(value)
    else:
        def read(name, leaf):
            variable = getattr(getattr(cell, name), leaf)
            return None if variable is None else np.asarray(variable[...])

    kernel_i = np.concatenate([read(name, "kernel") for name in layout.inputs], axis=-1)
    kernel_h = np.concatenate([read(name, "kernel") for name in layout.recurrents], axis=-1)
    hidden = kernel_h.shape[0]
    b_U = np.concatenate([read(name, "bias") for name in layout.inputs]) if layout.input_bias else None
    if layout.recurrent_bias == "all":
        b_W = np.concatenate([read(name, "bias") for name in layout.recurrents])
    elif layout.recurrent_bias == "n":
        b_hn = read(layout.recurrents[-1], "bias")
        b_W = np.concatenate([np.zeros((2 * hidden,), b_hn.dtype), b_hn])
    else:
        b_W = None
    activation = _check_cell(cell, layout, kernel_h.dtype, hidden, where)
    jrnn_cell = common.cell_for(layout.kind, hidden, bias=True, activation=activation)
    params = common.PARAMS_OF[layout.kind](common.from_kernel(kernel_i), common.from_kernel(kernel_h),
                                           common.from_bias(b_U), common.from_bias(b_W))
    return RNN(jrnn_cell), params


def _check_cell(cell: Any, layout: _Layout, dtype: Any, hidden: int, where: str) -> Any:
    """Refuses the cell options jrnn cannot represent; returns the activation for an Elman cell."""
    if layout.kind == "elman":
        if cell.residual:
            raise common.unsupported(where, "residual", True, "residual=False")
        activation = cell.activation_fn
    else:
        if cell.gate_fn is not jax.nn.sigmoid:
            raise common.unsupported(where, "gate_fn", cell.gate_fn, "jax.nn.sigmoid (flax's sigmoid)")
        if cell.activation_fn is not jnp.tanh:
            raise common.unsupported(where, "activation_fn", cell.activation_fn, "jnp.tanh (flax's tanh)")
        activation = jnp.tanh
    if cell.dtype is not None and jnp.dtype(cell.dtype) != dtype:
        raise common.unsupported(where, "dtype", cell.dtype, f"None or the parameters' dtype {dtype}")
    carry_init = getattr(cell, "carry_init", None)
    if carry_init is not None and np.any(np.asarray(carry_init(jax.random.key(0), (1, hidden), dtype))):
        raise common.unsupported(where, "carry_init", carry_init, "zeros; pass initial_carry instead")
    return activation


# ---------------------------------------------------------------------------------------------------------------
# jrnn -> Flax modules


def to_flax(params: Any, module: Any) -> Any:
    """jrnn parameters in the layout of a Flax ``RNN`` / ``Bidirectional`` (the inverse of :func:`from_flax`).

    Linen: returns the variables ``{'params': ...}`` for ``module.apply``. NNX: writes the weights into the
    module's parameters and returns the module. Where Flax keeps one bias for a sum jrnn splits into ``b_U`` and
    ``b_W``, they are added (exactly, where one is 0): the LSTM's go to the carry side, the Simple cell's and the
    GRU's ``r``, ``z`` parts to the input side; the GRU's ``b_W`` ``n`` part goes to Linen's ``hn`` bias, and
    NNX's GRU, which has none (flax#5594), refuses a non-zero one with a ``ValueError``. Parameters without a
    bias write zeros. ``to_flax(from_flax(module, v)[1], module)`` gives back the very same bits.

    Args:
      params: jrnn cell parameters matching the module's cell (:class:`jrnn.BidirectionalParams` for
        ``Bidirectional``; an LSTM's without projection).
      module: the Flax ``RNN`` or ``Bidirectional`` (Linen or NNX).

    Example:
      >>> import flax.linen as nn, jax, jax.numpy as jnp, jrnn
      >>> module = nn.RNN(nn.GRUCell(4))
      >>> params = jrnn.gru(4).init(jax.random.key(0), input_size=3)
      >>> variables = jrnn.to_flax(params, module)
      >>> module.apply(variables, jnp.ones((2, 5, 3))).shape
      (2, 5, 4)
    """
    api, _ = _api_and_tree(module, None)
    where = "jrnn.to_flax"
    if _is(module, api, "Bidirectional"):
        if not isinstance(params, BidirectionalParams) or params.merge is not None:
            raise TypeError(f"{where}: expected BidirectionalParams without merge parameters for a Bidirectional "
                            f"module, got {type(params).__name__}")
        trees = {"forward_rnn": _write(api, params.forward, module.forward_rnn, where),
                 "backward_rnn": _write(api, params.backward, module.backward_rnn, where)}
    else:
        trees = _write(api, params, module, where)
    return module if api == "nnx" else {"params": trees}


def _write(api: str, params: Any, rnn: Any, where: str) -> Any:
    """One RNN's weights in Flax's layout: a Linen params tree, or written into the NNX cell (returns None)."""
    layout = _layout(api, rnn, where)
    common.expect_params(params, layout.kind, where, f"a Flax {type(rnn.cell).__name__}")
    b_input, b_carry = _flax_biases(params, layout, where)
    values = {}
    for names, matrix, bias, with_bias in ((layout.inputs, params.U, b_input, layout.input_bias),
                                           (layout.recurrents, params.W, b_carry, layout.recurrent_bias)):
        kernels = np.split(common.to_kernel(matrix), len(names), axis=-1)
        biases = np.split(bias, len(names)) if with_bias else [None] * len(names)
        for i, (name, kernel, b) in enumerate(zip(names, kernels, biases)):
            has_bias = with_bias is True or with_bias == "all" or (with_bias == "n" and i == len(names) - 1)
            values[name] = {"kernel": kernel, "bias": b} if has_bias else {"kernel": kernel}
    if api == "linen":
        return {"cell": values}
    for name, leaves in values.items():
        for leaf, value in leaves.items():
            variable = getattr(getattr(rnn.cell, name), leaf)
            common.expect_shape(value, variable[...].shape, where, f"{name}.{leaf}")
            variable[...] = jnp.asarray(value, variable[...].dtype)
    return None


def _flax_biases(params: Any, layout: _Layout, where: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The input-side and carry-side biases ``[G·H]`` of Flax's layout (None where it has none; zeros where jrnn
    has none)."""
    hidden = params.W.shape[1]
    size = params.U.shape[0]

    def zeros(n):
        return common.zeros_like(params.U, n)

    b_U = zeros(size) if params.b_U is None else np.asarray(params.b_U)
    b_W = zeros(size) if params.b_W is None else np.asarray(params.b_W)
    if layout.kind == "lstm":  # one bias, on the carry's side
        return None, common.fold(b_W, b_U)
    if layout.kind == "elman":  # one bias, on the input's side
        return common.fold(b_U, b_W), None
    # GRU: r and z fold into the input side; n's stays inside r ⊙ (W_n h + b_hn)
    b_input = common.fold(b_U, np.concatenate([b_W[:2 * hidden], zeros(hidden)]))
    b_hn = b_W[2 * hidden:]
    if layout.recurrent_bias == "n":
        return b_input, np.concatenate([zeros(2 * hidden), b_hn])
    if not common.is_zero(b_hn):
        raise common.unsupported(where, "b_W[2H:] (b_hn)", "non-zero",
                                 "zero: flax.nnx.GRUCell has no b_hn (flax#5594); use flax.linen.GRUCell")
    return b_input, None
