"""The kernel interface of the fused solver (:func:`jrnn.fused`): one time step, forward and backward by hand.

A *kernel* (:class:`jrnn.FusedKernel`) is the fused solver's view of a cell; a cell's own module defines it and
registers it (:func:`jrnn.register_fused_kernel`; the built-in ones are beside :func:`jrnn.elman`,
:func:`jrnn.lstm` and :func:`jrnn.gru` in ``jrnn/_src/cells``). It splits the cell's affine maps into the part that
reads ``x_t`` (hoisted out of the loop as one GEMM, ``xp = X U^T + b_x``) and the part that reads the state (one
``[B, P] x [P, G·H]`` matmul per step), and writes the step's backward pass out by hand, as cuDNN does:

- ``step(consts, carry, xp_t, save) -> (carry, y_t, a_t, extra_t)`` runs one step on the hoisted ``xp_t``
  (``[B, G·H]``, without bias: the bias is added inside the step's elementwise pass). With ``save``, ``a_t`` (the
  shape of ``xp_t``, or None) is the residual written over ``xp_t`` in place and ``extra_t`` a tuple of other
  per-step residuals;
- ``step_bwd(consts, dcarry, dy_t, a_t, extra_t, s_prev_t, y_t) -> (dcarry_prev, dz_t, dextra_t)`` takes the
  state's gradient one step back; ``dz_t`` (the gradient of the step's input pre-activation, written over
  ``a_t`` in place) and ``dextra_t`` (a tuple) are stacked for the weight gradients;
- ``grads(params, X, S_in, DZ, dextras, extras) -> (dparams, dX)`` computes every parameter and input
  gradient with a few large GEMMs after the loop (``S_in``: the states as they enter the recurrent matmul).

``consts(params, state_mask)`` holds what every step reads: the weights and, under variational dropout
(:func:`jrnn.recurrent_dropout`), the state mask ``m[B, P]``, constant over the sequence. The forward step then
multiplies the state by it as it enters the recurrent matmul, ``(m ⊙ s_{t-1}) W^T``, and the backward step the
gradient that leaves that matmul, ``(dz W) ⊙ m``; ``S_in`` is ``m ⊙ S_prev``. The input mask and weight drop never
reach the kernels: they act on ``X`` and ``W`` before the loop.

Every kernel computes exactly its cell's docstring equations. One identity is used: ``σ(v) = ½ + ½ tanh(v/2)``,
so the gates of a step go through a single ``tanh`` over a contiguous ``[B, G·H]`` block (XLA's CPU loop
fusions are much faster on one wide elementwise op than on several gate slices), and their derivatives are
``σ' = (1 - a²)/4`` and ``tanh' = 1 - a²`` of that same ``a``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp


def _mm(a: jax.Array, b: jax.Array, dtype: Any) -> jax.Array:
    """``a @ b``; with ``dtype``, on operands cast to it, accumulated and returned in ``a``'s dtype."""
    if dtype is None:
        return a @ b
    return jnp.matmul(a.astype(dtype), b.astype(dtype), preferred_element_type=a.dtype)


def _einsum(spec: str, a: jax.Array, b: jax.Array, dtype: Any, **options) -> jax.Array:
    """``jnp.einsum(spec, a, b)``; with ``dtype``, on operands cast to it, accumulated and returned in ``a``'s dtype."""
    if dtype is None:
        return jnp.einsum(spec, a, b, **options)
    return jnp.einsum(spec, a.astype(dtype), b.astype(dtype), preferred_element_type=a.dtype, **options)


def _gram(a: jax.Array, b: jax.Array, dtype: Any) -> jax.Array:
    """``Σ_{t,b} a[t, b]ᵀ b[t, b]`` of two ``[T, B, k]`` arrays: one GEMM over all the sequence's steps.

    As ``[T·B, k]`` matrices (a reshape XLA turns into a free bitcast), except under a mesh with ``Explicit`` axes,
    where the batch axis is sharded and cannot be merged with time: there it is a contraction over both axes with
    a replicated result (the all-reduce of the per-device sums). The two are the same GEMM; XLA:CPU runs the
    reshaped one measurably faster (it copies the operands of the other), so it is the default.
    """
    if _explicit(a):
        return _einsum("tbi,tbj->ij", a, b, dtype, out_sharding=jax.sharding.PartitionSpec())
    return _mm(_flat(a).T, _flat(b), dtype)


def _flat(a: jax.Array) -> jax.Array:
    return a.reshape(-1, a.shape[-1])


def _explicit(a: jax.Array) -> bool:
    """Whether ``a`` is traced under a mesh with ``Explicit`` axes, where JAX asks how a sum over a sharded axis is
    to be sharded."""
    mesh = getattr(jax.typeof(a).sharding, "mesh", None)
    return any(t == jax.sharding.AxisType.Explicit for t in getattr(mesh, "axis_types", ()))


def _colsum(D: jax.Array) -> jax.Array:
    """``Σ_{t,b} D[t, b]`` of a ``[T, B, k]`` array as a matrix-vector product: XLA then reads ``D`` only through
    dots (a reduce beside the dots makes it copy the whole buffer once per consumer)."""
    return _gram(jnp.ones(D.shape[:2] + (1,), D.dtype), D, None)[0]


def _maybe(b: Any, value: Any) -> Any:
    """``value`` if the parameter ``b`` exists (bias on), else None."""
    return None if b is None else value


def _add(a: jax.Array | None, b: jax.Array | None) -> jax.Array | None:
    if a is None:
        return b
    return a if b is None else a + b


def _plus(v: jax.Array, b: jax.Array | None) -> jax.Array:
    return v if b is None else v + b


def _row(b: jax.Array | None) -> jax.Array | None:
    """A ``[k]`` vector as a ``[1, k]`` row, to broadcast against ``[B, k]`` explicitly (strict rank promotion)."""
    return None if b is None else b[None, :]


def _blocks(values, H: int, dtype) -> jax.Array:
    """``[[v_1] * H + [v_2] * H + ...]``: a per-gate constant row over a packed ``[1, G·H]`` axis."""
    return jnp.concatenate([jnp.full((H,), v, dtype) for v in values])[None, :]


@dataclasses.dataclass(frozen=True)
class Kernel:
    """What every kernel shares: the cell, the matmul dtype, the input GEMM and the after-loop GEMMs."""

    cell: Any
    matmul_dtype: Any = None  # operand dtype of the large GEMMs (input projection, weight and input gradients)
    step_dtype: Any = None  # operand dtype of the per-step matmuls

    needs_y = False  # whether step_bwd reads y_t

    def seq(self, spec, a, b):
        """A GEMM over whole sequences that keeps their ``[T, B]`` axes, in the large GEMMs' dtype.

        Written over the ``[T, B, k]`` arrays as they are, not reshaped to ``[T·B, k]``: XLA computes the same
        single GEMM, and a batch axis that is sharded (``jit`` with a batch-sharded input, an ``Explicit`` mesh)
        stays an axis of its own, so each device computes only its part of the batch.
        """
        return _einsum(spec, a, b, self.matmul_dtype)

    def gram(self, a, b):
        """``Σ_{t,b} a[t, b]ᵀ b[t, b]``, a weight gradient, in the large GEMMs' dtype (:func:`_gram`)."""
        return _gram(a, b, self.matmul_dtype)

    def smm(self, a, b):
        return _mm(a, b, self.step_dtype)

    def weight(self, w):
        """A matrix read every step, cast once to the step's matmul dtype."""
        return w if self.step_dtype is None else w.astype(self.step_dtype)

    def project(self, params, xs):
        """``xp[T, B, G·H] = X U^T``: every input projection of the sequence in one GEMM (the bias is added in
        the step's elementwise pass, where it costs nothing)."""
        return self.seq("tbi,gi->tbg", xs, params.U)

    def input_grads(self, params, xs, DZ):
        """``dU = DZ^T X``, ``db_U = 1^T DZ``, ``dX = DZ U``."""
        dU = self.gram(DZ, xs)
        dX = self.seq("tbg,gi->tbi", DZ, params.U)
        return dU, _maybe(params.b_U, _colsum(DZ)), dX

    def recurrent_grads(self, DZ, S_in):
        """``dW = DZ^T S_in`` and ``1^T DZ``."""
        return self.gram(DZ, S_in), _colsum(DZ)

    def mask(self, consts, s):
        """``m ⊙ s``: the state as it enters the recurrent matmul (``s`` without a state mask). Also the backward
        step's ``(dz W) ⊙ m``: the mask is diagonal."""
        m = consts["m"]
        return s if m is None else s * m

    def carry(self, state):
        return state

    def state(self, carry):
        return carry

    def state_output(self, state):
        return state
