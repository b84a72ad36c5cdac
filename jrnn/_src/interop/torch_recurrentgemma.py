"""transformers' RecurrentGemma recurrent layers in and out: ``jrnn.from_torch(RecurrentGemmaRecurrentBlock |
RecurrentGemmaRglru)`` and ``jrnn.to_torch(HawkBlockParams | RGLRUParams)``.

Registered with :func:`jrnn._src.interop.torch.register_torch_converter` by class name, so neither torch nor
transformers is imported until a module is converted. The parameter names are transformers' own (``linear_x.weight``
→ ``linear_x_weight``); only the depthwise convolution's weight loses its group axis (``[H, 1, K]`` → ``[H, K]``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jrnn._src.cells.hawk import HawkBlockCell, HawkBlockParams, hawk_block
from jrnn._src.cells.rg_lru import RGLRUCell, RGLRUParams, rg_lru
from jrnn._src.extras import require
from jrnn._src.interop.torch import TorchConverter, register_torch_converter
from jrnn._src.scan import scan

_FEATURE = "jrnn.from_torch / jrnn.to_torch"


@dataclasses.dataclass(frozen=True)
class TorchRecurrentGemma:
    """A transformers RecurrentGemma layer as a jrnn cell, called as the layer's ``forward`` is called on a fresh
    sequence (``position_ids = arange(T)``, no cache): ``fn(params, x [B, T, D], lengths=None) -> y [B, T, O]``.

    ``lengths [B]`` marks each sequence's valid prefix; outputs past it are 0. ``cell`` is the jrnn cell
    (:func:`jrnn.hawk_block` or :func:`jrnn.rg_lru`), for :func:`jrnn.scan` with any solver, ``resets`` or an
    initial state.
    """

    cell: HawkBlockCell | RGLRUCell

    def __call__(self, params: Any, x: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
        if jnp.ndim(x) != 3:
            raise ValueError(f"jrnn.from_torch: expected x of shape [B, T, D] (batch first, as transformers'), got "
                             f"shape {jnp.shape(x)}")
        return scan(self.cell, params, x, lengths=lengths)[0]


def _arrays(module: Any) -> dict[str, jax.Array]:
    return {name: jnp.asarray(t.detach().cpu().numpy()) for name, t in module.state_dict().items()}


def _rg_lru_params(state: dict[str, jax.Array], prefix: str = "") -> RGLRUParams:
    return RGLRUParams(*(state[prefix + name] for name in RGLRUParams._fields))


def _check_gelu_tanh(torch: Any, act_fn: Any) -> None:
    """The gate branch's activation must be GeLU's tanh form (``gelu_pytorch_tanh``, RecurrentGemma's default)."""
    probe = torch.linspace(-4.0, 4.0, 17, dtype=torch.float64)
    if not torch.allclose(act_fn(probe), torch.nn.functional.gelu(probe, approximate="tanh"), atol=1e-12):
        raise ValueError(f"jrnn.from_torch: expected a RecurrentGemmaRecurrentBlock whose act_fn is GeLU's tanh form "
                         f"(hidden_activation='gelu_pytorch_tanh'), got {act_fn!r}")


def _from_block(block: Any) -> tuple[TorchRecurrentGemma, HawkBlockParams]:
    torch = require("torch", "torch", _FEATURE)
    _check_gelu_tanh(torch, block.act_fn)
    state = _arrays(block)
    weight = state["conv_1d.weight"]
    cell = hawk_block(block.lru_width, output_size=state["linear_out.weight"].shape[0],
                      num_heads=block.rg_lru.num_attention_heads, conv1d_width=weight.shape[-1],
                      dtype=weight.dtype)
    params = HawkBlockParams(
        state["linear_y.weight"], state["linear_y.bias"], state["linear_x.weight"], state["linear_x.bias"],
        state["linear_out.weight"], state["linear_out.bias"], weight[:, 0, :], state["conv_1d.bias"],
        _rg_lru_params(state, "rg_lru."))
    return TorchRecurrentGemma(cell), params


def _from_rglru(module: Any) -> tuple[TorchRecurrentGemma, RGLRUParams]:
    require("torch", "torch", _FEATURE)
    params = _rg_lru_params(_arrays(module))
    cell = rg_lru(params.recurrent_param.shape[0], num_heads=module.num_attention_heads,
                  dtype=params.recurrent_param.dtype)
    return TorchRecurrentGemma(cell), params


def _tensors(torch: Any, named: dict[str, Any]) -> dict[str, Any]:
    return {name: torch.from_numpy(np.array(value, copy=True)) for name, value in named.items()}


def _rg_lru_named(params: RGLRUParams, prefix: str = "") -> dict[str, Any]:
    return {prefix + name: getattr(params, name) for name in RGLRUParams._fields}


def _block_to_torch(params: HawkBlockParams) -> dict[str, Any]:
    """``params`` as a ``RecurrentGemmaRecurrentBlock``'s ``state_dict``, in its order."""
    torch = require("torch", "torch", _FEATURE)
    named = {"linear_y.weight": params.linear_y_weight, "linear_y.bias": params.linear_y_bias,
             "linear_x.weight": params.linear_x_weight, "linear_x.bias": params.linear_x_bias,
             "linear_out.weight": params.linear_out_weight, "linear_out.bias": params.linear_out_bias,
             "conv_1d.weight": jnp.asarray(params.conv_1d_weight)[:, None, :], "conv_1d.bias": params.conv_1d_bias,
             **_rg_lru_named(params.rg_lru, "rg_lru.")}
    return _tensors(torch, named)


def _rglru_to_torch(params: RGLRUParams) -> dict[str, Any]:
    """``params`` as a ``RecurrentGemmaRglru``'s ``state_dict``."""
    torch = require("torch", "torch", _FEATURE)
    return _tensors(torch, _rg_lru_named(params))


register_torch_converter("RecurrentGemmaRecurrentBlock", TorchConverter(_from_block, HawkBlockParams, _block_to_torch))
register_torch_converter("RecurrentGemmaRglru", TorchConverter(_from_rglru, RGLRUParams, _rglru_to_torch))
