"""The Linear Recurrent Unit (Orvieto et al. 2023): a complex diagonal linear recurrence, stable by construction.

Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu & De, "Resurrecting recurrent neural networks for long sequences",
ICML 2023 (arXiv 2303.06349). Take an RNN, drop the nonlinearity from the recurrence, diagonalise the recurrent
matrix over the complex numbers, and parametrise its eigenvalues so that they stay inside the unit disc:

    λ = exp(-exp(ν_log) + i exp(θ_log))          |λ| = exp(-exp(ν_log)) < 1 for every real ν_log

The eigenvalues start uniform on a ring ``r_min <= |λ| <= r_max`` with phases in ``[0, max_phase]``, and the input is
scaled by ``γ = sqrt(1 - |λ|²)`` so that a unit near the circle, which sums many inputs, keeps the state's variance
that of its input. The recurrence is linear in the state (a :class:`jrnn.LinearRecurrence`): :func:`jrnn.associative`
solves it in ``O(log T)`` depth with complex coefficients.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src import checks, presets
from jrnn._src.cells import complex_diagonal as cd
from jrnn._src.contract import LinearRecurrence


class LRUParams(NamedTuple):
    """Parameters of :func:`lru`, every one a real array (the complex ``B`` and ``C`` as two real parts each).

    Attributes:
      nu_log: ``[H]``, ``log ν``: the eigenvalues' modulus is ``|λ| = exp(-exp(nu_log))``.
      theta_log: ``[H]``, ``log θ``: their phase is ``θ = exp(theta_log)``.
      gamma_log: ``[H]``, ``log γ``, the input normalisation (``log sqrt(1 - |λ|²)`` at init; trained freely).
      B_re: ``[H, I]``, real part of the input matrix ``B``.
      B_im: ``[H, I]``, imaginary part of ``B``.
      C_re: ``[O, H]``, real part of the output matrix ``C``.
      C_im: ``[O, H]``, imaginary part of ``C``.
      D: ``[O]``, the elementwise feed-through (``O = I``).
    """

    nu_log: jax.Array
    theta_log: jax.Array
    gamma_log: jax.Array
    B_re: jax.Array
    B_im: jax.Array
    C_re: jax.Array
    C_im: jax.Array
    D: jax.Array


def eigenvalues(params: LRUParams) -> jax.Array:
    """``λ = exp(-exp(ν_log) + i exp(θ_log))``, complex ``[H]``: the diagonal of the recurrence."""
    return jnp.exp(jax.lax.complex(-jnp.exp(params.nu_log), jnp.exp(params.theta_log)))


@dataclasses.dataclass(frozen=True)
class LRUCell(LinearRecurrence):
    """An LRU cell; build it with :func:`lru`. State ``s`` is a complex array ``[..., H]``; ``y_t`` is real
    ``[..., O]`` with ``O`` the input size."""

    hidden_size: int
    output_size: int
    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 6.28
    dtype: Any = jnp.float32

    def init(self, key: jax.Array, input_size: int) -> LRUParams:
        where = "jrnn.lru.init"
        input_size = checks.positive_int("input_size", input_size, where)
        if input_size != self.output_size:
            raise ValueError(f"{where}: expected input_size equal to output_size = {self.output_size} (the "
                             f"feed-through D ⊙ x_t is elementwise, so y_t has the input's size), got "
                             f"input_size = {input_size}")
        H, I, dtype = self.hidden_size, input_size, self.dtype
        k_nu, k_theta, k_B_re, k_B_im, k_C_re, k_C_im, k_D = jax.random.split(key, 7)
        # |λ|² uniform on [r_min², r_max²]: the eigenvalues uniform over the ring's area.
        modulus2 = jax.random.uniform(k_nu, (H,), dtype) * (self.r_max ** 2 - self.r_min ** 2) + self.r_min ** 2
        nu_log = jnp.log(-0.5 * jnp.log(modulus2))
        theta_log = jnp.log(self.max_phase * jax.random.uniform(k_theta, (H,), dtype))
        gamma_log = 0.5 * jnp.log1p(-modulus2)  # log sqrt(1 - |λ|²)
        B_scale, C_scale = 1.0 / math.sqrt(2 * I), 1.0 / math.sqrt(H)
        return LRUParams(nu_log, theta_log, gamma_log,
                         B_scale * jax.random.normal(k_B_re, (H, I), dtype),
                         B_scale * jax.random.normal(k_B_im, (H, I), dtype),
                         C_scale * jax.random.normal(k_C_re, (I, H), dtype),
                         C_scale * jax.random.normal(k_C_im, (I, H), dtype),
                         jax.random.normal(k_D, (I,), dtype))

    def initial_state(self, batch_shape=(), dtype=None) -> jax.Array:
        """The complex zero state ``[*batch_shape, H]``; ``dtype`` is the real carry dtype (complex64 for
        float32, complex128 for float64)."""
        return cd.zeros_state(batch_shape, self.hidden_size, dtype or self.dtype)

    def step(self, params: LRUParams, state: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        b = _input(params, x)
        s = cd.per_unit(eigenvalues(params), b) * state + b
        return s, _output(params, s, x)

    def coefficients(self, params: LRUParams, xs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(λ, γ ⊙ B x_t)``, each complex ``[B, T, H]`` (:class:`jrnn.LinearRecurrence`)."""
        b = _input(params, xs)
        return cd.per_unit(eigenvalues(params), b), b

    def readout(self, params: LRUParams, states: jax.Array, xs: jax.Array) -> jax.Array:
        """``Re(C s_t) + D ⊙ x_t``, real ``[B, T, O]``."""
        return _output(params, states, xs)

    def input_size(self, params: LRUParams) -> int:
        return params.B_re.shape[1]


def _input(params: LRUParams, x: jax.Array) -> jax.Array:
    """``γ ⊙ (B x)``, complex ``[..., H]``."""
    Bx = cd.project_in(params.B_re, params.B_im, x)
    return cd.per_unit(jnp.exp(params.gamma_log), Bx) * Bx


def _output(params: LRUParams, s: jax.Array, x: jax.Array) -> jax.Array:
    """``Re(C s) + D ⊙ x``, real ``[..., O]``."""
    return cd.real_project_out(params.C_re, params.C_im, s) + jnp.broadcast_to(params.D, x.shape) * x


def _real(name: str, value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: expected {name} to be a real number, got {value!r}")
    return float(value)


def lru(hidden_size: int, output_size: int, *, r_min: float = 0.0, r_max: float = 1.0, max_phase: float = 6.28,
        init: str | None = None, dtype: Any = jnp.float32) -> LRUCell:
    """The Linear Recurrent Unit (Orvieto et al. 2023, arXiv 2303.06349): a complex diagonal linear recurrence::

        λ   = exp(-exp(ν_log) + i exp(θ_log))              [H] complex, |λ| < 1 for any ν_log
        s_t = λ ⊙ s_{t-1} + exp(γ_log) ⊙ (B x_t)            a_t = λ,  b_t = γ ⊙ B x_t   (s_t complex [..., H])
        y_t = Re(C s_t) + D ⊙ x_t                           real [..., O], O = I

    with ``B = B_re + i B_im`` ``[H, I]``, ``C = C_re + i C_im`` ``[O, H]`` and ``D`` ``[O]`` elementwise, so the
    output has the input's size: the LRU sits in a residual block of width ``I`` (the paper adds an MLP or GLU after
    it, and stacks such blocks; :func:`jrnn.deep` chains them). The recurrence is linear in ``s`` (a
    :class:`jrnn.LinearRecurrence`): :func:`jrnn.associative` solves it in parallel over time, and :func:`jrnn.auto`
    takes that solver on a GPU or TPU.

    Initialisation, as the paper's and its official code's: ``|λ|²`` uniform on ``[r_min², r_max²]`` (uniform on the
    ring's area), phase ``θ`` uniform on ``[0, max_phase]``, ``γ_log = log sqrt(1 - |λ|²)`` (the state's variance
    stays the input's however near the circle ``λ`` is), ``B_re, B_im ~ N(0, 1/(2I))``, ``C_re, C_im ~ N(0, 1/H)``,
    ``D ~ N(0, 1)``. The paper's long-range tasks raise ``r_min`` (0.9 or 0.99) and lower ``max_phase`` (π/10).

    Args:
      hidden_size: H, the number of complex state units.
      output_size: O, the size of ``y_t``, which must equal the input size (``init`` raises otherwise).
      r_min: the smallest initial ``|λ|``, in ``[0, 1)``.
      r_max: the largest initial ``|λ|``, in ``[r_min, 1]``.
      max_phase: the largest initial phase, positive; 6.28 (≈ 2π, the paper's and official code's default).
      init: None (jrnn's defaults); the LRU is in none of PyTorch, Flax or Keras, so ``"pytorch"``, ``"flax"`` and
        ``"keras"`` are a ValueError.
      dtype: dtype of the (real) parameters; the default state is its complex counterpart.

    Returns:
      An :class:`LRUCell`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.lru(16, 3, r_min=0.9, max_phase=jnp.pi / 10)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 50, 3))
      >>> parallel, s = jrnn.scan(cell, params, xs, solver=jrnn.associative())
      >>> sequential, _ = jrnn.scan(cell, params, xs, solver=jrnn.sequential())
      >>> parallel.shape, s.dtype, bool(jnp.allclose(parallel, sequential, atol=1e-5))
      ((2, 50, 3), dtype('complex64'), True)
    """
    presets.preset("jrnn.lru", init)
    where = "jrnn.lru"
    hidden_size = checks.positive_int("hidden_size", hidden_size, where)
    output_size = checks.positive_int("output_size", output_size, where)
    r_min, r_max = _real("r_min", r_min, where), _real("r_max", r_max, where)
    max_phase = _real("max_phase", max_phase, where)
    if not 0.0 <= r_min < 1.0:
        raise ValueError(f"{where}: expected 0 <= r_min < 1, got r_min={r_min!r}")
    if not r_min <= r_max <= 1.0:
        raise ValueError(f"{where}: expected r_min <= r_max <= 1, got r_min={r_min!r} and r_max={r_max!r}")
    if not max_phase > 0.0:
        raise ValueError(f"{where}: expected a positive max_phase, got max_phase={max_phase!r}")
    return LRUCell(hidden_size, output_size, r_min, r_max, max_phase, dtype)
