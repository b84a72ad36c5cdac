"""PyTorch interop: ``jrnn.from_torch(nn.RNN | nn.LSTM | nn.GRU)`` and ``jrnn.to_torch(params)``.

torch is imported only inside these functions, so ``import jrnn`` works without it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jrnn._src.bidirectional import BidirectionalParams, BidirectionalState, bidirectional
from jrnn._src.cells.elman import ElmanParams, elman
from jrnn._src.cells.gru import GRUParams, gru
from jrnn._src.cells.lstm import LSTMParams, LSTMState, lstm
from jrnn._src.deep import Deep, deep
from jrnn._src.extras import require

_TORCH_FIELDS = (("U", "weight_ih"), ("W", "weight_hh"), ("b_U", "bias_ih"), ("b_W", "bias_hh"),
                 ("R", "weight_hr"))


@dataclasses.dataclass(frozen=True)
class TorchRNN:
    """The jrnn network equivalent to a ``torch.nn.RNN/LSTM/GRU``, called in torch's own layouts.

    ``fn(params, x, hx=None, lengths=None, key=None) -> (y, h_n)``, or ``(y, (h_n, c_n))`` for an LSTM:

    - ``x``: ``[B, T, I]`` if ``batch_first`` else ``[T, B, I]``;
    - ``hx``: ``h_0`` (or ``(h_0, c_0)``) of shape ``[num_layers * num_directions, B, H_out]`` (c: ``H``), zeros
      if None;
    - ``lengths``: ``[B]`` valid lengths; the result then equals torch's ``pack_padded_sequence(...,
      enforce_sorted=False)`` → module → ``pad_packed_sequence(..., total_length=T)``: padded outputs are 0 and
      ``h_n`` holds each sequence's own last state;
    - ``key``: turns on the module's inter-layer ``dropout`` (training mode); None is evaluation mode;
    - ``y``: ``[B, T, D·H_out]`` if ``batch_first`` else ``[T, B, D·H_out]``, directions concatenated.
    """

    network: Deep
    is_lstm: bool
    batch_first: bool
    num_directions: int

    def __call__(self, params: tuple, x: jax.Array, hx: Any = None, lengths: jax.Array | None = None,
                 key: jax.Array | None = None):
        if jnp.ndim(x) != 3:
            raise ValueError(f"jrnn.from_torch: expected a batched input of 3 dimensions "
                             f"({'[B, T, I]' if self.batch_first else '[T, B, I]'}), got shape {jnp.shape(x)}")
        xs = x if self.batch_first else jnp.swapaxes(x, 0, 1)
        initial = None if hx is None else self._split_hx(hx, xs.shape[0])
        ys, finals = self.network.apply(params, xs, lengths=lengths, initial_state=initial, key=key)
        y = ys if self.batch_first else jnp.swapaxes(ys, 0, 1)
        per_direction = [d for final in finals for d in self._directions(final)]
        if self.is_lstm:
            return y, (jnp.stack([s.h for s in per_direction]), jnp.stack([s.c for s in per_direction]))
        return y, jnp.stack(per_direction)

    def _directions(self, final: Any) -> list:
        return [final.forward, final.backward] if self.num_directions == 2 else [final]

    def _split_hx(self, hx: Any, batch: int) -> tuple:
        layers = self.network.layers
        first = layers[0].forward if self.num_directions == 2 else layers[0].cell
        n = len(layers) * self.num_directions
        expected_h = (n, batch, first.output_size)
        if self.is_lstm:
            if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise TypeError(f"jrnn.from_torch: expected hx = (h_0, c_0) for an LSTM, got {type(hx).__name__}")
            h0, c0 = hx
            expected_c = (n, batch, first.hidden_size)
            if jnp.shape(h0) != expected_h or jnp.shape(c0) != expected_c:
                raise ValueError(f"jrnn.from_torch: expected h_0 of shape {expected_h} and c_0 of shape "
                                 f"{expected_c}, got {jnp.shape(h0)} and {jnp.shape(c0)}")
            states = [LSTMState(h0[i], c0[i]) for i in range(n)]
        else:
            if jnp.shape(hx) != expected_h:
                raise ValueError(f"jrnn.from_torch: expected h_0 of shape {expected_h} "
                                 f"[num_layers * num_directions, B, H_out], got {jnp.shape(hx)}")
            states = [hx[i] for i in range(n)]
        if self.num_directions == 2:
            return tuple(BidirectionalState(states[2 * l], states[2 * l + 1]) for l in range(len(layers)))
        return tuple(states)


@dataclasses.dataclass(frozen=True)
class TorchConverter:
    """How :func:`from_torch` and :func:`to_torch` convert one more kind of module (transformers' recurrent
    blocks), registered by the module's class name so that its package need not be imported.

    Attributes:
      from_torch: ``module -> (fn, params)``.
      params_type: the jrnn parameter type :func:`to_torch` recognises.
      to_torch: ``params -> {name: torch.Tensor}``, the module's ``state_dict``.
    """

    from_torch: Any
    params_type: type
    to_torch: Any


_CONVERTERS: dict[str, TorchConverter] = {}


def register_torch_converter(class_name: str, converter: TorchConverter) -> None:
    """Adds a converter for modules whose class is named ``class_name`` (see :class:`TorchConverter`)."""
    _CONVERTERS[class_name] = converter


def module_state(module: Any) -> dict[str, jax.Array]:
    """A torch module's ``state_dict`` as JAX arrays."""
    return {name: jnp.asarray(t.detach().cpu().numpy()) for name, t in module.state_dict().items()}


def fields_from_state(state: dict[str, Any], names: tuple) -> dict[str, Any]:
    """``{field: state[torch_name]}`` for the ``(field, torch_name)`` pairs of ``names`` (None where the module has
    no such tensor); a depthwise convolution's weight (field ``conv1d_weight``, torch's ``[C, 1, K]``) loses its
    group axis."""
    fields = {field: state.get(name) for field, name in names}
    if fields.get("conv1d_weight") is not None:
        fields["conv1d_weight"] = fields["conv1d_weight"][:, 0, :]
    return fields


def state_from_fields(params: Any, names: tuple) -> dict[str, Any]:
    """The inverse of :func:`fields_from_state`: ``params``' fields as torch tensors under their torch names, in the
    order of ``names``, absent ones (None) left out."""
    torch = require("torch", "torch", "jrnn.to_torch")
    out = {}
    for field, name in names:
        value = getattr(params, field)
        if value is not None:
            value = jnp.asarray(value)[:, None, :] if field == "conv1d_weight" else value
            out[name] = torch.from_numpy(np.array(value, copy=True))
    return out


def from_torch(module: Any) -> tuple[TorchRNN, tuple]:
    """Converts a ``torch.nn.RNN`` (tanh or relu), ``torch.nn.LSTM`` (with ``proj_size``) or ``torch.nn.GRU``.

    Any ``num_layers``, ``bidirectional``, ``bias``, ``batch_first`` and ``dropout``. The weights are copied as
    they are: ``weight_ih_l{k}`` → ``U``, ``weight_hh_l{k}`` → ``W``, ``bias_ih_l{k}`` → ``b_U``,
    ``bias_hh_l{k}`` → ``b_W``, ``weight_hr_l{k}`` → ``R`` (``_reverse`` → the backward cell); torch's gate orders
    (LSTM ``i, f, g, o``, GRU ``r, z, n``) are jrnn's.

    Returns:
      ``(fn, params)``: ``params`` is jrnn's parameter pytree of the equivalent :func:`jrnn.deep` network (a
      tuple with one entry per layer, :class:`jrnn.BidirectionalParams` for two directions), and ``fn`` the
      :class:`TorchRNN` that runs it in torch's layouts. ``fn`` can be jitted and differentiated.

    Example:
      >>> import torch, jax.numpy as jnp, jrnn
      >>> module = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True)
      >>> fn, params = jrnn.from_torch(module)
      >>> y, (h_n, c_n) = fn(params, jnp.ones((2, 7, 3)))
      >>> y.shape, h_n.shape
      ((2, 7, 10), (4, 2, 5))
    """
    torch = require("torch", "torch", "jrnn.from_torch / jrnn.to_torch")

    converter = _CONVERTERS.get(type(module).__name__)
    if converter is not None:
        return converter.from_torch(module)
    if isinstance(module, torch.nn.LSTM):
        param_type = LSTMParams
        cell = lstm(module.hidden_size, proj_size=module.proj_size, bias=module.bias, forget_bias=0.0)
    elif isinstance(module, torch.nn.GRU):
        param_type = GRUParams
        cell = gru(module.hidden_size, bias=module.bias)
    elif isinstance(module, torch.nn.RNN):
        activations = {"tanh": jnp.tanh, "relu": jax.nn.relu}
        param_type = ElmanParams
        cell = elman(module.hidden_size, activations[module.nonlinearity], bias=module.bias)
    else:
        raise TypeError(f"jrnn.from_torch: expected a torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU or one of "
                        f"{sorted(_CONVERTERS)}, got {type(module).__name__}")
    num_directions = 2 if module.bidirectional else 1
    layer = bidirectional(cell) if num_directions == 2 else cell
    network = deep([layer] * module.num_layers, dropout=module.dropout)

    state = {name: jnp.asarray(tensor.detach().cpu().numpy()) for name, tensor in module.state_dict().items()}
    def cell_params(suffix: str):
        return param_type(*(state.get(f"{torch_name}{suffix}")
                            for field, torch_name in _TORCH_FIELDS if field in param_type._fields))

    params = []
    for l in range(module.num_layers):
        if num_directions == 2:
            params.append(BidirectionalParams(cell_params(f"_l{l}"), cell_params(f"_l{l}_reverse")))
        else:
            params.append(cell_params(f"_l{l}"))
    fn = TorchRNN(network, isinstance(module, torch.nn.LSTM), bool(module.batch_first), num_directions)
    return fn, tuple(params)


def to_torch(params: Any) -> dict:
    """jrnn parameters (or a gradient pytree of the same structure) under PyTorch's parameter names.

    ``params`` is what :func:`from_torch` returns (a tuple with one entry per layer; each entry cell params or
    :class:`jrnn.BidirectionalParams`), or a single cell's params for one layer. The result is a dict of
    ``torch.Tensor`` in torch's own order (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``,
    ``weight_hr_l0``, then ``..._reverse``), ready for ``module.load_state_dict``.
    """
    torch = require("torch", "torch", "jrnn.from_torch / jrnn.to_torch")

    for converter in _CONVERTERS.values():
        if isinstance(params, converter.params_type):
            return converter.to_torch(params)
    layers = params if isinstance(params, (tuple, list)) and not _is_cell_params(params) else (params,)
    out = {}
    for l, layer in enumerate(layers):
        if isinstance(layer, BidirectionalParams):
            if layer.merge is not None:
                raise ValueError("jrnn.to_torch: expected a bidirectional layer with torch's concat merge (no merge "
                                 "parameters), got merge parameters")
            directions = ((layer.forward, ""), (layer.backward, "_reverse"))
        elif _is_cell_params(layer):
            directions = ((layer, ""),)
        else:
            raise TypeError(f"jrnn.to_torch: expected Elman, LSTM or GRU params (or BidirectionalParams) for layer "
                            f"{l}, got {type(layer).__name__}")
        for cell, suffix in directions:
            for field, torch_name in _TORCH_FIELDS:
                value = getattr(cell, field, None)
                if value is not None:
                    out[f"{torch_name}_l{l}{suffix}"] = torch.from_numpy(np.array(value, copy=True))
    return out


def _is_cell_params(p: Any) -> bool:
    return isinstance(p, (ElmanParams, LSTMParams, GRUParams))


# transformers' recurrent blocks register their converters (register_torch_converter) on import
from jrnn._src.interop import (  # noqa: E402, F401
    torch_gated_delta,
    torch_mamba,
    torch_mamba2,
    torch_recurrentgemma,
    torch_xlstm,
)
