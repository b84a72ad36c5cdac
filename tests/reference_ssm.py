"""Independent NumPy references for the cells with a complex diagonal state (``jrnn.lru``, ``jrnn.s5``), written from
the papers' equations.

As ``reference.py``: never calls jrnn, float64 (complex128), one sequence and one time step at a time, explicit
loops. Each step takes parameters with the fields of the jrnn NamedTuple, a complex state ``s [H]`` and a real
``x [I]``, and returns ``(new_state, y)``. The HiPPO matrices are built entry by entry from their definitions, and
the two discretisations of S5 are computed the textbook way, as matrices: zero-order hold by one matrix exponential
of the augmented system (Van Loan 1978), bilinear by solving with ``I - ΔA/2``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from reference import f64


def complex_of(re, im):
    return f64(re) + 1j * f64(im)


# ----------------------------------------------------------------------------------------------------------------
# LRU: Orvieto et al. 2023, "Resurrecting recurrent neural networks for long sequences".
# ----------------------------------------------------------------------------------------------------------------

def lru_eigenvalues(p):
    """``λ = exp(-ν) e^{iθ}`` with ``ν = exp(nu_log)``, ``θ = exp(theta_log)``, in polar form."""
    modulus, phase = np.exp(-np.exp(f64(p.nu_log))), np.exp(f64(p.theta_log))
    return modulus * (np.cos(phase) + 1j * np.sin(phase))


def lru_step(p, s, x):
    """``s_t = λ ⊙ s_{t-1} + γ ⊙ (B x_t)``, ``y_t = Re(C s_t) + D ⊙ x_t``."""
    lam, gamma = lru_eigenvalues(p), np.exp(f64(p.gamma_log))
    B, C, D = complex_of(p.B_re, p.B_im), complex_of(p.C_re, p.C_im), f64(p.D)
    s_new = np.zeros(lam.shape, complex)
    for n in range(lam.size):
        s_new[n] = lam[n] * s[n] + gamma[n] * np.dot(B[n], x)
    y = np.array([np.dot(C[o], s_new).real + D[o] * x[o] for o in range(D.size)])
    return s_new, y


# ----------------------------------------------------------------------------------------------------------------
# S5: Smith, Warrington & Linderman 2023, "Simplified state space layers for sequence modeling".
# ----------------------------------------------------------------------------------------------------------------

def hippo_legs(N):
    """HiPPO-LegS (Gu et al. 2020, eq. 3 with the sign of ``d/dt c = A c + B f``): ``-sqrt(2n+1) sqrt(2k+1)`` for
    ``n > k``, ``-(n + 1)`` for ``n = k``, 0 for ``n < k``."""
    A = np.zeros((N, N))
    for n in range(N):
        for k in range(N):
            if n > k:
                A[n, k] = -np.sqrt(2 * n + 1) * np.sqrt(2 * k + 1)
            elif n == k:
                A[n, k] = -(n + 1)
    return A


def hippo_n(N):
    """HiPPO-N: HiPPO-LegS plus the rank-one ``P Pᵀ``, ``P_n = sqrt(n + 1/2)`` (Gu et al. 2022), a normal matrix."""
    P = np.sqrt(np.arange(N) + 0.5)
    return hippo_legs(N) + np.outer(P, P)


def zoh(Lambda, step, B):
    """Zero-order hold of ``s' = diag(Λ) s + B x`` held for ``Δ_p`` on state p: ``(Ā [H, H], B̄ [H, I])`` from one
    exponential of the augmented matrix ``[[Δ Λ, Δ B], [0, 0]]``, whose top blocks are ``exp(ΔΛ)`` and
    ``∫_0^1 exp(ΔΛ u) du Δ B``."""
    H, I = B.shape
    M = np.zeros((H + I, H + I), complex)
    M[:H, :H] = np.diag(step * Lambda)
    M[:H, H:] = np.diag(step) @ B
    E = scipy.linalg.expm(M)
    return E[:H, :H], E[:H, H:]


def bilinear(Lambda, step, B):
    """The bilinear (Tustin) transform: ``Ā = (I - ΔΛ/2)⁻¹ (I + ΔΛ/2)``, ``B̄ = (I - ΔΛ/2)⁻¹ Δ B``."""
    half = np.diag(0.5 * step * Lambda)
    identity = np.eye(Lambda.size)
    return np.linalg.solve(identity - half, identity + half), np.linalg.solve(identity - half, np.diag(step) @ B)


def s5_step(p, s, x, discretization="zoh", conj_sym=True, clip_eigs=False):
    """``s_t = Ā s_{t-1} + B̄ x_t``, ``y_t = 2 Re(C̃ s_t) + D ⊙ x_t`` (``Re`` alone without conjugate symmetry)."""
    Lambda_re = np.minimum(f64(p.Lambda_re), -1e-4) if clip_eigs else f64(p.Lambda_re)
    Lambda = Lambda_re + 1j * f64(p.Lambda_im)
    B, C, D = complex_of(p.B_re, p.B_im), complex_of(p.C_re, p.C_im), f64(p.D)
    A_bar, B_bar = (zoh if discretization == "zoh" else bilinear)(Lambda, np.exp(f64(p.log_step)), B)
    s_new = A_bar @ s + B_bar @ x
    scale = 2.0 if conj_sym else 1.0
    y = np.array([scale * np.dot(C[o], s_new).real + D[o] * x[o] for o in range(D.size)])
    return s_new, y
