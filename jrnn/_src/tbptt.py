"""Truncated backpropagation through time: chunks of k steps, the state carried across, its gradient stopped.

Williams & Peng (1990, "An efficient gradient-based algorithm for on-line training of recurrent network
trajectories", Neural Computation 2(4)) describe BPTT(h; h'): run the network forward, and every ``h'`` steps
backpropagate through the last ``h`` steps only (``h >= h'``). In the notation made common by Sutskever (2013,
PhD thesis), TBPTT(k1, k2): every ``k1`` steps, run BPTT for ``k2`` steps. Full (epochwise) BPTT is
``k1 = k2 = T``.

:func:`truncated_bptt` is the case ``k1 = k2 = k``: the sequence is cut into chunks of ``k`` steps; the state
flows forward across every boundary (the forward pass is unchanged), but the gradient stops there, so the error at
step ``t`` reaches back only to the start of its own chunk (between 1 and ``k`` steps, not always ``k``). With
``k1 < k2`` every error would reach back at least ``k2 - k1 + 1`` steps at the cost of running each step's
backward pass ``k2 / k1`` times; get it by hand from overlapping windows if you need it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src import checks
from jrnn._src.bidirectional import Bidirectional
from jrnn._src.contract import SequenceLayer, Wrapper, prepare
from jrnn._src.deep import Deep, as_layer
from jrnn._src.scan import RNN


def _is_causal(layer: Any) -> bool:
    """Whether the state at step t depends only on steps <= t (what carrying the state across chunks needs)."""
    if isinstance(layer, RNN):
        return not layer.reverse
    if isinstance(layer, Bidirectional):
        return False
    if isinstance(layer, Deep):
        return all(_is_causal(sub) for sub in layer.layers)
    if isinstance(layer, TruncatedBPTT):
        return _is_causal(layer.layer)
    return True


@dataclasses.dataclass(frozen=True)
class TruncatedBPTT(Wrapper):
    """A sequence layer whose forward pass is ``layer``'s and whose gradient is truncated every ``k`` steps.

    Build it with :func:`truncated_bptt`. It is itself a sequence layer: ``init``, ``initial_state`` and
    ``apply(params, xs, *, lengths, initial_state, key) -> (ys, final_state)``; and, like the forward network it
    wraps, a cell: its ``step`` is the network's (one step has no chunk boundary to truncate at), so a
    :func:`jrnn.language_model` over it trains with truncated gradients and still generates token by token.
    """

    layer: SequenceLayer
    k: int

    @property
    def hidden_size(self) -> int:
        return self.layer.hidden_size

    @property
    def output_size(self) -> int:
        return self.layer.output_size

    def init(self, key: jax.Array, input_size: int) -> Any:
        return self.layer.init(key, input_size)

    def initial_state(self, batch_shape=(), dtype=None) -> Any:
        return self.layer.initial_state(batch_shape, dtype)

    @property
    def wrapped(self) -> SequenceLayer:
        return self.layer

    def step(self, params: Any, state: Any, x: jax.Array) -> tuple[Any, jax.Array]:
        """The wrapped network's ``step(params, state, x) -> (state, y)``."""
        return self.layer.step(params, state, x)

    def apply(self, params: Any, xs: jax.Array, *, lengths: jax.Array | None = None, initial_state: Any = None,
              key: jax.Array | None = None) -> tuple[jax.Array, Any]:
        """Equivalent to this loop over chunks ``c = 0, 1, ...`` of ``k`` steps (the last one may be shorter)::

            state = initial_state
            for c in range(ceil(T / k)):
                chunk = slice(c * k, (c + 1) * k)
                if c > 0:
                    state = jax.lax.stop_gradient(state)
                ys[:, chunk], state = layer.apply(params, xs[:, chunk], lengths=clip(lengths - c * k, 0, k),
                                                  initial_state=state, key=key if c == 0 else fold_in(key, c))
            return ys, state

        The outputs and final state equal ``layer.apply``'s (exactly so without dropout); with ``k >= T`` it *is*
        ``layer.apply``, so its gradient is that of full BPTT.

        Args:
          params: the layer's parameters.
          xs: ``[B, T, F]`` inputs.
          lengths: optional ``[B]`` valid lengths.
          initial_state: optional initial state (its gradient flows within the first chunk).
          key: PRNG key for the layer (dropout); chunk ``c > 0`` gets ``jax.random.fold_in(key, c)``. Chunks are
            run padded to ``k`` steps, so a shorter last chunk draws its dropout masks for ``k`` steps.

        Returns:
          ``(ys[B, T, output_size], final_state)``.
        """
        where = "jrnn.truncated_bptt"
        batch, time = checks.batch_major(xs, where)
        lengths = checks.lengths(lengths, batch, where)
        params = prepare(self.layer, params)  # once per sequence, not once per chunk
        k = min(self.k, time)
        num_chunks = -(-time // k)
        if num_chunks == 1:
            return self.layer.apply(params, xs, lengths=lengths, initial_state=initial_state, key=key)

        pad = num_chunks * k - time
        xs = jnp.pad(xs, ((0, 0), (0, pad)) + ((0, 0),) * (xs.ndim - 2))
        chunks = jnp.swapaxes(xs.reshape(batch, num_chunks, k, *xs.shape[2:]), 0, 1)  # [C, B, k, F]
        if lengths is None and pad == 0:
            chunk_lengths = None
        else:
            full = jnp.full((batch,), time, jnp.int32) if lengths is None else jnp.minimum(lengths, time)
            starts = k * jnp.arange(num_chunks, dtype=full.dtype)
            chunk_lengths = jnp.clip(full[None, :] - starts[:, None], 0, k)  # [C, B]

        def run(x, chunk_lengths, state, chunk_key):
            return self.layer.apply(params, x, lengths=chunk_lengths, initial_state=state, key=chunk_key)

        first_lengths = None if chunk_lengths is None else chunk_lengths[0]
        ys0, state = run(chunks[0], first_lengths, initial_state, key)

        def body(state, inputs):
            x, chunk_lengths, c = inputs
            chunk_key = None if key is None else jax.random.fold_in(key, c)
            ys, state = run(x, chunk_lengths, jax.lax.stop_gradient(state), chunk_key)
            return state, ys

        rest = (chunks[1:], None if chunk_lengths is None else chunk_lengths[1:], jnp.arange(1, num_chunks))
        final_state, ys_rest = jax.lax.scan(body, state, rest)
        ys = jnp.concatenate([ys0[None], ys_rest], axis=0)  # [C, B, k, O]
        ys = jnp.swapaxes(ys, 0, 1).reshape(batch, num_chunks * k, *ys.shape[3:])[:, :time]
        return ys, final_state


def truncated_bptt(layer: Any, k: int) -> TruncatedBPTT:
    """Truncated BPTT with ``k1 = k2 = k`` (Williams & Peng 1990): ``layer`` with its gradient cut every k steps.

    The result is a sequence layer with ``layer``'s forward pass; its ``apply`` runs the sequence in chunks of
    ``k`` steps and passes each chunk's final state to the next with ``jax.lax.stop_gradient``. Take
    ``jax.grad`` of any loss on its outputs (e.g. through :func:`jrnn.supervised_loss`) for the truncated
    gradient: one parameter update per sequence, summing every chunk's contribution. For one update per chunk
    (on-line, as PyTorch's ``detach()`` or Keras' ``stateful=True``), cut the sequence yourself and put each
    chunk's stopped final state into the next :class:`jrnn.Batch`'s ``initial_state``.

    Args:
      layer: a forward-in-time model: a cell (run as :class:`jrnn.RNN`), a forward :class:`jrnn.RNN`, or a
        :class:`jrnn.Deep` of those. A reverse or bidirectional layer is refused: its state at step t depends on
        steps after t, which a chunk cannot see.
      k: the truncation length, a positive int; ``k >= T`` gives full BPTT.

    Returns:
      A :class:`TruncatedBPTT` layer.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> layer = jrnn.truncated_bptt(jrnn.lstm(4), k=3)
      >>> params = layer.init(jax.random.key(0), input_size=2)
      >>> ys, state = layer.apply(params, jnp.ones((2, 10, 2)), lengths=jnp.array([10, 7]))
      >>> ys.shape
      (2, 10, 4)
    """
    k = checks.positive_int("k", k, "jrnn.truncated_bptt")
    layer = as_layer(layer)
    if not _is_causal(layer):
        raise ValueError(f"jrnn.truncated_bptt: expected a forward-in-time model (a cell, a forward RNN, or a "
                         f"Deep stack of those), got {type(layer).__name__} with a reverse direction")
    return TruncatedBPTT(layer, k)

