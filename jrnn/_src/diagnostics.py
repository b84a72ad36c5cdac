"""Gradient-flow diagnostics: per-step ``||dL/ds_t||``, Jacobians ``ds_T/ds_t``, the Elman bound, and a verdict.

Pascanu, Mikolov & Bengio (2013, "On the difficulty of training recurrent neural networks", arXiv 1211.5063)
write the gradient reaching step t as

    dL/ds_t = sum_{k >= t} (ds_k/ds_t)^T dL_k/ds_k,      ds_k/ds_t = prod_{t < i <= k} ds_i/ds_{i-1},

and for the Elman recurrence ``s_i = f(U x_i + W s_{i-1} + b)`` bound each factor:
``||ds_i/ds_{i-1}|| = ||diag(f'(.)) W|| <= gamma sigma_max(W)`` with ``gamma = sup |f'|``. So
``sigma_max(W) < 1/gamma`` is *sufficient* for the gradient to vanish exponentially in ``k - t``, and
``sigma_max(W) > 1/gamma`` is *necessary* for it to explode. ``gamma = 1`` for tanh, ``1/4`` for the logistic
sigmoid. ReLU has ``f' in {0, 1}``, so ``gamma = 1`` and the same bound ``sigma_max(W) < 1`` guarantees vanishing;
but ReLU does not saturate: on the active units the factor is ``W`` itself, so with ``sigma_max(W) > 1`` nothing
damps the growth, whereas tanh units pushed into saturation shrink ``f'`` and can make the gradient vanish even
with a large ``W``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jrnn._src import checks
from jrnn._src import probes as P
from jrnn._src.bidirectional import Bidirectional, BidirectionalState
from jrnn._src.cells.elman import ElmanCell
from jrnn._src.contract import prepare
from jrnn._src.deep import Deep
from jrnn._src.losses import last_valid
from jrnn._src.report import Report
from jrnn._src.sequences import carry_dtype, reverse_sequences, valid_mask


def _check_inputs(xs, lengths, where):
    batch, time = checks.batch_major(xs, where)
    return batch, time, checks.lengths(lengths, batch, where)


def step_grad_norms(network: Any, params: Any, xs: jax.Array, *, lengths: jax.Array | None = None,
                    initial_state: Any = None, loss_fn: Callable[[jax.Array], jax.Array] | None = None) -> Any:
    """``||dL/ds_t||_2`` for every step t of every recurrence of ``network``, in time order.

    ``s_t`` is the whole state after step t (an LSTM's ``(h_t, c_t)`` together) and ``dL/ds_t`` the total
    derivative, through ``y_t`` and every later state: the gradient with respect to a zero probe added to
    ``s_t`` (see ``jrnn/_src/probes.py``). For a backward recurrence ``t`` is still the time index: its first
    state is the one at ``t = lengths[b]``, its last the one at ``t = 1``. Padded steps get 0.

    Args:
      network: a cell, :class:`jrnn.RNN`, :class:`jrnn.Bidirectional` or :class:`jrnn.Deep` (nested freely).
      params: its parameters.
      xs: ``[B, T, F]`` inputs.
      lengths: optional ``[B]`` valid lengths.
      initial_state: optional initial state of ``network``.
      loss_fn: ``L = loss_fn(ys[B, T, O])``, a scalar; by default the sum of each sequence's last valid output,
        a many-to-one loss whose error enters only at the end. Sequences must not be mixed in ``L`` (sum, not
        a batch norm) for the norms to be per sequence.

    Returns:
      A pytree mirroring ``network``'s state, one ``[B, T]`` array per recurrence: an array for a cell or RNN,
      a :class:`jrnn.BidirectionalState` of two, a tuple over a Deep stack's layers.
    """
    net = P.as_network(network)
    batch, _, lengths = _check_inputs(xs, lengths, "jrnn.step_grad_norms")
    state = P.probed_state(net, initial_state, batch)
    return _grad_norms(net, loss_fn, params, xs, lengths, state)


@functools.partial(jax.jit, static_argnames=("net", "loss_fn"))
def _grad_norms(net, loss_fn, params, xs, lengths, state):
    batch, time = xs.shape[:2]
    probed = P.probed_network(net)

    def loss_of_probes(probes):
        ys, _ = probed.apply(P.probed_params(net, params, probes), xs, lengths=lengths, initial_state=state)
        return jnp.sum(last_valid(ys, lengths)) if loss_fn is None else loss_fn(ys)

    grads = jax.grad(loss_of_probes)(P.zero_probes(net, batch, time, xs.dtype))
    return _to_time_order(net, grads, lengths)


def _norm_per_step(g: Any) -> jax.Array:
    """``[B, T]`` Euclidean norms over every leaf's feature axes of a ``[T, B, ...]`` pytree.

    Scaled by the largest entry first, so that norms down to float32's smallest numbers (1e-38, not 1e-19,
    where the squares underflow) survive: a vanishing gradient must not read as exactly 0.
    """
    flat = jnp.concatenate([leaf.reshape(leaf.shape[:2] + (-1,)) for leaf in jax.tree_util.tree_leaves(g)], -1)
    scale = jnp.max(jnp.abs(flat), axis=-1, keepdims=True)
    safe = jnp.where(scale > 0, scale, jnp.ones_like(scale))
    return (safe[..., 0] * jnp.sqrt(jnp.sum(jnp.square(flat / safe), axis=-1))).T


def _to_time_order(net, grads, lengths):
    if isinstance(net, Bidirectional):
        return BidirectionalState(_norm_per_step(grads.forward),
                                  _unreverse(_norm_per_step(grads.backward), lengths))
    if isinstance(net, Deep):
        return tuple(_to_time_order(P.as_network(l), g, lengths) for l, g in zip(net.layers, grads))
    norms = _norm_per_step(grads)
    return _unreverse(norms, lengths) if net.reverse else norms


def _unreverse(a: jax.Array, lengths) -> jax.Array:
    """Processing order to time order (and back) for ``[B, T, ...]``: the length-aware reversal."""
    return reverse_sequences(a, lengths)


class StateJacobians(NamedTuple):
    """Jacobians of one recurrence, per sequence and step, in time order.

    Attributes:
      step_singular_values: ``[B, T, N]`` singular values of ``ds_t/ds_{t-1}`` (descending), N the flattened
        state size; at padded steps the state is held, so they are all 1.
      product_norms: ``[B, T]`` spectral norms ``||ds_T/ds_t||_2``, T each sequence's last step (for a
        backward recurrence its last state is the one at t = 1); 1 at ``t = T`` and at padded steps.
    """

    step_singular_values: jax.Array
    product_norms: jax.Array


def _recurrence_jacobians(rec: P.Recurrence, lengths) -> StateJacobians:
    cell, xs = rec.cell, rec.inputs
    params = prepare(cell, rec.params)  # the per-sequence work once, outside both loops
    batch, time = xs.shape[:2]
    proc_xs = reverse_sequences(xs, lengths) if rec.reverse else xs
    s0 = cell.initial_state((batch,), carry_dtype(xs, params)) if rec.initial_state is None else rec.initial_state
    unravel = ravel_pytree(jax.tree_util.tree_map(lambda s: s[0], s0))[1]
    flat0 = jax.vmap(lambda s: ravel_pytree(s)[0])(s0)

    def collect(state, x):
        new, _ = cell.step(params, state, x)
        return new, new

    _, states = jax.lax.scan(collect, s0, jnp.swapaxes(proc_xs, 0, 1))  # unmasked; padded steps get J = I below
    flat = jax.vmap(jax.vmap(lambda s: ravel_pytree(s)[0]))(states)  # [T, B, N]
    prev = jnp.concatenate([flat0[None], flat[:-1]], axis=0)

    def step_flat(s_flat, x):
        return ravel_pytree(cell.step(params, unravel(s_flat), x)[0])[0]

    J = jax.vmap(jax.vmap(jax.jacfwd(step_flat)))(prev, jnp.swapaxes(proc_xs, 0, 1))  # [T, B, N, N]
    eye = jnp.eye(J.shape[-1], dtype=J.dtype)
    mask = valid_mask(lengths, batch, time)
    if mask is not None:
        J = jnp.where(mask.T[:, :, None, None], J, eye)
    singular = jnp.linalg.svd(J, compute_uv=False)  # [T, B, N]

    def back(Q, J_next):  # Q = ds_T/ds_{i+1}; ds_T/ds_i = Q @ ds_{i+1}/ds_i
        Q = Q @ J_next
        return Q, Q

    Q_T = jnp.broadcast_to(eye, J.shape[1:])
    _, Qs = jax.lax.scan(back, Q_T, J[1:], reverse=True)
    Qs = jnp.concatenate([Qs, Q_T[None]], axis=0)  # [T, B, N, N]: Qs[i] = ds_T/ds_{i+1}
    norms = jnp.linalg.norm(Qs, ord=2, axis=(-2, -1))  # [T, B]
    singular, norms = jnp.swapaxes(singular, 0, 1), norms.T
    if rec.reverse:
        singular, norms = _unreverse(singular, lengths), _unreverse(norms, lengths)
    return StateJacobians(singular, norms)


def _jacobians_jit(rec: P.Recurrence, lengths) -> StateJacobians:
    """:func:`_recurrence_jacobians` compiled as one program (far faster than op-by-op dispatch)."""
    return _compiled_jacobians(rec.cell, rec.reverse, rec.params, rec.inputs, rec.initial_state, lengths)


@functools.partial(jax.jit, static_argnames=("cell", "reverse"))
def _compiled_jacobians(cell, reverse, params, inputs, state, lengths):
    return _recurrence_jacobians(P.Recurrence("", cell, params, inputs, reverse, state), lengths)


def state_jacobians(network: Any, params: Any, xs: jax.Array, *, lengths: jax.Array | None = None,
                    initial_state: Any = None) -> Any:
    """The one-step Jacobians ``ds_t/ds_{t-1}`` (their singular values) and the products ``||ds_T/ds_t||_2``.

    Each recurrence is taken alone, its input sequence fixed (for layer l of a Deep stack, the output of the
    layers below). Costs ``O(B T N^2)`` memory and ``O(B T N^3)`` time for a flattened state of size N: meant for
    small diagnostic batches.

    Returns:
      A pytree mirroring ``network``'s state with one :class:`StateJacobians` per recurrence.
    """
    net = P.as_network(network)
    _, _, lengths = _check_inputs(xs, lengths, "jrnn.state_jacobians")
    found = [_jacobians_jit(rec, lengths) for rec in P.recurrences(net, params, xs, lengths, initial_state)]
    return _like_state(net, iter(found))


def _like_state(net, items):
    if isinstance(net, Bidirectional):
        return BidirectionalState(next(items), next(items))
    if isinstance(net, Deep):
        return tuple(_like_state(P.as_network(l), items) for l in net.layers)
    return next(items)


def _gamma(activation: Callable) -> tuple[str, float, bool]:
    """``(name, gamma = sup |f'|, estimated)`` for an activation."""
    known = {id(jnp.tanh): ("tanh", 1.0), id(jax.nn.tanh): ("tanh", 1.0), id(jax.nn.sigmoid): ("sigmoid", 0.25),
             id(jax.nn.relu): ("relu", 1.0)}
    if id(activation) in known:
        return (*known[id(activation)], False)
    z = jnp.linspace(-20.0, 20.0, 40001)
    slope = jax.vmap(jax.grad(lambda v: activation(v)))(z)
    return getattr(activation, "__name__", repr(activation)), float(jnp.max(jnp.abs(slope))), True


def elman_bound(cell: ElmanCell, params: Any) -> dict:
    """Pascanu et al.'s condition for an Elman cell: ``sigma_max(W)`` against ``1/gamma``.

    Returns:
      A dict: ``sigma_max`` (largest singular value of W), ``activation``, ``gamma`` (``sup |f'|``; estimated on
      a grid for an activation other than tanh, sigmoid and ReLU, then ``gamma_estimated`` is True),
      ``bound = 1/gamma``, ``vanishing_guaranteed`` (``sigma_max < 1/gamma``), ``exploding_possible``
      (``sigma_max > 1/gamma``) and ``note``, a sentence saying what follows.
    """
    if not isinstance(cell, ElmanCell):
        raise TypeError(f"jrnn.elman_bound: expected a jrnn.elman cell, got {type(cell).__name__}")
    sigma = float(jnp.linalg.norm(params.W, ord=2))
    name, gamma, estimated = _gamma(cell.activation)
    bound = 1.0 / gamma if gamma > 0 else float("inf")
    if sigma < bound:
        note = (f"sigma_max(W) = {sigma:.3g} < 1/gamma = {bound:.3g}: every ||ds_t/ds_(t-1)|| <= "
                f"{gamma * sigma:.3g} < 1, so the gradient vanishes exponentially (sufficient condition)")
    else:
        note = (f"sigma_max(W) = {sigma:.3g} >= 1/gamma = {bound:.3g}: exploding gradients are possible "
                "(necessary condition met), not certain")
    if name == "relu":
        note += ("; ReLU (f' in {0, 1}, gamma = 1) does not saturate, so on the active units growth is "
                 "not damped")
    return {"sigma_max": sigma, "activation": name, "gamma": gamma, "gamma_estimated": estimated, "bound": bound,
            "vanishing_guaranteed": sigma < bound, "exploding_possible": sigma > bound, "note": note}


def _verdict(ratio: float, vanishing_below: float, exploding_above: float) -> str:
    if not np.isfinite(ratio) or ratio > exploding_above:
        return "exploding"
    if ratio < vanishing_below:
        return "vanishing"
    return "healthy"


def _first_over_last(proc: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per sequence, ``proc[b, 0] / proc[b, n_b - 1]`` of a processing-order ``[B, T]`` array."""
    last = proc[np.arange(proc.shape[0]), np.maximum(lengths - 1, 0)]
    with np.errstate(divide="ignore", invalid="ignore"):
        return proc[:, 0] / last


def gradient_report(network: Any, params: Any, xs: jax.Array, *, lengths: jax.Array | None = None,
                    initial_state: Any = None, loss_fn: Callable[[jax.Array], jax.Array] | None = None,
                    jacobians: bool = True, vanishing_below: float = 1e-3, exploding_above: float = 1e3) -> dict:
    """Everything above in one call, with a verdict: ``"vanishing"``, ``"exploding"`` or ``"healthy"``.

    For each recurrence the measured decay is ``ratio = ||dL/ds_first|| / ||dL/ds_last||``, first and last in
    the order the recurrence runs (``t = 1`` and ``t = lengths[b]`` going forward), the median over the batch
    of sequences with at least two steps. When the loss does not reach a recurrence's last state (the backward
    half of a bidirectional network under a loss on the last output), the ratio is instead the Jacobian
    product ``||ds_last/ds_first||_2``, which bounds how much any error at the end can reach the beginning.
    The verdict is "vanishing" below ``vanishing_below``, "exploding" above ``exploding_above`` (or if not
    finite), "healthy" otherwise; the network's is the worst of its recurrences' (exploding, then vanishing).
    For an Elman cell the report adds :func:`elman_bound`, Pascanu et al.'s ``sigma_max(W)`` against
    ``1/gamma``, which the reason quotes.

    Args:
      network: as for :func:`step_grad_norms`.
      params: as for :func:`step_grad_norms`.
      xs: as for :func:`step_grad_norms`.
      lengths: as for :func:`step_grad_norms`.
      initial_state: as for :func:`step_grad_norms`.
      loss_fn: as for :func:`step_grad_norms`.
      jacobians: also compute :func:`state_jacobians` (``O(B T N^2)`` memory).
      vanishing_below: the verdict is "vanishing" for a ratio below this.
      exploding_above: the verdict is "exploding" for a ratio above this (or not finite).

    Returns:
      A dict (which prints arrays as their dtype and shape): ``verdict``, ``reason``, ``time_steps``,
      ``thresholds`` and ``recurrences``, a dict from each recurrence's name (``"rnn"``, ``"forward"``,
      ``"layers[1].backward"``, ...) to a dict with ``cell``, ``reverse``, ``grad_norms`` (``[B, T]`` NumPy, time
      order), ``ratios`` (``[B]``), ``ratio``, ``signal`` (``"loss"`` or ``"jacobian"``), ``verdict``,
      ``jacobian_norms`` and ``step_singular_values`` (NumPy, or None without ``jacobians``) and, for Elman cells,
      ``elman``.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.elman(8, W_init=jrnn.init.orthogonal(0.5))
      >>> params = cell.init(jax.random.key(0), input_size=2)
      >>> report = jrnn.gradient_report(cell, params, jax.random.normal(jax.random.key(1), (4, 50, 2)))
      >>> report["verdict"]
      'vanishing'
    """
    net = P.as_network(network)
    batch, time, lengths = _check_inputs(xs, lengths, "jrnn.gradient_report")
    if not 0 < vanishing_below < 1 < exploding_above:
        raise ValueError(f"jrnn.gradient_report: expected 0 < vanishing_below < 1 < exploding_above, got "
                         f"{vanishing_below!r} and {exploding_above!r}")
    norms = jax.tree_util.tree_leaves(step_grad_norms(net, params, xs, lengths=lengths,
                                                      initial_state=initial_state, loss_fn=loss_fn))
    recs = P.recurrences(net, params, xs, lengths, initial_state)
    n = np.full((batch,), time) if lengths is None else np.minimum(np.asarray(lengths), time)
    entries = Report()
    for rec, g in zip(recs, norms):
        jac = _jacobians_jit(rec, lengths) if jacobians else None
        proc = np.asarray(_unreverse(g, lengths) if rec.reverse else g)
        keep = n >= 2  # a sequence of one step has no decay to measure
        reached = np.all(proc[np.arange(batch), np.maximum(n - 1, 0)][keep] > 0)
        if reached:
            ratios, signal = _first_over_last(proc, n), "loss"
        elif jac is not None:
            products = np.asarray(_unreverse(jac.product_norms, lengths) if rec.reverse else jac.product_norms)
            ratios, signal = products[:, 0], "jacobian"
        else:
            ratios, signal = np.full((batch,), np.nan), None
        if not keep.any():
            ratio, verdict = 1.0, "healthy"
        elif signal is None:
            ratio, verdict = float("nan"), "undetermined"
        else:
            ratio = float(np.median(ratios[keep]))
            verdict = _verdict(ratio, vanishing_below, exploding_above)
        entry = Report(cell=type(rec.cell).__name__, reverse=rec.reverse, grad_norms=np.asarray(g),
                       ratios=ratios, ratio=ratio, signal=signal, verdict=verdict,
                       jacobian_norms=None if jac is None else np.asarray(jac.product_norms),
                       step_singular_values=None if jac is None else np.asarray(jac.step_singular_values))
        if isinstance(rec.cell, ElmanCell):
            entry["elman"] = elman_bound(rec.cell, rec.params)
        entries[rec.name] = entry

    verdicts = [e["verdict"] for e in entries.values()]
    overall = next((v for v in ("exploding", "vanishing", "healthy") if v in verdicts), "undetermined")
    reasons = []
    for name, e in entries.items():
        what = "||dL/ds_first|| / ||dL/ds_last||" if e["signal"] == "loss" else "||ds_last/ds_first||"
        line = f"{name} ({e['cell']}): {e['verdict']}, median {what} = {e['ratio']:.3g} over {time} steps"
        if "elman" in e:
            line += f"; {e['elman']['note']} (Pascanu et al. 2013)"
        reasons.append(line)
    return Report(verdict=overall, reason="\n".join(reasons), time_steps=time,
                  thresholds={"vanishing_below": vanishing_below, "exploding_above": exploding_above},
                  recurrences=entries)
