"""Gated DeltaNet (Yang, Kautz & Hatamizadeh 2024, arXiv 2412.06464): the delta rule's associative memory with a
data-dependent decay, after a causal depthwise convolution, read by a gated RMSNorm and projected back.

The numerics are those of transformers' ``Qwen3NextGatedDeltaNet`` (its PyTorch path). Per value head ``h`` the
state is a matrix ``S [d_k, d_v]``, a memory from keys to values::

    S_t = α_t (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ
    o_t = S_tᵀ q_t

with ``α_t = exp(-exp(A_log) softplus(a_t + dt_bias))`` and ``β_t = sigmoid(b_t)``. The recurrence is linear in
``S`` but not diagonal (``I - β k kᵀ`` is a dense ``d_k × d_k`` matrix at every step), so the cell is
:class:`jrnn.Windowed` only, not a :class:`jrnn.LinearRecurrence`: it is stepped, or solved by the Newton solvers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn._src import checks
from jrnn._src.contract import Windowed, WindowInputs

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


@dataclasses.dataclass(frozen=True)
class GatedDeltaNetCell(Windowed):
    """Gated DeltaNet as one cell; build it with :func:`gated_delta_net`. Its state is a :class:`jrnn.WindowState`:
    the last ``width - 1`` convolution inputs ``[..., K-1, C]`` (``q, k, v`` before the convolution), ``fresh``
    (unused: the zeros before the start are the window's), and the memories ``S [..., H_v, d_k, d_v]`` as
    ``inner``.

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

    @property
    def output_size(self) -> int:
        return self.hidden_size

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
        biases; ``dt_bias = 1``; ``A_log = log A``, ``A`` from U(0.01, 16); ``norm_weight = 1``."""
        F = checks.positive_int("input_size", input_size, "jrnn.gated_delta_net.init")
        O, K, C, V, Hv = self.hidden_size, self.width, self.window_size, self.value_dim, self.num_v_heads
        dtype = self.dtype
        k_qkvz, k_ba, k_conv, k_A, k_out = jax.random.split(key, 5)

        def uniform(k, shape, fan_in):
            return jax.random.uniform(k, shape, dtype, -fan_in ** -0.5, fan_in ** -0.5)

        return GatedDeltaNetParams(
            uniform(k_qkvz, (2 * self.key_dim + 2 * V, F), F), uniform(k_ba, (2 * Hv, F), F),
            uniform(k_conv, (C, K), K),
            jnp.ones((Hv,), dtype), jnp.log(jax.random.uniform(k_A, (Hv,), dtype, 0.01, 16.0)),
            jnp.ones((self.head_v_dim,), dtype), uniform(k_out, (O, V), V))

    def inner_initial_state(self, batch_shape=(), dtype=None) -> jax.Array:
        return jnp.zeros((*tuple(batch_shape), self.num_v_heads, self.head_k_dim, self.head_v_dim),
                         dtype or self.dtype)

    def window_input(self, params: GatedDeltaNetParams, x: jax.Array) -> jax.Array:
        """``[q, k, v]`` before the convolution, ``[..., C]``: the rows of ``in_proj_qkvz`` that feed it."""
        return x @ params.in_proj_qkvz_weight[self._layout()[0]].T

    def window_step(self, params: GatedDeltaNetParams, inner: jax.Array,
                    inputs: WindowInputs) -> tuple[jax.Array, jax.Array]:
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
        alpha = jnp.exp(-jnp.exp(jnp.broadcast_to(params.A_log, a.shape))
                        * jax.nn.softplus(a + jnp.broadcast_to(params.dt_bias, a.shape)))
        S = alpha[..., None, None] * inner.astype(u.dtype)                      # [..., H_v, d_k, d_v]
        delta = beta[..., None] * (v - jnp.einsum("...hkv,...hk->...hv", S, k))  # β (v - Sᵀ k)
        S = S + k[..., :, None] * delta[..., None, :]
        o = jnp.einsum("...hkv,...hk->...hv", S, q)                            # [..., H_v, d_v]
        z = (x @ params.in_proj_qkvz_weight[z_rows].T).reshape(*lead, Hv, dv)
        normed = o * jax.lax.rsqrt(jnp.mean(o * o, axis=-1, keepdims=True) + self.eps)
        gated = jnp.broadcast_to(params.norm_weight, normed.shape) * normed * jax.nn.silu(z)
        return S.astype(inner.dtype), gated.reshape(*lead, Hv * dv) @ params.out_proj_weight.T

    def input_size(self, params: GatedDeltaNetParams) -> int:
        return params.in_proj_qkvz_weight.shape[-1]


def gated_delta_net(hidden_size: int, *, num_heads: int = 4, head_k_dim: int | None = None,
                    head_v_dim: int | None = None, num_v_heads: int | None = None, conv_width: int = 4,
                    eps: float = 1e-6, dtype: Any = jnp.float32) -> GatedDeltaNetCell:
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
    whose ``inner`` is ``S [..., H_v, d_k, d_v]``. Not a :class:`jrnn.LinearRecurrence`: the transition
    ``α (I - β k kᵀ)`` is dense, so :func:`jrnn.auto` steps it (transformers' chunked form, a WY/UT transform over
    blocks of steps, is not implemented here). In a model the layer sits in a residual stream after an RMSNorm, its
    input size equal to ``hidden_size``; here the input size is the one given to ``init``.

    Initialisation (the torch module's constructor): ``A_log = log A`` with ``A`` from U(0.01, 16), ``dt_bias = 1``,
    ``norm_weight = 1``; the projections and the convolution as torch's ``nn.Linear`` and ``nn.Conv1d``,
    U(±1/√fan_in), without biases. (transformers' ``from_config`` redraws the projections from N(0, 0.02²).)

    Args:
      hidden_size: the model width: the size of ``y_t``.
      num_heads: H_k, the number of query and key heads (transformers' ``linear_num_key_heads``).
      head_k_dim: d_k (``linear_key_head_dim``); ``hidden_size // num_heads`` if None.
      head_v_dim: d_v (``linear_value_head_dim``); ``head_k_dim`` if None.
      num_v_heads: H_v (``linear_num_value_heads``), a multiple of ``num_heads``; ``num_heads`` if None.
      conv_width: K, the convolution's width, the current step included (``linear_conv_kernel_dim``).
      eps: the gated RMSNorm's epsilon (``rms_norm_eps``).
      dtype: dtype of the parameters and the default state.

    Returns:
      A :class:`GatedDeltaNetCell` with parameters :class:`GatedDeltaNetParams`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.gated_delta_net(8, num_heads=2, num_v_heads=4)  # d_k = d_v = 4
      >>> params = cell.init(jax.random.key(0), input_size=8)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 20, 8))
      >>> ys, state = jrnn.scan(cell, params, xs, solver=jrnn.sequential())
      >>> step = lambda s, x: cell.step(params, s, x)
      >>> _, stepped = jax.lax.scan(step, cell.initial_state((2,)), xs.swapaxes(0, 1))
      >>> bool(jnp.allclose(ys, stepped.swapaxes(0, 1), atol=1e-6)), state.window.shape, state.inner.shape
      (True, (2, 3, 32), (2, 4, 4, 4))
    """
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
    return GatedDeltaNetCell(hidden_size, num_heads, head_k_dim, head_v_dim, num_v_heads, conv_width, float(eps),
                             dtype)
