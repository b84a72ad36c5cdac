"""S5 (Smith, Warrington & Linderman 2023): one multi-input, multi-output diagonal state space model per layer.

Smith, Warrington & Linderman, "Simplified state space layers for sequence modeling", ICLR 2023 (arXiv 2208.04933).
A continuous-time linear system ``s'(τ) = Λ s(τ) + B̃ x(τ)``, ``y = Re(C̃ s) + D ⊙ x``, with ``Λ`` complex diagonal,
is discretised with a learnt step ``Δ`` per state (zero-order hold or bilinear) and run as the recurrence

    s_t = Λ̄ ⊙ s_{t-1} + B̄ x_t

which is linear in the state (a :class:`jrnn.LinearRecurrence`, solved in ``O(log T)`` depth by
:func:`jrnn.associative`). ``Λ`` starts at the eigenvalues of HiPPO-N, the normal part of the HiPPO-LegS matrix
(Gu et al. 2020, 2022), and ``B̃``, ``C̃`` at a random ``B``, ``C`` in the eigenvector basis ``V``: ``B̃ = V⁻¹B``,
``C̃ = CV``. HiPPO-N is real, so its eigenvalues come in conjugate pairs; with ``conj_sym`` only one of each pair is
kept and the output doubles the real part, which is what the whole pair gives.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn._src import checks, presets
from jrnn._src.cells import complex_diagonal as cd
from jrnn._src.contract import LinearRecurrence

DISCRETIZATIONS = ("zoh", "bilinear")


class S5Params(NamedTuple):
    """Parameters of :func:`s5`, every one a real array (the complex ``Λ``, ``B̃``, ``C̃`` as two real parts each).

    Attributes:
      Lambda_re: ``[H]``, the real part of the continuous-time eigenvalues ``Λ`` (-1/2 at init).
      Lambda_im: ``[H]``, their imaginary part.
      B_re: ``[H, I]``, real part of the continuous-time input matrix ``B̃`` (before discretisation).
      B_im: ``[H, I]``, imaginary part of ``B̃``.
      C_re: ``[O, H]``, real part of the output matrix ``C̃``.
      C_im: ``[O, H]``, imaginary part of ``C̃``.
      D: ``[O]``, the elementwise feed-through (``O = I``).
      log_step: ``[H]``, ``log Δ``, one time step per state.
    """

    Lambda_re: jax.Array
    Lambda_im: jax.Array
    B_re: jax.Array
    B_im: jax.Array
    C_re: jax.Array
    C_im: jax.Array
    D: jax.Array
    log_step: jax.Array


def hippo_n(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The eigendecomposition of HiPPO-N, the normal part of the HiPPO-LegS matrix of ``size`` N: ``(Λ [N], V [N, N])``,
    complex128, ``HiPPO-N = V diag(Λ) V^H`` with ``V`` unitary, sorted by the imaginary part (ascending).

    HiPPO-LegS is ``A_nk = -sqrt(2n+1) sqrt(2k+1)`` below the diagonal, ``-(n+1)`` on it, 0 above; adding the rank-one
    ``P Pᵀ``, ``P_n = sqrt(n + 1/2)``, leaves ``-1/2 I`` plus a skew-symmetric ``K``, normal, with eigenvalues
    ``-1/2 + i μ`` for the real eigenvalues ``μ`` of the Hermitian ``-i K`` (found by ``eigh``, which is exact about
    the real part). Computed in NumPy, in float64: it depends on ``size`` only.

    Example:
      >>> from jrnn._src.cells.s5 import hippo_n
      >>> Lambda, V = hippo_n(4)
      >>> Lambda.real.tolist(), bool(abs(Lambda.imag + Lambda.imag[::-1]).max() < 1e-12)   # conjugate pairs
      ([-0.5, -0.5, -0.5, -0.5], True)
    """
    q = np.sqrt(2.0 * np.arange(size) + 1.0)
    skew = 0.5 * np.outer(q, q) * (np.tri(size, k=-1).T - np.tri(size, k=-1))  # K = HiPPO-N + I/2
    mu, V = np.linalg.eigh(-1j * skew)
    return -0.5 + 1j * mu, V


def _initial_eigenbasis(hidden_size: int, blocks: int, conj_sym: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(Λ [H], V [P, H])``: HiPPO-N of size ``P / blocks`` on each of ``blocks`` diagonal blocks, ``P = 2H`` with
    ``conj_sym`` (one eigenvalue of each conjugate pair kept, the one of negative imaginary part) and ``H`` without."""
    size = (2 if conj_sym else 1) * hidden_size // blocks
    Lambda, V = hippo_n(size)
    keep = size // 2 if conj_sym else size
    return np.tile(Lambda[:keep], blocks), np.kron(np.eye(blocks), V[:, :keep])  # block-diagonal V


def discretize(params: S5Params, discretization: str, clip_eigs: bool = False) -> tuple[jax.Array, jax.Array]:
    """``(Λ̄, g)``, each complex ``[H]``, with ``B̄ = diag(g) B̃``: zero-order hold ``Λ̄ = exp(ΛΔ)``,
    ``g = (Λ̄ - 1) / Λ``, or bilinear ``Λ̄ = (1 + ΛΔ/2) / (1 - ΛΔ/2)``, ``g = Δ / (1 - ΛΔ/2)``; ``Δ = exp(log_step)``.
    With ``clip_eigs`` the real part of ``Λ`` is clipped at -1e-4 first (the official code's option)."""
    Lambda_re = jnp.minimum(params.Lambda_re, -1e-4) if clip_eigs else params.Lambda_re
    Lambda = jax.lax.complex(Lambda_re, params.Lambda_im)
    step = jnp.exp(params.log_step)
    if discretization == "zoh":
        return jnp.exp(Lambda * step), jnp.expm1(Lambda * step) / Lambda
    inverse = 1.0 / (1.0 - 0.5 * step * Lambda)
    return inverse * (1.0 + 0.5 * step * Lambda), inverse * step


@dataclasses.dataclass(frozen=True)
class S5Cell(LinearRecurrence):
    """An S5 cell; build it with :func:`s5`. State ``s`` is a complex array ``[..., H]``; ``y_t`` is real
    ``[..., O]`` with ``O`` the input size."""

    hidden_size: int
    output_size: int
    blocks: int = 1
    discretization: str = "zoh"
    conj_sym: bool = True
    clip_eigs: bool = False
    dt_min: float = 0.001
    dt_max: float = 0.1
    dtype: Any = jnp.float32

    def init(self, key: jax.Array, input_size: int) -> S5Params:
        where = "jrnn.s5.init"
        input_size = checks.positive_int("input_size", input_size, where)
        if input_size != self.output_size:
            raise ValueError(f"{where}: expected input_size equal to output_size = {self.output_size} (the "
                             f"feed-through D ⊙ x_t is elementwise, so y_t has the input's size), got "
                             f"input_size = {input_size}")
        H, I, dtype = self.hidden_size, input_size, self.dtype
        Lambda, V = _initial_eigenbasis(H, self.blocks, self.conj_sym)
        P = V.shape[0]  # the size of the real system whose eigenbasis V is: 2H with conj_sym, else H
        V = jnp.asarray(V, cd.complex_dtype(dtype))
        k_B, k_C, k_D, k_step = jax.random.split(key, 4)
        # As the official code (lecun_normal of jax.nn.initializers, fan-in P for both): B [P, I], then B̃ = V^H B;
        # C [O, P] complex, real and imaginary parts drawn as one [O, P, 2] array, then C̃ = C V.
        B = jax.nn.initializers.lecun_normal()(k_B, (P, I), dtype)
        B_tilde = V.conj().T @ B
        C = jax.nn.initializers.lecun_normal(batch_axis=0)(k_C, (I, P, 2), dtype)
        C_tilde = jax.lax.complex(C[..., 0], C[..., 1]) @ V
        log_step = jax.random.uniform(k_step, (H,), dtype, math.log(self.dt_min), math.log(self.dt_max))
        return S5Params(jnp.asarray(Lambda.real, dtype), jnp.asarray(Lambda.imag, dtype),
                        jnp.real(B_tilde).astype(dtype), jnp.imag(B_tilde).astype(dtype),
                        jnp.real(C_tilde).astype(dtype), jnp.imag(C_tilde).astype(dtype),
                        jax.random.normal(k_D, (I,), dtype), log_step)

    def initial_state(self, batch_shape=(), dtype=None) -> jax.Array:
        """The complex zero state ``[*batch_shape, H]``; ``dtype`` is the real carry dtype (complex64 for
        float32, complex128 for float64)."""
        return cd.zeros_state(batch_shape, self.hidden_size, dtype or self.dtype)

    def step(self, params: S5Params, state: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        Lambda_bar, b = self._coefficients(params, x)
        s = cd.per_unit(Lambda_bar, b) * state + b
        return s, self.readout(params, s, x)

    def coefficients(self, params: S5Params, xs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(Λ̄, B̄ x_t)``, each complex ``[B, T, H]`` (:class:`jrnn.LinearRecurrence`)."""
        Lambda_bar, b = self._coefficients(params, xs)
        return cd.per_unit(Lambda_bar, b), b

    def readout(self, params: S5Params, states: jax.Array, xs: jax.Array) -> jax.Array:
        """``2 Re(C̃ s_t) + D ⊙ x_t`` (``Re(C̃ s_t) + D ⊙ x_t`` without ``conj_sym``), real ``[B, T, O]``."""
        ys = cd.real_project_out(params.C_re, params.C_im, states)
        return (2.0 * ys if self.conj_sym else ys) + jnp.broadcast_to(params.D, xs.shape) * xs

    def input_size(self, params: S5Params) -> int:
        return params.B_re.shape[1]

    def _coefficients(self, params: S5Params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(Λ̄ [H], B̄ x [..., H])``: ``B̄ x = g ⊙ (B̃ x)``, one matmul with the continuous-time ``B̃``."""
        Lambda_bar, gain = discretize(params, self.discretization, self.clip_eigs)
        Bx = cd.project_in(params.B_re, params.B_im, x)
        return Lambda_bar, cd.per_unit(gain, Bx) * Bx


def _positive_real(name: str, value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: expected {name} to be a positive real number, got {value!r}")
    if not value > 0:
        raise ValueError(f"{where}: expected {name} to be a positive real number, got {value!r}")
    return float(value)


def s5(hidden_size: int, output_size: int, *, blocks: int = 1, discretization: str = "zoh", conj_sym: bool = True,
       clip_eigs: bool = False, dt_min: float = 0.001, dt_max: float = 0.1, init: str | None = None,
       dtype: Any = jnp.float32) -> S5Cell:
    """The S5 state space layer (Smith, Warrington & Linderman 2023, arXiv 2208.04933) as a recurrent cell::

        Λ = Λ_re + i Λ_im   [H],   Δ = exp(log_step)   [H],   B̃ = B_re + i B_im   [H, I]
        zoh:       Λ̄ = exp(ΛΔ),                     B̄ = diag((Λ̄ - 1) / Λ) B̃
        bilinear:  Λ̄ = (1 + ΛΔ/2) / (1 - ΛΔ/2),     B̄ = diag(Δ / (1 - ΛΔ/2)) B̃
        s_t = Λ̄ ⊙ s_{t-1} + B̄ x_t                   a_t = Λ̄,  b_t = B̄ x_t   (s_t complex [..., H])
        y_t = 2 Re(C̃ s_t) + D ⊙ x_t                 real [..., O], O = I   (Re(C̃ s_t) + D ⊙ x_t without conj_sym)

    with ``C̃ = C_re + i C_im`` ``[O, H]`` and ``D`` ``[O]`` elementwise, so the output has the input's size (the
    paper puts S5 in a residual block of width ``I`` with a GLU after it; :func:`jrnn.deep` chains such cells).
    The recurrence is linear in ``s`` (a :class:`jrnn.LinearRecurrence`): :func:`jrnn.associative` solves it in
    parallel over time, as the paper does, and :func:`jrnn.auto` takes that solver on a GPU or TPU.

    Initialisation, as the official code's defaults: ``Λ`` the eigenvalues of HiPPO-N (:func:`hippo_n`) of size
    ``P / blocks`` on each of ``blocks`` diagonal blocks, with ``P = 2H`` and the eigenvalue of negative imaginary
    part of each conjugate pair kept under ``conj_sym`` (``P = H`` and every eigenvalue without); ``B̃ = V^H B`` with
    ``B [P, I]`` LeCun normal (truncated, variance ``1/P``), ``C̃ = C V`` with ``C`` complex ``[O, P]``, each part
    LeCun normal of variance ``1/P`` (the official ``trunc_standard_normal``), ``D ~ N(0, 1)``, ``log Δ`` uniform
    on ``[log dt_min, log dt_max]``.

    Args:
      hidden_size: H, the number of complex state units (the paper's P/2 under conjugate symmetry).
      output_size: O, the size of ``y_t``, which must equal the input size (``init`` raises otherwise).
      blocks: J, the number of HiPPO-N blocks ``Λ`` and ``V`` start with (the official code's default is 8 with
        H = 128); H must be a multiple of it.
      discretization: ``"zoh"`` (zero-order hold, the paper's default) or ``"bilinear"``.
      conj_sym: keep one eigenvalue of each conjugate pair and double the real part of the output (the paper's
        default, True); False keeps all ``H`` eigenvalues of a size-``H`` HiPPO-N.
      clip_eigs: clip ``Re Λ`` at -1e-4 in every use, so that ``|Λ̄| < 1`` always (the official option for
        autoregressive tasks and unbounded lengths; off by default, as there).
      dt_min: the smallest initial ``Δ``, positive.
      dt_max: the largest initial ``Δ``, at least ``dt_min``.
      init: None (jrnn's defaults); S5 is in none of PyTorch, Flax or Keras, so ``"pytorch"``, ``"flax"`` and
        ``"keras"`` are a ValueError.
      dtype: dtype of the (real) parameters; the default state is its complex counterpart.

    Returns:
      An :class:`S5Cell`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.s5(16, 3, blocks=2, discretization="bilinear")
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 50, 3))
      >>> parallel, s = jrnn.scan(cell, params, xs, solver=jrnn.associative())
      >>> sequential, _ = jrnn.scan(cell, params, xs, solver=jrnn.sequential())
      >>> parallel.shape, s.dtype, bool(jnp.allclose(parallel, sequential, atol=1e-5))
      ((2, 50, 3), dtype('complex64'), True)
    """
    presets.preset("jrnn.s5", init)
    where = "jrnn.s5"
    hidden_size = checks.positive_int("hidden_size", hidden_size, where)
    output_size = checks.positive_int("output_size", output_size, where)
    blocks = checks.positive_int("blocks", blocks, where)
    if hidden_size % blocks:
        raise ValueError(f"{where}: expected hidden_size to be a multiple of blocks, got hidden_size={hidden_size} "
                         f"and blocks={blocks}")
    if discretization not in DISCRETIZATIONS:
        raise ValueError(f"{where}: expected discretization to be one of {DISCRETIZATIONS}, got {discretization!r}")
    for name, value in (("conj_sym", conj_sym), ("clip_eigs", clip_eigs)):
        if not isinstance(value, bool):
            raise TypeError(f"{where}: expected {name} to be True or False, got {value!r}")
    dt_min, dt_max = _positive_real("dt_min", dt_min, where), _positive_real("dt_max", dt_max, where)
    if dt_min > dt_max:
        raise ValueError(f"{where}: expected dt_min <= dt_max, got dt_min={dt_min!r} and dt_max={dt_max!r}")
    return S5Cell(hidden_size, output_size, blocks, discretization, conj_sym, clip_eigs, dt_min, dt_max, dtype)
