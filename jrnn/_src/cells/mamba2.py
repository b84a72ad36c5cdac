"""Mamba-2's block (Dao & Gu 2024, "Transformers are SSMs", arXiv 2405.21060): the state space dual (SSD) layer, a
selective state space model whose decay is one scalar per head.

The numerics are those of transformers' ``Mamba2Mixer`` (its PyTorch path) and of the official
``mamba_ssm.modules.mamba2.Mamba2``: ``Δ = softplus(Δ_raw + dt_bias)`` clamped to ``dt_limit``, so per head ``h``,
head channel ``p`` and state index ``n``::

    S_t[h, p, n] = exp(Δ_t[h] A[h]) S_{t-1}[h, p, n] + Δ_t[h] x_t[h, p] B_t[g(h), n]
    y_t[h, p]    = Σ_n S_t[h, p, n] C_t[g(h), n] + D[h] x_t[h, p]

a diagonal recurrence whose coefficients depend on the input alone (a :class:`jrnn.LinearRecurrence` on ``S``
flattened to ``[H·P·N]``, its decay broadcast over ``[P, N]``), inside a :class:`jrnn.Windowed` cell whose window
is the convolution's over ``(x, B, C)``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src import checks, presets
from jrnn._src.cells import gates
from jrnn._src.cells.mamba import _check_dt, _uniform
from jrnn._src.contract import Chunkwise, LinearRecurrence, Windowed, WindowInputs


class Mamba2Params(NamedTuple):
    """Parameters of :func:`mamba2`, named as transformers' ``Mamba2Mixer`` (``F`` inputs, ``O`` outputs, ``E = H·P``
    channels, ``H`` heads of ``P`` channels, ``G`` groups, ``N`` the state size, ``C = E + 2GN`` the convolution's
    channels, ``K`` its width); weights ``[out, in]`` as torch's.

    Attributes:
      in_proj_weight: ``[E + C + H, F]``, blocks ``z, x, B, C, Δ_raw`` in this order: the gate, the convolution's
        input ``(x [E], B [G·N], C [G·N])``, then Δ.
      in_proj_bias: ``[E + C + H]`` or None.
      conv1d_weight: ``[C, K]``, one filter per channel, oldest step first (torch's ``[C, 1, K]`` without its group
        axis).
      conv1d_bias: ``[C]`` or None.
      dt_bias: ``[H]``, added to ``Δ_raw`` before the softplus.
      A_log: ``[H]``, ``A = -exp(A_log)``.
      D: ``[H]``, the skip connection.
      norm_weight: ``[E]``, the gated RMSNorm's scale.
      out_proj_weight: ``[O, E]``.
      out_proj_bias: ``[O]`` or None.
    """

    in_proj_weight: jax.Array
    in_proj_bias: jax.Array | None
    conv1d_weight: jax.Array
    conv1d_bias: jax.Array | None
    dt_bias: jax.Array
    A_log: jax.Array
    D: jax.Array
    norm_weight: jax.Array
    out_proj_weight: jax.Array
    out_proj_bias: jax.Array | None


@dataclasses.dataclass(frozen=True)
class Mamba2Cell(Windowed, LinearRecurrence, Chunkwise):
    """Mamba-2's block as one cell; build it with :func:`mamba2`. Its state is a :class:`jrnn.WindowState`: the last
    ``width - 1`` convolution inputs ``[..., K-1, E + 2GN]``, ``fresh`` (unused), and ``S`` flattened to
    ``[..., H·P·N]`` (head-major: index ``(h·P + p)·N + n``, transformers' ``[B, H, P, N]`` reshaped) as ``inner``.

    ``hidden_size`` is the block's model width ``d_model``, the size of ``y_t``.
    """

    expands = True  # H·P·N coefficients from E channels: built for the whole sequence, they cost more than chunks

    hidden_size: int
    num_heads: int
    head_dim: int = 64
    state_size: int = 128
    n_groups: int = 1
    width: int = 4
    conv_bias: bool = True
    bias: bool = False
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    dt_limit: tuple[float, float] = (0.0, math.inf)
    norm_eps: float = 1e-5
    dtype: Any = jnp.float32

    @property
    def output_size(self) -> int:
        return self.hidden_size

    @property
    def intermediate_size(self) -> int:
        """``E = H·P``."""
        return self.num_heads * self.head_dim

    @property
    def window_size(self) -> int:
        """``E + 2GN``: the convolution runs over ``x``, ``B`` and ``C``."""
        return self.intermediate_size + 2 * self.n_groups * self.state_size

    def init(self, key: jax.Array, input_size: int) -> Mamba2Params:
        """``in_proj``, ``out_proj`` and the convolution as torch's ``nn.Linear`` and ``nn.Conv1d`` draw them
        (U(±1/√fan_in), biases too); ``A_log = log(1..H)``, ``D = 1``, the norm's scale 1, ``dt_bias`` the inverse
        softplus of Δ log-uniform on ``[dt_min, dt_max]`` (at least ``dt_init_floor``)."""
        F = checks.positive_int("input_size", input_size, "jrnn.mamba2.init")
        E, C, H, K, O, dtype = (self.intermediate_size, self.window_size, self.num_heads, self.width,
                                self.hidden_size, self.dtype)
        k_in, k_in_b, k_conv, k_conv_b, k_dt, k_out, k_out_b = jax.random.split(key, 7)
        unit = jax.random.uniform(k_dt, (H,), dtype)
        dt = jnp.exp(unit * (math.log(self.dt_max) - math.log(self.dt_min)) + math.log(self.dt_min))
        dt = jnp.maximum(dt, self.dt_init_floor)
        return Mamba2Params(
            _uniform(k_in, (E + C + H, F), F ** -0.5, dtype),
            _uniform(k_in_b, (E + C + H,), F ** -0.5, dtype) if self.bias else None,
            _uniform(k_conv, (C, K), K ** -0.5, dtype),
            _uniform(k_conv_b, (C,), K ** -0.5, dtype) if self.conv_bias else None,
            dt + jnp.log(-jnp.expm1(-dt)),  # softplus⁻¹(dt)
            jnp.log(jnp.arange(1, H + 1, dtype=dtype)),
            jnp.ones((H,), dtype),
            jnp.ones((E,), dtype),
            _uniform(k_out, (O, E), E ** -0.5, dtype),
            _uniform(k_out_b, (O,), E ** -0.5, dtype) if self.bias else None)

    def inner_initial_state(self, batch_shape=(), dtype=None) -> jax.Array:
        return gates.zeros_state(batch_shape, self.intermediate_size * self.state_size, dtype or self.dtype)

    def _in_proj(self, params: Mamba2Params, x: jax.Array, start: int, stop: int) -> jax.Array:
        bias = None if params.in_proj_bias is None else params.in_proj_bias[start:stop]
        return gates.affine(x, params.in_proj_weight[start:stop], bias)

    def window_input(self, params: Mamba2Params, x: jax.Array) -> jax.Array:
        """The ``(x, B, C)`` block of ``in_proj``: ``[..., E + 2GN]``."""
        E = self.intermediate_size
        return self._in_proj(params, x, E, E + self.window_size)

    def convolved(self, params: Mamba2Params, window: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``silu(Σ_k w[:, k] ⊙ window[k] + b)`` from ``window [..., K, E + 2GN]`` (oldest first), split into
        ``x [..., H, P]`` and ``B``, ``C`` ``[..., H, N]`` (group ``g(h) = h // (H/G)`` repeated for its heads)."""
        v = jnp.einsum("...kc,ck->...c", window, params.conv1d_weight)
        if params.conv1d_bias is not None:
            v = v + jnp.broadcast_to(params.conv1d_bias, v.shape)
        v = jax.nn.silu(v)
        E, G, N, H = self.intermediate_size, self.n_groups, self.state_size, self.num_heads
        x = v[..., :E].reshape(*v.shape[:-1], H, self.head_dim)
        B = jnp.repeat(v[..., E:E + G * N].reshape(*v.shape[:-1], G, N), H // G, axis=-2)
        C = jnp.repeat(v[..., E + G * N:].reshape(*v.shape[:-1], G, N), H // G, axis=-2)
        return x, B, C

    def delta(self, params: Mamba2Params, x: jax.Array) -> jax.Array:
        """``Δ = clip(softplus(Δ_raw + dt_bias), *dt_limit)``, ``[..., H]``, from the block's input ``x [..., F]``."""
        E, C = self.intermediate_size, self.window_size
        raw = self._in_proj(params, x, E + C, E + C + self.num_heads)
        return jnp.clip(jax.nn.softplus(raw + jnp.broadcast_to(params.dt_bias, raw.shape)), *self.dt_limit)

    def _discretised(self, params: Mamba2Params, inputs: WindowInputs) -> tuple[jax.Array, jax.Array]:
        x, B, _ = self.convolved(params, inputs.window)
        dt = self.delta(params, inputs.x)  # [..., H]
        decay = jnp.exp(dt * jnp.broadcast_to(-jnp.exp(params.A_log), dt.shape))  # [..., H]
        shape = (*dt.shape, self.head_dim, self.state_size)
        a = jnp.broadcast_to(decay[..., None, None], shape)
        b = (x * dt[..., None])[..., :, None] * B[..., None, :]  # transformers' order: (x Δ) ⊗ B
        return a.reshape(*a.shape[:-3], -1), b.reshape(*b.shape[:-3], -1)

    def window_step(self, params: Mamba2Params, inner: jax.Array,
                    inputs: WindowInputs) -> tuple[jax.Array, jax.Array]:
        a, b = self._discretised(params, inputs)
        S = a * inner + b
        return S, self.readout(params, S, inputs)

    def coefficients(self, params: Mamba2Params, inputs: WindowInputs) -> tuple[jax.Array, jax.Array]:
        """``(exp(Δ A) broadcast over [P, N], (Δ x) ⊗ B)``, each ``[B, T, H·P·N]`` (:class:`jrnn.LinearRecurrence`)."""
        return self._discretised(params, inputs)

    def readout(self, params: Mamba2Params, states: jax.Array, inputs: WindowInputs) -> jax.Array:
        """``out_proj(rmsnorm_G((S C + D x) ⊙ silu(z)) ⊙ norm_weight)``, ``[B, T, O]``, with ``z`` the gate block of
        ``in_proj(x)`` and the RMSNorm taken over each of the ``G`` groups of ``E/G`` channels."""
        x, _, C = self.convolved(params, inputs.window)
        S = states.reshape(*states.shape[:-1], self.num_heads, self.head_dim, self.state_size)
        return self._gated_output(params, jnp.einsum("...hpn,...hn->...hp", S, C), x, inputs.x)

    def chunk(self, params: Mamba2Params, inner: jax.Array, inputs: WindowInputs, valid: jax.Array | None,
              resets: jax.Array | None, restart: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``C`` steps at once (:class:`jrnn.Chunkwise`), the SSD form (Dao & Gu 2024, section 6): with the log
        decays ``l_t = Δ_t A`` summed within the chunk, ``λ_i = Σ_{t ≤ i} l_t``, and ``u_t = Δ_t x_t``::

            y_i = Σ_{j ≤ i} exp(λ_i − λ_j) (C_i · B_j) u_j + exp(λ_i) C_i S_0        (segment by segment)
            S_C = Σ_j exp(λ_C − λ_j) u_j ⊗ B_j + exp(λ_C) S_0

        each a matrix product over the chunk; a reset cuts the sums at its step (the terms of earlier steps are
        masked, and ``S_0`` becomes ``restart`` with the decay counted from there)."""
        x, Bm, Cm = self.convolved(params, inputs.window)  # [B, C, H, P], [B, C, H, N] twice
        dt = self.delta(params, inputs.x)  # [B, C, H]
        log_decay = dt * jnp.broadcast_to(-jnp.exp(params.A_log), dt.shape)
        u = x * dt[..., None]
        if valid is not None:  # an invalid step leaves the state as it is: decay 1, input 0
            log_decay = jnp.where(valid[..., None], log_decay, jnp.zeros_like(log_decay))
            u = jnp.where(valid[..., None, None], u, jnp.zeros_like(u))
        H, P, N = self.num_heads, self.head_dim, self.state_size
        S0 = inner.reshape(*inner.shape[:-1], H, P, N)
        size = dt.shape[1]
        t = jnp.arange(size)
        cum = jnp.cumsum(log_decay, axis=1)  # λ_i, [B, C, H]
        from_S0 = jnp.einsum("bihn,bhpn->bihp", Cm, S0)  # C_i S_0
        if resets is None:
            segment = jnp.zeros(dt.shape[:2], jnp.int32)
            base = jnp.zeros_like(cum)  # λ before the segment's first step
            from_start, start_last = from_S0, S0
        else:
            segment = jnp.cumsum(resets, axis=1)
            first = jax.lax.cummax(jnp.where(resets, t[None], 0).astype(jnp.int32), axis=1)  # the segment's first step
            before = cum - log_decay
            base = jnp.where((segment > 0)[..., None], jnp.take_along_axis(before, first[..., None], axis=1), 0.0)
            R = jnp.broadcast_to(restart.reshape(*restart.shape[:-1], H, P, N), S0.shape)
            later = segment > 0  # a step after the chunk's first reset starts from restart
            from_start = jnp.where(later[..., None, None], jnp.einsum("bihn,bhpn->bihp", Cm, R), from_S0)
            start_last = jnp.where(later[:, -1, None, None, None], R, S0)
        same = (segment[:, :, None] == segment[:, None, :]) & (t[:, None] >= t[None, :])[None]  # [B, i, j]
        heads = jnp.moveaxis(cum, -1, 1)  # [B, H, C]
        gaps = heads[..., :, None] - heads[..., None, :]  # λ_i − λ_j, [B, H, i, j]
        L = jnp.exp(jnp.where(same[:, None], gaps, -jnp.inf))  # 0 across segments and above the diagonal
        scores = jnp.einsum("bihn,bjhn->bhij", Cm, Bm) * L
        y = jnp.einsum("bhij,bjhp->bihp", scores, u) + jnp.exp(cum - base)[..., None] * from_start
        last = segment[:, -1:]  # the last step's segment: what the state after the chunk remembers
        weights = jnp.where((segment == last)[..., None], jnp.exp(cum[:, -1:] - cum), jnp.zeros_like(cum))  # [B, C, H]
        S = jnp.einsum("bjh,bjhp,bjhn->bhpn", weights, u, Bm) + \
            jnp.exp(cum[:, -1] - base[:, -1])[..., None, None] * start_last
        return S.reshape(inner.shape).astype(inner.dtype), self._gated_output(params, y, x, inputs.x)

    def _gated_output(self, params: Mamba2Params, sc: jax.Array, x: jax.Array, block_input: jax.Array) -> jax.Array:
        """``out_proj(rmsnorm_G((S C + D x) ⊙ silu(z)) ⊙ norm_weight)`` from ``S C`` and ``x`` ``[..., H, P]``."""
        y = sc + jnp.broadcast_to(params.D[:, None], x.shape) * x
        y = y.reshape(*y.shape[:-2], -1) * jax.nn.silu(self._in_proj(params, block_input, 0, self.intermediate_size))
        grouped = y.reshape(*y.shape[:-1], self.n_groups, -1)
        grouped = grouped * jax.lax.rsqrt(jnp.mean(grouped * grouped, axis=-1, keepdims=True) + self.norm_eps)
        normed = jnp.broadcast_to(params.norm_weight, y.shape) * grouped.reshape(y.shape)
        return gates.affine(normed, params.out_proj_weight, params.out_proj_bias)

    def input_size(self, params: Mamba2Params) -> int:
        return params.in_proj_weight.shape[-1]


def mamba2(hidden_size: int, *, state_size: int = 128, expand: float = 2, head_dim: int = 64, n_groups: int = 1,
           conv_width: int = 4, conv_bias: bool = True, bias: bool = False, dt_min: float = 0.001,
           dt_max: float = 0.1, dt_init_floor: float = 1e-4, dt_limit: tuple[float, float] = (0.0, math.inf),
           norm_eps: float = 1e-5, init: str | None = None, dtype: Any = jnp.float32) -> Mamba2Cell:
    """Mamba-2's block (Dao & Gu 2024, "Transformers are SSMs: generalized models and efficient algorithms through
    structured state space duality", arXiv 2405.21060, section 7 and figure 6), one cell::

        (z_t, x̂_t, Δ̂_t) = in_proj(x_t)                        [..., E], [..., E + 2GN], [..., H]
        (u_t, B_t, C_t) = silu(Σ_{k<K} w_k ⊙ x̂_{t-K+1+k} + b_conv)  causal depthwise convolution, zeros before;
                                                                  u_t [..., H, P], B_t and C_t [..., G, N]
        Δ_t  = clip(softplus(Δ̂_t + dt_bias), *dt_limit)             [..., H]
        S_t  = exp(Δ_t A) S_{t-1} + Δ_t u_t ⊗ B_t[g(h)]             [..., H, P, N],  A = -exp(A_log) [H]
        v_t  = S_t C_t[g(h)] + D u_t                                [..., H, P] → [..., E]
        y_t  = out_proj(norm_weight ⊙ rmsnorm_G(v_t ⊙ silu(z_t)))    [..., hidden_size]

    with ``E = H·P = int(expand · hidden_size)``, head ``h`` reading group ``g(h) = h // (H/G)``, and the gated
    RMSNorm ``v / √(mean(v²) + norm_eps)`` taken over each group of ``E/G`` channels (the gate applied before the
    norm, ``norm_before_gate=False``). As transformers' ``Mamba2Mixer`` and the official
    ``mamba_ssm.modules.mamba2.Mamba2`` (:func:`jrnn.from_torch` converts a ``Mamba2Mixer``). A
    :class:`jrnn.Windowed` cell (``x̂`` is its window input, ``width = conv_width``) and a
    :class:`jrnn.LinearRecurrence` on ``S`` flattened to ``[..., H·P·N]``, so :func:`jrnn.associative` runs the
    block in parallel over time (the paper's chunked SSD algorithm is one more way to solve the same recurrence); the
    state is a :class:`jrnn.WindowState`.

    Initialisation (transformers' ``Mamba2Mixer``): ``A_log[h] = log(h + 1)`` (the official code draws ``A`` from
    U(1, 16) instead), ``D = 1``, the norm's scale 1; ``Δ = softplus(dt_bias)`` log-uniform on ``[dt_min, dt_max]``
    (at least ``dt_init_floor``); ``in_proj``, ``out_proj`` and the convolution as torch's ``nn.Linear`` and
    ``nn.Conv1d``: U(±1/√fan_in), biases too.

    Args:
      hidden_size: the model width ``d_model``: the size of ``y_t``.
      state_size: N, the state size per head channel (``d_state``).
      expand: E = int(expand · hidden_size) channels, which ``head_dim`` must divide.
      head_dim: P, the channels per head; H = E / P heads.
      n_groups: G, the number of ``(B, C)`` groups (``ngroups``), which must divide H.
      conv_width: K, the convolution's width (the window, the current step included; ``d_conv``).
      conv_bias: whether the convolution has a bias.
      bias: whether ``in_proj`` and ``out_proj`` have biases.
      dt_min: the smallest initial Δ (log-uniform on ``[dt_min, dt_max]``).
      dt_max: the largest initial Δ.
      dt_init_floor: the floor of the initial Δ.
      dt_limit: ``(low, high)``, the clamp on Δ (transformers' ``time_step_limit``; none by default).
      norm_eps: the gated RMSNorm's epsilon (transformers' ``layer_norm_epsilon``).
      init: None (jrnn's defaults), or ``"pytorch"``: transformers' ``Mamba2Mixer`` constructor's draw, which is
        jrnn's default (docs: porting, "Matching a run from another library"); ``"flax"`` and ``"keras"`` are a
        ValueError.
      dtype: dtype of the parameters and the default state.

    Returns:
      A :class:`Mamba2Cell` with parameters :class:`Mamba2Params`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.mamba2(8, state_size=4, head_dim=4, n_groups=2)
      >>> params = cell.init(jax.random.key(0), input_size=8)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 20, 8))
      >>> parallel, state = jrnn.scan(cell, params, xs, solver=jrnn.associative())
      >>> sequential, _ = jrnn.scan(cell, params, xs, solver=jrnn.sequential())
      >>> bool(jnp.allclose(parallel, sequential, atol=1e-5)), state.window.shape, state.inner.shape
      (True, (2, 3, 32), (2, 64))
    """
    presets.preset("jrnn.mamba2", init)
    where = "jrnn.mamba2"
    hidden_size = checks.positive_int("hidden_size", hidden_size, where)
    state_size = checks.positive_int("state_size", state_size, where)
    head_dim = checks.positive_int("head_dim", head_dim, where)
    n_groups = checks.positive_int("n_groups", n_groups, where)
    conv_width = checks.positive_int("conv_width", conv_width, where)
    if isinstance(expand, bool) or not isinstance(expand, (int, float)) or int(expand * hidden_size) < 1:
        raise ValueError(f"{where}: expected expand > 0 with int(expand * hidden_size) >= 1, got expand={expand!r}")
    E = int(expand * hidden_size)
    if E % head_dim:
        raise ValueError(f"{where}: expected head_dim to divide int(expand * hidden_size) = {E}, got "
                         f"head_dim={head_dim}")
    if (E // head_dim) % n_groups:
        raise ValueError(f"{where}: expected n_groups to divide the number of heads {E // head_dim} "
                         f"(= {E} / head_dim {head_dim}), got n_groups={n_groups}")
    dt = _check_dt(dt_min, dt_max, dt_init_floor, 1.0, where)[:3]
    try:
        low, high = (float(v) for v in dt_limit)
    except (TypeError, ValueError):
        low, high = math.nan, math.nan
    if not 0.0 <= low <= high:
        raise ValueError(f"{where}: expected dt_limit = (low, high) with 0 <= low <= high, got {dt_limit!r}")
    if isinstance(norm_eps, bool) or not isinstance(norm_eps, (int, float)) or norm_eps <= 0:
        raise ValueError(f"{where}: expected a positive norm_eps, got {norm_eps!r}")
    return Mamba2Cell(hidden_size, E // head_dim, head_dim, state_size, n_groups, conv_width, bool(conv_bias),
                      bool(bias), *dt, (low, high), float(norm_eps), dtype)
