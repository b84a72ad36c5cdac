"""The fused solver: a cell's own kernel, the recurrence computed as cuDNN computes an RNN layer.

A cell joins by registering a kernel from its own module (:func:`register_fused_kernel`; the built-in
:func:`jrnn.elman`, :func:`jrnn.lstm` and :func:`jrnn.gru` do, in ``jrnn/_src/cells``). :func:`fused_layer` then
returns what the sequential ``lax.scan`` over ``cell.step`` returns (outputs, final state, and every gradient, to
float rounding). What it does differently (Appleyard, Kocisky & Blunsom 2016, "Optimizing performance of
recurrent neural networks on GPUs", arXiv:1604.01946):

1. The input projections of all time steps are one GEMM before the loop, ``xp[T, B, G·H] = X U^T``, time-major
   (``xs`` is transposed once, outside the loop), so step t reads one contiguous ``[B, G·H]`` block.
2. Each step is one ``[B, P] x [P, G·H]`` matmul for all gates, then one ``tanh`` over all gates
   (``σ(v) = ½ + ½ tanh(v/2)``), then the state update.
3. A custom VJP: the backward loop carries only the state's gradient and stacks the gradients of each step's
   pre-activations; the weight, bias and input gradients are single GEMMs after the loop
   (``dW = DZ^T S_prev``, ``dU = DZ^T X``, ``dX = DZ U``, ``db = 1^T DZ``). Under variational dropout the state
   mask ``m`` is a constant of the loops: ``S_prev`` becomes ``m ⊙ S_prev`` in ``dW`` and each step's state
   gradient from the recurrent matmul is multiplied by ``m`` (``kernels.py``).
4. No ``[T, B, G·H]`` buffer beyond the GEMM's output: the forward loop overwrites ``xp[t]`` with step t's
   activated gates (the residual the backward pass needs), and the backward loop overwrites those with the gate
   gradients ``DZ``. Fewer and smaller buffers matter on the CPU: every fresh page of a large buffer costs a page
   fault on each call.

The kernel interface is in ``jrnn/_src/solvers/kernels.py``; each cell's step math is beside the cell.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src import checks
from jrnn._src.sequences import batch_like, keep_where, reverse_sequences
from jrnn._src.solvers.base import Problem, Solver
from jrnn._src.solvers.kernels import Kernel

_KERNELS: dict[type, type[Kernel]] = {}


def register_fused_kernel(cell_type: type, kernel_type: type[Kernel]) -> type[Kernel]:
    """Registers ``kernel_type`` as the fused kernel of cells of exactly ``cell_type``; returns ``kernel_type``.

    The registry is open: a cell of your own joins from its own module, as the built-in cells do from theirs.
    It is keyed by exact type, so a subclass that changes the step never inherits a kernel that computes its
    parent's equations; a subclass that keeps them registers the parent's kernel for itself. The kernel is built
    as ``kernel_type(cell, matmul_dtype, matmul_dtype)`` (:class:`jrnn.FusedKernel` documents its methods;
    docs/concepts/custom-cells.md has a tested example).

    Example:
      >>> import jrnn
      >>> from jrnn._src.cells.elman import ElmanKernel
      >>> class MyElman(jrnn.ElmanCell):  # same equations, another name
      ...     pass
      >>> jrnn.register_fused_kernel(MyElman, ElmanKernel) is ElmanKernel
      True
    """
    if not isinstance(cell_type, type):
        raise TypeError(f"jrnn.register_fused_kernel: expected a cell class, got {cell_type!r}")
    if not (isinstance(kernel_type, type) and issubclass(kernel_type, Kernel)):
        raise TypeError(f"jrnn.register_fused_kernel: expected a subclass of jrnn.FusedKernel, got {kernel_type!r}")
    _KERNELS[cell_type] = kernel_type
    return kernel_type


def kernel_for(cell: Any, matmul_dtype: Any = None) -> Kernel | None:
    """The registered kernel of ``cell`` (exact type), or None. ``matmul_dtype`` applies to every matmul
    (bfloat16 for the per-step ones too: BENCHMARKS.md measured no gain from the large GEMMs alone)."""
    make = _KERNELS.get(type(cell))
    return None if make is None else make(cell, matmul_dtype, matmul_dtype)


@dataclasses.dataclass(frozen=True)
class Fused(Solver):
    """A cell's registered kernel; build it with :func:`jrnn.fused`."""

    matmul_dtype: Any = None
    unroll: int | bool = 1
    name = "fused"

    def check(self, cell: Any, where: str, *, state_mask: bool = False) -> None:
        if kernel_for(cell) is None:
            raise ValueError(f"{where}: jrnn.fused() needs a cell with a registered fused kernel (jrnn.elman, "
                             f"jrnn.lstm, jrnn.gru, or one registered with jrnn.register_fused_kernel), got a "
                             f"{type(cell).__name__}; use jrnn.auto() or jrnn.sequential()")
        super().check(cell, where, state_mask=state_mask)

    def reverse(self, xs: jax.Array, lengths: jax.Array | None) -> jax.Array:
        with _naming_the_jvp_fix():
            return _reverse(xs, lengths)

    def solve(self, problem: Problem) -> tuple[jax.Array, Any]:
        kernel = kernel_for(problem.cell, self.matmul_dtype)
        time = problem.xs.shape[1]
        unroll = time if self.unroll is True else self.unroll
        return fused_layer(kernel, unroll, problem.params, problem.xs, problem.state, problem.lengths,
                           problem.state_mask, problem.resets, problem.restart)


def fused(matmul_dtype: Any = None, *, unroll: int | bool = 1) -> Fused:
    """The cell's own fused kernel (:func:`jrnn.register_fused_kernel`): every input projection in one GEMM before
    the loop, one matmul per step, and a custom VJP whose backward loop carries only the state gradient, with the
    weight, bias and input gradients as single GEMMs after the loop, as cuDNN does (``jrnn/_src/solvers/fused.py``;
    speed in BENCHMARKS.md). Same results and gradients as :func:`jrnn.sequential` to float rounding (tested in
    float64 and against PyTorch). The built-in :func:`jrnn.elman`, :func:`jrnn.lstm` and :func:`jrnn.gru` have one;
    another cell raises ``ValueError``.

    Args:
      matmul_dtype: None computes every matmul in its operands' dtype. ``jnp.bfloat16`` runs the matmuls on
        bfloat16 operands with float32 accumulation, keeping the state, the elementwise math and the outputs in
        the dtype of ``xs``: mixed precision, about 3 significant digits.
      unroll: time steps per loop iteration (``True``: all of them); a speed knob only (1 measured fastest on
        XLA:CPU: BENCHMARKS.md, ablation).

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.lstm(8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> xs = jnp.ones((2, 5, 3))
      >>> fast, _ = jrnn.scan(cell, params, xs, solver=jrnn.fused(jnp.bfloat16))
      >>> bool(jnp.allclose(fast, jrnn.scan(cell, params, xs, solver=jrnn.sequential())[0], atol=1e-2))
      True
    """
    dtype = checks.matmul_dtype(matmul_dtype, "jrnn.fused")
    if unroll is not True:
        unroll = checks.positive_int("unroll", unroll, "jrnn.fused")
    return Fused(dtype, unroll)


def fused_layer(kernel: Kernel, unroll: int, params: Any, xs: jax.Array, state: Any, lengths: jax.Array | None,
                state_mask: jax.Array | None = None, resets: jax.Array | None = None,
                restart: Any = None) -> tuple[jax.Array, Any]:
    """The fused loops on checked inputs: ``xs[B, T, F]`` (zero at padded steps), a state with batch shape ``[B]``,
    at least one time step. ``kernel`` is a cell's (:func:`kernel_for`; the benchmarks build variants of them).
    ``state_mask[B, P]``: variational dropout's mask on the state where it enters the recurrent matmul.
    ``resets[B, T]``: where a segment starts from ``restart`` (a constant state) instead of the previous step."""
    params = batch_like(params, xs, axis=None)  # varying as xs is inside shard_map, so the custom VJP's types agree
    resets = None if resets is None else resets.T
    restarts = None if resets is None else (resets, jax.lax.stop_gradient(restart))
    with _naming_the_jvp_fix():
        ys, final_state = _fused_layer(kernel, unroll, params, jnp.swapaxes(xs, 0, 1), state, lengths, state_mask,
                                       restarts)
    return jnp.swapaxes(ys, 0, 1), final_state


JVP_FIX = ("jrnn's fused solver (jrnn.auto()'s choice for jrnn.elman, jrnn.lstm and jrnn.gru) has a custom VJP: "
           "reverse mode (jax.grad, jax.vjp, jax.jacrev) goes through it, jax.jvp and jax.jacfwd do not. For forward "
           "mode pass solver=jrnn.sequential() to jrnn.scan (or jrnn.RNN, jrnn.bidirectional, jrnn.deep): the same "
           "function, differentiable in both modes")


@contextlib.contextmanager
def _naming_the_jvp_fix():
    """Turns JAX's bare "can't apply forward-mode autodiff (jvp) to a custom_vjp function" into one naming the fix.

    It catches what it can: the error raised while this Python code runs under the JVP (``jax.jvp(f)``). Under
    ``jax.jvp(jax.jit(f))`` JAX raises it later, from the traced program, with its own message.
    """
    try:
        yield
    except TypeError as error:
        if "forward-mode autodiff" not in str(error):
            raise
        raise TypeError(f"{error} {JVP_FIX}") from None


# ------------------------------------------------------------------------------------------------------------
# The length-aware reversal is a permutation and its own inverse, so its VJP is itself (no scatter-add).
# ------------------------------------------------------------------------------------------------------------

@jax.custom_vjp
def _reverse(xs: jax.Array, lengths: jax.Array | None) -> jax.Array:
    return reverse_sequences(xs, lengths)


def _reverse_fwd(xs, lengths):
    return reverse_sequences(xs, lengths), lengths


def _reverse_bwd(lengths, g):
    return reverse_sequences(g, lengths), None


_reverse.defvjp(_reverse_fwd, _reverse_bwd)


# ------------------------------------------------------------------------------------------------------------
# The loops. Every per-step array is time-major, [T, B, k]; step t is [t], one contiguous block (measured faster
# than batch-major [B, T, k] buffers, whose step slices are strided: benchmarks/, BENCHMARKS.md).
# ------------------------------------------------------------------------------------------------------------


def _at(a: jax.Array, t) -> jax.Array:
    return jax.lax.dynamic_index_in_dim(a, t, 0, keepdims=False)


def _put(a: jax.Array, v: jax.Array, t) -> jax.Array:
    return jax.lax.dynamic_update_index_in_dim(a, v.astype(a.dtype), t, 0)


def _buffers(template: Any, like: jax.Array) -> Any:
    """Zero buffers ``[T, B, k]`` for a pytree of per-step ``[B, k]`` shapes, typed like ``like[T, B, ...]``'s batch
    (``sequences.batch_like``: varying and sharded as the inputs are)."""
    time = like.shape[0]
    zeros = jax.tree_util.tree_map(lambda x: jnp.zeros((time,) + x.shape, x.dtype), template)
    return batch_like(zeros, like, axis=1)


def _forward(kernel, unroll, params, xs, state0, lengths, save, state_mask=None, restarts=None):
    """The forward loop: ``(ys, final state, residuals)``.

    Step t's gates ``a_t`` overwrite ``xp[t]`` in place. ``a_t`` is computed from ``xp[t]``, so every read of
    the slot precedes the write and XLA needs no copy; the write also makes XLA compute the gates once, as one
    array (fused into their consumers instead, they are recomputed per use, unvectorised). With ``save`` the
    kernel's other residuals are stacked in their own buffers.
    """
    time = xs.shape[0]
    xp = kernel.project(params, xs)
    consts = kernel.consts(params, state_mask)
    carry0 = kernel.carry(state0)
    _, y_shape, _, extra_shape = jax.eval_shape(lambda c, x: kernel.step(consts, c, x, save), carry0, _at(xp, 0))
    extras0 = _buffers(extra_shape, xp) if save else ()

    def body(t, loop):
        carry, xp, ys, extras = loop
        if restarts is not None:  # a segment starts from the cell's initial state
            carry = keep_where(_at(restarts[0], t), kernel.carry(restarts[1]), carry)
        new, y, a, extra = kernel.step(consts, carry, _at(xp, t), save)
        if lengths is not None:
            valid = t < lengths
            new = keep_where(valid, new, carry)
            y = jnp.where(valid[:, None], y, jnp.zeros_like(y))
        if a is not None:
            xp = _put(xp, a, t)
        ys = _put(ys, y, t)
        if save:
            extras = jax.tree_util.tree_map(lambda buf, v: _put(buf, v, t), extras, extra)
        return new, xp, ys, extras

    loop0 = (carry0, xp, _buffers(y_shape, xp), extras0)
    carry, xp, ys, extras = jax.lax.fori_loop(0, time, body, loop0, unroll=min(unroll, time))
    return ys, kernel.state(carry), (xp, extras)


def _backward(kernel, unroll, consts, dcarry, buf, extras, dys, S_prev, ys, lengths, resets=None):
    """The backward loop, t = T-1 .. 0: ``(d initial carry, DZ, stacked extra gradients)``.

    Carries only the state's gradient. Step t's ``dz_t`` goes over the residual ``a_t`` in ``buf``; the writes of
    one iteration's steps are deferred to the start of the next, before anything reads ``buf`` again. Then no read
    of the buffer can come after a write into it and XLA updates it in place (with the write at the end of an
    iteration, XLA copies the whole buffer every iteration: some reads, such as the LSTM's forget gate for
    ``dc_{t-1}``, do not feed the write). The first iteration's "pending" write puts back what slot T-1 holds.

    Where ``resets`` starts a segment, the step read a constant state, not step ``t - 1``'s: nothing flows back.
    """
    time = dys.shape[0]
    k = max(1, min(unroll, time))

    def step(t, dcarry, buf):
        at = lambda a: None if a is None else _at(a, t)  # noqa: E731
        dprev, dz, dextra = kernel.step_bwd(consts, dcarry, at(dys), at(buf), jax.tree_util.tree_map(at, extras),
                                            at(S_prev), at(ys) if kernel.needs_y else None)
        if lengths is not None:
            valid = t < lengths
            dprev = keep_where(valid, dprev, dcarry)
            zero = lambda v: jnp.where(valid[:, None], v, jnp.zeros_like(v))  # noqa: E731
            dz, dextra = zero(dz), jax.tree_util.tree_map(zero, dextra)
        if resets is not None:
            dprev = keep_where(_at(resets, t), jax.tree_util.tree_map(jnp.zeros_like, dprev), dprev)
        return dprev, dz, dextra

    def block(top, n, loop):
        """Writes the pending ``dz`` of the previous block, then runs steps ``top, ..., top - n + 1``."""
        dcarry, buf, pending, dextras = loop
        for value, index in pending:
            buf = _put(buf, value, index)
        pending = []
        for j in range(n):
            t = top - j
            dcarry, dz, dextra = step(t, dcarry, buf)
            dextras = jax.tree_util.tree_map(lambda b, v, t=t: _put(b, v, t), dextras, dextra)
            pending.append((dz, t))
        pending += pending[-1:] * (k - n)  # a repeated write keeps the loop carry's structure fixed
        return dcarry, buf, tuple(pending), dextras

    last = time - 1
    _, _, dextra_shape = jax.eval_shape(lambda c: step(last, c, buf), dcarry)
    loop = (dcarry, buf, ((_at(buf, last), last),) * k, _buffers(dextra_shape, dys))
    rest = time % k
    if rest:
        loop = block(last, rest, loop)
    loop = jax.lax.fori_loop(0, time // k, lambda i, lp: block(last - rest - i * k, k, lp), loop)
    dcarry, buf, pending, dextras = loop
    for value, index in pending:
        buf = _put(buf, value, index)
    return dcarry, buf, dextras


def _shift_in(s0: jax.Array, ys: jax.Array) -> jax.Array:
    """The state before each step, ``[s0, y_0, ..., y_{T-2}]`` along the time axis."""
    return jnp.concatenate([s0[None].astype(ys.dtype), ys[:-1]], axis=0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _fused_layer(kernel, unroll, params, xs, state0, lengths, state_mask, restarts):
    ys, final, _ = _forward(kernel, unroll, params, xs, state0, lengths, save=False, state_mask=state_mask,
                            restarts=restarts)
    return ys, final


def _fused_layer_fwd(kernel, unroll, params, xs, state0, lengths, state_mask, restarts):
    ys, final, res = _forward(kernel, unroll, params, xs, state0, lengths, save=True, state_mask=state_mask,
                              restarts=restarts)
    return (ys, final), (params, xs, state0, lengths, state_mask, restarts, ys, res)


def _fused_layer_bwd(kernel, unroll, saved, cotangents):
    params, xs, state0, lengths, state_mask, restarts, ys, (buf, extras) = saved
    dys, dfinal = cotangents
    S_prev = _shift_in(kernel.state_output(state0), ys)
    resets = None
    if restarts is not None:  # the state a step read: the cell's initial one where a segment starts
        resets, restart = restarts
        S_prev = jnp.where(resets[..., None], kernel.state_output(restart)[None].astype(S_prev.dtype), S_prev)
    consts = kernel.consts(params, state_mask)
    dcarry, DZ, dextras = _backward(kernel, unroll, consts, kernel.carry(dfinal), buf, extras, dys, S_prev, ys,
                                    lengths, resets)
    S_in = S_prev if state_mask is None else S_prev * state_mask[None]  # what the recurrent matmul read
    dparams, dxs = kernel.grads(params, xs, S_in, DZ, dextras, extras)
    return dparams, dxs, kernel.state(dcarry), None, None, None  # masks and restarts are constants: no gradient


_fused_layer.defvjp(_fused_layer_fwd, _fused_layer_bwd)
