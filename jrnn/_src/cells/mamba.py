"""Mamba's block (Gu & Dao 2023, arXiv 2312.00752): a causal depthwise convolution, then the selective state space
model S6 on the convolved input, gated, projected back.

The numerics are those of the official ``mamba_simple.Mamba`` and of transformers' ``MambaMixer`` (its PyTorch
path): ``Δ = softplus(W_Δ Δ_raw + b_Δ)``, the zero-order-hold ``Ā = exp(Δ A)`` and the Euler ``B̄ = Δ B``, so per
channel ``e`` and state index ``n``::

    h_t[e, n] = exp(Δ_t[e] A[e, n]) h_{t-1}[e, n] + Δ_t[e] B_t[n] u_t[e]
    y_t[e]    = Σ_n h_t[e, n] C_t[n] + D[e] u_t[e]

a diagonal recurrence whose coefficients depend on the input alone (a :class:`jrnn.LinearRecurrence` on ``h``
flattened to ``[E·N]``). :func:`mamba` is the whole block, a :class:`jrnn.Windowed` cell whose window is the
convolution's; :func:`s6` is the selective scan alone.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src import checks, presets
from jrnn._src.cells import gates
from jrnn._src.contract import LinearRecurrence, Windowed, WindowInputs


class MambaParams(NamedTuple):
    """Parameters of :func:`mamba`, named as transformers' ``MambaMixer`` (``F`` inputs, ``O`` outputs, ``E``
    channels, ``N`` the state size, ``R`` Δ's rank, ``K`` the convolution's width); weights ``[out, in]`` as torch's.

    Attributes:
      in_proj_weight: ``[2E, F]``, blocks ``x, z`` in this order: the convolution's input, then the gate.
      in_proj_bias: ``[2E]`` or None.
      conv1d_weight: ``[E, K]``, one filter per channel, oldest step first (torch's ``[E, 1, K]`` without its group
        axis).
      conv1d_bias: ``[E]`` or None.
      x_proj_weight: ``[R + 2N, E]``, blocks ``Δ_raw, B, C`` in this order.
      dt_proj_weight: ``[E, R]``.
      dt_proj_bias: ``[E]``.
      A_log: ``[E, N]``, ``A = -exp(A_log)``.
      D: ``[E]``, the skip connection.
      out_proj_weight: ``[O, E]``.
      out_proj_bias: ``[O]`` or None.
    """

    in_proj_weight: jax.Array
    in_proj_bias: jax.Array | None
    conv1d_weight: jax.Array
    conv1d_bias: jax.Array | None
    x_proj_weight: jax.Array
    dt_proj_weight: jax.Array
    dt_proj_bias: jax.Array
    A_log: jax.Array
    D: jax.Array
    out_proj_weight: jax.Array
    out_proj_bias: jax.Array | None


class S6Params(NamedTuple):
    """Parameters of :func:`s6`: the fields of :class:`MambaParams` that the selective scan reads."""

    x_proj_weight: jax.Array
    dt_proj_weight: jax.Array
    dt_proj_bias: jax.Array
    A_log: jax.Array
    D: jax.Array


# ----------------------------------------------------------------------------------------------------------------
# The selective scan, shared by both cells; every function takes any leading axes.
# ----------------------------------------------------------------------------------------------------------------

def _selection(p: Any, u: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(Δ [..., E], B [..., N], C [..., N])`` from ``u [..., E]``: ``x_proj``, then
    ``Δ = softplus(dt_proj(Δ_raw))``."""
    rank, n = p.dt_proj_weight.shape[1], p.A_log.shape[1]
    selected = u @ p.x_proj_weight.T
    dt, B, C = selected[..., :rank], selected[..., rank:rank + n], selected[..., rank + n:]
    return jax.nn.softplus(gates.affine(dt, p.dt_proj_weight, p.dt_proj_bias)), B, C


def _discretised(p: Any, u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(exp(Δ ⊗ A), (Δ ⊗ B) ⊙ u)``, each ``[..., E·N]`` (channel-major: index ``e·N + n``)."""
    delta, B, _ = _selection(p, u)
    A = jnp.broadcast_to(-jnp.exp(p.A_log), (*delta.shape, p.A_log.shape[1]))
    a = jnp.exp(delta[..., :, None] * A)
    b = (delta[..., :, None] * B[..., None, :]) * u[..., :, None]  # transformers' order: (Δ B) u
    return a.reshape(*a.shape[:-2], -1), b.reshape(*b.shape[:-2], -1)


def _output(p: Any, states: jax.Array, u: jax.Array) -> jax.Array:
    """``y = h C + D ⊙ u``, ``[..., E]``, from ``h`` flattened to ``[..., E·N]``."""
    _, _, C = _selection(p, u)
    h = states.reshape(*states.shape[:-1], *p.A_log.shape)
    return jnp.einsum("...en,...n->...e", h, C) + jnp.broadcast_to(p.D, u.shape) * u


def _dt_rank(dt_rank: Any, width: int, where: str) -> int:
    if dt_rank == "auto":
        return math.ceil(width / 16)
    return checks.positive_int("dt_rank", dt_rank, where)


def _check_dt(dt_min: float, dt_max: float, dt_init_floor: float, dt_scale: float, where: str) -> tuple:
    if not (isinstance(dt_min, (int, float)) and isinstance(dt_max, (int, float)) and 0 < dt_min <= dt_max):
        raise ValueError(f"{where}: expected 0 < dt_min <= dt_max, got dt_min={dt_min!r}, dt_max={dt_max!r}")
    if not (isinstance(dt_init_floor, (int, float)) and dt_init_floor >= 0):
        raise ValueError(f"{where}: expected a non-negative dt_init_floor, got {dt_init_floor!r}")
    if not (isinstance(dt_scale, (int, float)) and dt_scale > 0):
        raise ValueError(f"{where}: expected a positive dt_scale, got {dt_scale!r}")
    return float(dt_min), float(dt_max), float(dt_init_floor), float(dt_scale)


def _uniform(key: jax.Array, shape: tuple, bound: float, dtype: Any) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def _init_ssm(cell: Any, key: jax.Array, E: int) -> S6Params:
    """The official initialisation: ``x_proj`` as ``nn.Linear``'s (U(±1/√E)); ``dt_proj``'s weight U(±dt_scale/√R);
    its bias the inverse softplus of ``Δ`` log-uniform on ``[dt_min, dt_max]``, at least ``dt_init_floor``; the
    S4D-real ``A_log[e, n] = log(n + 1)``; ``D = 1``."""
    R, N, dtype = cell.dt_rank, cell.state_size, cell.dtype
    k_x, k_w, k_dt = jax.random.split(key, 3)
    unit = jax.random.uniform(k_dt, (E,), dtype)
    dt = jnp.exp(unit * (math.log(cell.dt_max) - math.log(cell.dt_min)) + math.log(cell.dt_min))
    dt = jnp.maximum(dt, cell.dt_init_floor)
    A_log = jnp.broadcast_to(jnp.log(jnp.arange(1, N + 1, dtype=dtype)), (E, N))
    return S6Params(_uniform(k_x, (R + 2 * N, E), E ** -0.5, dtype),
                    _uniform(k_w, (E, R), R ** -0.5 * cell.dt_scale, dtype),
                    dt + jnp.log(-jnp.expm1(-dt)),  # softplus⁻¹(dt)
                    A_log, jnp.ones((E,), dtype))


# ----------------------------------------------------------------------------------------------------------------
# Mamba's block.
# ----------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MambaCell(Windowed, LinearRecurrence):
    """Mamba's block as one cell; build it with :func:`mamba`. Its state is a :class:`jrnn.WindowState`: the last
    ``width - 1`` convolution inputs ``[..., K-1, E]``, ``fresh`` (unused: the zeros before the start are the
    window's), and ``h`` flattened to ``[..., E·N]`` as ``inner``.

    ``hidden_size`` is the block's model width ``d_model``, the size of ``y_t``; the recurrent state ``h`` has
    ``intermediate_size · state_size`` entries.
    """

    expands = True  # E channels in, E·N coefficients: on a CPU jrnn.auto steps it (measured faster)

    hidden_size: int
    intermediate_size: int
    state_size: int = 16
    width: int = 4
    dt_rank: int = 1
    conv_bias: bool = True
    bias: bool = False
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    dt_scale: float = 1.0
    dtype: Any = jnp.float32

    @property
    def output_size(self) -> int:
        return self.hidden_size

    @property
    def window_size(self) -> int:
        return self.intermediate_size

    def init(self, key: jax.Array, input_size: int) -> MambaParams:
        """``in_proj``, ``out_proj`` and the convolution as torch's ``nn.Linear`` and ``nn.Conv1d`` draw them
        (U(±1/√fan_in), biases too), the selective scan as :func:`s6` (the official ``mamba_simple.Mamba``)."""
        F = checks.positive_int("input_size", input_size, "jrnn.mamba.init")
        E, K, O, dtype = self.intermediate_size, self.width, self.hidden_size, self.dtype
        k_in, k_in_b, k_conv, k_conv_b, k_out, k_out_b, k_ssm = jax.random.split(key, 7)
        ssm = _init_ssm(self, k_ssm, E)
        return MambaParams(
            _uniform(k_in, (2 * E, F), F ** -0.5, dtype),
            _uniform(k_in_b, (2 * E,), F ** -0.5, dtype) if self.bias else None,
            _uniform(k_conv, (E, K), K ** -0.5, dtype),
            _uniform(k_conv_b, (E,), K ** -0.5, dtype) if self.conv_bias else None,
            *ssm,
            _uniform(k_out, (O, E), E ** -0.5, dtype),
            _uniform(k_out_b, (O,), E ** -0.5, dtype) if self.bias else None)

    def inner_initial_state(self, batch_shape=(), dtype=None) -> jax.Array:
        return gates.zeros_state(batch_shape, self.intermediate_size * self.state_size, dtype or self.dtype)

    def window_input(self, params: MambaParams, x: jax.Array) -> jax.Array:
        """The ``x`` block of ``in_proj``: ``[..., E]``."""
        E = self.intermediate_size
        bias = None if params.in_proj_bias is None else params.in_proj_bias[:E]
        return gates.affine(x, params.in_proj_weight[:E], bias)

    def convolved(self, params: MambaParams, window: jax.Array) -> jax.Array:
        """``u = silu(Σ_k w[:, k] ⊙ window[k] + b)``, ``[..., E]``, from ``window [..., K, E]`` (oldest first)."""
        v = jnp.einsum("...kc,ck->...c", window, params.conv1d_weight)
        return jax.nn.silu(v if params.conv1d_bias is None else v + jnp.broadcast_to(params.conv1d_bias, v.shape))

    def window_step(self, params: MambaParams, inner: jax.Array, inputs: WindowInputs) -> tuple[jax.Array, jax.Array]:
        u = self.convolved(params, inputs.window)
        a, b = _discretised(params, u)
        h = a * inner + b
        return h, self._gated_output(params, h, u, inputs.x)

    def coefficients(self, params: MambaParams, inputs: WindowInputs) -> tuple[jax.Array, jax.Array]:
        """``(exp(Δ ⊗ A), (Δ ⊗ B) ⊙ u)``, each ``[B, T, E·N]``, on the convolved window
        (:class:`jrnn.LinearRecurrence`)."""
        return _discretised(params, self.convolved(params, inputs.window))

    def readout(self, params: MambaParams, states: jax.Array, inputs: WindowInputs) -> jax.Array:
        """``out_proj((h C + D ⊙ u) ⊙ silu(z))``, ``[B, T, O]``, with ``z`` the gate block of ``in_proj(x)``."""
        return self._gated_output(params, states, self.convolved(params, inputs.window), inputs.x)

    def _gated_output(self, params: MambaParams, h: jax.Array, u: jax.Array, x: jax.Array) -> jax.Array:
        E = self.intermediate_size
        bias = None if params.in_proj_bias is None else params.in_proj_bias[E:]
        z = gates.affine(x, params.in_proj_weight[E:], bias)
        return gates.affine(_output(params, h, u) * jax.nn.silu(z), params.out_proj_weight, params.out_proj_bias)

    def input_size(self, params: MambaParams) -> int:
        return params.in_proj_weight.shape[-1]


def mamba(hidden_size: int, *, state_size: int = 16, expand: float = 2, conv_width: int = 4, dt_rank: Any = "auto",
          conv_bias: bool = True, bias: bool = False, dt_min: float = 0.001, dt_max: float = 0.1,
          dt_init_floor: float = 1e-4, dt_scale: float = 1.0, init: str | None = None,
          dtype: Any = jnp.float32) -> MambaCell:
    """Mamba's block (Gu & Dao 2023, "Mamba: linear-time sequence modeling with selective state spaces", arXiv
    2312.00752, figure 3 and algorithm 2), one cell::

        (x̂_t, z_t) = in_proj(x_t)                                  [..., E] each, E = expand · hidden_size
        u_t  = silu(Σ_{k<K} w_k ⊙ x̂_{t-K+1+k} + b_conv)             causal depthwise convolution, zeros before
        (Δ̂_t, B_t, C_t) = x_proj(u_t)                               [..., R], [..., N], [..., N]
        Δ_t  = softplus(W_Δ Δ̂_t + b_Δ)                              [..., E]
        h_t  = exp(Δ_t ⊗ A) ⊙ h_{t-1} + (Δ_t ⊗ B_t) ⊙ u_t           [..., E, N],  A = -exp(A_log)
        y_t  = out_proj((h_t C_t + D ⊙ u_t) ⊙ silu(z_t))           [..., hidden_size]

    As the official ``mamba_simple.Mamba`` and transformers' ``MambaMixer`` (:func:`jrnn.from_torch` converts
    one). A :class:`jrnn.Windowed` cell (``x̂`` is its window input, ``width = conv_width``) and a
    :class:`jrnn.LinearRecurrence` on ``h`` flattened to ``[..., E·N]``, so :func:`jrnn.associative` runs the whole
    block in parallel over time; the state is a :class:`jrnn.WindowState`. In a Mamba model the block sits in a
    residual stream after an RMSNorm, its input size equal to ``hidden_size``; here the input size is the one given
    to ``init``.

    Initialisation (the official one): ``A_log[e, n] = log(n + 1)`` (S4D-real), ``D = 1``; ``Δ = softplus(b_Δ)``
    log-uniform on ``[dt_min, dt_max]`` (at least ``dt_init_floor``); ``W_Δ`` from U(±dt_scale / √R); ``in_proj``,
    ``x_proj``, ``out_proj`` and the convolution as torch's ``nn.Linear`` and ``nn.Conv1d``: U(±1/√fan_in).

    Args:
      hidden_size: the model width ``d_model``: the size of ``y_t``.
      state_size: N, the state size per channel (``d_state``).
      expand: E = int(expand · hidden_size) channels.
      conv_width: K, the convolution's width (the window, the current step included; ``d_conv``).
      dt_rank: R, the rank of Δ's projection; ``"auto"``: ⌈hidden_size / 16⌉.
      conv_bias: whether the convolution has a bias.
      bias: whether ``in_proj`` and ``out_proj`` have biases.
      dt_min: the smallest initial Δ (log-uniform on ``[dt_min, dt_max]``).
      dt_max: the largest initial Δ.
      dt_init_floor: the floor of the initial Δ.
      dt_scale: the scale of ``W_Δ``'s initialisation, U(±dt_scale / √R).
      init: None (jrnn's defaults), or ``"pytorch"``: transformers' ``MambaMixer`` constructor's draw, which is
        jrnn's default (the official init) (docs: porting, "Matching a run from another library"); ``"flax"`` and
        ``"keras"`` are a ValueError.
      dtype: dtype of the parameters and the default state.

    Returns:
      A :class:`MambaCell` with parameters :class:`MambaParams`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.mamba(8, state_size=4)
      >>> params = cell.init(jax.random.key(0), input_size=8)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 20, 8))
      >>> parallel, state = jrnn.scan(cell, params, xs, solver=jrnn.associative())
      >>> sequential, _ = jrnn.scan(cell, params, xs, solver=jrnn.sequential())
      >>> bool(jnp.allclose(parallel, sequential, atol=1e-5)), state.window.shape, state.inner.shape
      (True, (2, 3, 16), (2, 64))
    """
    presets.preset("jrnn.mamba", init)
    where = "jrnn.mamba"
    hidden_size = checks.positive_int("hidden_size", hidden_size, where)
    state_size = checks.positive_int("state_size", state_size, where)
    if isinstance(expand, bool) or not isinstance(expand, (int, float)) or int(expand * hidden_size) < 1:
        raise ValueError(f"{where}: expected expand > 0 with int(expand * hidden_size) >= 1, got expand={expand!r}")
    conv_width = checks.positive_int("conv_width", conv_width, where)
    dt = _check_dt(dt_min, dt_max, dt_init_floor, dt_scale, where)
    return MambaCell(hidden_size, int(expand * hidden_size), state_size, conv_width,
                     _dt_rank(dt_rank, hidden_size, where), bool(conv_bias), bool(bias), *dt, dtype)


# ----------------------------------------------------------------------------------------------------------------
# The selective scan alone.
# ----------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class S6Cell(LinearRecurrence):
    """The selective scan S6 as a cell; build it with :func:`s6`. State ``h`` flattened to ``[..., E·N]``; ``y_t``
    has the input's ``E`` channels."""

    expands = True  # E channels in, E·N coefficients: on a CPU jrnn.auto steps it (measured faster)

    hidden_size: int
    state_size: int = 16
    dt_rank: int = 1
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    dt_scale: float = 1.0
    dtype: Any = jnp.float32

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def init(self, key: jax.Array, input_size: int) -> S6Params:
        input_size = checks.positive_int("input_size", input_size, "jrnn.s6.init")
        if input_size != self.hidden_size:
            raise ValueError(f"jrnn.s6.init: expected input_size equal to hidden_size {self.hidden_size} (S6 maps "
                             f"each channel to itself; jrnn.mamba projects to it), got {input_size}")
        return _init_ssm(self, key, self.hidden_size)

    def initial_state(self, batch_shape=(), dtype=None) -> jax.Array:
        return gates.zeros_state(batch_shape, self.hidden_size * self.state_size, dtype or self.dtype)

    def step(self, params: S6Params, state: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        a, b = _discretised(params, x)
        h = a * state + b
        return h, _output(params, h, x)

    def coefficients(self, params: S6Params, xs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(exp(Δ ⊗ A), (Δ ⊗ B) ⊙ u)``, each ``[B, T, E·N]`` (:class:`jrnn.LinearRecurrence`)."""
        return _discretised(params, xs)

    def readout(self, params: S6Params, states: jax.Array, xs: jax.Array) -> jax.Array:
        """``y = h C + D ⊙ u``, ``[B, T, E]``."""
        return _output(params, states, xs)

    def input_size(self, params: S6Params) -> int:
        return params.x_proj_weight.shape[-1]


def s6(hidden_size: int, *, state_size: int = 16, dt_rank: Any = "auto", dt_min: float = 0.001,
       dt_max: float = 0.1, dt_init_floor: float = 1e-4, dt_scale: float = 1.0, init: str | None = None,
       dtype: Any = jnp.float32) -> S6Cell:
    """The selective state space model S6 (Gu & Dao 2023, arXiv 2312.00752, algorithm 2), channel by channel::

        (Δ̂_t, B_t, C_t) = x_proj(u_t)                       [..., R], [..., N], [..., N]
        Δ_t = softplus(W_Δ Δ̂_t + b_Δ)                        [..., E]
        h_t = exp(Δ_t ⊗ A) ⊙ h_{t-1} + (Δ_t ⊗ B_t) ⊙ u_t     [..., E, N],  A = -exp(A_log)
        y_t = h_t C_t + D ⊙ u_t                              [..., E]

    the recurrence inside :func:`jrnn.mamba`, without its projections, convolution and gate; a
    :class:`jrnn.LinearRecurrence` on ``h`` flattened to ``[..., E·N]``. It maps its ``E`` channels to themselves,
    so the input size must be ``hidden_size``. Initialised as :func:`jrnn.mamba`'s scan.

    Args:
      hidden_size: E, the number of channels (input and output).
      state_size: N, the state size per channel.
      dt_rank: R; ``"auto"``: ⌈E / 16⌉.
      dt_min: the smallest initial Δ, as :func:`jrnn.mamba`.
      dt_max: the largest initial Δ.
      dt_init_floor: the floor of the initial Δ.
      dt_scale: the scale of ``W_Δ``'s initialisation.
      init: None (jrnn's defaults), or ``"pytorch"``: the SSM part of transformers' ``MambaMixer`` constructor's
        draw, which is jrnn's default (docs: porting, "Matching a run from another library"); ``"flax"`` and
        ``"keras"`` are a ValueError.
      dtype: dtype of the parameters and the default state.

    Returns:
      An :class:`S6Cell` with parameters :class:`S6Params`.

    Example:
      >>> import jax, jrnn
      >>> cell = jrnn.s6(4, state_size=8)
      >>> params = cell.init(jax.random.key(0), input_size=4)
      >>> ys, h = jrnn.scan(cell, params, jax.random.normal(jax.random.key(1), (2, 10, 4)))
      >>> ys.shape, h.shape
      ((2, 10, 4), (2, 32))
    """
    presets.preset("jrnn.s6", init)
    where = "jrnn.s6"
    hidden_size = checks.positive_int("hidden_size", hidden_size, where)
    state_size = checks.positive_int("state_size", state_size, where)
    dt = _check_dt(dt_min, dt_max, dt_init_floor, dt_scale, where)
    return S6Cell(hidden_size, state_size, _dt_rank(dt_rank, hidden_size, where), *dt, dtype)
