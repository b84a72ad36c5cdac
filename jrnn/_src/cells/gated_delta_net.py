"""Gated DeltaNet (Yang, Kautz & Hatamizadeh 2024, arXiv 2412.06464): the delta rule's associative memory with a
data-dependent decay, after a causal depthwise convolution, read by a gated RMSNorm and projected back.

The numerics are those of transformers' ``Qwen3NextGatedDeltaNet`` (its PyTorch path). Per value head ``h`` the
state is a matrix ``S [d_k, d_v]``, a memory from keys to values::

    S_t = α_t (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ
    o_t = S_tᵀ q_t

with ``α_t = exp(-exp(A_log) softplus(a_t + dt_bias))`` and ``β_t = sigmoid(b_t)``. The recurrence is linear in
``S`` but not diagonal (``I - β k kᵀ`` is a dense ``d_k × d_k`` matrix at every step), so the cell is not a
:class:`jrnn.LinearRecurrence`. It is :class:`jrnn.Windowed` and :class:`jrnn.Chunkwise`: a chunk of steps is one
unit lower-triangular solve and a few matrix products (the WY/UT form of the delta rule, transformers'
``torch_chunk_gated_delta_rule``), so :func:`jrnn.auto` runs it with :func:`jrnn.chunked` (64 steps a chunk); it
can also be stepped (:func:`jrnn.sequential`) or solved by the Newton solvers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn._src import checks, presets
from jrnn._src.contract import Chunkwise, Windowed, WindowInputs

L2_EPS = 1e-6  # transformers' (and fla's) l2norm: x / sqrt(Σ x² + 1e-6), whatever rms_norm_eps is


class GatedDeltaNetParams(NamedTuple):
    """Parameters of :func:`gated_delta_net`, named as transformers' ``Qwen3NextGatedDeltaNet`` (``F`` inputs,
    ``O`` outputs, ``H_k`` query and key heads of ``d_k``, ``H_v`` value heads of ``d_v``, ``r = H_v / H_k`` value
    heads per key head, ``C = 2 H_k d_k + H_v d_v`` convolution channels, ``K`` the convolution's width); weights
    ``[out, in]`` as torch's.

    Attributes:
      in_proj_qkvz_weight: ``[2 H_k d_k + 2 H_v d_v, F]``, in transformers' interleaved layout: key head ``g`` after
        key head ``g - 1``, each a block of ``q_g [d_k]``, ``k_g [d_k]``, then ``v`` and then ``z`` of its ``r``
        value heads ``g r, ..., g r + r - 1`` (``[r d_v]`` each).
      in_proj_ba_weight: ``[2 H_v, F]``, interleaved the same way: per key head ``g``, ``b`` then ``a`` of its ``r``
        value heads.
      conv1d_weight: ``[C, K]``, one filter per channel, oldest step first (torch's ``[C, 1, K]`` without its group
        axis); channels ``q`` (``[H_k d_k]``, head-major), ``k`` (the same), ``v`` (``[H_v d_v]``).
      dt_bias: ``[H_v]``.
      A_log: ``[H_v]``, the decay rate's log: ``log α_t = -exp(A_log) softplus(a_t + dt_bias)``.
      norm_weight: ``[d_v]``, the gated RMSNorm's scale, shared by the heads.
      out_proj_weight: ``[O, H_v d_v]``.
    """

    in_proj_qkvz_weight: jax.Array
    in_proj_ba_weight: jax.Array
    conv1d_weight: jax.Array
    dt_bias: jax.Array
    A_log: jax.Array
    norm_weight: jax.Array
    out_proj_weight: jax.Array


def _l2normalised(v: jax.Array) -> jax.Array:
    return v * jax.lax.rsqrt(jnp.sum(v * v, axis=-1, keepdims=True) + L2_EPS)


@jax.custom_jvp
def _unit_lower_inverse(A: jax.Array) -> jax.Array:
    """``(I + A)⁻¹ [..., C, C]`` for a strictly lower-triangular ``A [..., C, C]``, by recursive halving (padded to
    a power of two with the identity): ``[[I + A₁₁, 0], [A₂₁, I + A₂₂]]⁻¹ = [[T₁₁, 0], [-T₂₂ A₂₁ T₁₁, T₂₂]]``, the
    diagonal blocks of every level inverted at once. Matrix products only (about ``C³/3`` multiply-adds): with a
    batched ``triangular_solve`` in its place, XLA's CPU backend ran the chunked scan erratically, up to 60 times
    slower at some chunk sizes (64 and 128, jax 0.10). Every block computed is the inverse of a diagonal block of
    ``I + A``, so nothing grows beyond what a solve itself holds."""
    size = A.shape[-1]
    padded = 1 << max(size - 1, 0).bit_length()
    A = jnp.pad(A, [(0, 0)] * (A.ndim - 2) + [(0, padded - size)] * 2)
    lead = A.shape[:-2]
    T = jnp.ones((*lead, padded, 1, 1), A.dtype)  # the inverses of the 1 × 1 diagonal blocks
    half = 1
    while half < padded:
        n = padded // (2 * half)
        blocks = jnp.einsum("...aiaj->...aij", A.reshape(*lead, n, 2 * half, n, 2 * half))  # diagonal 2h × 2h blocks
        T11, T22 = T[..., 0::2, :, :], T[..., 1::2, :, :]
        T21 = -(T22 @ (blocks[..., half:, :half] @ T11))
        T = jnp.concatenate([jnp.concatenate([T11, jnp.zeros_like(T11)], axis=-1),
                             jnp.concatenate([T21, T22], axis=-1)], axis=-2)
        half *= 2
    return T[..., 0, :size, :size]


@_unit_lower_inverse.defjvp
def _unit_lower_inverse_jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]) -> tuple[jax.Array, jax.Array]:
    """``d(I + A)⁻¹ = -T dA T`` (``dA`` restricted to the strict lower triangle, the entries the inverse reads):
    two matrix products, and under ``jax.grad`` their transposes, instead of differentiating every level."""
    (A,), (dA,) = primals, tangents
    T = _unit_lower_inverse(A)
    return T, -(T @ (jnp.tril(dA, -1) @ T))


@dataclasses.dataclass(frozen=True)
class GatedDeltaNetCell(Windowed, Chunkwise):
    """Gated DeltaNet as one cell; build it with :func:`gated_delta_net`. Its state is a :class:`jrnn.WindowState`:
    the last ``width - 1`` convolution inputs ``[..., K-1, C]`` (``q, k, v`` before the convolution), ``fresh``
    (unused: the zeros before the start are the window's), and the memories ``S [..., H_v, d_k, d_v]`` as
    ``inner``. :meth:`chunk` evaluates a chunk of steps at once (the WY/UT form; :func:`jrnn.chunked`),
    :meth:`window_step` one step.

    ``hidden_size`` is the layer's model width, the size of ``y_t``; the input size is the one given to ``init``.
    """

    hidden_size: int
    num_heads: int
    head_k_dim: int
    head_v_dim: int
    num_v_heads: int
    width: int = 4
    eps: float = 1e-6
    dtype: Any = jnp.float32
    dt_range: tuple[float, float] | None = None

    @property
    def output_size(self) -> int:
        return self.hidden_size

    @property
    def chunk_size(self) -> int:  # type: ignore[override]
        """The chunk :func:`jrnn.auto` takes: ``d_v`` rounded up to a power of two, within ``[16, 64]`` (measured on a
        CPU, fwd+bwd at T 1024: d 16 fastest in chunks of 16, d 64 in chunks of 64)."""
        return min(64, max(16, 1 << (self.head_v_dim - 1).bit_length()))

    @property
    def key_dim(self) -> int:
        return self.num_heads * self.head_k_dim

    @property
    def value_dim(self) -> int:
        return self.num_v_heads * self.head_v_dim

    @property
    def window_size(self) -> int:
        return 2 * self.key_dim + self.value_dim

    def _layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Rows of ``in_proj_qkvz`` for ``[q, k, v]`` (head-major) and for ``z``; rows of ``in_proj_ba`` for ``b``
        and for ``a`` (transformers' ``fix_query_key_value_ordering``)."""
        dk, r, dv = self.head_k_dim, self.num_v_heads // self.num_heads, self.head_v_dim
        groups = np.arange(self.num_heads)[:, None]
        block = groups * (2 * dk + 2 * r * dv)
        q, k = block + np.arange(dk), block + dk + np.arange(dk)
        v, z = block + 2 * dk + np.arange(r * dv), block + 2 * dk + r * dv + np.arange(r * dv)
        b, a = groups * 2 * r + np.arange(r), groups * 2 * r + r + np.arange(r)
        return np.concatenate([q.ravel(), k.ravel(), v.ravel()]), z.ravel(), b.ravel(), a.ravel()

    def init(self, key: jax.Array, input_size: int) -> GatedDeltaNetParams:
        """As the torch module's constructor draws them: ``in_proj_qkvz``, ``in_proj_ba``, ``out_proj`` and the
        convolution as ``nn.Linear`` and ``nn.Conv1d`` (U(±1/√fan_in), fan_in ``F``, ``F``, ``H_v d_v``, ``K``), no
        biases; ``dt_bias = 1``; ``A_log = log A``, ``A`` from U(0.01, 16); ``norm_weight = 1``. With ``dt_range
        = (lo, hi)`` (fla's and the paper's code): ``dt_bias = softplus⁻¹(Δ)``, ``Δ`` log-uniform on ``[lo, hi]`` (at
        least 1e-4), and ``A`` from U(0, 16)."""
        F = checks.positive_int("input_size", input_size, "jrnn.gated_delta_net.init")
        O, K, C, V, Hv = self.hidden_size, self.width, self.window_size, self.value_dim, self.num_v_heads
        dtype = self.dtype
        k_qkvz, k_ba, k_conv, k_A, k_out = jax.random.split(key, 5)

        def uniform(k, shape, fan_in):
            return jax.random.uniform(k, shape, dtype, -fan_in ** -0.5, fan_in ** -0.5)

        if self.dt_range is None:  # transformers' Qwen3NextGatedDeltaNet
            dt_bias, A = jnp.ones((Hv,), dtype), jax.random.uniform(k_A, (Hv,), dtype, 0.01, 16.0)
        else:  # fla's GatedDeltaNet, the paper's code
            low, high = (math.log(v) for v in self.dt_range)
            dt = jnp.maximum(jnp.exp(jax.random.uniform(jax.random.fold_in(k_A, 1), (Hv,), dtype, low, high)), 1e-4)
            dt_bias, A = dt + jnp.log(-jnp.expm1(-dt)), jax.random.uniform(k_A, (Hv,), dtype, 0.0, 16.0)
        return GatedDeltaNetParams(
            uniform(k_qkvz, (2 * self.key_dim + 2 * V, F), F), uniform(k_ba, (2 * Hv, F), F),
            uniform(k_conv, (C, K), K), dt_bias, jnp.log(A),
            jnp.ones((self.head_v_dim,), dtype), uniform(k_out, (O, V), V))

    def inner_initial_state(self, batch_shape=(), dtype=None) -> jax.Array:
        return jnp.zeros((*tuple(batch_shape), self.num_v_heads, self.head_k_dim, self.head_v_dim),
                         dtype or self.dtype)

    def window_input(self, params: GatedDeltaNetParams, x: jax.Array) -> jax.Array:
        """``[q, k, v]`` before the convolution, ``[..., C]``: the rows of ``in_proj_qkvz`` that feed it."""
        return x @ params.in_proj_qkvz_weight[self._layout()[0]].T

    def _features(self, params: GatedDeltaNetParams, inputs: WindowInputs) -> tuple[jax.Array, ...]:
        """The per-step quantities the recurrence reads, for any leading axes ``[...]`` (one step or a chunk):
        ``(q, k, v, z, log α, β)``, ``q`` and ``k`` ``[..., H_v, d_k]`` (l2-normalised, ``q`` divided by ``√d_k``,
        each key head repeated for its ``r`` value heads), ``v`` and the gate ``z`` ``[..., H_v, d_v]``,
        ``log α = -exp(A_log) softplus(a + dt_bias)`` and ``β = sigmoid(b)`` ``[..., H_v]``."""
        Hk, dk, Hv, dv = self.num_heads, self.head_k_dim, self.num_v_heads, self.head_v_dim
        _, z_rows, b_rows, a_rows = self._layout()
        u = jax.nn.silu(jnp.einsum("...kc,ck->...c", inputs.window, params.conv1d_weight))
        lead = u.shape[:-1]
        q = u[..., :Hk * dk].reshape(*lead, Hk, dk)
        k = u[..., Hk * dk:2 * Hk * dk].reshape(*lead, Hk, dk)
        v = u[..., 2 * Hk * dk:].reshape(*lead, Hv, dv)
        # each query/key head serves r = H_v / H_k consecutive value heads
        q = jnp.repeat(_l2normalised(q), Hv // Hk, axis=-2) / dk ** 0.5
        k = jnp.repeat(_l2normalised(k), Hv // Hk, axis=-2)
        x = inputs.x
        beta = jax.nn.sigmoid(x @ params.in_proj_ba_weight[b_rows].T)
        a = x @ params.in_proj_ba_weight[a_rows].T
        log_alpha = -jnp.exp(jnp.broadcast_to(params.A_log, a.shape)) * jax.nn.softplus(
            a + jnp.broadcast_to(params.dt_bias, a.shape))
        z = (x @ params.in_proj_qkvz_weight[z_rows].T).reshape(*lead, Hv, dv)
        return q, k, v, z, log_alpha, beta

    def _gated_output(self, params: GatedDeltaNetParams, o: jax.Array, z: jax.Array) -> jax.Array:
        """``out_proj(concat_h(norm_weight ⊙ o / √(mean(o²) + eps) ⊙ silu(z)))``, ``[..., O]``, from the memories'
        reads ``o`` and the gate ``z``, both ``[..., H_v, d_v]``."""
        normed = o * jax.lax.rsqrt(jnp.mean(o * o, axis=-1, keepdims=True) + self.eps)
        gated = jnp.broadcast_to(params.norm_weight, normed.shape) * normed * jax.nn.silu(z)
        return gated.reshape(*o.shape[:-2], -1) @ params.out_proj_weight.T

    def window_step(self, params: GatedDeltaNetParams, inner: jax.Array,
                    inputs: WindowInputs) -> tuple[jax.Array, jax.Array]:
        q, k, v, z, log_alpha, beta = self._features(params, inputs)
        S = jnp.exp(log_alpha)[..., None, None] * inner.astype(q.dtype)         # α S, [..., H_v, d_k, d_v]
        delta = beta[..., None] * (v - jnp.einsum("...hkv,...hk->...hv", S, k))  # β (v - Sᵀ k)
        S = S + k[..., :, None] * delta[..., None, :]
        o = jnp.einsum("...hkv,...hk->...hv", S, q)                            # [..., H_v, d_v]
        return S.astype(inner.dtype), self._gated_output(params, o, z)

    def chunk(self, params: GatedDeltaNetParams, inner: jax.Array, inputs: WindowInputs, valid: jax.Array | None,
              resets: jax.Array | None, restart: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``C`` steps at once (:class:`jrnn.Chunkwise`), the WY/UT form of the delta rule (Yang et al. 2024,
        "Parallelizing linear transformers with the delta rule over sequence length", arXiv 2406.06484, section 3;
        transformers' ``torch_chunk_gated_delta_rule``). Per value head, with the log decays summed within the
        chunk, ``g_i = Σ_{t ≤ i} log α_t``, and ``S_0`` the state the chunk starts from, the updates
        ``u_t = β_t (v_t - α_t S_{t-1}ᵀ k_t)`` of the step (``S_t = α_t S_{t-1} + k_t u_tᵀ``) solve one unit
        lower-triangular system::

            (I + A) U = β ⊙ (V - exp(g) ⊙ K S_0),   A_ij = β_i (k_i · k_j) exp(g_i - g_j)  for j < i, else 0
            o_i = exp(g_i) S_0ᵀ q_i + Σ_{j ≤ i} (q_i · k_j) exp(g_i - g_j) u_j
            S_C = exp(g_C) S_0 + Σ_j exp(g_C - g_j) k_j u_jᵀ

        (the pseudo keys and values of the WY form, ``W = (I + A)⁻¹ (β ⊙ exp(g) ⊙ K)`` and
        ``(I + A)⁻¹ (β ⊙ V)``, enter as ``U = (I + A)⁻¹ (β ⊙ V) - W S_0``, here one solve). A reset cuts the sums
        at its step (the pairs across it are masked, and ``S_0`` becomes ``restart`` with ``g`` counted from
        there); an invalid step is ``α = 1, β = 0``, which leaves the state as it is. Every decay is exponentiated
        as ``exp(≤ 0)``, the masked pairs replaced before the ``exp``. ``(I + A)⁻¹`` is formed by recursive halving
        (matrix products only, steadier than a batched ``triangular_solve`` on a CPU), its derivative
        ``-(I + A)⁻¹ dA (I + A)⁻¹``.

        Args:
          params: the cell's :class:`GatedDeltaNetParams`.
          inner: ``S_0 [B, H_v, d_k, d_v]``, the memories before the chunk.
          inputs: a :class:`jrnn.WindowInputs` whose leaves are ``[B, C, ...]``.
          valid: ``[B, C]`` bool (a prefix of each row) or None.
          resets: ``[B, C]`` bool or None, True where a segment starts from ``restart``.
          restart: ``[B, H_v, d_k, d_v]``, the memories a segment starts from (the cell's initial state).

        Returns:
          ``(S [B, H_v, d_k, d_v] after the last valid step, ys [B, C, hidden_size])``.
        """
        q, k, v, z, log_alpha, beta = self._features(params, inputs)  # [B, C, H, d_k] ×2, [B, C, H, d_v] ×2, [B, C, H]
        if valid is not None:  # an invalid step leaves the state as it is: decay 1, update 0
            log_alpha = jnp.where(valid[..., None], log_alpha, jnp.zeros_like(log_alpha))
            beta = jnp.where(valid[..., None], beta, jnp.zeros_like(beta))
            resets = None if resets is None else resets & valid
        # head-major from here, [B, H, C, ...], so that every product is a plain batched matmul
        q, k, v = (jnp.swapaxes(a, 1, 2) for a in (q, k, v))
        log_alpha, beta = jnp.swapaxes(log_alpha, 1, 2), jnp.swapaxes(beta, 1, 2)
        S0 = inner.astype(q.dtype)  # [B, H, d_k, d_v]
        size = log_alpha.shape[-1]
        t = jnp.arange(size)
        g = jnp.cumsum(log_alpha, axis=-1)  # [B, H, C]
        if resets is None:
            segment = jnp.zeros((g.shape[0], 1, size), jnp.int32)  # [B, 1, C]
            base = jnp.zeros_like(g)  # g before the segment's first step
            q_start, k_start, start_last = q @ S0, k @ S0, S0
        else:
            segment = jnp.cumsum(resets, axis=1)[:, None]
            first = jax.lax.cummax(jnp.where(resets, t[None], 0).astype(jnp.int32), axis=1)  # the segment's first step
            before = jnp.take_along_axis(g - log_alpha, jnp.broadcast_to(first[:, None], g.shape), axis=-1)
            base = jnp.where(segment > 0, before, jnp.zeros_like(g))
            R = jnp.broadcast_to(restart.astype(q.dtype), S0.shape)
            later = (segment > 0)[..., None]  # a step after the chunk's first reset starts from restart
            q_start = jnp.where(later, q @ R, q @ S0)
            k_start = jnp.where(later, k @ R, k @ S0)
            start_last = jnp.where(later[:, :, -1:], R, S0)
        gamma = jnp.exp(g - base)  # the decay since the segment's start, [B, H, C]
        same = (segment[..., :, None] == segment[..., None, :]) & (t[:, None] >= t[None, :])[None, None]  # [B, 1, i, j]
        gaps = g[..., :, None] - g[..., None, :]  # g_i - g_j, [B, H, i, j]
        decay = jnp.exp(jnp.where(same, gaps, -jnp.inf))  # 0 across segments and above the diagonal
        kk = k @ jnp.swapaxes(k, -1, -2)
        A = beta[..., None] * jnp.where((t[:, None] > t[None, :])[None, None], decay, jnp.zeros_like(decay)) * kk
        U = _unit_lower_inverse(A) @ (beta[..., None] * (v - gamma[..., None] * k_start))  # [B, H, C, d_v]
        o = ((q @ jnp.swapaxes(k, -1, -2)) * decay) @ U + gamma[..., None] * q_start
        last = segment[..., -1:]  # the last step's segment: what the state after the chunk remembers
        weights = jnp.exp(jnp.where(segment == last, g[..., -1:] - g, -jnp.inf))  # [B, H, C]
        S = jnp.swapaxes(weights[..., None] * k, -1, -2) @ U + gamma[..., -1:, None] * start_last
        return S.astype(inner.dtype), self._gated_output(params, jnp.swapaxes(o, 1, 2), z)

    def input_size(self, params: GatedDeltaNetParams) -> int:
        return params.in_proj_qkvz_weight.shape[-1]


def gated_delta_net(hidden_size: int, *, num_heads: int = 4, head_k_dim: int | None = None,
                    head_v_dim: int | None = None, num_v_heads: int | None = None, conv_width: int = 4,
                    eps: float = 1e-6, dt_range: tuple[float, float] | None = None,
                    init: str | None = None, dtype: Any = jnp.float32) -> GatedDeltaNetCell:
    """The Gated DeltaNet layer (Yang, Kautz & Hatamizadeh 2024, "Gated Delta Networks: improving Mamba2 with delta
    rule", arXiv 2412.06464, equation (10) and figure 1), one cell; per value head ``h`` (key head ``g = h // r``)::

        (q_t, k_t, v_t, z_t) = in_proj_qkvz(x_t)          [..., H_k, d_k] ×2, [..., H_v, d_v] ×2 (interleaved rows)
        (b_t, a_t) = in_proj_ba(x_t)                      [..., H_v] each
        (q̂_t, k̂_t, v̂_t) = silu(Σ_{j<K} w_j ⊙ [q, k, v]_{t-K+1+j})   causal depthwise convolution, zeros before
        q_t = l2norm(q̂_t[g]) / √d_k,  k_t = l2norm(k̂_t[g]),  v_t = v̂_t[h]     l2norm(u) = u / √(Σ u² + 10⁻⁶)
        α_t = exp(-exp(A_log[h]) softplus(a_t[h] + dt_bias[h])),  β_t = sigmoid(b_t[h])
        S_t = α_t (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ     [..., d_k, d_v]
        o_t = S_tᵀ q_t                                       [..., d_v]
        y_t = out_proj(concat_h(norm_weight ⊙ o_t / √(mean(o_t²) + eps) ⊙ silu(z_t[h])))    [..., hidden_size]

    As transformers' ``Qwen3NextGatedDeltaNet`` (:func:`jrnn.from_torch` converts one), which computes the update
    as ``S ← α S``, ``S ← S + k (β (v - Sᵀ k))ᵀ``, the same function. A :class:`jrnn.Windowed` cell (``[q, k, v]``
    before the convolution is its window input, ``width = conv_width``); the state is a :class:`jrnn.WindowState`
    whose ``inner`` is ``S [..., H_v, d_k, d_v]``. Not a :class:`jrnn.LinearRecurrence` (the transition
    ``α (I - β k kᵀ)`` is dense) but a :class:`jrnn.Chunkwise` cell: with ``g_i = Σ_{t ≤ i} log α_t`` within a
    chunk that starts from ``S_0``, its updates ``u_t = β_t (v_t - α_t S_{t-1}ᵀ k_t)`` solve
    ``(I + A) U = β ⊙ (V - exp(g) ⊙ K S_0)``, ``A_ij = β_i (k_i · k_j) exp(g_i - g_j)`` for ``j < i``, and
    ``o_i = exp(g_i) S_0ᵀ q_i + Σ_{j ≤ i} (q_i · k_j) exp(g_i - g_j) u_j`` (the WY/UT form of transformers'
    ``torch_chunk_gated_delta_rule``, :meth:`GatedDeltaNetCell.chunk`), so :func:`jrnn.auto` runs it with
    :func:`jrnn.chunked` (64 steps a chunk), equal to :func:`jrnn.sequential` to float rounding. In a model the layer
    sits in a residual stream after an RMSNorm, its input size equal to ``hidden_size``; here the input size is the
    one given to ``init``.

    Initialisation (the torch module's constructor): ``A_log = log A`` with ``A`` from U(0.01, 16), ``dt_bias = 1``,
    ``norm_weight = 1``; the projections and the convolution as torch's ``nn.Linear`` and ``nn.Conv1d``,
    U(±1/√fan_in), without biases. (transformers' ``from_config`` redraws the projections from N(0, 0.02²).)
    transformers' ``dt_bias = 1`` makes ``softplus(a + dt_bias) ≈ 1.3``, so at ``A`` up to 16 most heads forget within
    a step: a small model trained from it may never learn to recall (``python -m experiments mqar``). ``dt_range =
    (0.001, 0.1)`` takes the initialisation of fla's ``GatedDeltaNet`` (the paper's code) instead: ``A`` from
    U(0, 16), ``dt_bias = softplus⁻¹(Δ)`` with ``Δ`` log-uniform on ``dt_range`` (at least 1e-4), decays near 1.

    Args:
      hidden_size: the model width: the size of ``y_t``.
      num_heads: H_k, the number of query and key heads (transformers' ``linear_num_key_heads``).
      head_k_dim: d_k (``linear_key_head_dim``); ``hidden_size // num_heads`` if None.
      head_v_dim: d_v (``linear_value_head_dim``); ``head_k_dim`` if None.
      num_v_heads: H_v (``linear_num_value_heads``), a multiple of ``num_heads``; ``num_heads`` if None.
      conv_width: K, the convolution's width, the current step included (``linear_conv_kernel_dim``).
      eps: the gated RMSNorm's epsilon (``rms_norm_eps``).
      dt_range: None (transformers' ``dt_bias = 1``, ``A`` from U(0.01, 16)), or ``(dt_min, dt_max)`` with
        ``0 < dt_min <= dt_max``: fla's initialisation above.
      init: None (jrnn's defaults), or ``"pytorch"``: transformers' ``Qwen3NextGatedDeltaNet`` constructor's draw,
        which is jrnn's default with ``dt_range=None`` (docs: porting, "Matching a run from another library");
        ``"flax"`` and ``"keras"`` are a ValueError.
      dtype: dtype of the parameters and the default state.

    Returns:
      A :class:`GatedDeltaNetCell` with parameters :class:`GatedDeltaNetParams`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.gated_delta_net(8, num_heads=2, num_v_heads=4)  # d_k = d_v = 4
      >>> params = cell.init(jax.random.key(0), input_size=8)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 20, 8))
      >>> ys, state = jrnn.scan(cell, params, xs, solver=jrnn.chunked(8))  # jrnn.auto() takes chunks of 64
      >>> step = lambda s, x: cell.step(params, s, x)
      >>> _, stepped = jax.lax.scan(step, cell.initial_state((2,)), xs.swapaxes(0, 1))
      >>> bool(jnp.allclose(ys, stepped.swapaxes(0, 1), atol=1e-5)), state.window.shape, state.inner.shape
      (True, (2, 3, 32), (2, 4, 4, 4))
    """
    presets.preset("jrnn.gated_delta_net", init)
    where = "jrnn.gated_delta_net"
    hidden_size = checks.positive_int("hidden_size", hidden_size, where)
    num_heads = checks.positive_int("num_heads", num_heads, where)
    if head_k_dim is None:
        if hidden_size % num_heads:
            raise ValueError(f"{where}: expected hidden_size divisible by num_heads when head_k_dim is None, got "
                             f"hidden_size={hidden_size}, num_heads={num_heads}")
        head_k_dim = hidden_size // num_heads
    head_k_dim = checks.positive_int("head_k_dim", head_k_dim, where)
    head_v_dim = head_k_dim if head_v_dim is None else checks.positive_int("head_v_dim", head_v_dim, where)
    num_v_heads = num_heads if num_v_heads is None else checks.positive_int("num_v_heads", num_v_heads, where)
    if num_v_heads % num_heads:
        raise ValueError(f"{where}: expected num_v_heads to be a multiple of num_heads {num_heads} (each key head "
                         f"serves num_v_heads // num_heads value heads), got {num_v_heads}")
    conv_width = checks.positive_int("conv_width", conv_width, where)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps < 0:
        raise ValueError(f"{where}: expected a non-negative eps, got {eps!r}")
    if dt_range is not None:
        try:
            low, high = (float(v) for v in dt_range)
        except (TypeError, ValueError):
            low, high = math.nan, math.nan
        if not 0.0 < low <= high:
            raise ValueError(f"{where}: expected dt_range = (dt_min, dt_max) with 0 < dt_min <= dt_max, or None; got "
                             f"{dt_range!r}")
        dt_range = (low, high)
    return GatedDeltaNetCell(hidden_size, num_heads, head_k_dim, head_v_dim, num_v_heads, conv_width, float(eps),
                             dtype, dt_range)
