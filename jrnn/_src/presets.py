"""Initialiser presets: ``init="pytorch" | "flax" | "keras"`` gives a jrnn layer another library's defaults.

jrnn's own defaults (``init=None``, or ``"jrnn"``) are neither PyTorch's nor Flax's: Glorot-uniform input weights,
orthogonal recurrent weights, a forget bias of 1, an ``N(0, 1/D)`` embedding. A run ported from another library
starts from that library's draw only with its initialisers, so every cell factory, :func:`jrnn.readout` and
:func:`jrnn.language_model` take ``init=`` and ask this module for their defaults. Each preset is read off the
library's source (torch 2.13, flax 0.12, keras 3.15), and ``tests/test_init_presets.py`` compares every parameter
with what the library itself draws:

* ``"pytorch"``: ``nn.RNN / LSTM / GRU`` (and their cells) ``reset_parameters``: every weight and both biases
  U(±1/√H), no forget bias, ``weight_hr`` too; ``nn.Linear`` U(±1/√fan_in) weight and bias; ``nn.Embedding``
  N(0, 1). For the cells ported from transformers' PyTorch modules, what the module's constructor draws (its
  ``nn.Linear`` and ``nn.Conv1d`` defaults and its own ``A_log``, ``D``, ``dt_bias``), without ``_init_weights``.
* ``"flax"``: ``flax.linen`` ``SimpleCell``, ``LSTMCell`` (and ``OptimizedLSTMCell``, the same draw), ``GRUCell``,
  ``MGUCell``, ``ConvLSTMCell``, ``Dense``, ``Embed``: LeCun-normal input kernels (one per gate), orthogonal
  recurrent kernels (one per gate), zero biases (ones on the MGU's forget gate; the ConvLSTM's ``f + 1`` is its
  forget bias), ``Embed`` N(0, 1/D).
* ``"keras"``: ``SimpleRNN``, ``LSTM``, ``GRU``, ``ConvLSTM2D``, ``Dense``, ``Embedding``: Glorot-uniform kernels and
  orthogonal recurrent kernels drawn over the *packed* gate matrix (Keras has one ``(in, 4u)`` kernel, not one per
  gate), zero biases, ``unit_forget_bias=True``, ``Embedding`` U(±0.05).

A preset only changes defaults: an explicit ``U_init=``, ``forget_bias=``, ... always wins. A layer without a
counterpart in the library asked for raises a ``ValueError`` naming the presets it has.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src import initializers as inits

PRESETS = ("jrnn", "pytorch", "flax", "keras")
_LIBRARIES = {"pytorch": "PyTorch", "flax": "Flax", "keras": "Keras"}


# --------------------------------------------------------------------------------------------------------------
# The libraries' initialisers that jrnn.init does not have, in jrnn's [out, in, *window] layout.
# --------------------------------------------------------------------------------------------------------------

def _torch_linear(key, shape, dtype=jnp.float32):
    """``nn.Linear``'s and ``nn.Conv1d``'s weight: ``kaiming_uniform_(a=√5)`` = U(±1/√fan_in)."""
    bound = 1.0 / math.sqrt(inits._fans(shape)[0])
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def _torch_linear_bias(key, shape, dtype=jnp.float32, fan_in: int | None = None):
    """``nn.Linear``'s bias: U(±1/√fan_in), fan_in the weight's (given by the layer that draws it)."""
    if fan_in is None:
        raise ValueError("the PyTorch Linear bias initializer needs the layer's fan_in")
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -bound, bound)


_torch_linear_bias._jrnn_fan_in = True  # type: ignore[attr-defined]  # see initializers.draw_bias

# Flax's lecun_normal (truncated normal, variance 1/fan_in) with the fans of [out, in, *window] (a Conv kernel).
_flax_lecun = jax.nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", in_axis=1, out_axis=0)
# Flax's Embed: N(0, 1/D) for a [V, D] table (variance_scaling(1, "fan_in", "normal", out_axis=0)).
_flax_embed = jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=1, out_axis=0)


@functools.partial(jax.jit, static_argnums=(1, 2))  # one compilation, not one per operation
def _keras_orthogonal(key, shape, dtype=jnp.float32):
    """Keras' ``Orthogonal`` on the kernel ``[*window, in, out]`` (flattened to ``[prod(window)·in, out]``),
    returned in jrnn's ``[out, in, *window]`` layout."""
    out, fan, *window = shape
    keras_shape = (*window, fan, out)
    rows, cols = math.prod(keras_shape[:-1]), out
    a = jax.random.normal(key, (max(rows, cols), min(rows, cols)), jnp.float32)
    q, r = jnp.linalg.qr(a)
    q = q * jnp.sign(jnp.diag(r))[None, :]
    if rows < cols:
        q = q.T
    n = len(window)
    return q.reshape(keras_shape).transpose((n + 1, n, *range(n))).astype(dtype)


# --------------------------------------------------------------------------------------------------------------
# The tables: factory -> preset -> its defaults (a dict, or a function of the hidden size that returns one).
# --------------------------------------------------------------------------------------------------------------

@functools.cache  # one initializer per size: cells built twice compare equal (one compiled program)
def _torch_rnn(hidden_size: int) -> dict:
    u = inits.pytorch_uniform(hidden_size)
    return dict(U_init=u, W_init=u, b_init=u, R_init=u, forget_bias=0.0)


_ORTHOGONAL = inits.orthogonal()
_JRNN_RNN = dict(U_init=inits.glorot_uniform, W_init=_ORTHOGONAL, b_init=inits.zeros,
                 R_init=inits.glorot_uniform, forget_bias=1.0)
_FLAX_RNN = dict(U_init=inits.lecun_normal, W_init=_ORTHOGONAL, b_init=inits.zeros, forget_bias=0.0)
_KERAS_RNN = dict(U_init=inits.packed(inits.glorot_uniform), W_init=inits.packed(_keras_orthogonal),
                  b_init=inits.zeros, forget_bias=1.0)
_JRNN_ONLY = {"jrnn": {}}  # a layer with no counterpart: only its own defaults (given by the factory)
_TORCH_MODULE = {"jrnn": {}, "pytorch": {}}  # jrnn's defaults are the torch module's constructor's

_TABLES: dict[str, dict[str, Any]] = {
    "jrnn.elman": {"jrnn": _JRNN_RNN, "pytorch": _torch_rnn, "flax": _FLAX_RNN, "keras": _KERAS_RNN},
    "jrnn.lstm": {"jrnn": _JRNN_RNN, "pytorch": _torch_rnn, "flax": _FLAX_RNN, "keras": _KERAS_RNN},
    "jrnn.gru": {"jrnn": _JRNN_RNN, "pytorch": _torch_rnn, "flax": _FLAX_RNN, "keras": _KERAS_RNN},
    "jrnn.mgu": {"jrnn": _JRNN_RNN, "flax": dict(_FLAX_RNN, forget_bias=1.0)},
    "jrnn.conv_lstm": {
        "jrnn": dict(U_init=inits.glorot_uniform, W_init=inits.glorot_uniform, b_init=inits.zeros, forget_bias=1.0),
        "flax": dict(U_init=_flax_lecun, W_init=_flax_lecun, b_init=inits.zeros, forget_bias=1.0),
        "keras": _KERAS_RNN},
    "jrnn.readout": {"jrnn": dict(V_init=inits.lecun_normal, b_init=inits.zeros),
                     "pytorch": dict(V_init=_torch_linear, b_init=_torch_linear_bias),
                     "flax": dict(V_init=inits.lecun_normal, b_init=inits.zeros),
                     "keras": dict(V_init=inits.glorot_uniform, b_init=inits.zeros)},
    "jrnn.language_model": {"jrnn": dict(E_init=inits.lecun_normal), "pytorch": dict(E_init=inits.normal(1.0)),
                            "flax": dict(E_init=_flax_embed), "keras": dict(E_init=inits.uniform(0.05))},
    "jrnn.indrnn": _JRNN_ONLY, "jrnn.exprnn": _JRNN_ONLY, "jrnn.layer_norm_lstm": _JRNN_ONLY,
    "jrnn.layer_norm_gru": _JRNN_ONLY, "jrnn.min_gru": _JRNN_ONLY, "jrnn.min_lstm": _JRNN_ONLY,
    "jrnn.lru": _JRNN_ONLY, "jrnn.s5": _JRNN_ONLY, "jrnn.slstm": _JRNN_ONLY,
    "jrnn.rg_lru": _JRNN_ONLY,  # RecurrentGemmaRglru's constructor leaves its parameters as torch.empty
    "jrnn.mamba": _TORCH_MODULE, "jrnn.s6": _TORCH_MODULE, "jrnn.mamba2": _TORCH_MODULE,
    "jrnn.gated_delta_net": _TORCH_MODULE,
    "jrnn.hawk_block": {"jrnn": {}, "pytorch": {}}, "jrnn.mlstm": {"jrnn": {}, "pytorch": {}},
    "jrnn.mlstm_block": {"jrnn": {}, "pytorch": {}},
}

# Why a layer lacks a preset, where "<library> has no counterpart" would not say it.
_NO_COUNTERPART = {"jrnn.rg_lru": "transformers' RecurrentGemmaRglru leaves its parameters uninitialised "
                                  "(torch.empty) in its constructor; use jrnn.hawk_block(init='pytorch') for the block"}


def preset(where: str, init: Any) -> str:
    """``init`` as a preset name (None is ``"jrnn"``) that the factory ``where`` offers, else a ``ValueError``."""
    if init is None:
        return "jrnn"
    if not isinstance(init, str) or init not in PRESETS:
        raise ValueError(f"{where}: expected init to be None or one of {', '.join(map(repr, PRESETS))}, "
                         f"got {init!r}")
    offered = _TABLES[where]
    if init not in offered:
        why = _NO_COUNTERPART.get(where, f"{_LIBRARIES[init]} has no counterpart of {where}")
        raise ValueError(f"{where}: no init={init!r} preset ({why}); its presets: "
                         f"{', '.join(repr(p) for p in PRESETS if p in offered)}")
    return init


def defaults(where: str, init: Any, hidden_size: int | None = None, **given: Any) -> tuple:
    """The values of ``given``'s arguments of the factory ``where`` under the preset ``init``, in order: each one
    given (not None) as it is, else the preset's, else jrnn's own.

    Example:
      >>> from jrnn._src import presets
      >>> presets.defaults("jrnn.lstm", "pytorch", 4, forget_bias=None, b_init=None)[0]
      0.0
    """
    name = preset(where, init)
    table = _TABLES[where]
    chosen, own = table[name], table["jrnn"]
    if callable(chosen):
        chosen = chosen(hidden_size)
    return tuple(value if value is not None else chosen.get(key, own[key]) for key, value in given.items())


# --------------------------------------------------------------------------------------------------------------
# The "pytorch" preset of the cells whose parameters mirror a torch module's state_dict (names ``*_weight``,
# ``*_bias``): every Linear / Conv1d weight and bias redrawn as nn.Linear's, the rest kept.
# --------------------------------------------------------------------------------------------------------------

def torch_linears(params: Any, key: jax.Array, *, keep: tuple[str, ...] = ()) -> Any:
    """``params`` (a NamedTuple, nested ones walked) with every ``X_weight`` ``[out, in]`` (``[channels, width]`` for a
    depthwise convolution) drawn from U(±1/√in) and its ``X_bias`` from the same bound, as ``nn.Linear`` and
    ``nn.Conv1d`` draw them; norms (``norm*``) and the fields in ``keep`` are kept."""
    fields = params._asdict()
    out = {}
    for i, (name, value) in enumerate(fields.items()):
        k = jax.random.fold_in(key, i)
        if name in keep or value is None or name.startswith("norm"):
            out[name] = value
        elif hasattr(value, "_asdict"):
            out[name] = torch_linears(value, k, keep=keep)
        elif name.endswith("_weight") and jnp.ndim(value) == 2:
            out[name] = _torch_linear(k, value.shape, value.dtype)
        elif name.endswith("_bias") and fields.get(name[:-len("bias")] + "weight") is not None:
            fan_in = fields[name[:-len("bias")] + "weight"].shape[1]
            out[name] = _torch_linear_bias(k, value.shape, value.dtype, fan_in=fan_in)
        else:
            out[name] = value
    return type(params)(**out)


def finish(name: str, params: Any, key: jax.Array, *, keep: tuple[str, ...] = ()) -> Any:
    """The last step of a modern cell's ``init``: ``params`` as drawn (``"jrnn"``), or redrawn by
    :func:`torch_linears` (``"pytorch"``), with a key of its own."""
    if name == "pytorch":
        return torch_linears(params, jax.random.fold_in(key, 0x7072), keep=keep)
    return params

