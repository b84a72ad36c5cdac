"""Hawk's recurrent block (De et al. 2024, arXiv 2402.19427, figure 2): a gated branch, and a branch through a
causal depthwise convolution into the RG-LRU (:func:`jrnn.rg_lru`), multiplied and projected back.

As recurrentgemma's ``RecurrentBlock`` and transformers' ``RecurrentGemmaRecurrentBlock``, in one
:class:`jrnn.Windowed` cell: the convolution reads the window of the last ``width`` projected inputs, the RG-LRU
is the cell's linear recurrence (its state is the inner state), and the gate branch and the output projection are
its readout, so :func:`jrnn.associative` runs the whole block in parallel over time.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src import checks, presets
from jrnn._src.cells import gates, rg_lru
from jrnn._src.cells.rg_lru import RGLRUParams
from jrnn._src.contract import LinearRecurrence, Windowed, WindowInputs


class HawkBlockParams(NamedTuple):
    """Parameters of :func:`hawk_block`, named as transformers' ``RecurrentGemmaRecurrentBlock`` (``D`` inputs,
    ``H`` the RG-LRU's width, ``O`` outputs, ``K`` the convolution's width); weights ``[out, in]`` as torch's.

    Attributes:
      linear_y_weight: ``[H, D]``, the gate branch.
      linear_y_bias: ``[H]``.
      linear_x_weight: ``[H, D]``, the recurrent branch, into the convolution.
      linear_x_bias: ``[H]``.
      linear_out_weight: ``[O, H]``.
      linear_out_bias: ``[O]``.
      conv_1d_weight: ``[H, K]``, one filter per channel, oldest step first (torch's ``[H, 1, K]`` without its
        group axis).
      conv_1d_bias: ``[H]``.
      rg_lru: the RG-LRU's :class:`jrnn.RGLRUParams`.
    """

    linear_y_weight: jax.Array
    linear_y_bias: jax.Array
    linear_x_weight: jax.Array
    linear_x_bias: jax.Array
    linear_out_weight: jax.Array
    linear_out_bias: jax.Array
    conv_1d_weight: jax.Array
    conv_1d_bias: jax.Array
    rg_lru: RGLRUParams


def causal_conv(params: HawkBlockParams, window: jax.Array) -> jax.Array:
    """The depthwise convolution at one step: ``Σ_k w[:, k] ⊙ u_{t-K+1+k} + bias`` from ``window [..., K, H]``."""
    y = jnp.einsum("...kc,ck->...c", window, params.conv_1d_weight)
    return y + jnp.broadcast_to(params.conv_1d_bias, y.shape)


@dataclasses.dataclass(frozen=True)
class HawkBlockCell(Windowed, LinearRecurrence):
    """Hawk's recurrent block as one cell; build it with :func:`hawk_block`. Its state is a
    :class:`jrnn.WindowState`: the last ``width - 1`` projected inputs ``[..., K-1, H]``, ``fresh``, and the
    RG-LRU's ``s [..., H]`` as ``inner``."""

    hidden_size: int
    output_size: int
    num_heads: int = 1
    width: int = 4
    min_rad: float = 0.9
    max_rad: float = 0.999
    final_w_init_variance_scale: float = 1.0
    dtype: Any = jnp.float32
    preset: str = "jrnn"  # "pytorch": the torch block's nn.Linear / nn.Conv1d draw (jrnn._src.presets)

    @property
    def window_size(self) -> int:
        return self.hidden_size

    def init(self, key: jax.Array, input_size: int) -> HawkBlockParams:
        input_size = checks.positive_int("input_size", input_size, "jrnn.hawk_block.init")
        H, O, K, dtype = self.hidden_size, self.output_size, self.width, self.dtype
        k_y, k_x, k_out, k_conv, k_lru = jax.random.split(key, 5)
        in_std, out_std = (1.0 / input_size) ** 0.5, (self.final_w_init_variance_scale / H) ** 0.5
        params = HawkBlockParams(
            in_std * jax.random.normal(k_y, (H, input_size), dtype), jnp.zeros((H,), dtype),
            in_std * jax.random.normal(k_x, (H, input_size), dtype), jnp.zeros((H,), dtype),
            out_std * jax.random.normal(k_out, (O, H), dtype), jnp.zeros((O,), dtype),
            (0.01 / K) ** 0.5 * jax.random.normal(k_conv, (H, K), dtype), jnp.zeros((H,), dtype),
            rg_lru.init_params(k_lru, H, self.num_heads, self.min_rad, self.max_rad, dtype))
        return presets.finish(self.preset, params, key, keep=("rg_lru",))

    def inner_initial_state(self, batch_shape=(), dtype=None) -> jax.Array:
        return gates.zeros_state(batch_shape, self.hidden_size, dtype or self.dtype)

    def window_input(self, params: HawkBlockParams, x: jax.Array) -> jax.Array:
        """``u = linear_x(x)``, ``[..., H]``."""
        return gates.affine(x, params.linear_x_weight, params.linear_x_bias)

    def window_step(self, params: HawkBlockParams, inner: jax.Array,
                    inputs: WindowInputs) -> tuple[jax.Array, jax.Array]:
        a, b = self.coefficients(params, inputs)
        s = a * inner + b
        return s, self.readout(params, s, inputs)

    def coefficients(self, params: HawkBlockParams, inputs: WindowInputs) -> tuple[jax.Array, jax.Array]:
        """The RG-LRU's ``(a, b)``, each ``[B, T, H]``, on the convolved window (:class:`jrnn.LinearRecurrence`)."""
        return rg_lru.coefficients(params.rg_lru, causal_conv(params, inputs.window), inputs.fresh)

    def readout(self, params: HawkBlockParams, states: jax.Array, inputs: WindowInputs) -> jax.Array:
        """``linear_out(s ⊙ gelu(linear_y(x)))``, ``[B, T, O]``; GeLU in its tanh form, as recurrentgemma's."""
        gate = jax.nn.gelu(gates.affine(inputs.x, params.linear_y_weight, params.linear_y_bias), approximate=True)
        return gates.affine(states * gate, params.linear_out_weight, params.linear_out_bias)

    def input_size(self, params: HawkBlockParams) -> int:
        return params.linear_x_weight.shape[-1]


def hawk_block(hidden_size: int, *, output_size: int | None = None, num_heads: int = 1, conv1d_width: int = 4,
               min_rad: float = 0.9, max_rad: float = 0.999, final_w_init_variance_scale: float = 1.0,
               init: str | None = None, dtype: Any = jnp.float32) -> HawkBlockCell:
    """Hawk's (and Griffin's) recurrent block (De et al. 2024, arXiv 2402.19427, figure 2(c)), one cell::

        g_t = gelu(W_y x_t + b_y)                      gate branch        (GeLU, tanh form)
        u_t = W_x x_t + b_x                            recurrent branch   [..., H]
        v_t = Σ_{k<K} w_k ⊙ u_{t-K+1+k} + b_conv        causal depthwise convolution, zeros before the start
        s_t = RG-LRU(s_{t-1}, v_t)                     :func:`jrnn.rg_lru` (fresh at the first step)
        y_t = W_out (s_t ⊙ g_t) + b_out

    As recurrentgemma's ``RecurrentBlock`` and transformers' ``RecurrentGemmaRecurrentBlock``
    (:func:`jrnn.from_torch` converts one). A :class:`jrnn.Windowed` cell (``u`` is its window input, ``width =
    conv1d_width``) and a :class:`jrnn.LinearRecurrence` on the RG-LRU's ``s``, so :func:`jrnn.associative` runs it
    in parallel over time; the state is a :class:`jrnn.WindowState`. In Griffin the block sits in a residual
    stream, ``output_size`` equal to the input size.

    Initialisation (recurrentgemma's): ``W_x``, ``W_y`` from N(0, 1/D); ``W_out`` from N(0,
    final_w_init_variance_scale / H) (Griffin passes 2 / layers); the convolution from N(0, 0.01 / K); zero biases;
    the RG-LRU as :func:`jrnn.rg_lru`.

    Args:
      hidden_size: H, the RG-LRU's width (recurrentgemma's and transformers' ``lru_width``).
      output_size: O, the size of ``y_t`` (transformers' ``hidden_size``, the model width); ``hidden_size`` if
        None. The input size D is the one given to ``init``.
      num_heads: the number of diagonal blocks of the RG-LRU's gates; must divide ``hidden_size``.
      conv1d_width: K, the convolution's width (the window, the current step included).
      min_rad: the inner radius of the RG-LRU's initial ring of ``|a|``, as :func:`jrnn.rg_lru`.
      max_rad: its outer radius.
      final_w_init_variance_scale: the variance scale of ``W_out``'s initialisation.
      init: None (jrnn's defaults), or ``"pytorch"``: transformers' ``RecurrentGemmaRecurrentBlock`` constructor's
        draw: ``nn.Linear`` and ``nn.Conv1d`` defaults, U(±1/√fan_in) weights and biases (its RG-LRU,
        ``torch.empty`` there, keeps jrnn's init) (docs: porting, "Matching a run from another library"); ``"flax"``
        and ``"keras"`` are a ValueError.
      dtype: dtype of the parameters and the default state.

    Returns:
      A :class:`HawkBlockCell` with parameters :class:`HawkBlockParams`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.hawk_block(8, output_size=4, num_heads=2)
      >>> params = cell.init(jax.random.key(0), input_size=4)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 20, 4))
      >>> parallel, state = jrnn.scan(cell, params, xs, solver=jrnn.associative())
      >>> sequential, _ = jrnn.scan(cell, params, xs, solver=jrnn.sequential())
      >>> bool(jnp.allclose(parallel, sequential, atol=1e-5)), state.window.shape, state.inner.shape
      (True, (2, 3, 8), (2, 8))
    """
    where = "jrnn.hawk_block"
    hidden_size = checks.positive_int("hidden_size", hidden_size, where)
    output_size = hidden_size if output_size is None else checks.positive_int("output_size", output_size, where)
    num_heads = rg_lru.check_heads(hidden_size, num_heads, where)
    conv1d_width = checks.positive_int("conv1d_width", conv1d_width, where)
    min_rad, max_rad = rg_lru.check_radii(min_rad, max_rad, where)
    if not (isinstance(final_w_init_variance_scale, (int, float)) and final_w_init_variance_scale > 0):
        raise ValueError(f"{where}: expected a positive final_w_init_variance_scale, got "
                         f"{final_w_init_variance_scale!r}")
    return HawkBlockCell(hidden_size, output_size, num_heads, conv1d_width, min_rad, max_rad,
                         float(final_w_init_variance_scale), dtype, presets.preset(where, init))
