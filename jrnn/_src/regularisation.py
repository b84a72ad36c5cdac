"""Recurrent regularisation for :func:`jrnn.scan`: variational dropout and weight drop.

A :class:`RecurrentDropout` holds four static rates. Given a key, :func:`jrnn.scan` draws one set of masks per call
(:func:`draw_masks`) and applies them where no solver needs to know about them, except one:

- the input mask ``m_x[B, F]`` multiplies ``xs`` before the scan (so before the fused solver's input GEMM);
- the weight mask ``M_W`` multiplies ``params.W`` before the scan (DropConnect as a transform of the parameters);
- the output mask ``m_y[B, O]`` multiplies ``ys`` after it;
- the state mask ``m_s[B, P]`` multiplies the state where it enters the recurrent matmul, ``W (m_s ⊙ s_{t-1})``,
  inside every step: the sequential and Newton solvers pass it to ``cell.step(..., state_mask=m_s)`` (a
  :class:`jrnn.StateMaskable` cell), the fused solver to its kernels (forward step and hand-written backward step).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jrnn._src.contract import RecurrentMatrix, StateMaskable


@dataclasses.dataclass(frozen=True)
class RecurrentDropout:
    """The rates of variational dropout and weight drop of one recurrent layer; build it with
    :func:`recurrent_dropout`, which documents the equations.

    Attributes:
      input: ``p_x``, the rate on the inputs ``x_t``.
      state: ``p_s``, the rate on the state ``s_{t-1}`` where it enters ``W``.
      output: ``p_y``, the rate on the outputs ``y_t``.
      weight: ``p_W``, the rate on the entries of ``W`` (weight drop).

    Example:
      >>> import jrnn
      >>> drop = jrnn.recurrent_dropout(state=0.25, weight=0.5)
      >>> drop.active, drop.input, jrnn.recurrent_dropout().active
      (True, 0.0, False)
    """

    input: float = 0.0
    state: float = 0.0
    output: float = 0.0
    weight: float = 0.0

    @property
    def active(self) -> bool:
        """Whether any rate is nonzero (only then does a key draw masks)."""
        return bool(self.input or self.state or self.output or self.weight)


def recurrent_dropout(input: float = 0.0, state: float = 0.0, output: float = 0.0,
                      weight: float = 0.0) -> RecurrentDropout:
    """Variational dropout (Gal & Ghahramani 2016) and weight drop (Merity et al. 2018) for one recurrent layer.

    Pass it as ``dropout=`` to :func:`jrnn.scan`, :class:`jrnn.RNN` or :func:`jrnn.bidirectional`; masks are drawn
    only when a PRNG ``key`` is given (training), and without a key the layer is exactly the plain one
    (evaluation). From the key, one mask per *sequence* for the inputs, the state and the outputs, and one mask
    per *call* (per batch) for ``W``, each reused at every time step, with inverted scaling (a kept entry is
    divided by its keep probability ``1 - p``). For the Elman cell::

        m_x ~ Bernoulli(1 - p_x)^F / (1 - p_x)      [B, F]  inputs
        m_s ~ Bernoulli(1 - p_s)^P / (1 - p_s)      [B, P]  state as it enters W (P = output_size)
        m_y ~ Bernoulli(1 - p_y)^O / (1 - p_y)      [B, O]  outputs
        M_W ~ Bernoulli(1 - p_W)^(rows x cols of W) / (1 - p_W),   one for the whole batch

        s_t = f(U (m_x ⊙ x_t) + b_U + (M_W ⊙ W)(m_s ⊙ s_{t-1}) + b_W)        y_t = m_y ⊙ s_t

    The LSTM and the GRU read ``m_x ⊙ x_t`` and ``(M_W ⊙ W)(m_s ⊙ h_{t-1})`` in place of ``x_t`` and
    ``W h_{t-1}`` in every gate (one mask for all gates: Gal's "tied weights" LSTM), and nothing else changes:
    the LSTM's memory ``c_{t-1}`` and the GRU's interpolation ``z ⊙ s_{t-1}`` read the unmasked state, and the
    reset-before GRU's candidate reads ``W_n (r ⊙ m_s ⊙ s_{t-1})`` (the placement of Keras 3's
    ``recurrent_dropout``, keras/src/layers/rnn/{simple_rnn,lstm,gru}.py). The carried state is never masked.
    Weight drop masks the whole ``W`` (``weight_hh``), not the LSTM projection ``R``.

    The masks are functions of the key and the shapes only: the same key gives the same masks.

    Args:
      input: ``p_x`` in [0, 1).
      state: ``p_s`` in [0, 1).
      output: ``p_y`` in [0, 1).
      weight: ``p_W`` in [0, 1).

    Returns:
      A :class:`RecurrentDropout` (static: hashable, no arrays).

    Raises:
      ValueError: a rate outside [0, 1).

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> layer = jrnn.RNN(jrnn.lstm(8), dropout=jrnn.recurrent_dropout(input=0.25, state=0.25, weight=0.5))
      >>> params = layer.init(jax.random.key(0), input_size=3)
      >>> xs = jnp.ones((2, 5, 3))
      >>> train, _ = layer.apply(params, xs, key=jax.random.key(1))   # masks drawn from the key
      >>> test, _ = layer.apply(params, xs)                           # no key: no masks
      >>> bool(jnp.array_equal(test, jrnn.RNN(jrnn.lstm(8)).apply(params, xs)[0]))
      True
    """
    rates = {"input": input, "state": state, "output": output, "weight": weight}
    for name, rate in rates.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise ValueError(f"jrnn.recurrent_dropout: expected {name} to be a dropout rate in [0, 1), "
                             f"got {rate!r}")
    return RecurrentDropout(**{name: float(rate) for name, rate in rates.items()})


class Masks(NamedTuple):
    """One draw of :class:`RecurrentDropout`'s masks, already scaled (entries 0 or ``1 / (1 - p)``); None where
    the rate is 0."""

    input: jax.Array | None
    state: jax.Array | None
    output: jax.Array | None
    weight: jax.Array | None


def draw_masks(dropout: RecurrentDropout, key: jax.Array, *, batch: int, input_size: int, state_size: int,
               output_size: int, weight_shape: tuple[int, ...], dtype: Any) -> Masks:
    """The masks of one call: ``key`` is split four ways (input, state, output, weight), whatever the rates."""
    keys = jax.random.split(key, 4)
    shapes = ((batch, input_size), (batch, state_size), (batch, output_size), tuple(weight_shape))
    rates = (dropout.input, dropout.state, dropout.output, dropout.weight)
    return Masks(*(_mask(k, rate, shape, dtype) for k, rate, shape in zip(keys, rates, shapes)))


def _mask(key: jax.Array, rate: float, shape: tuple[int, ...], dtype: Any) -> jax.Array | None:
    if not rate:
        return None
    keep = 1.0 - rate
    kept = jax.random.bernoulli(key, keep, shape)
    return jnp.where(kept, jnp.asarray(1.0 / keep, dtype), jnp.zeros((), dtype))


def check(dropout: Any, key: Any, cell: Any, where: str) -> RecurrentDropout | None:
    """Checks ``dropout`` and ``key`` for :func:`jrnn.scan`; returns the options if masks are to be drawn."""
    if dropout is None:
        if key is not None:
            raise ValueError(f"{where}: got a key but no dropout: a key only draws dropout masks; pass "
                             "dropout=jrnn.recurrent_dropout(...), or no key")
        return None
    if not isinstance(dropout, RecurrentDropout):
        raise TypeError(f"{where}: expected dropout to be None or jrnn.recurrent_dropout(...), got {dropout!r}")
    if dropout.state and not isinstance(cell, StateMaskable):
        raise TypeError(f"{where}: state dropout needs a cell whose step takes state_mask= (a jrnn.StateMaskable: "
                        f"the built-in jrnn.elman, jrnn.lstm, jrnn.gru), got {type(cell).__name__}")
    if dropout.weight and not isinstance(cell, RecurrentMatrix):
        raise TypeError(f"{where}: weight drop needs a cell with a recurrent matrix W (a jrnn.RecurrentMatrix, as "
                        f"jrnn.elman, jrnn.lstm, jrnn.gru, jrnn.mgu), got {type(cell).__name__}")
    return dropout if key is not None and dropout.active else None


def draw(dropout: RecurrentDropout, key: jax.Array, cell: Any, params: Any, *, batch: int, input_size: int,
         dtype: Any) -> Masks:
    """The masks of one call for ``cell``: :func:`draw_masks` with the cell's shapes."""
    weight_shape = cell.recurrent_matrix(params).shape if isinstance(cell, RecurrentMatrix) else ()
    return draw_masks(dropout, key, batch=batch, input_size=input_size, state_size=cell.output_size,
                      output_size=cell.output_size, weight_shape=weight_shape, dtype=dtype)


def apply_before(masks: Masks, cell: Any, params: Any, xs: jax.Array) -> tuple[Any, jax.Array]:
    """``(params with M_W ⊙ W, m_x ⊙ xs)``: the masks applied before the scan."""
    if masks.weight is not None:
        W = cell.recurrent_matrix(params)
        params = cell.with_recurrent_matrix(params, W * masks.weight.astype(W.dtype))
    if masks.input is not None:
        xs = xs * masks.input[:, None, :].astype(xs.dtype)
    return params, xs
