"""transformers' Mamba-2 block in and out: ``jrnn.from_torch(Mamba2Mixer)`` and ``jrnn.to_torch(Mamba2Params)``.

Registered with :func:`jrnn._src.interop.torch.register_torch_converter` by class name, so neither torch nor
transformers is imported until a module is converted. The parameter names are transformers' own (``in_proj.weight``
→ ``in_proj_weight``, ``norm.weight`` → ``norm_weight``); only the depthwise convolution's weight loses its group
axis (``[C, 1, K]`` → ``[C, K]``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src.cells.mamba2 import Mamba2Cell, Mamba2Params, mamba2
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
# Mamba2Params field -> Mamba2Mixer state_dict name, in the state_dict's order (the mixer's own parameters first)
_NAMES = (("dt_bias", "dt_bias"), ("A_log", "A_log"), ("D", "D"), ("conv1d_weight", "conv1d.weight"),
          ("conv1d_bias", "conv1d.bias"), ("in_proj_weight", "in_proj.weight"), ("in_proj_bias", "in_proj.bias"),
          ("norm_weight", "norm.weight"), ("out_proj_weight", "out_proj.weight"),
          ("out_proj_bias", "out_proj.bias"))


@dataclasses.dataclass(frozen=True)
class TorchMamba2:
    """A transformers ``Mamba2Mixer`` as a jrnn cell, called as the mixer is on a fresh sequence (no cache, no
    attention mask): ``fn(params, x [B, T, D], lengths=None) -> y [B, T, D]``.

    ``lengths [B]`` marks each sequence's valid prefix (right padding); outputs past it are 0, and those before it
    are the mixer's on the prefix alone. ``cell`` is the :func:`jrnn.mamba2` cell, for :func:`jrnn.scan` with any
    solver, ``resets`` or an initial state (a :class:`jrnn.WindowState`: transformers' convolution state without
    its newest input, and its recurrent state ``[B, H, P, N]`` flattened).
    """

    cell: Mamba2Cell

    def __call__(self, params: Mamba2Params, x: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
        if jnp.ndim(x) != 3:
            raise ValueError(f"jrnn.from_torch: expected x of shape [B, T, D] (batch first, as transformers'), got "
                             f"shape {jnp.shape(x)}")
        return scan(self.cell, params, x, lengths=lengths)[0]


def _from_mixer(mixer: Any) -> tuple[TorchMamba2, Mamba2Params]:
    torch = require("torch", "torch", _FEATURE)
    probe = torch.linspace(-4.0, 4.0, 17, dtype=torch.float64)
    if not torch.allclose(mixer.act(probe), torch.nn.functional.silu(probe), atol=1e-12):
        raise ValueError(f"jrnn.from_torch: expected a Mamba2Mixer whose activation is SiLU (hidden_act='silu'), "
                         f"got {getattr(mixer, 'activation', mixer.act)!r}")
    state = module_state(mixer)
    H, P, G = int(mixer.num_heads), int(mixer.head_dim), int(mixer.n_groups)
    E = state["norm.weight"].shape[0]
    if E != H * P:
        raise ValueError(f"jrnn.from_torch: expected a Mamba2Mixer with intermediate_size = num_heads * head_dim "
                         f"({H} * {P}), got intermediate_size {E}")
    weight = state["conv1d.weight"]
    hidden_size = state["out_proj.weight"].shape[0]
    # built with E channels in and out (expand 1, so no float rounds E), then given the mixer's model width
    cell = mamba2(E, state_size=int(mixer.ssm_state_size), expand=1, head_dim=P, n_groups=G,
                  conv_width=weight.shape[-1], conv_bias="conv1d.bias" in state, bias="in_proj.bias" in state,
                  dt_limit=tuple(mixer.time_step_limit), norm_eps=float(mixer.norm.variance_epsilon),
                  dtype=weight.dtype)
    cell = dataclasses.replace(cell, hidden_size=hidden_size)
    named = fields_from_state(state, _NAMES)
    return TorchMamba2(cell), Mamba2Params(**named)


def _to_mixer(params: Mamba2Params) -> dict[str, Any]:
    """``params`` as a ``Mamba2Mixer``'s ``state_dict``, in its order."""
    return state_from_fields(params, _NAMES)


register_torch_converter("Mamba2Mixer", TorchConverter(_from_mixer, Mamba2Params, _to_mixer))
