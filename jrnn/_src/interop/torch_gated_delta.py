"""transformers' Gated DeltaNet in and out: ``jrnn.from_torch(Qwen3NextGatedDeltaNet)`` and
``jrnn.to_torch(GatedDeltaNetParams)``.

Registered with :func:`jrnn._src.interop.torch.register_torch_converter` by class name, so neither torch nor
transformers is imported until a module is converted. The parameter names are transformers' own (``norm.weight`` →
``norm_weight``); only the depthwise convolution's weight loses its group axis (``[C, 1, K]`` → ``[C, K]``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src.cells.gated_delta_net import GatedDeltaNetCell, GatedDeltaNetParams, gated_delta_net
from jrnn._src.extras import require
from jrnn._src.interop.torch import (
    TorchConverter,
    fields_from_state,
    module_state,
    register_torch_converter,
    state_from_fields,
)
from jrnn._src.scan import scan

_FEATURE = "jrnn.from_torch / jrnn.to_torch"
# GatedDeltaNetParams field -> Qwen3NextGatedDeltaNet state_dict name, in the state_dict's order (the module's own
# parameters first, then its submodules')
_NAMES = (("dt_bias", "dt_bias"), ("A_log", "A_log"), ("conv1d_weight", "conv1d.weight"),
          ("in_proj_qkvz_weight", "in_proj_qkvz.weight"), ("in_proj_ba_weight", "in_proj_ba.weight"),
          ("norm_weight", "norm.weight"), ("out_proj_weight", "out_proj.weight"))


@dataclasses.dataclass(frozen=True)
class TorchGatedDeltaNet:
    """A transformers ``Qwen3NextGatedDeltaNet`` as a jrnn cell, called as the module is on a fresh sequence (no
    cache, no attention mask): ``fn(params, x [B, T, D], lengths=None) -> y [B, T, D]``.

    ``lengths [B]`` marks each sequence's valid prefix (right padding); outputs past it are 0, and those before it
    are the module's on the prefix alone. ``cell`` is the :func:`jrnn.gated_delta_net` cell, for :func:`jrnn.scan`
    with any solver, ``resets`` or an initial state (a :class:`jrnn.WindowState`: transformers' convolution state
    ``[B, C, K]`` without its newest input and transposed, and its recurrent state ``[B, H_v, d_k, d_v]`` as it is).
    """

    cell: GatedDeltaNetCell

    def __call__(self, params: GatedDeltaNetParams, x: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
        if jnp.ndim(x) != 3:
            raise ValueError(f"jrnn.from_torch: expected x of shape [B, T, D] (batch first, as transformers'), got "
                             f"shape {jnp.shape(x)}")
        return scan(self.cell, params, x, lengths=lengths)[0]


def _from_module(module: Any) -> tuple[TorchGatedDeltaNet, GatedDeltaNetParams]:
    require("torch", "torch", _FEATURE)
    if module.activation not in ("silu", "swish"):
        raise ValueError(f"jrnn.from_torch: expected a Qwen3NextGatedDeltaNet whose activation is SiLU "
                         f"(hidden_act='silu'), got {module.activation!r}")
    if module.conv1d.bias is not None:
        raise ValueError("jrnn.from_torch: expected a Qwen3NextGatedDeltaNet whose convolution has no bias, got one")
    state = module_state(module)
    weight = state["conv1d.weight"]
    cell = gated_delta_net(state["out_proj.weight"].shape[0], num_heads=module.num_k_heads,
                           head_k_dim=module.head_k_dim, head_v_dim=module.head_v_dim,
                           num_v_heads=module.num_v_heads, conv_width=weight.shape[-1],
                           eps=float(module.norm.variance_epsilon), dtype=weight.dtype)
    named = fields_from_state(state, _NAMES)
    return TorchGatedDeltaNet(cell), GatedDeltaNetParams(**named)


def _to_module(params: GatedDeltaNetParams) -> dict[str, Any]:
    """``params`` as a ``Qwen3NextGatedDeltaNet``'s ``state_dict``, in its order."""
    return state_from_fields(params, _NAMES)


register_torch_converter("Qwen3NextGatedDeltaNet", TorchConverter(_from_module, GatedDeltaNetParams, _to_module))
