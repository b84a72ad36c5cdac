"""The fused path one technique at a time, for the ablation table of ``BENCHMARKS.md``.

Each variant is ``fn(params, xs) -> ys`` on jrnn's parameters (PyTorch's weights), with a zero initial state:

- ``abl_hoist_scan``: the textbook trick alone: the input projection as one GEMM before a ``lax.scan`` whose step
  is the fused kernel's (one matmul for all gates, one ``tanh``), time-major, gradient by JAX's autodiff;
- ``abl_fused_autodiff``: the fused forward loop (batch-major, in-place gate buffer), gradient by JAX's autodiff
  of that loop instead of the custom VJP;
- ``abl_unroll2`` / ``abl_unroll4`` / ``abl_unroll8``: the full fused path with that many steps per loop iteration;
- ``abl_packed``: the full fused path with the LSTM's ``(h, c)`` carried as one array (LSTM only).

``jrnn_plain`` (``jrnn.scan(..., solver=jrnn.sequential())``: a ``lax.scan`` over ``cell.step``, autodiff),
``jrnn`` (everything)
and ``jrnn_bf16`` (plus bfloat16 matmuls) complete the table; they are built in ``peers_jax.py``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jrnn._src.cells.lstm import LSTMKernel
from jrnn._src.solvers import fused as fused_mod
from jrnn._src.solvers.fused import kernel_for

VARIANTS = ("abl_hoist_scan", "abl_fused_autodiff", "abl_unroll2", "abl_unroll4", "abl_unroll8", "abl_packed")


def variant(name: str, cell):
    """``fn(params, xs) -> ys`` for one ablation variant, or raises ``NotImplementedError``."""
    kernel = kernel_for(cell)

    def zero_state(xs):
        return cell.initial_state((xs.shape[0],), xs.dtype)

    if name == "abl_hoist_scan":
        def fn(params, xs):
            xp = kernel.project(params, xs)
            consts = kernel.consts(params)

            def body(carry, xp_t):
                carry, y, _, _ = kernel.step(consts, carry, xp_t, False)
                return carry, y

            _, ys = jax.lax.scan(body, kernel.carry(zero_state(xs)), jnp.swapaxes(xp, 0, 1))
            return jnp.swapaxes(ys, 0, 1)

        return fn
    if name == "abl_fused_autodiff":
        def fn(params, xs):
            ys = fused_mod._forward(kernel, 1, params, jnp.swapaxes(xs, 0, 1), zero_state(xs), None, save=False)[0]
            return jnp.swapaxes(ys, 0, 1)

        return fn
    if name.startswith("abl_unroll"):
        unroll = int(name[len("abl_unroll"):])
        return lambda params, xs: fused_mod.fused_layer(kernel, unroll, params, xs, zero_state(xs), None)[0]
    if name == "abl_packed":
        if not isinstance(kernel, LSTMKernel):
            raise NotImplementedError("only the LSTM carries two arrays")
        packed = dataclasses.replace(kernel, pack_carry=True)
        return lambda params, xs: fused_mod.fused_layer(packed, 1, params, xs, zero_state(xs), None)[0]
    raise ValueError(f"unknown ablation variant {name!r}")
