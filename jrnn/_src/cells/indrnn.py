"""IndRNN (Li, Li, Cook, Zhu & Gao 2018): independent units, each with one recurrent weight, and its constraint.

"Independently recurrent neural network (IndRNN): building a longer and deeper RNN", CVPR 2018, arXiv 1803.04831.
The hidden-to-hidden matrix is diagonal, ``W = diag(w)``, so unit n's gradient through time is a product of
scalars, ``∂s_{T,n}/∂s_{t,n} = Π_{t<k<=T} w_n f'(z_{k,n})``. With ReLU (f' in {0, 1}) the factor on an active
path is ``w_n^{T-t}``: bounding ``|w_n| <= γ^(1/T)`` bounds it by γ over the whole sequence, neither vanishing
(for ``|w_n|`` near 1) nor exploding beyond γ. Units mix only through the next layer's ``U``, so IndRNNs are
stacked (:func:`jrnn.deep`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jrnn._src import checks, initializers, presets
from jrnn._src.cells import gates


class IndRNNParams(NamedTuple):
    """Parameters of :func:`indrnn`.

    Attributes:
      U: ``[H, I]`` input-to-hidden (the paper's ``W``).
      w: ``[H]`` the recurrent weights, the diagonal of the seed's ``W`` (the paper's ``u``).
      b: ``[H]`` or None.
    """

    U: jax.Array
    w: jax.Array
    b: jax.Array | None


@dataclasses.dataclass(frozen=True)
class IndRNNCell:
    """An IndRNN cell; build it with :func:`indrnn`. State ``s`` is an array ``[..., H]`` and ``y_t = s_t``."""

    hidden_size: int
    activation: Callable[[jax.Array], jax.Array] = jax.nn.relu
    bias: bool = True
    U_init: Callable = initializers.glorot_uniform
    w_init: Callable = initializers.uniform_range(0.0, 1.0)
    b_init: Callable = initializers.zeros
    dtype: Any = jnp.float32

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def init(self, key: jax.Array, input_size: int) -> IndRNNParams:
        input_size = checks.positive_int("input_size", input_size, "indrnn.init")
        kU, kw, kb = jax.random.split(key, 3)
        H = self.hidden_size
        b = self.b_init(kb, (H,), self.dtype) if self.bias else None
        return IndRNNParams(self.U_init(kU, (H, input_size), self.dtype), self.w_init(kw, (H,), self.dtype), b)

    def initial_state(self, batch_shape=(), dtype=None) -> jax.Array:
        return gates.zeros_state(batch_shape, self.hidden_size, dtype or self.dtype)

    def step(self, params: IndRNNParams, state: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        s = self.activation(gates.affine(x, params.U, params.b) + jnp.broadcast_to(params.w, state.shape) * state)
        return s, s

    def input_size(self, params: IndRNNParams) -> int:
        return params.U.shape[1]


def indrnn(hidden_size: int, activation: Callable[[jax.Array], jax.Array] = jax.nn.relu, *, bias: bool = True,
           U_init: Callable = initializers.glorot_uniform, w_init: Callable = initializers.uniform_range(0.0, 1.0),
           b_init: Callable = initializers.zeros, init: str | None = None, dtype: Any = jnp.float32) -> IndRNNCell:
    """The IndRNN cell of Li et al. (2018, arXiv 1803.04831): every unit its own recurrence::

        s_t = f(U x_t + w ⊙ s_{t-1} + b)          y_t = s_t        (the seed's W = diag(w))

    Keep ``|w| <= γ^(1/T)`` during training with :func:`indrnn_constraint` (the paper's γ is 2 or 10, T the
    sequence length): an active ReLU unit then carries its gradient over the whole sequence with a gain of at most
    γ. On the adding problem the paper stacks two 128-unit layers, ``U ~ N(0, 0.001²)``, the first layer's ``w``
    from U(0, γ^(1/T)) and the last layer's from U(γ^(-1/T), γ^(1/T)), Adam 2e-4, and solves T = 5000.

    Args:
      hidden_size: H, the size of ``s_t``.
      activation: the elementwise ``f``; ReLU, as the paper.
      bias: whether ``b`` exists.
      U_init: initializer (``jrnn.init``) of ``U`` ``[H, I]``.
      w_init: initializer of ``w`` ``[H]``; U(0, 1) by default.
      b_init: initializer of ``b``.
      init: None (jrnn's defaults); IndRNN is in none of PyTorch, Flax or Keras, so ``"pytorch"``, ``"flax"`` and
        ``"keras"`` are a ValueError.
      dtype: dtype of the parameters and the default state.

    Returns:
      An :class:`IndRNNCell`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.indrnn(4)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> s, y = cell.step(params, cell.initial_state((2,)), jnp.ones((2, 3)))
      >>> y.shape, params.w.shape
      ((2, 4), (4,))
    """
    presets.preset("jrnn.indrnn", init)
    hidden_size = checks.positive_int("hidden_size", hidden_size, "jrnn.indrnn")
    if not callable(activation):
        raise TypeError(f"jrnn.indrnn: expected a callable activation, got {activation!r}")
    checks.initializers("jrnn.indrnn", U_init=U_init, w_init=w_init, b_init=b_init)
    return IndRNNCell(hidden_size, activation, bool(bias), U_init, w_init, b_init, dtype)


def _is_indrnn(node: Any) -> bool:
    return isinstance(node, IndRNNParams)


def indrnn_constraint(time_steps: int, magnitude: float = 2.0) -> optax.GradientTransformation:
    """Keeps every IndRNN's recurrent weights in ``[-γ^(1/T), γ^(1/T)]``: an optax transform to put *last* in a chain.

    It changes the update of each :class:`IndRNNParams` ``w`` in the parameter pytree (at any depth: a
    :func:`jrnn.deep` stack, a model with a readout) so that the new value is ``clip(w + update, -bound, bound)``,
    ``bound = magnitude ** (1 / time_steps)``; every other update passes through unchanged. Being a
    ``GradientTransformation`` of ``(updates, state, params)``, it works with :func:`jrnn.train_step` and any optax
    loop, and it is the projection after each optimizer step of Li et al. (2018), whose code clips ``w`` the same
    way before every step. The new ``w`` equals the clipped value to float rounding (one ulp).

    Args:
      time_steps: T, the sequence length the bound is for.
      magnitude: γ, the largest gain an active unit's gradient may have over T steps (the paper: 2 or 10).

    Returns:
      An ``optax.GradientTransformation``; its ``update`` needs ``params``.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jrnn
      >>> tx = optax.chain(optax.sgd(10.0), jrnn.indrnn_constraint(time_steps=100, magnitude=2.0))
      >>> params = jrnn.indrnn(3).init(jax.random.key(0), 2)
      >>> grads = jax.tree_util.tree_map(lambda p: -jnp.ones_like(p), params)   # pushes w up by 10
      >>> updates, _ = tx.update(grads, tx.init(params), params)
      >>> new = optax.apply_updates(params, updates)
      >>> bool(jnp.all(jnp.abs(new.w) <= 2.0 ** (1 / 100) + 1e-6))
      True
    """
    time_steps = checks.positive_int("time_steps", time_steps, "jrnn.indrnn_constraint")
    if not magnitude > 0:
        raise ValueError(f"jrnn.indrnn_constraint: expected a positive magnitude, got {magnitude!r}")
    bound = float(magnitude) ** (1.0 / time_steps)

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("jrnn.indrnn_constraint: expected params in update(updates, state, params), to clip "
                             "the recurrent weights they will have; got None")

        def clip(update, param):
            if not _is_indrnn(param):
                return update
            w = jnp.clip(param.w + update.w, -bound, bound)
            return update._replace(w=(w - param.w).astype(update.w.dtype))

        return jax.tree_util.tree_map(clip, updates, params, is_leaf=_is_indrnn), state

    return optax.GradientTransformation(init, update)
