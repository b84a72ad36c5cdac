"""transformers' mLSTM layer and block in and out: ``jrnn.from_torch(xLSTMLayer)`` and ``jrnn.to_torch(MLSTMParams)``,
``jrnn.from_torch(xLSTMBlock)`` and ``jrnn.to_torch(MLSTMBlockParams)``.

Registered with :func:`jrnn._src.interop.torch.register_torch_converter` by class name, so neither torch nor
transformers is imported until a module is converted. The parameter names are transformers' own for
``weight_mode="single"`` (``q.weight`` → ``q_weight``, ``ogate_preact.weight`` → ``ogate_weight``,
``multihead_norm.weight`` → ``norm_weight``); a ``weight_mode="fused"`` layer is split into those blocks
(``qkv_opreact`` → ``q, k, v, ogate``; ``ifgate_preact`` → ``igate, fgate``), and :func:`jrnn.to_torch` writes the
single layout. A block's names are its modules' (``norm_mlstm.weight`` → ``norm_mlstm_weight``,
``mlstm_layer.q.weight`` → ``mlstm_layer.q_weight``, ``ffn.proj_up.weight`` → ``proj_up_weight``; a fused
``ffn.proj_up_gate_z`` is split into ``proj_up_gate`` and ``proj_up``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jrnn._src.cells.mlstm import MLSTMCell, MLSTMParams, MLSTMState, mlstm
from jrnn._src.cells.mlstm_block import MLSTMBlockCell, MLSTMBlockParams
from jrnn._src.extras import require
from jrnn._src.interop.torch import TorchConverter, register_torch_converter
from jrnn._src.scan import scan

_FEATURE = "jrnn.from_torch / jrnn.to_torch"
# MLSTMParams field -> xLSTMLayer state_dict name (weight_mode="single"), in the state_dict's order
_NAMES = (("q_weight", "q.weight"), ("q_bias", "q.bias"), ("k_weight", "k.weight"), ("k_bias", "k.bias"),
          ("v_weight", "v.weight"), ("v_bias", "v.bias"), ("ogate_weight", "ogate_preact.weight"),
          ("ogate_bias", "ogate_preact.bias"), ("igate_weight", "igate_preact.weight"),
          ("igate_bias", "igate_preact.bias"), ("fgate_weight", "fgate_preact.weight"),
          ("fgate_bias", "fgate_preact.bias"), ("norm_weight", "multihead_norm.weight"),
          ("norm_bias", "multihead_norm.bias"), ("out_proj_weight", "out_proj.weight"),
          ("out_proj_bias", "out_proj.bias"))
# MLSTMBlockParams field (but the layer's) -> xLSTMBlock state_dict name, in the state_dict's order
_BLOCK_NAMES = (("norm_mlstm_weight", "norm_mlstm.weight"), ("norm_mlstm_bias", "norm_mlstm.bias"),
                ("norm_ffn_weight", "norm_ffn.weight"), ("norm_ffn_bias", "norm_ffn.bias"),
                ("proj_up_gate_weight", "ffn.proj_up_gate.weight"), ("proj_up_gate_bias", "ffn.proj_up_gate.bias"),
                ("proj_up_weight", "ffn.proj_up.weight"), ("proj_up_bias", "ffn.proj_up.bias"),
                ("proj_down_weight", "ffn.proj_down.weight"), ("proj_down_bias", "ffn.proj_down.bias"))


@dataclasses.dataclass(frozen=True)
class TorchXLSTM:
    """A transformers ``xLSTMLayer`` or ``xLSTMBlock`` as a jrnn cell, called as the module is:
    ``fn(params, x [B, T, D], state=None, lengths=None) -> (y [B, T, D], state)``.

    ``state`` is an :class:`jrnn.MLSTMState` (None: zeros); transformers' ``(c, n, m)`` is
    ``MLSTMState(c, n, m[..., 0])``. ``lengths [B]`` marks each sequence's valid prefix (right padding): outputs
    past it are 0 and the state returned is the one at its end. ``cell`` is the :func:`jrnn.mlstm` cell, for
    :func:`jrnn.scan` with any solver or ``resets`` (:func:`jrnn.mlstm_block` for a block).
    """

    cell: MLSTMCell | MLSTMBlockCell

    def __call__(self, params: MLSTMParams | MLSTMBlockParams, x: jax.Array, state: MLSTMState | None = None,
                 lengths: jax.Array | None = None) -> tuple[jax.Array, MLSTMState]:
        if jnp.ndim(x) != 3:
            raise ValueError(f"jrnn.from_torch: expected x of shape [B, T, D] (batch first, as transformers'), got "
                             f"shape {jnp.shape(x)}")
        return scan(self.cell, params, x, lengths=lengths, initial_state=state)


def _tensors(module: Any) -> dict[str, jax.Array]:
    require("torch", "torch", _FEATURE)
    return {name: jnp.asarray(t.detach().cpu().numpy()) for name, t in module.state_dict().items()}


def _layer_params(layer: Any, state: dict[str, jax.Array]) -> tuple[MLSTMCell, MLSTMParams]:
    """The cell and parameters of an ``xLSTMLayer`` whose ``state_dict`` is ``state`` (fused blocks split)."""
    config, NH = layer.config, layer.config.num_heads
    if "qkv_opreact.weight" in state:  # weight_mode="fused": split into the single layout's blocks
        cuts = np.cumsum([layer.qk_dim, layer.qk_dim, layer.v_dim])
        for suffix in ("weight", "bias"):
            fused = state.pop(f"qkv_opreact.{suffix}", None)
            if fused is not None:
                for name, part in zip(("q", "k", "v", "ogate_preact"), jnp.split(fused, cuts), strict=True):
                    state[f"{name}.{suffix}"] = part
            gates = state.pop(f"ifgate_preact.{suffix}")
            state[f"igate_preact.{suffix}"], state[f"fgate_preact.{suffix}"] = gates[:NH], gates[NH:]
    weight = state["q.weight"]
    cell = mlstm(state["out_proj.weight"].shape[0], num_heads=NH, bias="q.bias" in state,
                 gate_soft_cap=config.gate_soft_cap, eps=config.eps, norm_eps=layer.multihead_norm.eps,
                 dtype=weight.dtype)
    # the dimensions as the layer has them, whatever the factors were
    cell = dataclasses.replace(cell, qk_dim=weight.shape[0], v_dim=state["v.weight"].shape[0])
    return cell, MLSTMParams(**{field: state.get(name) for field, name in _NAMES})


def _from_layer(layer: Any) -> tuple[TorchXLSTM, MLSTMParams]:
    cell, params = _layer_params(layer, _tensors(layer))
    return TorchXLSTM(cell), params


def _from_block(block: Any) -> tuple[TorchXLSTM, MLSTMBlockParams]:
    state = _tensors(block)
    prefix = "mlstm_layer."
    layer, layer_params = _layer_params(block.mlstm_layer, {name[len(prefix):]: value for name, value in state.items()
                                                            if name.startswith(prefix)})
    if "ffn.proj_up_gate_z.weight" in state:  # weight_mode="fused": the gate's rows first
        for suffix in ("weight", "bias"):
            fused = state.pop(f"ffn.proj_up_gate_z.{suffix}", None)
            if fused is not None:
                P = fused.shape[0] // 2
                state[f"ffn.proj_up_gate.{suffix}"], state[f"ffn.proj_up.{suffix}"] = fused[:P], fused[P:]
    if not block.norm_mlstm.eps == block.norm_ffn.eps == layer.norm_eps:
        raise ValueError(f"jrnn.from_torch: expected an xLSTMBlock whose norms share one eps, got "
                         f"{block.norm_mlstm.eps}, {block.norm_ffn.eps} and {layer.norm_eps}")
    named = {field: state.get(name) for field, name in _BLOCK_NAMES}
    cell = MLSTMBlockCell(layer, named["proj_up_weight"].shape[0])
    return TorchXLSTM(cell), MLSTMBlockParams(mlstm_layer=layer_params, **named)


def _to_layer(params: MLSTMParams, prefix: str = "") -> dict[str, Any]:
    """``params`` as a single-weight-mode ``xLSTMLayer``'s ``state_dict``, in its order."""
    torch = require("torch", "torch", _FEATURE)
    return {prefix + name: torch.from_numpy(np.array(getattr(params, field), copy=True))
            for field, name in _NAMES if getattr(params, field) is not None}


def _to_block(params: MLSTMBlockParams) -> dict[str, Any]:
    """``params`` as a single-weight-mode ``xLSTMBlock``'s ``state_dict``, in its order."""
    torch = require("torch", "torch", _FEATURE)
    tensors = {name: torch.from_numpy(np.array(getattr(params, field), copy=True))
               for field, name in _BLOCK_NAMES if getattr(params, field) is not None}
    norm = [name for name in tensors if name.startswith("norm_mlstm.")]
    rest = [name for name in tensors if not name.startswith("norm_mlstm.")]
    return {**{name: tensors[name] for name in norm}, **_to_layer(params.mlstm_layer, "mlstm_layer."),
            **{name: tensors[name] for name in rest}}


register_torch_converter("xLSTMLayer", TorchConverter(_from_layer, MLSTMParams, _to_layer))
register_torch_converter("xLSTMBlock", TorchConverter(_from_block, MLSTMBlockParams, _to_block))
