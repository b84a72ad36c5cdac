"""The Real-Gated Linear Recurrent Unit (RG-LRU) of Griffin and Hawk (De et al. 2024, arXiv 2402.19427).

A diagonal linear recurrence whose decay is gated by the input::

    s_t = a_t ⊙ s_{t-1} + √(1 - a_t²) ⊙ (i_t ⊙ x_t),      a_t = exp(-c · softplus(Λ) ⊙ r_t),   c = 8

with ``i_t`` and ``r_t`` sigmoid gates of ``x_t`` alone, so :func:`jrnn.associative` solves it in parallel over
time. The numerics are those of Google DeepMind's recurrentgemma (``layers.RGLRU``) and of transformers'
``RecurrentGemmaRglru``: block-diagonal gates (one block per head), ``a_t² = exp(2 log a_t)``, a square root whose
derivative is bounded (:func:`sqrt_bound_derivative`), and no normalisation at a sequence's first step, where the
previous state is dropped: ``s_t = i_t ⊙ x_t``. That first step is the :class:`jrnn.Windowed` flag ``fresh``, so
the RG-LRU is a windowed cell of width 1 (no convolution); :func:`jrnn.hawk_block` puts it behind one.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src import checks, presets
from jrnn._src.cells import gates
from jrnn._src.contract import LinearRecurrence, Windowed, WindowInputs

C = 8.0  # the constant c of a_t = exp(-c softplus(Λ) r_t) (De et al. 2024, section 2.4)
MAX_SQRT_GRADIENT = 1000.0  # recurrentgemma's bound on d√x/dx


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def sqrt_bound_derivative(x: jax.Array, max_gradient: float = MAX_SQRT_GRADIENT) -> jax.Array:
    """``√x`` whose derivative is ``1 / (2 √max(x, 1 / (4 max_gradient²)))``: the true ``1 / (2 √x)`` wherever
    that is below ``max_gradient``, and ``max_gradient`` nearer 0 (recurrentgemma's ``SqrtBoundDerivative``, there
    to keep bfloat16 training free of NaNs where ``a_t → 1``).

    Example:
      >>> import jax
      >>> from jrnn._src.cells.rg_lru import sqrt_bound_derivative
      >>> float(jax.grad(sqrt_bound_derivative)(0.25)), round(float(jax.grad(sqrt_bound_derivative)(0.0)), 3)
      (1.0, 1000.0)
    """
    return jnp.sqrt(x)


@sqrt_bound_derivative.defjvp
def _sqrt_bound_derivative_jvp(max_gradient, primals, tangents):
    (x,), (dx,) = primals, tangents
    bound = jnp.asarray(1.0 / max_gradient ** 2, jnp.result_type(x))
    return jnp.sqrt(x), dx / jnp.sqrt(jnp.maximum(4.0 * x, bound))


class RGLRUParams(NamedTuple):
    """Parameters of :func:`rg_lru`, named as transformers' ``RecurrentGemmaRglru`` (``n`` heads of ``H / n``).

    Attributes:
      recurrent_param: ``[H]``, Λ: ``a = exp(-softplus(Λ))`` is the decay with the gate fully open.
      input_gate_weight: ``[n, H/n, H/n]``, the input gate's blocks, ``x`` on the left: ``x_h @ W_h``.
      input_gate_bias: ``[n, H/n]``.
      recurrent_gate_weight: ``[n, H/n, H/n]``, the recurrence gate's blocks.
      recurrent_gate_bias: ``[n, H/n]``.
    """

    recurrent_param: jax.Array
    input_gate_weight: jax.Array
    input_gate_bias: jax.Array
    recurrent_gate_weight: jax.Array
    recurrent_gate_bias: jax.Array


def block_diagonal(x: jax.Array, weight: jax.Array, bias: jax.Array) -> jax.Array:
    """``x [..., H]`` through ``n`` independent blocks: ``y_h = x_h @ weight[h] + bias[h]``, ``H = n · H/n``."""
    heads, width, _ = weight.shape
    y = jnp.einsum("...hi,hij->...hj", x.reshape(*x.shape[:-1], heads, width), weight)
    return (y + jnp.broadcast_to(bias, y.shape)).reshape(x.shape)


def coefficients(params: RGLRUParams, x: jax.Array, fresh: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The RG-LRU's ``(a_t, b_t)`` of ``s_t = a_t ⊙ s_{t-1} + b_t`` from ``x [..., H]`` and ``fresh [..., 1]``.

    ``fresh`` is 1 at a sequence's first step (recurrentgemma's ``segment_pos == 0``) and 0 elsewhere, used as
    recurrentgemma uses its ``reset``: ``a_t ← (1 - fresh) a_t`` and the multiplier ``√(1 - a_t²) ← fresh + (1 -
    fresh) √(1 - a_t²)``.
    """
    gate_x = jax.nn.sigmoid(block_diagonal(x, params.input_gate_weight, params.input_gate_bias))
    gate_a = jax.nn.sigmoid(block_diagonal(x, params.recurrent_gate_weight, params.recurrent_gate_bias))
    log_a = -C * gate_a * jnp.broadcast_to(jax.nn.softplus(params.recurrent_param), gate_a.shape)
    a, a_square = jnp.exp(log_a), jnp.exp(2.0 * log_a)
    fresh = fresh.astype(a.dtype)
    multiplier = fresh + (1.0 - fresh) * sqrt_bound_derivative(1.0 - a_square)
    return a * (1.0 - fresh), (x * gate_x) * multiplier


def init_params(key: jax.Array, width: int, num_heads: int, min_rad: float, max_rad: float,
                dtype: Any) -> RGLRUParams:
    """recurrentgemma's initialisation: ``a = exp(-softplus(Λ))`` with ``a²`` uniform on ``[min_rad², max_rad²]``
    (uniform by area on the ring ``min_rad ≤ |a| ≤ max_rad``, ``+ 1e-8``), gate blocks from N(0, 1 / (H/n)), zero
    gate biases."""
    k_a, k_x, k_r = jax.random.split(key, 3)
    block = width // num_heads
    unif = jax.random.uniform(k_a, (width,), jnp.float32)
    log_a = 0.5 * jnp.log(unif * (max_rad ** 2 - min_rad ** 2) + min_rad ** 2 + 1e-8)
    recurrent_param = jnp.log(jnp.exp(-log_a) - 1.0)  # the inverse of softplus at -log a
    std = (1.0 / block) ** 0.5
    return RGLRUParams(recurrent_param.astype(dtype),
                       std * jax.random.normal(k_x, (num_heads, block, block), dtype),
                       jnp.zeros((num_heads, block), dtype),
                       std * jax.random.normal(k_r, (num_heads, block, block), dtype),
                       jnp.zeros((num_heads, block), dtype))


def check_heads(hidden_size: int, num_heads: Any, where: str) -> int:
    num_heads = checks.positive_int("num_heads", num_heads, where)
    if hidden_size % num_heads:
        raise ValueError(f"{where}: expected num_heads to divide hidden_size {hidden_size} (one gate block per "
                         f"head), got num_heads={num_heads}")
    return num_heads


def check_radii(min_rad: Any, max_rad: Any, where: str) -> tuple[float, float]:
    if not (isinstance(min_rad, (int, float)) and isinstance(max_rad, (int, float)) and 0 < min_rad < max_rad < 1):
        raise ValueError(f"{where}: expected 0 < min_rad < max_rad < 1 (the ring of |a| at initialisation), got "
                         f"min_rad={min_rad!r}, max_rad={max_rad!r}")
    return float(min_rad), float(max_rad)


@dataclasses.dataclass(frozen=True)
class RGLRUCell(Windowed, LinearRecurrence):
    """An RG-LRU cell; build it with :func:`rg_lru`. Its state is a :class:`jrnn.WindowState` whose ``inner`` is
    ``s [..., H]``; its window is empty (width 1, ``window_size`` 0): the cell reads only ``x`` and ``fresh``."""

    hidden_size: int
    num_heads: int = 1
    min_rad: float = 0.9
    max_rad: float = 0.999
    dtype: Any = jnp.float32

    width = 1
    window_size = 0

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def init(self, key: jax.Array, input_size: int) -> RGLRUParams:
        input_size = checks.positive_int("input_size", input_size, "jrnn.rg_lru.init")
        if input_size != self.hidden_size:
            raise ValueError(f"jrnn.rg_lru.init: expected input_size equal to hidden_size {self.hidden_size} (the "
                             f"RG-LRU maps its width to itself; jrnn.hawk_block projects to it), got {input_size}")
        return init_params(key, self.hidden_size, self.num_heads, self.min_rad, self.max_rad, self.dtype)

    def inner_initial_state(self, batch_shape=(), dtype=None) -> jax.Array:
        return gates.zeros_state(batch_shape, self.hidden_size, dtype or self.dtype)

    def window_input(self, params: RGLRUParams, x: jax.Array) -> jax.Array:
        """Nothing: ``x[..., :0]``, an empty ``u`` (the RG-LRU has no convolution)."""
        return x[..., :0]

    def window_step(self, params: RGLRUParams, inner: jax.Array, inputs: WindowInputs) -> tuple[jax.Array, jax.Array]:
        a, b = self.coefficients(params, inputs)
        s = a * inner + b
        return s, s

    def coefficients(self, params: RGLRUParams, inputs: WindowInputs) -> tuple[jax.Array, jax.Array]:
        """``(a, b)``, each ``[B, T, H]`` (:class:`jrnn.LinearRecurrence`): ``a = 0`` and ``b = i ⊙ x`` where
        ``fresh``."""
        return coefficients(params, inputs.x, inputs.fresh)

    def input_size(self, params: RGLRUParams) -> int:
        return params.recurrent_param.shape[-1]


def rg_lru(hidden_size: int, *, num_heads: int = 1, min_rad: float = 0.9, max_rad: float = 0.999,
           init: str | None = None, dtype: Any = jnp.float32) -> RGLRUCell:
    """The Real-Gated Linear Recurrent Unit (De et al. 2024, "Griffin", arXiv 2402.19427, section 2.4)::

        i_t = σ(W_x x_t + b_x)                        input gate      (block-diagonal: num_heads blocks)
        r_t = σ(W_a x_t + b_a)                        recurrence gate (block-diagonal)
        log a_t = -c · softplus(Λ) ⊙ r_t,  c = 8       a_t = exp(log a_t) in (0, 1]
        s_t = a_t ⊙ s_{t-1} + √(1 - a_t²) ⊙ (i_t ⊙ x_t)
        s_t = i_t ⊙ x_t                               at a sequence's first step (fresh: no s_{t-1}, no √)
        y_t = s_t

    Numerically as recurrentgemma and transformers' ``RecurrentGemmaRglru``: ``a_t² = exp(2 log a_t)``, and the
    square root's derivative is bounded by 1000 (:func:`sqrt_bound_derivative`) where ``a_t → 1``. The first step
    is the ``fresh`` flag of the :class:`jrnn.WindowState` (1 in :meth:`initial_state`, and again at each reset of
    a scan with ``resets``): the cell is :class:`jrnn.Windowed` with ``width = 1`` and an empty window
    (``window_size = 0``), and a :class:`jrnn.LinearRecurrence` on ``s``, solved in parallel over time by
    :func:`jrnn.associative`. ``x_t`` has ``hidden_size`` features: the RG-LRU maps its width to itself
    (:func:`jrnn.hawk_block` is the block around it).

    Initialisation (recurrentgemma's code): ``a = exp(-softplus(Λ))``, the decay with ``r_t = 1`` before the power
    ``c``, has ``a²`` uniform on ``[min_rad², max_rad²]``, so ``|a|`` is uniform by area on that ring; gate blocks
    from N(0, num_heads / hidden_size), zero gate biases.

    Args:
      hidden_size: H, the size of ``x_t`` and ``s_t`` (transformers' ``lru_width``).
      num_heads: the number of diagonal blocks of both gates; must divide ``hidden_size``.
      min_rad: the inner radius of the initial ring of ``|a|``.
      max_rad: its outer radius; ``0 < min_rad < max_rad < 1``.
      init: None (jrnn's defaults); transformers' ``RecurrentGemmaRglru`` leaves its parameters uninitialised
        (``torch.empty``) and Flax and Keras have none (``hawk_block`` has ``"pytorch"``), so ``"pytorch"``,
        ``"flax"`` and ``"keras"`` are a ValueError.
      dtype: dtype of the parameters and the default state.

    Returns:
      An :class:`RGLRUCell` with parameters :class:`RGLRUParams`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.rg_lru(8, num_heads=2)
      >>> params = cell.init(jax.random.key(0), input_size=8)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 20, 8))
      >>> parallel, s = jrnn.scan(cell, params, xs, solver=jrnn.associative())
      >>> sequential, _ = jrnn.scan(cell, params, xs, solver=jrnn.sequential())
      >>> bool(jnp.allclose(parallel, sequential, atol=1e-5)), s.inner.shape
      (True, (2, 8))
    """
    presets.preset("jrnn.rg_lru", init)
    where = "jrnn.rg_lru"
    hidden_size = checks.positive_int("hidden_size", hidden_size, where)
    num_heads = check_heads(hidden_size, num_heads, where)
    min_rad, max_rad = check_radii(min_rad, max_rad, where)
    return RGLRUCell(hidden_size, num_heads, min_rad, max_rad, dtype)
