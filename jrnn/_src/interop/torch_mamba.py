"""transformers' Mamba block in and out: ``jrnn.from_torch(MambaMixer)`` and ``jrnn.to_torch(MambaParams)``.

Registered with :func:`jrnn._src.interop.torch.register_torch_converter` by class name, so neither torch nor
transformers is imported until a module is converted. The parameter names are transformers' own (``in_proj.weight``
→ ``in_proj_weight``); only the depthwise convolution's weight loses its group axis (``[E, 1, K]`` → ``[E, K]``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src.cells.mamba import MambaCell, MambaParams, mamba
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
# MambaParams field -> MambaMixer state_dict name, in the state_dict's order (the mixer's own parameters first)
_NAMES = (("A_log", "A_log"), ("D", "D"), ("conv1d_weight", "conv1d.weight"), ("conv1d_bias", "conv1d.bias"),
          ("in_proj_weight", "in_proj.weight"), ("in_proj_bias", "in_proj.bias"),
          ("x_proj_weight", "x_proj.weight"), ("dt_proj_weight", "dt_proj.weight"),
          ("dt_proj_bias", "dt_proj.bias"), ("out_proj_weight", "out_proj.weight"),
          ("out_proj_bias", "out_proj.bias"))


@dataclasses.dataclass(frozen=True)
class TorchMamba:
    """A transformers ``MambaMixer`` as a jrnn cell, called as the mixer is on a fresh sequence (no cache, no
    attention mask): ``fn(params, x [B, T, D], lengths=None) -> y [B, T, D]``.

    ``lengths [B]`` marks each sequence's valid prefix (right padding); outputs past it are 0, and those before it
    are the mixer's on the prefix alone. ``cell`` is the :func:`jrnn.mamba` cell, for :func:`jrnn.scan` with any
    solver, ``resets`` or an initial state (a :class:`jrnn.WindowState`: transformers' convolution state without
    its newest input, and its recurrent state ``[B, E, N]`` flattened).
    """

    cell: MambaCell

    def __call__(self, params: MambaParams, x: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
        if jnp.ndim(x) != 3:
            raise ValueError(f"jrnn.from_torch: expected x of shape [B, T, D] (batch first, as transformers'), got "
                             f"shape {jnp.shape(x)}")
        return scan(self.cell, params, x, lengths=lengths)[0]


def _from_mixer(mixer: Any) -> tuple[TorchMamba, MambaParams]:
    torch = require("torch", "torch", _FEATURE)
    probe = torch.linspace(-4.0, 4.0, 17, dtype=torch.float64)
    if not torch.allclose(mixer.act(probe), torch.nn.functional.silu(probe), atol=1e-12):
        raise ValueError(f"jrnn.from_torch: expected a MambaMixer whose activation is SiLU (hidden_act='silu'), "
                         f"got {getattr(mixer, 'activation', mixer.act)!r}")
    state = module_state(mixer)
    E, N = state["A_log"].shape
    weight = state["conv1d.weight"]
    hidden_size = state["out_proj.weight"].shape[0]
    cell = mamba(hidden_size, state_size=N, conv_width=weight.shape[-1],
                 dt_rank=state["dt_proj.weight"].shape[1], conv_bias="conv1d.bias" in state,
                 bias="in_proj.bias" in state, dtype=weight.dtype)
    cell = dataclasses.replace(cell, intermediate_size=E)  # E = int(expand · D) exactly, whatever expand was
    named = fields_from_state(state, _NAMES)
    return TorchMamba(cell), MambaParams(**named)


def _to_mixer(params: MambaParams) -> dict[str, Any]:
    """``params`` as a ``MambaMixer``'s ``state_dict``, in its order."""
    return state_from_fields(params, _NAMES)


register_torch_converter("MambaMixer", TorchConverter(_from_mixer, MambaParams, _to_mixer))
