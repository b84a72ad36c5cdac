"""Keras interop: ``jrnn.from_keras(layer)`` and ``jrnn.to_keras(params, layer)`` for Keras 3's ``SimpleRNN``,
``LSTM``, ``GRU`` (and ``RNN`` over their cells) and ``Bidirectional`` around any of them.

keras is imported only inside these functions, so ``import jrnn`` works without it. The converted network runs on
jrnn's own cells and layers (:class:`jrnn.RNN`, :class:`jrnn.Bidirectional`); Keras's conventions (kernels
``[in, G·H]``, the GRU's gate order ``z, r, h``, masks, outputs at masked steps, ``go_backwards``, state lists) are
converted at the edges.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn._src import merge as merges
from jrnn._src.bidirectional import Bidirectional, BidirectionalParams, BidirectionalState, bidirectional
from jrnn._src.cells.lstm import LSTMCell, LSTMState
from jrnn._src.extras import require
from jrnn._src.interop import common as common
from jrnn._src.scan import RNN

_FEATURE = "jrnn.from_keras / jrnn.to_keras"
KERAS_GRU_GATES = ("z", "r", "n")  # Keras names the candidate h; the update gate z multiplies the old state
_MERGES = {"concat": "concat", "sum": "sum", "ave": "mean", "mul": "product"}  # Keras merge_mode -> jrnn merge


class _Direction(NamedTuple):
    """What one Keras RNN layer adds to its jrnn cell: the direction and the outputs at masked steps."""

    cell: Any
    go_backwards: bool
    zero_output_for_mask: bool
    unroll: bool


@dataclasses.dataclass(frozen=True)
class KerasRNN:
    """The jrnn network equivalent to a Keras ``SimpleRNN`` / ``LSTM`` / ``GRU`` / ``Bidirectional``, called in
    Keras's own layouts (Keras's ``layer(x, mask=..., initial_state=...)`` at inference, ``training=False``).

    ``fn(params, x, mask=None, lengths=None, initial_state=None)``:

    - ``x``: ``[B, T, I]`` (batch-major, as Keras);
    - ``mask``: ``[B, T]`` booleans, True at the steps to process (any pattern, as Keras's masks: left or right
      padding or holes); or ``lengths`` ``[B]``, the same as ``mask = arange(T) < lengths``; not both;
    - ``initial_state``: Keras's list of states, ``[h]`` (or ``h``) for SimpleRNN and GRU, ``[h, c]`` for LSTM,
      the forward layer's then the backward layer's for ``Bidirectional``; zeros if None.

    It returns what the Keras layer returns: the output (``[B, T, O]`` with ``return_sequences``, else ``[B, O]``,
    in processing order when ``go_backwards``), followed by the final states when ``return_state``
    (``output, h[, c]``; for ``Bidirectional`` ``output, *forward_states, *backward_states``), with the two
    directions' outputs apart (``y, y_rev``) when ``merge_mode`` is None.

    Keras's convention at masked steps, reproduced exactly: the state is carried unchanged and the output is the
    previous step's output (the last valid output, or ``h`` of the initial state before the first valid step),
    not zero, so the last output is each sequence's own last valid output. Exceptions: 0 with
    ``zero_output_for_mask=True``, which ``Bidirectional`` sets on both directions when ``return_sequences`` (so a
    bidirectional layer's outputs at masked steps are 0); and with ``unroll=True`` Keras starts from 0 rather than
    the initial state's ``h`` and never zeroes (its unrolled loop ignores ``zero_output_for_mask``).

    Attributes:
      network: the jrnn layer underneath: :class:`jrnn.RNN` (``reverse=go_backwards``) or
        :class:`jrnn.Bidirectional` with the ``concat`` merge; it runs on the masked steps moved to the front.
      directions: per Keras RNN layer (forward, then backward), its jrnn cell and its ``go_backwards``,
        ``zero_output_for_mask`` and ``unroll``, which decide the outputs at masked steps.
      return_sequences: Keras's ``return_sequences``.
      return_state: Keras's ``return_state``.
      merge_mode: ``Bidirectional``'s ``merge_mode`` (``'concat'``, ``'sum'``, ``'mul'``, ``'ave'`` or None).
    """

    network: RNN | Bidirectional
    directions: tuple
    return_sequences: bool
    return_state: bool
    merge_mode: str | None = "concat"

    def __call__(self, params: Any, x: jax.Array, mask: jax.Array | None = None, lengths: jax.Array | None = None,
                 initial_state: Any = None):
        x = jnp.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"jrnn.from_keras: expected a batched input [B, T, I] of 3 dimensions, got shape "
                             f"{jnp.shape(x)}")
        batch, time = jnp.shape(x)[:2]
        mask = _mask(mask, lengths, batch, time)
        states0 = self._initial_states(initial_state, batch, x.dtype)
        if mask is None:
            xs, counts = x, None
        else:  # the valid steps first, in their order: Keras skips masked steps, jrnn's lengths skip a suffix
            order = jnp.argsort(jnp.logical_not(mask).astype(jnp.int32), axis=1, stable=True)
            xs, counts = jnp.take_along_axis(x, order[:, :, None], axis=1), jnp.sum(mask, axis=1)
        bidi = isinstance(self.network, Bidirectional)
        ys, finals = self.network.apply(params, xs, lengths=counts,
                                        initial_state=BidirectionalState(*states0) if bidi else states0[0])
        finals = tuple(finals) if bidi else (finals,)
        per_direction = jnp.split(ys, [self.directions[0].cell.output_size], axis=-1) if bidi else [ys]
        outputs = [_keras_outputs(y, mask, counts, common.output_of(s0), d)
                   for y, s0, d in zip(per_direction, states0, self.directions)]
        states = [s for final in finals for s in _keras_states(final)]
        if not bidi:
            y = jnp.flip(outputs[0], axis=1) if self.directions[0].go_backwards else outputs[0]  # processing order
            out = y if self.return_sequences else y[:, -1]
            return (out, *states) if self.return_state else out
        y, y_rev = outputs  # both in time order: Keras flips the backward layer's outputs back
        if not self.return_sequences:
            y, y_rev = y[:, -1], y_rev[:, 0]  # each direction's last processed step
        if self.merge_mode is None:
            return (y, y_rev, *states) if self.return_state else (y, y_rev)
        out = merges.MERGES[_MERGES[self.merge_mode]].apply(None, y, y_rev)
        return (out, *states) if self.return_state else out

    def _initial_states(self, initial_state: Any, batch: int, dtype: Any) -> list:
        """Keras's list of initial states as one jrnn state per direction (zeros if None)."""
        cells = [d.cell for d in self.directions]
        if initial_state is None:
            return [cell.initial_state((batch,), dtype) for cell in cells]
        flat = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        counts = [2 if isinstance(cell, LSTMCell) else 1 for cell in cells]
        if len(flat) != sum(counts):
            raise ValueError(f"jrnn.from_keras: expected initial_state to be a list of {sum(counts)} arrays "
                             f"(Keras's order: h{', c' if counts[0] == 2 else ''} per direction), got {len(flat)}")
        states = []
        for count in counts:
            part, flat = flat[:count], flat[count:]
            states.append(LSTMState(*part) if count == 2 else part[0])
        return states


def _mask(mask: Any, lengths: Any, batch: int, time: int) -> jax.Array | None:
    if mask is not None and lengths is not None:
        raise ValueError("jrnn.from_keras: expected mask or lengths, not both")
    if lengths is not None:
        lengths = jnp.asarray(lengths)
        if lengths.shape != (batch,):
            raise ValueError(f"jrnn.from_keras: expected lengths of shape ({batch},), got {lengths.shape}")
        return jnp.arange(time)[None, :] < lengths[:, None]
    if mask is None:
        return None
    if jnp.shape(mask) != (batch, time):
        raise ValueError(f"jrnn.from_keras: expected a mask of shape ({batch}, {time}) [B, T], got "
                         f"{jnp.shape(mask)}")
    return jnp.asarray(mask).astype(bool)


def _keras_outputs(ys: jax.Array, mask: jax.Array | None, counts: jax.Array | None, h0: jax.Array,
                   direction: _Direction) -> jax.Array:
    """Keras's outputs in time order from jrnn's outputs ``ys`` over the compacted sequence (valid steps first).

    At time ``t`` Keras holds the output of the most recently processed valid step: forward, the last valid step
    at or before ``t`` (compacted index ``cumsum(mask)[t] - 1``); backward, the first valid step at or after
    ``t`` (compacted index ``cumsum(mask)[t] - mask[t]``). Before any valid step it holds ``h0`` (0 when
    unrolled); with ``zero_output_for_mask`` (not unrolled) masked steps give 0.
    """
    if mask is None:
        return ys
    steps = mask.astype(jnp.int32)
    seen = jnp.cumsum(steps, axis=1)
    if direction.go_backwards:
        index = seen - steps
        found = index < counts[:, None]
    else:
        index = seen - 1
        found = index >= 0
    out = jnp.take_along_axis(ys, jnp.clip(index, 0, ys.shape[1] - 1)[:, :, None], axis=1)
    fill = jnp.zeros_like(h0) if direction.unroll else h0
    out = jnp.where(found[:, :, None], out, fill[:, None, :])
    if direction.zero_output_for_mask and not direction.unroll:
        out = jnp.where(mask[:, :, None], out, jnp.zeros_like(out))
    return out


def _identity(v: jax.Array) -> jax.Array:
    return v


def _keras_states(state: Any) -> list:
    return [state.h, state.c] if isinstance(state, LSTMState) else [state]


# ---------------------------------------------------------------------------------------------------------------
# Keras layers -> jrnn


def from_keras(layer: Any, *, ignore_dropout: bool = False) -> tuple[KerasRNN, Any]:
    """Converts a built Keras 3 ``SimpleRNN``, ``LSTM``, ``GRU`` (or ``RNN`` over ``SimpleRNNCell``,
    ``LSTMCell``, ``GRUCell``), or a ``Bidirectional`` around any of them (every ``merge_mode``).

    The weights move without arithmetic: Keras's kernels ``[in, G·H]`` (``x @ K``) become jrnn's ``[G·H, in]``;
    ``kernel`` → ``U``, ``recurrent_kernel`` → ``W``; the LSTM's gates ``i, f, c, o`` are jrnn's ``i, f, g, o``
    and its one ``bias`` is ``b_U`` (``b_W`` None); the GRU's gates ``z, r, h`` are permuted to jrnn's
    ``r, z, n``, with ``reset_after=True``'s ``bias[0]`` → ``b_U`` and ``bias[1]`` → ``b_W`` (jrnn's
    ``gru(reset_after=True)``, where ``b_Wn`` sits inside ``r ⊙ (W_n s + b_Wn)`` as in Keras) and
    ``reset_after=False``'s one bias → ``b_U`` (jrnn's ``gru(reset_after=False)``, Cho et al.'s
    ``n = tanh(U_n x + b_n + W_n (r ⊙ s))``). Keras's ``h = z ⊙ h_prev + (1 − z) ⊙ hh`` is jrnn's
    ``s_t = (1 − z) ⊙ n + z ⊙ s_{t-1}``.

    What jrnn cannot represent exactly raises a ``ValueError`` naming the option: an ``activation`` other than
    ``tanh`` (SimpleRNN: ``tanh``, ``relu``, ``sigmoid``, ``linear``), a ``recurrent_activation`` other than
    ``sigmoid``, ``stateful=True``, a mixed-precision dtype policy, ``dropout`` or ``recurrent_dropout`` above 0
    (unless ``ignore_dropout``), a ``Bidirectional`` whose forward layer has ``go_backwards=True``.
    ``unit_forget_bias`` and the initializers, regularizers and constraints only matter to training in Keras and
    are not needed.

    Args:
      layer: the Keras layer, built (called once, or ``layer.build(shape)``), on any Keras backend.
      ignore_dropout: convert a layer with ``dropout`` / ``recurrent_dropout`` above 0 as Keras runs it at
        inference (``training=False``), where dropout is the identity. jrnn does not reproduce Keras's
        training-time dropout masks, so by default such a layer is refused.

    Returns:
      ``(fn, params)``: ``params`` is jrnn's cell parameters (:class:`jrnn.BidirectionalParams` for
      ``Bidirectional``), and ``fn`` the :class:`KerasRNN` that runs them in Keras's layouts; it can be jitted and
      differentiated.

    Example:
      >>> import os; os.environ["KERAS_BACKEND"] = "jax"  # before importing keras
      >>> import keras, jax.numpy as jnp, jrnn
      >>> layer = keras.layers.Bidirectional(keras.layers.GRU(5, return_sequences=True), merge_mode="sum")
      >>> layer.build((None, None, 3))  # or call it once
      >>> fn, params = jrnn.from_keras(layer)
      >>> fn(params, jnp.ones((2, 7, 3)), lengths=jnp.array([7, 4])).shape
      (2, 7, 5)
    """
    keras = require("keras", "keras", _FEATURE)
    where = "jrnn.from_keras"
    if isinstance(layer, keras.layers.Bidirectional):
        forward, backward = layer.forward_layer, layer.backward_layer
        if forward.go_backwards or not backward.go_backwards:
            raise ValueError(f"{where}: expected a Bidirectional whose forward layer runs forward and backward layer "
                             f"backward, got go_backwards={forward.go_backwards} and {backward.go_backwards}")
        (fw_cell, fw_params), (bw_cell, bw_params) = (_convert(keras, sub, ignore_dropout)
                                                      for sub in (forward, backward))
        network = bidirectional(fw_cell, bw_cell, merge="concat")
        directions = (_direction(fw_cell, forward), _direction(bw_cell, backward))
        fn = KerasRNN(network, directions, bool(layer.return_sequences), bool(layer.return_state), layer.merge_mode)
        return fn, BidirectionalParams(fw_params, bw_params)
    cell, params = _convert(keras, layer, ignore_dropout)
    fn = KerasRNN(RNN(cell, reverse=bool(layer.go_backwards)), (_direction(cell, layer),),
                  bool(layer.return_sequences), bool(layer.return_state), None)
    return fn, params


def _direction(cell: Any, layer: Any) -> _Direction:
    return _Direction(cell, bool(layer.go_backwards), bool(layer.zero_output_for_mask), bool(layer.unroll))


def _kind(keras: Any, layer: Any, where: str) -> str:
    if not isinstance(layer, keras.layers.RNN):
        raise TypeError(f"{where}: expected a Keras SimpleRNN, LSTM, GRU, RNN over one of their cells, or "
                        f"Bidirectional, got {type(layer).__name__}")
    kinds = {keras.layers.SimpleRNNCell: "elman", keras.layers.LSTMCell: "lstm", keras.layers.GRUCell: "gru"}
    if type(layer.cell) not in kinds:
        raise TypeError(f"{where}: expected the layer's cell to be a SimpleRNNCell, LSTMCell or GRUCell, got "
                        f"{type(layer.cell).__name__}")
    if not layer.built or getattr(layer.cell, "kernel", None) is None:
        raise ValueError(f"{where}: the layer {layer.name!r} is not built; call it once on an input (or "
                         f"layer.build(input_shape)) so that its weights exist")
    return kinds[type(layer.cell)]


def _convert(keras: Any, layer: Any, ignore_dropout: bool) -> tuple[Any, Any]:
    """One Keras RNN layer -> (jrnn cell, jrnn params), refusing what jrnn cannot represent."""
    where = "jrnn.from_keras"
    kind = _kind(keras, layer, where)
    cell = layer.cell
    act = keras.activations
    activations = {act.tanh: jnp.tanh}
    if kind == "elman":
        activations.update({act.relu: jax.nn.relu, act.sigmoid: jax.nn.sigmoid, act.linear: _identity})
    if cell.activation not in activations:
        raise common.unsupported(where, "activation", act.serialize(cell.activation),
                                 "tanh, relu, sigmoid, linear" if kind == "elman" else "tanh")
    if kind != "elman" and cell.recurrent_activation is not act.sigmoid:
        raise common.unsupported(where, "recurrent_activation", act.serialize(cell.recurrent_activation), "sigmoid")
    if layer.stateful:
        raise common.unsupported(where, "stateful", True, "stateful=False; pass the carried state as initial_state")
    if layer.compute_dtype != layer.variable_dtype:
        raise common.unsupported(where, "dtype_policy", layer.dtype_policy.name,
                                 "a policy whose compute dtype is the variable dtype, e.g. 'float32'")
    for option in ("dropout", "recurrent_dropout"):
        if getattr(cell, option) > 0 and not ignore_dropout:
            raise common.unsupported(where, option, getattr(cell, option),
                                     "0, or ignore_dropout=True to convert the inference-mode network")

    def read(variable):
        return None if variable is None else keras.ops.convert_to_numpy(variable)

    kernel, recurrent, bias = read(cell.kernel), read(cell.recurrent_kernel), read(cell.bias)
    hidden = recurrent.shape[0]
    gates = KERAS_GRU_GATES if kind == "gru" else None
    U, W = common.from_kernel(kernel, gates), common.from_kernel(recurrent, gates)
    if kind == "gru" and cell.reset_after and bias is not None:
        b_U, b_W = common.from_bias(bias[0], gates), common.from_bias(bias[1], gates)
    else:
        b_U, b_W = common.from_bias(bias, gates), None
    jrnn_cell = common.cell_for(kind, hidden, bias=cell.use_bias, activation=activations[cell.activation],
                                reset_after=bool(getattr(cell, "reset_after", True)),
                                forget_bias=1.0 if getattr(cell, "unit_forget_bias", False) else 0.0)
    return jrnn_cell, common.PARAMS_OF[kind](U, W, b_U, b_W)


# ---------------------------------------------------------------------------------------------------------------
# jrnn -> Keras layers


def to_keras(params: Any, layer: Any) -> Any:
    """Writes jrnn parameters into a built Keras layer of the same architecture (the inverse of
    :func:`from_keras`); returns the layer.

    ``params`` are cell parameters for a ``SimpleRNN`` / ``LSTM`` / ``GRU`` layer (:class:`jrnn.ElmanParams`,
    :class:`jrnn.LSTMParams` without projection, :class:`jrnn.GRUParams`), or :class:`jrnn.BidirectionalParams`
    for a ``Bidirectional``. Keras keeps one bias where jrnn keeps ``b_U`` and ``b_W``: they are added (exactly,
    where ``b_W`` is 0), except the reset-after GRU's ``b_W``, which goes to ``bias[1]``. A bias Keras cannot
    hold (``use_bias=False`` and a non-zero bias) raises a ``ValueError``; gate orders are converted back as
    :func:`from_keras` describes. ``to_keras(from_keras(layer)[1], layer)`` writes back the very same bits.

    Args:
      params: the jrnn parameters (for instance from :func:`from_keras`, or trained).
      layer: the built Keras layer to write into.

    Example:
      >>> import os; os.environ["KERAS_BACKEND"] = "jax"  # before importing keras
      >>> import keras, jax.numpy as jnp, jrnn
      >>> layer = keras.layers.LSTM(4)
      >>> layer.build((None, None, 3))
      >>> fn, params = jrnn.from_keras(layer)
      >>> params = params._replace(b_U=params.b_U + 1.0)  # as after training in jrnn
      >>> layer = jrnn.to_keras(params, layer)
      >>> bool(jnp.all(jrnn.from_keras(layer)[1].b_U == params.b_U))
      True
    """
    keras = require("keras", "keras", _FEATURE)
    where = "jrnn.to_keras"
    if isinstance(layer, keras.layers.Bidirectional):
        if not isinstance(params, BidirectionalParams) or params.merge is not None:
            raise TypeError(f"{where}: expected BidirectionalParams without merge parameters for a Bidirectional "
                            f"layer, got {type(params).__name__}")
        _write(keras, params.forward, layer.forward_layer, where)
        _write(keras, params.backward, layer.backward_layer, where)
    else:
        _write(keras, params, layer, where)
    return layer


def _write(keras: Any, params: Any, layer: Any, where: str) -> None:
    kind = _kind(keras, layer, where)
    cell = layer.cell
    common.expect_params(params, kind, where, f"a Keras {type(cell).__name__}")
    gates = KERAS_GRU_GATES if kind == "gru" else None
    kernel = common.expect_shape(common.to_kernel(params.U, gates), cell.kernel.shape, where, "U.T (kernel)")
    recurrent = common.expect_shape(common.to_kernel(params.W, gates), cell.recurrent_kernel.shape, where,
                                    "W.T (recurrent_kernel)")
    if kind == "gru" and cell.reset_after:
        parts = [common.to_bias(params.b_U, gates), common.to_bias(params.b_W, gates)]
    else:
        parts = [common.to_bias(common.fold(params.b_U, params.b_W), gates)]
    if cell.use_bias:
        filled = [common.zeros_like(kernel, kernel.shape[1]) if p is None else p for p in parts]
        bias = common.expect_shape(np.stack(filled) if len(filled) == 2 else filled[0], cell.bias.shape, where,
                                   "the bias")
    elif not all(common.is_zero(p) for p in parts):
        raise common.unsupported(where, "use_bias", False, "a layer with use_bias=True for parameters with a bias")
    cell.kernel.assign(kernel.astype(cell.kernel.dtype))  # the layer's own dtype, e.g. float32 from float64
    cell.recurrent_kernel.assign(recurrent.astype(cell.recurrent_kernel.dtype))
    if cell.use_bias:
        cell.bias.assign(bias.astype(cell.bias.dtype))
