"""The minimal gated unit, MGU (Zhou, Wu, Zhang & Zhou 2016): a GRU whose one gate both forgets and resets.

Zhou et al., "Minimal gated unit for recurrent neural networks", International Journal of Automation and
Computing 13(3), 2016, arXiv 1603.09420. The GRU's reset gate ``r`` and update gate ``z`` merge into a single
forget gate ``f``: two weight blocks instead of three, about a third fewer parameters, with accuracy close to the
GRU's in the paper's experiments. The default form here is Flax's ``MGUCell`` (tested against it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src import checks, initializers, presets
from jrnn._src.cells import gates
from jrnn._src.contract import RecurrentMatrix


class MGUParams(NamedTuple):
    """Parameters of :func:`mgu`; blocks ``f, n`` packed in this order along axis 0.

    Attributes:
      U: ``[2H, I]`` input-to-hidden (Flax's ``if`` and ``in`` kernels, transposed).
      W: ``[2H, H]`` hidden-to-hidden (Flax's ``hf`` and ``hn``).
      b_U: ``[2H]`` or None (Flax's ``if`` and ``in`` biases).
      b_W: ``[2H]`` or None; its ``n`` part is Flax's ``hn`` bias, inside the gate's product with reset_after; its
        ``f`` part is 0 in Flax (only the sum with ``b_U``'s matters).
    """

    U: jax.Array
    W: jax.Array
    b_U: jax.Array | None
    b_W: jax.Array | None


@dataclasses.dataclass(frozen=True)
class MGUCell(RecurrentMatrix):
    """An MGU cell; build it with :func:`mgu`. State ``s`` is an array ``[..., H]`` and ``y_t = s_t``."""

    hidden_size: int
    reset_after: bool = True
    forget_bias: float = 1.0
    bias: bool = True
    U_init: Callable = initializers.glorot_uniform
    W_init: Callable = initializers.orthogonal()
    b_init: Callable = initializers.zeros
    dtype: Any = jnp.float32

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def init(self, key: jax.Array, input_size: int) -> MGUParams:
        input_size = checks.positive_int("input_size", input_size, "mgu.init")
        U, W, b_U, b_W = gates.init_gated(
            key, num_gates=2, hidden_size=self.hidden_size, input_size=input_size, recurrent_size=self.hidden_size,
            U_init=self.U_init, W_init=self.W_init, b_init=self.b_init, bias=self.bias, dtype=self.dtype)
        if b_U is not None and self.forget_bias:
            b_U = b_U.at[:self.hidden_size].add(self.forget_bias)
        return MGUParams(U, W, b_U, b_W)

    def initial_state(self, batch_shape=(), dtype=None) -> jax.Array:
        return gates.zeros_state(batch_shape, self.hidden_size, dtype or self.dtype)

    def step(self, params: MGUParams, state: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        H = self.hidden_size
        x_f, x_n = jnp.split(gates.affine(x, params.U, params.b_U), 2, axis=-1)
        b_f, b_n = (None, None) if params.b_W is None else (params.b_W[:H], params.b_W[H:])
        f = jax.nn.sigmoid(x_f + gates.affine(state, params.W[:H], b_f))
        if self.reset_after:
            n = jnp.tanh(x_n + f * gates.affine(state, params.W[H:], b_n))
        else:
            n = jnp.tanh(x_n + gates.affine(f * state, params.W[H:], b_n))
        s = (1.0 - f) * n + f * state
        return s, s

    def input_size(self, params: MGUParams) -> int:
        return params.U.shape[1]


def mgu(hidden_size: int, *, reset_after: bool = True, forget_bias: float | None = None, bias: bool = True,
        U_init: Callable | None = None, W_init: Callable | None = None, b_init: Callable | None = None,
        init: str | None = None, dtype: Any = jnp.float32) -> MGUCell:
    """The minimal gated unit (Zhou et al. 2016, arXiv 1603.09420), one gate ``f`` for both of the GRU's::

        f   = σ(U_f x_t + b_Uf + W_f s_{t-1} + b_Wf)
        n   = tanh(U_n x_t + b_Un + f ⊙ (W_n s_{t-1} + b_Wn))     reset_after=True  (Flax's MGUCell; default)
        n   = tanh(U_n x_t + b_Un + W_n (f ⊙ s_{t-1}) + b_Wn)     reset_after=False (Zhou et al.)
        s_t = (1 - f) ⊙ n + f ⊙ s_{t-1}                           y_t = s_t

    ``f`` keeps the old state where it is 1, as PyTorch's and Flax's GRU update gate does; Zhou et al. write the
    same cell with ``f`` and ``1 - f`` exchanged (``s_t = (1 - f) ⊙ s_{t-1} + f ⊙ n``), a sign flip of the gate's
    pre-activation. The forget bias starts at 1, as Flax's ``forget_bias_init``. With the weights of a Flax
    ``MGUCell`` (``reset_gate=True``) the two agree to float rounding: ``U = [if.kernel^T; in.kernel^T]``,
    ``W = [hf.kernel^T; hn.kernel^T]``, ``b_U = [if.bias; in.bias]``, ``b_W = [0; hn.bias]``.

    Args:
      hidden_size: H, the size of ``s_t``.
      reset_after: apply the gate after the recurrent matmul (Flax) or before it (Zhou et al.).
      forget_bias: added to the gate's part of ``b_U`` at initialisation; default 1.
      bias: whether ``b_U`` and ``b_W`` exist.
      U_init: initializer (``jrnn.init``) of ``U``, applied per block; default ``glorot_uniform``.
      W_init: initializer of ``W``, applied per block; default ``orthogonal()``.
      b_init: initializer of both biases, applied per block; default ``zeros``.
      init: None (jrnn's defaults), or ``"flax"``: Flax's ``MGUCell`` default initialisers (docs: porting, "Matching
        a run from another library"); an explicit ``*_init`` argument wins.
      dtype: dtype of the parameters and the default state.

    Returns:
      An :class:`MGUCell`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.mgu(4)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> s, y = cell.step(params, cell.initial_state((2,)), jnp.ones((2, 3)))
      >>> y.shape, params.U.shape
      ((2, 4), (8, 3))
    """
    hidden_size = checks.positive_int("hidden_size", hidden_size, "jrnn.mgu")
    U_init, W_init, b_init, forget_bias = presets.defaults(
        "jrnn.mgu", init, hidden_size, U_init=U_init, W_init=W_init, b_init=b_init, forget_bias=forget_bias)
    checks.initializers("jrnn.mgu", U_init=U_init, W_init=W_init, b_init=b_init)
    return MGUCell(hidden_size, bool(reset_after), forget_bias, bool(bias), U_init, W_init, b_init, dtype)
