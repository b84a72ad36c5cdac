"""expRNN (Lezcano-Casado & Martínez-Rubio 2019): an RNN whose ``W`` is exactly orthogonal, ``W = expm(A - A^T)``.

"Cheap orthogonal constraints in neural networks: a simple parametrization of the orthogonal and unitary group",
ICML 2019, arXiv 1901.08428. Every skew-symmetric ``S = -S^T`` gives an orthogonal ``expm(S)`` (its eigenvalues
``e^{iθ}`` have modulus 1), and every rotation is reached this way, so an unconstrained ``A`` trained by plain
gradient descent keeps ``W`` orthogonal to rounding with no projection or retraction. An orthogonal ``W``
preserves norms: ``||W s|| = ||s||``, so ``||∂s_T/∂s_t|| = ||Π diag(f') W||`` cannot grow, and it cannot shrink
either while ``f' = 1``, which modReLU gives wherever ``|z| + b > 0``. Arjovsky, Shah & Bengio (2016, the uRNN)
introduced the idea with a restricted unitary family; expRNN reaches the whole special orthogonal group.

The exponential depends on the parameters only: :meth:`ExpRNNCell.prepare` computes it once per sequence, and
every consumer of cells calls ``prepare`` before its time loop (the cell contract in ``jrnn/_src/contract.py``).
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
from jrnn._src.contract import Preparable


def modrelu(z: jax.Array, b: jax.Array) -> jax.Array:
    """modReLU (Arjovsky et al. 2016), real form: ``sign(z) ⊙ relu(|z| + b)``, ``b`` ``[H]`` learned.

    It keeps the sign ("phase") of each unit and shrinks its magnitude by ``-b``; where ``|z| + b > 0`` its
    derivative is exactly 1, the property that lets an orthogonal ``W`` carry gradients unchanged.

    Args:
      z: ``[..., H]`` pre-activations.
      b: ``[H]`` the bias on the magnitude.

    Returns:
      ``[..., H]``.

    Example:
      >>> import jax.numpy as jnp, jrnn
      >>> jrnn.modrelu(jnp.array([-2.0, 0.5, 3.0]), jnp.array([-1.0, -1.0, 0.5]))
      Array([-1. ,  0. ,  3.5], dtype=float32)
    """
    return jnp.sign(z) * jax.nn.relu(jnp.abs(z) + jnp.broadcast_to(b, z.shape))


def skew(A: jax.Array) -> jax.Array:
    """``S = triu(A, 1) - triu(A, 1)^T``: the skew-symmetric matrix read off A's strictly upper triangle."""
    upper = jnp.triu(A, k=1)
    return upper - upper.T


class ExpRNNParams(NamedTuple):
    """Parameters of :func:`exprnn`.

    Attributes:
      U: ``[H, I]`` input-to-hidden (no input bias, as the paper).
      A: ``[H, H]`` the unconstrained log-parameter of ``W = expm(triu(A, 1) - triu(A, 1)^T)``; entries on and
        below the diagonal do not enter (their gradient is 0).
      b: ``[H]`` the modReLU bias.
    """

    U: jax.Array
    A: jax.Array
    b: jax.Array


class ExpRNNPrepared(NamedTuple):
    """What :meth:`ExpRNNCell.prepare` returns: the parameters with ``W = expm(S)`` ``[H, H]`` in place of ``A``."""

    U: jax.Array
    W: jax.Array
    b: jax.Array


@dataclasses.dataclass(frozen=True)
class ExpRNNCell(Preparable):
    """An expRNN cell; build it with :func:`exprnn`. State ``s`` is an array ``[..., H]`` and ``y_t = s_t``."""

    hidden_size: int
    activation: Callable[[jax.Array, jax.Array], jax.Array] = modrelu
    U_init: Callable = initializers.he_normal
    A_init: Callable = initializers.henaff
    b_init: Callable = initializers.uniform(0.01)
    dtype: Any = jnp.float32

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def init(self, key: jax.Array, input_size: int) -> ExpRNNParams:
        input_size = checks.positive_int("input_size", input_size, "exprnn.init")
        kU, kA, kb = jax.random.split(key, 3)
        H = self.hidden_size
        return ExpRNNParams(self.U_init(kU, (H, input_size), self.dtype), self.A_init(kA, (H, H), self.dtype),
                            self.b_init(kb, (H,), self.dtype))

    def recurrent_matrix(self, params: ExpRNNParams | ExpRNNPrepared) -> jax.Array:
        """``W = expm(triu(A, 1) - triu(A, 1)^T)`` ``[H, H]``, orthogonal with determinant 1."""
        if isinstance(params, ExpRNNPrepared):
            return params.W
        return jax.scipy.linalg.expm(skew(params.A))

    def prepare(self, params: ExpRNNParams | ExpRNNPrepared) -> ExpRNNPrepared:
        """The per-sequence work: the matrix exponential, once. Idempotent."""
        if isinstance(params, ExpRNNPrepared):
            return params
        return ExpRNNPrepared(params.U, self.recurrent_matrix(params), params.b)

    def initial_state(self, batch_shape=(), dtype=None) -> jax.Array:
        return gates.zeros_state(batch_shape, self.hidden_size, dtype or self.dtype)

    def step(self, params: ExpRNNParams | ExpRNNPrepared, state: jax.Array,
             x: jax.Array) -> tuple[jax.Array, jax.Array]:
        W = self.recurrent_matrix(params)  # the exponential at every step only when called unprepared
        s = self.activation(x @ params.U.T + state @ W.T, params.b)
        return s, s

    def input_size(self, params: ExpRNNParams | ExpRNNPrepared) -> int:
        return params.U.shape[1]


def exprnn(hidden_size: int, activation: Callable[[jax.Array, jax.Array], jax.Array] = modrelu, *,
           U_init: Callable = initializers.he_normal, A_init: Callable = initializers.henaff,
           b_init: Callable = initializers.uniform(0.01), init: str | None = None,
           dtype: Any = jnp.float32) -> ExpRNNCell:
    """The expRNN cell of Lezcano-Casado & Martínez-Rubio (2019, arXiv 1901.08428): an exactly orthogonal ``W``::

        W   = expm(A - A^T)                  (A's strict upper triangle; computed once per sequence)
        s_t = modReLU(U x_t + W s_{t-1}; b)   modReLU(z; b) = sign(z) ⊙ relu(|z| + b)       y_t = s_t

    ``W`` stays orthogonal to float rounding however ``A`` is trained, so the state's norm is carried without
    decay or growth through the linear part, and on the copy task the expRNN remembers over T = 1000 and 2000
    steps where the LSTM stays at the memoryless baseline. Train ``A`` with a smaller learning rate than the rest
    (:func:`exprnn_optimizer`: the paper's RMSprop 2e-4, and 2e-5 for ``A``). :func:`jrnn.scan` and every other
    consumer of cells call :meth:`ExpRNNCell.prepare` before their loop, so the exponential is computed (and
    differentiated) once per sequence; a bare ``cell.step(params, ...)`` computes it itself.

    Args:
      hidden_size: H, the size of ``s_t``.
      activation: ``(z[..., H], b[H]) -> s[..., H]``; :func:`jrnn.modrelu` as the paper, or e.g.
        ``lambda z, b: z`` for a linear (norm-preserving) recurrence.
      U_init: initializer (``jrnn.init``) of ``U``; He normal as the authors' code.
      A_init: initializer of ``A`` ``[H, H]``: :func:`jrnn.init.henaff` (default) or :func:`jrnn.init.cayley`.
      b_init: initializer of the modReLU bias; U(-0.01, 0.01) as the paper.
      init: None (jrnn's defaults); expRNN is in none of PyTorch, Flax or Keras, so ``"pytorch"``, ``"flax"`` and
        ``"keras"`` are a ValueError.
      dtype: dtype of the parameters and the default state.

    Returns:
      An :class:`ExpRNNCell`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.exprnn(6)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> W = cell.recurrent_matrix(params)
      >>> bool(jnp.allclose(W.T @ W, jnp.eye(6), atol=1e-6))
      True
      >>> ys, s = jrnn.scan(cell, params, jnp.ones((2, 10, 3)))
      >>> ys.shape
      (2, 10, 6)
    """
    presets.preset("jrnn.exprnn", init)
    hidden_size = checks.positive_int("hidden_size", hidden_size, "jrnn.exprnn")
    if not callable(activation):
        raise TypeError(f"jrnn.exprnn: expected a callable activation (z, b) -> s, got {activation!r}")
    checks.initializers("jrnn.exprnn", U_init=U_init, A_init=A_init, b_init=b_init)
    return ExpRNNCell(hidden_size, activation, U_init, A_init, b_init, dtype)


def _labels(params: Any) -> Any:
    def label(node):
        if isinstance(node, ExpRNNParams):
            return ExpRNNParams("rest", "A", "rest")
        return "rest"

    return jax.tree_util.tree_map(label, params, is_leaf=lambda n: isinstance(n, ExpRNNParams))


def torch_rmsprop(learning_rate: float) -> optax.GradientTransformation:
    """PyTorch's ``RMSprop`` defaults in optax: decay 0.99, ``eps = 1e-8`` added outside the square root."""
    return optax.rmsprop(learning_rate, decay=0.99, eps=1e-8, eps_in_sqrt=False)


def exprnn_optimizer(learning_rate: float = 2e-4, recurrent_learning_rate: float = 2e-5, *,
                     optimizer: Callable[[float], optax.GradientTransformation] = torch_rmsprop
                     ) -> optax.GradientTransformation:
    """The expRNN paper's optimizer: one for ``A`` at a smaller learning rate, one for every other parameter.

    An ``optax.multi_transform`` that labels the ``A`` of each :class:`ExpRNNParams` in the parameter pytree (at
    any depth) ``"A"`` and every other leaf ``"rest"``. The authors found a ratio of 10 best for RNNs; their copy
    task runs RMSprop with PyTorch's defaults at 2e-4 and 2e-5 for ``A``, the defaults here.

    Args:
      learning_rate: for every parameter but ``A``.
      recurrent_learning_rate: for ``A``.
      optimizer: ``learning_rate -> optax.GradientTransformation``, called once per group; PyTorch's RMSprop
        (decay 0.99, ``eps`` 1e-8 outside the square root) by default.

    Returns:
      An ``optax.GradientTransformation``, e.g. for :func:`jrnn.train_step`.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jrnn
      >>> cell = jrnn.exprnn(4)
      >>> params = cell.init(jax.random.key(0), 2)
      >>> tx = jrnn.exprnn_optimizer(1e-3, 1e-4, optimizer=optax.sgd)
      >>> ones = jax.tree_util.tree_map(jnp.ones_like, params)
      >>> updates, _ = tx.update(ones, tx.init(params), params)
      >>> round(float(updates.U[0, 0]), 6), round(float(updates.A[0, 1]), 6)
      (-0.001, -0.0001)
    """
    return optax.multi_transform({"A": optimizer(recurrent_learning_rate), "rest": optimizer(learning_rate)},
                                 _labels)
