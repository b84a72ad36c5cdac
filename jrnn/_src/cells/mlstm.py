"""The mLSTM layer of xLSTM (Beck et al. 2024, arXiv 2405.04517), in the xLSTM-7B layout of transformers'
``xLSTMLayer``: a matrix memory per head with exponential input gates, kept finite by a stabiliser state.

Per head, with ``ĩ_t``, ``f̃_t`` the soft-capped gate preactivations (one scalar each) and ``q_t, k_t`` ``[d_qk]``,
``v_t`` ``[d_v]``::

    m_t = max(log σ(f̃_t) + m_{t-1}, ĩ_t)                       the stabiliser
    i'_t = exp(ĩ_t - m_t),   f'_t = exp(log σ(f̃_t) + m_{t-1} - m_t)
    C_t = f'_t C_{t-1} + i'_t k_t v_tᵀ                          [d_qk, d_v]
    n_t = f'_t n_{t-1} + i'_t k_t                               [d_qk]
    h̃_t = C_tᵀ q̂_t / (max(|n_tᵀ q̂_t|, exp(-m_t)) + ε),  q̂_t = q_t / √d_qk

``(C, n, m)`` stands for the unstabilised ``(C e^m, n e^m)``: the paper's ``C_t = f_t C_{t-1} + i_t v_t k_tᵀ`` with
``i_t = exp(ĩ_t)``, whose entries overflow where ``ĩ_t`` is large; ``h̃_t`` is the same (but for ``ε``).

The layer is a :class:`jrnn.Chunkwise` cell (so is xLSTM-7B's block around it,
:mod:`jrnn._src.cells.mlstm_block`): the stabiliser unrolls to a closed form, ``m_i = b_i + max(m_0,
max_{j ≤ i}(ĩ_j − b_j))`` with ``b_i`` the log forget gates summed over the chunk, so a chunk of steps is computed
exactly from ``[C, C]`` matrices per head (:meth:`MLSTMCell.chunk`), and :func:`jrnn.auto` runs it with
``jrnn.chunked(cell.chunk_size)``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src import checks, presets
from jrnn._src.cells import gates
from jrnn._src.contract import Chunkwise


class MLSTMParams(NamedTuple):
    """Parameters of :func:`mlstm`, named as transformers' ``xLSTMLayer`` (``weight_mode="single"``); weights
    ``[out, in]`` as torch's, ``F`` inputs, ``NH`` heads, ``Dqk = NH · d_qk``, ``Dv = NH · d_v``, ``O`` outputs.

    Attributes:
      q_weight, k_weight: ``[Dqk, F]``, the queries and keys, head after head.
      v_weight: ``[Dv, F]``, the values.
      ogate_weight: ``[Dv, F]``, the output gate's preactivation.
      igate_weight, fgate_weight: ``[NH, F]``, the input and forget gates' preactivations, one per head.
      igate_bias, fgate_bias: ``[NH]`` (always present).
      norm_weight: ``[Dv]``, the scale of the per-head layer norm.
      out_proj_weight: ``[O, Dv]``.
      q_bias, k_bias, v_bias, ogate_bias, norm_bias, out_proj_bias: ``[out]``, or None without ``bias``.
    """

    q_weight: jax.Array
    q_bias: jax.Array | None
    k_weight: jax.Array
    k_bias: jax.Array | None
    v_weight: jax.Array
    v_bias: jax.Array | None
    ogate_weight: jax.Array
    ogate_bias: jax.Array | None
    igate_weight: jax.Array
    igate_bias: jax.Array
    fgate_weight: jax.Array
    fgate_bias: jax.Array
    norm_weight: jax.Array
    norm_bias: jax.Array | None
    out_proj_weight: jax.Array
    out_proj_bias: jax.Array | None


class MLSTMState(NamedTuple):
    """The mLSTM's state, per head (transformers' ``(c, n, m)``, ``m`` without its trailing axis of 1).

    Attributes:
      C: ``[..., NH, d_qk, d_v]``, the matrix memory (keys by values).
      n: ``[..., NH, d_qk]``, the normaliser.
      m: ``[..., NH]``, the stabiliser: the log of the scale the memory and normaliser are kept at.
    """

    C: jax.Array
    n: jax.Array
    m: jax.Array


def _segment_cummax(a: jax.Array, resets: jax.Array | None) -> jax.Array:
    """``max_{j ≤ i, j in i's segment} a_j`` along axis 1 of ``a [B, C, ...]``, a segment starting where ``resets
    [B, C]`` is True; the gradient goes to the maximising entry (halves on a tie, as ``jnp.maximum``'s)."""
    if resets is None:
        return jax.lax.cummax(a, axis=1)

    def combine(x, y):
        (a_x, r_x), (a_y, r_y) = x, y
        return jnp.where(r_y, a_y, jnp.maximum(a_x, a_y)), r_x | r_y

    flags = jnp.broadcast_to(resets.reshape(resets.shape + (1,) * (a.ndim - 2)), a.shape)
    return jax.lax.associative_scan(combine, (a, flags), axis=1)[0]


def soft_cap(z: jax.Array, cap: float | None) -> jax.Array:
    """``cap · tanh(z / cap)`` (no cap for None), as transformers' ``soft_cap``."""
    return z if cap is None else cap * jnp.tanh(z / cap)


def mlstm_recurrence(state: MLSTMState, q: jax.Array, k: jax.Array, v: jax.Array, i_pre: jax.Array,
                     f_pre: jax.Array, eps: float) -> tuple[MLSTMState, jax.Array]:
    """One stabilised step per head (transformers' ``mlstm_recurrent_step_native``): ``q, k [..., NH, d_qk]``,
    ``v [..., NH, d_v]``, the gate preactivations ``[..., NH]``; returns the state and ``h̃ [..., NH, d_v]``."""
    log_f = jax.nn.log_sigmoid(f_pre)
    m = jnp.maximum(log_f + state.m, i_pre)
    f = jnp.exp(log_f + state.m - m)
    i = jnp.exp(i_pre - m)
    C = f[..., None, None] * state.C + i[..., None, None] * (k[..., :, None] * v[..., None, :])
    n = f[..., None] * state.n + i[..., None] * k
    q = q * q.shape[-1] ** -0.5
    numerator = jnp.einsum("...k,...kv->...v", q, C)
    denominator = jnp.maximum(jnp.abs(jnp.sum(q * n, axis=-1)), jnp.exp(-m)) + eps
    return MLSTMState(C, n, m), numerator / denominator[..., None]


@dataclasses.dataclass(frozen=True)
class MLSTMCell(Chunkwise):
    """The mLSTM layer as one cell; build it with :func:`mlstm`. ``hidden_size`` is the size of ``y_t`` (the model
    width); the state is an :class:`MLSTMState`. A :class:`jrnn.Chunkwise` cell: :meth:`chunk` computes a chunk of
    steps at once, exactly, and :func:`jrnn.auto` runs it with ``jrnn.chunked(chunk_size)``."""

    hidden_size: int
    num_heads: int = 4
    qk_dim: int = 2
    v_dim: int = 4
    bias: bool = False
    gate_soft_cap: float | None = 15.0
    eps: float = 1e-6
    norm_eps: float = 1e-6
    num_layers: int = 1
    dtype: Any = jnp.float32
    preset: str = "jrnn"  # "pytorch": the torch layer's nn.Linear draw (jrnn._src.presets)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    @property
    def chunk_size(self) -> int:  # type: ignore[override]
        """The chunk :func:`jrnn.auto` takes: ``d_v`` rounded up to a power of two, within ``[16, 64]`` (measured on a
        CPU, fwd+bwd at T 1024: d_v 16 fastest in chunks of 16, d_v 64 equal at 32 and 64)."""
        return min(64, max(16, 1 << (self.v_dim // self.num_heads - 1).bit_length()))

    def init(self, key: jax.Array, input_size: int) -> MLSTMParams:
        """transformers' ``xLSTMPreTrainedModel._init_weights`` (``weight_mode="single"``): ``q``, ``k``, ``v`` from
        N(0, 2 / (5F)) (small init); every gate's weight 0 (the output gate's too), the input gate's bias -10, the
        forget gate's ``linspace(3, 6, NH)``; ``out_proj`` from N(0, (2 / num_layers / √F)²) (Wang init); the norm's
        scale 1; every other bias 0."""
        F = checks.positive_int("input_size", input_size, "jrnn.mlstm.init")
        NH, Dqk, Dv, O, dtype = self.num_heads, self.qk_dim, self.v_dim, self.hidden_size, self.dtype
        k_q, k_k, k_v, k_out = jax.random.split(key, 4)
        small = math.sqrt(2 / (5 * F))
        zeros = (lambda n: jnp.zeros((n,), dtype)) if self.bias else (lambda n: None)
        params = MLSTMParams(
            small * jax.random.normal(k_q, (Dqk, F), dtype), zeros(Dqk),
            small * jax.random.normal(k_k, (Dqk, F), dtype), zeros(Dqk),
            small * jax.random.normal(k_v, (Dv, F), dtype), zeros(Dv),
            jnp.zeros((Dv, F), dtype), zeros(Dv),
            jnp.zeros((NH, F), dtype), jnp.full((NH,), -10.0, dtype),
            jnp.zeros((NH, F), dtype), jnp.linspace(3.0, 6.0, NH, dtype=dtype),
            jnp.ones((Dv,), dtype), zeros(Dv),
            2 / self.num_layers / math.sqrt(F) * jax.random.normal(k_out, (O, Dv), dtype), zeros(O))
        return presets.finish(self.preset, params, key)

    def initial_state(self, batch_shape=(), dtype=None) -> MLSTMState:
        NH, dtype, batch = self.num_heads, dtype or self.dtype, tuple(batch_shape)
        dqk, dv = self.qk_dim // NH, self.v_dim // NH
        return MLSTMState(jnp.zeros((*batch, NH, dqk, dv), dtype), jnp.zeros((*batch, NH, dqk), dtype),
                          jnp.zeros((*batch, NH), dtype))

    def projections(self, params: MLSTMParams, x: jax.Array) -> tuple[jax.Array, ...]:
        """``(q, k, v, ĩ, f̃)`` from ``x [..., F]`` (any leading axes: one step or a chunk): ``q, k [..., NH, d_qk]``,
        ``v [..., NH, d_v]``, the soft-capped gate preactivations ``[..., NH]``."""
        p, NH = params, self.num_heads
        heads = lambda a: a.reshape(*a.shape[:-1], NH, a.shape[-1] // NH)  # noqa: E731
        q = heads(gates.affine(x, p.q_weight, p.q_bias))
        k = heads(gates.affine(x, p.k_weight, p.k_bias))
        v = heads(gates.affine(x, p.v_weight, p.v_bias))
        i_pre = soft_cap(gates.affine(x, p.igate_weight, p.igate_bias), self.gate_soft_cap)
        f_pre = soft_cap(gates.affine(x, p.fgate_weight, p.fgate_bias), self.gate_soft_cap)
        return q, k, v, i_pre, f_pre

    def output(self, params: MLSTMParams, h: jax.Array, x: jax.Array) -> jax.Array:
        """``y = V (σ(U_o x + b_o) ⊙ LN(h̃)) + b_V``, ``[..., hidden_size]``, from ``h̃ [..., NH, d_v]`` and
        ``x [..., F]``."""
        p = params
        centred = h - jnp.mean(h, axis=-1, keepdims=True)
        h = centred * jax.lax.rsqrt(jnp.mean(centred ** 2, axis=-1, keepdims=True) + self.norm_eps)
        h = h.reshape(*h.shape[:-2], self.v_dim)
        h = h * jnp.broadcast_to(p.norm_weight, h.shape)
        h = h if p.norm_bias is None else h + jnp.broadcast_to(p.norm_bias, h.shape)
        o = jax.nn.sigmoid(gates.affine(x, p.ogate_weight, p.ogate_bias))
        return gates.affine(o * h, p.out_proj_weight, p.out_proj_bias)

    def step(self, params: MLSTMParams, state: MLSTMState, x: jax.Array) -> tuple[MLSTMState, jax.Array]:
        state, h = mlstm_recurrence(state, *self.projections(params, x), self.eps)
        return state, self.output(params, h, x)

    def chunk(self, params: MLSTMParams, state: MLSTMState, xs: jax.Array, valid: jax.Array | None,
              resets: jax.Array | None, restart: MLSTMState) -> tuple[MLSTMState, jax.Array]:
        """``C`` steps at once (:class:`jrnn.Chunkwise`), exactly (the stabiliser has a closed form). Per head, with
        the log forget gates summed within the segment, ``b_i = Σ_{t ≤ i} log σ(f̃_t)`` (from the segment's first
        step in the chunk), and ``(C_0, n_0, m_0)`` the segment's initial state (the incoming one, ``restart``
        after a reset)::

            m_i = b_i + max(m_0, max_{j ≤ i} (ĩ_j − b_j))                       the step's m_i, unrolled
            D_ij = exp(b_i − b_j + ĩ_j − m_i)  (j ≤ i, same segment; else 0),  g_i = exp(b_i + m_0 − m_i)
            C_i = g_i C_0 + Σ_j D_ij k_j v_jᵀ,   n_i = g_i n_0 + Σ_j D_ij k_j
            h̃_i = (g_i C_0ᵀ q̂_i + Σ_j D_ij (q̂_i · k_j) v_j) / (max(|q̂_i · n_i|, exp(−m_i)) + ε),
            q̂_i · n_i = g_i q̂_i · n_0 + Σ_j D_ij (q̂_i · k_j)

        every exponent at most 0, each sum a matrix product over the chunk (``[C, C]`` per head), ``m`` a cumulative
        max over the segment (``O(C)``, its gradient to the maximising term as the step's ``jnp.maximum``); the state
        after the chunk is row ``C - 1``'s. An invalid step leaves the state as it is (``log σ(f̃) → 0``, its term
        masked), and every mask is applied before the ``exp`` with a finite fill, so no ``inf`` reaches a value or a
        gradient."""
        q, k, v, i_pre, f_pre = self.projections(params, xs)  # [B, C, NH, d_qk] twice, [B, C, NH, d_v], [B, C, NH]
        q = q * q.shape[-1] ** -0.5
        log_f = jax.nn.log_sigmoid(f_pre)
        size = xs.shape[1]
        t = jnp.arange(size)
        keep = (t[:, None] >= t[None, :])[None]  # [1, i, j]: j ≤ i
        if valid is not None:  # an invalid step leaves the state as it is: forget gate 1, no input
            log_f = jnp.where(valid[..., None], log_f, jnp.zeros_like(log_f))
            keep = keep & valid[:, None, :]
        cum = jnp.cumsum(log_f, axis=1)  # [B, C, NH]
        written = i_pre - cum  # ĩ_j − b_j (+ the segment's base, which b_i − b_j cancels)
        if valid is not None:
            written = jnp.where(valid[..., None], written, jnp.full_like(written, jnp.finfo(written.dtype).min))
        C0, n0, m0 = state.C, state.n, state.m
        if resets is None:
            b = cum
            m_start = jnp.broadcast_to(m0[:, None], cum.shape)
            qC0 = jnp.einsum("bihk,bhkv->bihv", q, C0)
            qn0 = jnp.einsum("bihk,bhk->bih", q, n0)
            C_last, n_last = C0, n0
        else:
            segment = jnp.cumsum(resets, axis=1)
            keep = keep & (segment[:, :, None] == segment[:, None, :])
            first = jax.lax.cummax(jnp.where(resets, t[None], 0).astype(jnp.int32), axis=1)  # the segment's start
            before = jnp.take_along_axis(cum - log_f, first[..., None], axis=1)
            later = segment > 0  # a step after the chunk's first reset starts from restart
            b = cum - jnp.where(later[..., None], before, jnp.zeros_like(before))
            R = jax.tree_util.tree_map(lambda r, s: jnp.broadcast_to(r, s.shape).astype(s.dtype), restart, state)
            m_start = jnp.where(later[..., None], R.m[:, None], m0[:, None])
            qC0 = jnp.where(later[..., None, None], jnp.einsum("bihk,bhkv->bihv", q, R.C),
                            jnp.einsum("bihk,bhkv->bihv", q, C0))
            qn0 = jnp.where(later[..., None], jnp.einsum("bihk,bhk->bih", q, R.n), jnp.einsum("bihk,bhk->bih", q, n0))
            C_last = jnp.where(later[:, -1, None, None, None], R.C, C0)
            n_last = jnp.where(later[:, -1, None, None], R.n, n0)
        heads = jnp.moveaxis(cum, -1, 1)  # [B, NH, C]
        gates_in = jnp.moveaxis(i_pre, -1, 1)
        logits = heads[..., :, None] - heads[..., None, :] + gates_in[..., None, :]  # b_i − b_j + ĩ_j, [B, NH, i, j]
        logits = jnp.where(keep[:, None], logits, jnp.full_like(logits, jnp.finfo(logits.dtype).min))
        from_start = b + m_start  # b_i + m_0, [B, C, NH]
        m = jnp.maximum(from_start, cum + _segment_cummax(written, resets))  # [B, C, NH]
        g = jnp.exp(from_start - m)
        D = jnp.exp(logits - jnp.moveaxis(m, -1, 1)[..., None])  # [B, NH, i, j]
        scores = D * jnp.einsum("bihk,bjhk->bhij", q, k)
        numerator = g[..., None] * qC0 + jnp.einsum("bhij,bjhv->bihv", scores, v)
        qn = g * qn0 + jnp.moveaxis(jnp.sum(scores, axis=-1), 1, -1)
        h = numerator / (jnp.maximum(jnp.abs(qn), jnp.exp(-m)) + self.eps)[..., None]
        last = D[:, :, -1]  # [B, NH, j]: the last row's weights
        C = g[:, -1, :, None, None] * C_last + jnp.einsum("bhj,bjhk,bjhv->bhkv", last, k, v)
        n = g[:, -1, :, None] * n_last + jnp.einsum("bhj,bjhk->bhk", last, k)
        final = MLSTMState(C.astype(state.C.dtype), n.astype(state.n.dtype), m[:, -1].astype(state.m.dtype))
        return final, self.output(params, h, xs)

    def input_size(self, params: MLSTMParams) -> int:
        return params.q_weight.shape[-1]


def mlstm(hidden_size: int, *, num_heads: int = 4, qk_dim_factor: float = 0.5, v_dim_factor: float = 1.0,
          bias: bool = False, gate_soft_cap: float | None = 15.0, eps: float = 1e-6, norm_eps: float = 1e-6,
          num_layers: int = 1, init: str | None = None, dtype: Any = jnp.float32) -> MLSTMCell:
    """The mLSTM layer of xLSTM (Beck et al. 2024, "xLSTM: extended long short-term memory", arXiv 2405.04517,
    section 2.3), in the layout of xLSTM-7B and transformers' ``xLSTMLayer`` (:func:`jrnn.from_torch` converts
    one). In the seed's notation, ``U`` the input weights (every projection below reads ``x_t`` alone), the state
    ``s_t = (C_t, n_t, m_t)`` per head::

        q_t, k_t, v_t = U_q x_t + b_q, U_k x_t + b_k, U_v x_t + b_v     [..., NH, d_qk], [..., NH, d_qk], [..., NH, d_v]
        ĩ_t = cap(U_i x_t + b_i),  f̃_t = cap(U_f x_t + b_f)              [..., NH],  cap(z) = c·tanh(z / c)
        m_t = max(log σ(f̃_t) + m_{t-1}, ĩ_t)
        i'_t = exp(ĩ_t - m_t),  f'_t = exp(log σ(f̃_t) + m_{t-1} - m_t)
        C_t = f'_t C_{t-1} + i'_t k_t v_tᵀ                              [..., NH, d_qk, d_v]
        n_t = f'_t n_{t-1} + i'_t k_t                                   [..., NH, d_qk]
        h̃_t = C_tᵀ q̂_t / (max(|n_tᵀ q̂_t|, exp(-m_t)) + ε)               q̂_t = q_t / √d_qk
        y_t = V (σ(U_o x_t + b_o) ⊙ LN(h̃_t)) + b_V                     LN: a layer norm per head, scale and bias

    No recurrent matrix ``W``: the state enters only through the memory. The forget gate is ``σ`` in log space, the
    input gate exponential, and ``m`` their stabiliser: ``(C, n)`` is the paper's memory and normaliser scaled by
    ``e^{-m}``, so every ``exp`` above is at most 1 however large ``ĩ`` is. As transformers, the query (not the key)
    carries ``1/√d_qk`` (the same ``h̃``; ``C`` and ``n`` are transformers' own), and ``ε`` is added after the max.
    transformers' parallel and chunkwise forms compute the same outputs. Here the step is the definition, and a
    chunk of ``C`` steps is also computed at once (:meth:`MLSTMCell.chunk`, a :class:`jrnn.Chunkwise` cell): with
    ``b_i = Σ_{t ≤ i} log σ(f̃_t)`` over the chunk, ``m_i = b_i + max(m_0, max_{j ≤ i}(ĩ_j − b_j))`` and
    ``D_ij = exp(b_i − b_j + ĩ_j − m_i)`` (``j ≤ i``), ``C_i = exp(b_i + m_0 − m_i) C_0 + Σ_j D_ij k_j v_jᵀ``, so
    ``h̃`` comes from matrix products with every exponent at most 0, exact (the same function, not an approximation).
    :func:`jrnn.scan`'s default, :func:`jrnn.auto`, takes ``jrnn.chunked(chunk_size)`` for it;
    ``jrnn.sequential()`` steps.
    In xLSTM-7B the layer sits in a residual block after an RMSNorm, with a gated
    feed-forward after it (transformers' ``xLSTMBlock``); the input size here is the one given to ``init``.

    Initialisation (transformers' ``_init_weights``; the official ``xlstm_large`` code leaves it to its training
    code): ``U_q, U_k, U_v`` from N(0, 2/(5F)); ``U_o, U_i, U_f`` zero; ``b_i = -10``, ``b_f = linspace(3, 6, NH)``;
    ``V`` from N(0, (2 / num_layers / √F)²); the layer norm's scale 1; other biases 0.

    Args:
      hidden_size: the model width: the size of ``y_t``.
      num_heads: NH, the number of heads.
      qk_dim_factor: the total query and key size is ``int(hidden_size · qk_dim_factor)``, split over the heads.
      v_dim_factor: the total value size is ``int(hidden_size · v_dim_factor)``, split over the heads.
      bias: whether ``q, k, v``, the output gate, the layer norm and ``V`` have biases (the input and forget gates
        always do).
      gate_soft_cap: ``c``, the soft cap of the input and forget gates' preactivations (None: no cap).
      eps: ``ε`` of ``h̃``'s denominator.
      norm_eps: the layer norm's epsilon.
      num_layers: the number of layers of the stack, which scales ``V``'s initialisation.
      init: None (jrnn's defaults), or ``"pytorch"``: transformers' ``xLSTMLayer`` constructor's draw (without
        ``_init_weights``): every weight and gate bias as ``nn.Linear``'s, U(±1/√fan_in); norms 1 (docs: porting,
        "Matching a run from another library"); ``"flax"`` and ``"keras"`` are a ValueError.
      dtype: dtype of the parameters and the default state.

    Returns:
      An :class:`MLSTMCell` with parameters :class:`MLSTMParams` and state :class:`MLSTMState`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.mlstm(8, num_heads=2)
      >>> params = cell.init(jax.random.key(0), input_size=8)
      >>> xs = jax.random.normal(jax.random.key(1), (3, 10, 8))
      >>> ys, state = jrnn.scan(cell, params, xs)  # jrnn.auto(): jrnn.chunked(16)
      >>> ys.shape, state.C.shape, state.n.shape, state.m.shape
      ((3, 10, 8), (3, 2, 2, 4), (3, 2, 2), (3, 2))
      >>> steps, _ = jrnn.scan(cell, params, xs, solver=jrnn.sequential())
      >>> chunks, _ = jrnn.scan(cell, params, xs, solver=jrnn.chunked(4))
      >>> bool(jnp.allclose(chunks, steps, atol=1e-5)), bool(jnp.allclose(ys, steps, atol=1e-5))
      (True, True)
    """
    return _layer("jrnn.mlstm", hidden_size, num_heads, qk_dim_factor, v_dim_factor, bias, gate_soft_cap, eps, norm_eps,
                  num_layers, dtype, init)


def _layer(where: str, hidden_size: int, num_heads: int, qk_dim_factor: float, v_dim_factor: float, bias: bool,
           gate_soft_cap: float | None, eps: float, norm_eps: float, num_layers: int, dtype: Any,
           init: str | None) -> MLSTMCell:
    """:func:`mlstm` with its checks' errors naming ``where``."""
    preset = presets.preset(where, init)
    hidden_size = checks.positive_int("hidden_size", hidden_size, where)
    num_heads = checks.positive_int("num_heads", num_heads, where)
    num_layers = checks.positive_int("num_layers", num_layers, where)
    dims = {}
    for name, factor in (("qk_dim_factor", qk_dim_factor), ("v_dim_factor", v_dim_factor)):
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor <= 0:
            raise ValueError(f"{where}: expected a positive {name}, got {factor!r}")
        dims[name] = int(hidden_size * factor)
        if dims[name] < num_heads or dims[name] % num_heads:
            raise ValueError(f"{where}: expected int(hidden_size * {name}) to be a positive multiple of num_heads "
                             f"({num_heads}), got int({hidden_size} * {factor}) = {dims[name]}")
    if dims["v_dim_factor"] // num_heads < 2:
        raise ValueError(f"{where}: expected at least 2 value features per head (the layer norm of one feature is "
                         f"0), got {dims['v_dim_factor']} over {num_heads} heads")
    if gate_soft_cap is not None and not (isinstance(gate_soft_cap, (int, float)) and gate_soft_cap > 0):
        raise ValueError(f"{where}: expected a positive gate_soft_cap or None, got {gate_soft_cap!r}")
    for name, value in (("eps", eps), ("norm_eps", norm_eps)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{where}: expected a non-negative {name}, got {value!r}")
    return MLSTMCell(hidden_size, num_heads, dims["qk_dim_factor"], dims["v_dim_factor"], bool(bias),
                     None if gate_soft_cap is None else float(gate_soft_cap), float(eps), float(norm_eps), num_layers,
                     dtype, preset)
