"""Training through time: the batch, a loss built from a model's ``apply``, the non-finite guard and the train step.

The recipe (Pascanu, Mikolov & Bengio 2013, "On the difficulty of training recurrent neural networks",
arXiv 1211.5063): take the exact BPTT gradient ``g = dL/dθ`` from ``jax.grad``; if any entry of ``g`` or the loss
is NaN or Inf, skip the step and count it; otherwise rescale ``g <- θ_max g / ||g||`` when ``||g|| >= θ_max``
(``optax.clip_by_global_norm``) and hand it to the optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jrnn._src import losses
from jrnn._src.report import Report

LossFn = Callable[[Any, Any, Any], tuple[jax.Array, Any]]


class Batch(NamedTuple):
    """A batch of padded sequences, the ``batch`` a :class:`TrainStep` and :func:`supervised_loss` expect.

    Attributes:
      xs: ``[B, T, F]`` inputs, batch-major.
      targets: per-step targets (``[B, T, O]`` for MSE, ``[B, T]`` integer classes for cross-entropy) or, for a
        many-to-one loss, one target per sequence (``[B, O]`` or ``[B]``).
      lengths: optional ``[B]`` integer valid lengths; steps ``t >= lengths[b]`` are padding.
      initial_state: optional initial state of the model (for instance the stopped final state of the previous
        chunk, in on-line truncated BPTT); None for the model's zero state.
      resets: optional ``[B, T]`` bool, where packed sequences start (:func:`jrnn.scan`,
        :func:`jrnn.pack_documents`); passed to ``apply`` only when given.
    """

    xs: jax.Array
    targets: jax.Array
    lengths: jax.Array | None = None
    initial_state: Any = None
    resets: jax.Array | None = None


def supervised_loss(apply: Callable[..., tuple[jax.Array, Any]],
                    loss: Callable[[jax.Array, jax.Array, jax.Array | None], jax.Array] = losses.masked_mse,
                    *, last_step: bool = False) -> LossFn:
    """Builds ``loss_fn(params, batch, key) -> (loss, aux)`` from a model's ``apply`` and a length-aware loss.

    ``apply`` is any function with the signature of :meth:`jrnn.RNN.apply` (also :class:`jrnn.Bidirectional`,
    :class:`jrnn.Deep`, :func:`jrnn.truncated_bptt`, or your own network with a readout)::

        apply(params, xs, *, lengths=None, initial_state=None, key=None) -> (ys[B, T, O], final_state)

    The loss is ``loss(ys, batch.targets, batch.lengths)``, the mean over the valid steps, or with
    ``last_step=True`` ``loss(last_valid(ys, lengths), batch.targets, None)``, the mean over sequences of the
    loss at each sequence's last valid step. ``aux`` is ``{"final_state": final_state}`` with the gradient
    stopped, to carry into the next chunk of a long sequence.

    Args:
      apply: the model.
      loss: :func:`jrnn.masked_mse`, :func:`jrnn.masked_cross_entropy`, or any ``(outputs, targets, lengths)``
        function with the same conventions.
      last_step: score only each sequence's last valid output (many-to-one).

    Returns:
      ``loss_fn(params, batch, key) -> (scalar, {"final_state": ...})``.
    """
    if not callable(apply):
        raise TypeError(f"jrnn.supervised_loss: expected apply to be a callable "
                        f"apply(params, xs, *, lengths, initial_state, key), got {apply!r}")
    if not callable(loss):
        raise TypeError(f"jrnn.supervised_loss: expected loss to be a callable (outputs, targets, lengths), "
                        f"got {loss!r}")

    def loss_fn(params, batch: Batch, key):
        if not isinstance(batch, Batch):
            raise TypeError(f"jrnn.supervised_loss: expected batch to be a jrnn.Batch(xs, targets, lengths, "
                            f"initial_state), got {type(batch).__name__}")
        options = {} if batch.resets is None else {"resets": batch.resets}
        ys, final_state = apply(params, batch.xs, lengths=batch.lengths, initial_state=batch.initial_state, key=key,
                                **options)
        if last_step:
            value = loss(losses.last_valid(ys, batch.lengths), batch.targets, None)
        else:
            value = loss(ys, batch.targets, batch.lengths)
        return value, {"final_state": jax.lax.stop_gradient(final_state)}

    return loss_fn


class SkipNonFiniteState(NamedTuple):
    """State of :func:`skip_nonfinite`.

    Attributes:
      inner_state: the wrapped optimizer's state, untouched by skipped steps.
      num_skipped: int32, how many steps were skipped so far.
      last_finite: bool, whether the latest step was applied.
    """

    inner_state: Any
    num_skipped: jax.Array
    last_finite: jax.Array


def all_finite(tree: Any) -> jax.Array:
    """True iff every entry of every leaf of ``tree`` is finite (no NaN, no +-Inf)."""
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in leaves] or [True]))


def skip_nonfinite(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """Wraps an optax transformation so that a step with a non-finite gradient or loss is skipped and counted.

    For gradients ``g`` and an optional ``loss`` passed as an extra argument (``update(g, state, params,
    loss=loss)``), the step is applied by ``inner`` when ``all(isfinite(g)) and isfinite(loss)``; otherwise the
    updates are zeros, ``inner``'s state is left exactly as it was and ``num_skipped`` grows by one. Unlike
    ``optax.apply_if_finite`` it never gives up and applies a non-finite step, and it also checks the loss.

    Args:
      inner: the transformation to protect (put it outermost: a NaN must never reach ``clip_by_global_norm``,
        whose rescaling would spread it, or Adam's moments, which would keep it forever).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose state is a :class:`SkipNonFiniteState`.
    """
    if not isinstance(inner, optax.GradientTransformation):
        raise TypeError(f"jrnn.skip_nonfinite: expected an optax.GradientTransformation, got {inner!r}")
    inner = optax.with_extra_args_support(inner)

    def init(params):
        return SkipNonFiniteState(inner.init(params), jnp.zeros([], jnp.int32), jnp.array(True))

    def update(updates, state, params=None, *, loss=None, **extra_args):
        finite = all_finite(updates)
        if loss is not None:
            finite = finite & jnp.all(jnp.isfinite(loss))

        def apply(_):
            return inner.update(updates, state.inner_state, params, **extra_args)

        def skip(_):
            return jax.tree_util.tree_map(jnp.zeros_like, updates), state.inner_state

        new_updates, inner_state = jax.lax.cond(finite, apply, skip, None)
        return new_updates, SkipNonFiniteState(inner_state, state.num_skipped + (~finite).astype(jnp.int32), finite)

    return optax.GradientTransformationExtraArgs(init, update)


_INJECTED = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)


def _is_injected(node: Any) -> bool:
    return isinstance(node, _INJECTED)


def hyperparams(opt_state: Any) -> dict:
    """The hyperparameters of every ``optax.inject_hyperparams`` optimizer in ``opt_state``, in one dict.

    Raises ``ValueError`` when ``opt_state`` holds none (the optimizer was not built with
    ``optax.inject_hyperparams``).
    """
    states = [node for node in jax.tree_util.tree_leaves(opt_state, is_leaf=_is_injected) if _is_injected(node)]
    if not states:
        raise ValueError("jrnn.TrainStep: opt_state holds no optax.inject_hyperparams state; to set a "
                         "hyperparameter at run time (or under jax.vmap) build the optimizer with it, e.g. "
                         "jrnn.train_step(loss_fn, optax.inject_hyperparams(optax.adam)(learning_rate=1e-3))")
    found = {}
    for state in states:
        found.update(state.hyperparams)
    return found


def set_hyperparams(opt_state: Any, **values: Any) -> Any:
    """``opt_state`` with the given hyperparameters of its ``optax.inject_hyperparams`` optimizers replaced.

    Each value is cast to the dtype and must have the shape of the one it replaces (a scalar, or an array
    batched the way ``opt_state`` is, outside ``jax.vmap``). A hyperparameter given as a schedule is
    recomputed at every step and cannot be set. Raises ``ValueError`` for a name no injected optimizer has.
    """
    known = hyperparams(opt_state)
    for name, value in values.items():
        if name not in known:
            raise ValueError(f"jrnn.TrainStep.set_hyperparams: the optimizer has no injected hyperparameter "
                             f"{name!r}; it has {sorted(known)}")
        if jnp.shape(value) != jnp.shape(known[name]):
            raise ValueError(f"jrnn.TrainStep.set_hyperparams: expected {name} of shape {jnp.shape(known[name])} "
                             f"(set it inside jax.vmap for one value per run), got shape {jnp.shape(value)}")

    def replace(state):
        if not _is_injected(state):
            return state
        scheduled = getattr(state, "hyperparams_states", {})
        mine = {k: v for k, v in values.items() if k in state.hyperparams}
        for name in mine:
            if name in scheduled:
                raise ValueError(f"jrnn.TrainStep.set_hyperparams: {name} is a schedule in this optimizer, "
                                 "recomputed at every step; inject a number to set it")
        new = {k: jnp.asarray(v, state.hyperparams[k].dtype) for k, v in mine.items()}
        return state._replace(hyperparams={**state.hyperparams, **new})

    return jax.tree_util.tree_map(replace, opt_state, is_leaf=_is_injected)


class TrainStep(NamedTuple):
    """What :func:`train_step` returns: a pair of pure functions in the manner of optax, and the transformation.

    Attributes:
      init: ``init(params) -> opt_state``, the state of ``optimizer``.
      step: ``step(params, opt_state, batch, key) -> (params, opt_state, metrics)``, jitted.
      optimizer: the full transformation ``skip_nonfinite(chain(clip_by_global_norm(max_norm), optimizer))``.

    With an optimizer built by ``optax.inject_hyperparams`` (``optax.inject_hyperparams(optax.adam)(
    learning_rate=1e-3)``), its hyperparameters live in ``opt_state``, where :meth:`hyperparams` reads them and
    :meth:`set_hyperparams` sets them: between steps (a manual decay), or inside ``jax.vmap`` to train one run
    per learning rate at once (docs: Training, "Sweeping a learning rate under vmap").
    """

    init: Callable[[Any], Any]
    step: Callable[[Any, Any, Any, Any], tuple[Any, Any, dict]]
    optimizer: optax.GradientTransformationExtraArgs

    def hyperparams(self, opt_state: Any) -> dict:
        """The injected hyperparameters in ``opt_state``, e.g. ``{"learning_rate": Array(0.001), "b1": ...}``."""
        return hyperparams(opt_state)

    def set_hyperparams(self, opt_state: Any, **values: Any) -> Any:
        """``opt_state`` with injected hyperparameters replaced: ``trainer.set_hyperparams(opt_state,
        learning_rate=lr)``.

        Example:
          >>> import jax, jax.numpy as jnp, optax, jrnn  # three learning rates trained at once
          >>> rnn = jrnn.RNN(jrnn.elman(8))
          >>> params = rnn.init(jax.random.key(0), input_size=2)
          >>> trainer = jrnn.train_step(jrnn.supervised_loss(rnn.apply),
          ...                           optax.inject_hyperparams(optax.adam)(learning_rate=1e-3))
          >>> lrs = jnp.array([1e-3, 1e-2, 1e-1])
          >>> opt_states = jax.vmap(lambda lr: trainer.set_hyperparams(trainer.init(params), learning_rate=lr))(lrs)
          >>> runs = jax.tree_util.tree_map(lambda p: jnp.stack([p] * 3), params)
          >>> batch = jrnn.Batch(jnp.ones((4, 5, 2)), jnp.zeros((4, 5, 8)))
          >>> step = jax.vmap(trainer.step, in_axes=(0, 0, None, None))
          >>> runs, opt_states, metrics = step(runs, opt_states, batch, jax.random.key(1))
          >>> trainer.hyperparams(opt_states)["learning_rate"].shape, metrics["loss"].shape
          ((3,), (3,))
        """
        return set_hyperparams(opt_state, **values)


def train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, *, max_norm: float | None = 1.0,
               jit: bool = True) -> TrainStep:
    """One step of gradient descent through time, built on optax.

    The step computes ``(loss, aux), g = value_and_grad(loss_fn, has_aux=True)(params, batch, key)`` (exact
    BPTT), then applies ``skip_nonfinite(chain(clip_by_global_norm(max_norm), optimizer))``: a step whose loss or
    gradient holds a NaN or Inf leaves ``params`` and the optimizer's state bit-for-bit unchanged and is counted;
    otherwise ``g`` is rescaled to norm ``max_norm`` when ``||g|| >= max_norm`` (Pascanu et al. 2013) and the
    optimizer's update is added to the parameters.

    ``metrics`` is a dict of scalars (and ``aux``), which prints scalars as numbers and arrays as their dtype and
    shape: ``loss``; ``grad_norm``, the global norm ``||g||_2`` before
    clipping; ``clipped``, whether clipping rescaled ``g``; ``skipped``, whether this step was skipped as
    non-finite; ``num_skipped``, the running count of skipped steps (kept in ``opt_state``, so it is saved with
    a checkpoint); ``aux``, the loss function's auxiliary output.

    Args:
      loss_fn: ``loss_fn(params, batch, key) -> (scalar loss, aux)``, e.g. from :func:`supervised_loss`.
      optimizer: any optax transformation, e.g. ``optax.adam(1e-3)``.
      max_norm: the clipping threshold θ_max; None for no clipping.
      jit: compile ``step`` with ``jax.jit``.

    Returns:
      A :class:`TrainStep` ``(init, step, optimizer)``.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jrnn
      >>> rnn = jrnn.RNN(jrnn.elman(8))
      >>> params = rnn.init(jax.random.key(0), input_size=2)
      >>> trainer = jrnn.train_step(jrnn.supervised_loss(rnn.apply), optax.adam(1e-2), max_norm=1.0)
      >>> opt_state = trainer.init(params)
      >>> batch = jrnn.Batch(jnp.ones((4, 5, 2)), jnp.zeros((4, 5, 8)), jnp.array([5, 4, 3, 2]))
      >>> params, opt_state, metrics = trainer.step(params, opt_state, batch, jax.random.key(1))
      >>> sorted(k for k in metrics if k != "aux")
      ['clipped', 'grad_norm', 'loss', 'num_skipped', 'skipped']
      >>> metrics  # doctest: +ELLIPSIS
      Report(loss=..., grad_norm=..., clipped=False, skipped=False, num_skipped=0, aux={'final_state': f32[4,8]})
    """
    if not callable(loss_fn):
        raise TypeError(f"jrnn.train_step: expected loss_fn(params, batch, key) -> (loss, aux), got {loss_fn!r}")
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"jrnn.train_step: expected an optax.GradientTransformation, got {optimizer!r}")
    if max_norm is not None and not (isinstance(max_norm, (int, float)) and max_norm > 0):
        raise ValueError(f"jrnn.train_step: expected max_norm to be a positive number or None, got {max_norm!r}")
    inner = optimizer if max_norm is None else optax.chain(optax.clip_by_global_norm(max_norm), optimizer)
    tx = skip_nonfinite(inner)

    def step(params, opt_state, batch, key):
        if not isinstance(opt_state, SkipNonFiniteState):
            raise TypeError("jrnn.train_step: expected opt_state from trainer.init(params) (a "
                            f"jrnn.SkipNonFiniteState), got {type(opt_state).__name__}")
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, key)
        grad_norm = optax.tree.norm(grads)
        updates, new_opt_state = tx.update(grads, opt_state, params, loss=loss)
        applied = new_opt_state.last_finite
        new_params = optax.tree.where(applied, optax.apply_updates(params, updates), params)
        clipped = jnp.logical_not(grad_norm < max_norm) if max_norm is not None else jnp.array(False)
        metrics = Report(loss=loss, grad_norm=grad_norm, clipped=clipped & applied, skipped=~applied,
                         num_skipped=new_opt_state.num_skipped, aux=aux)
        return new_params, new_opt_state, metrics

    return TrainStep(tx.init, jax.jit(step) if jit else step, tx)
