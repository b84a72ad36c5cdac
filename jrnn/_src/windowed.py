"""A :class:`jrnn.Windowed` cell as a cell of its inner state alone: every step's window built at once.

A windowed cell's step reads ``u_{t-width+1}, ..., u_t`` (a causal convolution over time) and carries the last
``width - 1`` of them in its state. Given the whole sequence, those windows are known before any step runs: they
depend on the inputs, the initial window, the lengths and the resets, never on the recurrence. :func:`jrnn.scan`
therefore builds them here, hands the solver the cell of the inner state (:func:`inner_cell`) with the window, the
input and the ``fresh`` flag packed into one per-step array, and rebuilds the :class:`jrnn.WindowState` after. A
windowed cell that is also a :class:`jrnn.LinearRecurrence` stays one, so :func:`jrnn.associative` and the Newton
solvers see only its inner recurrence.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jrnn._src.contract import Chunkwise, LinearRecurrence, Windowed, WindowInputs, WindowState


@dataclasses.dataclass(frozen=True)
class InnerCell:
    """The cell of a windowed cell's inner state. Its per-step input is ``[window (width·C), x (F), fresh (1)]``
    packed along the last axis (:func:`windows`)."""

    cell: Windowed

    @property
    def hidden_size(self) -> int:
        return self.cell.hidden_size

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    def unpack(self, packed: jax.Array) -> WindowInputs:
        width, size = self.cell.width, self.cell.window_size
        window = packed[..., :width * size].reshape(*packed.shape[:-1], width, size)
        return WindowInputs(window, packed[..., width * size:-1], packed[..., -1:])

    def init(self, key: jax.Array, input_size: int) -> Any:
        raise TypeError("the inner cell of a jrnn.Windowed cell has no parameters of its own; init the cell")

    def initial_state(self, batch_shape=(), dtype=None) -> Any:
        return self.cell.inner_initial_state(batch_shape, dtype)

    def step(self, params: Any, inner: Any, packed: jax.Array) -> tuple[Any, jax.Array]:
        return self.cell.window_step(params, inner, self.unpack(packed))

    def input_size(self, params: Any) -> int:
        return self.cell.width * self.cell.window_size + self.cell.input_size(params) + 1


@dataclasses.dataclass(frozen=True)
class LinearInnerCell(InnerCell, LinearRecurrence):
    """:class:`InnerCell` of a windowed :class:`jrnn.LinearRecurrence`: its coefficients and readout read the
    unpacked :class:`jrnn.WindowInputs`."""

    @property
    def log_space(self) -> bool:  # type: ignore[override]
        return self.cell.log_space

    @property
    def parallel(self) -> bool | None:  # type: ignore[override]
        return self.cell.parallel

    @property
    def expands(self) -> bool:  # type: ignore[override]
        return self.cell.expands

    def coefficients(self, params: Any, packed: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.cell.coefficients(params, self.unpack(packed))

    def readout(self, params: Any, states: jax.Array, packed: jax.Array) -> jax.Array:
        return self.cell.readout(params, states, self.unpack(packed))


@dataclasses.dataclass(frozen=True)
class ChunkwiseInnerCell(InnerCell, Chunkwise):
    """:class:`InnerCell` of a windowed :class:`jrnn.Chunkwise` cell: its chunk reads the unpacked
    :class:`jrnn.WindowInputs`."""

    @property
    def chunk_size(self) -> int:  # type: ignore[override]
        return self.cell.chunk_size

    def chunk(self, params: Any, state: Any, packed: jax.Array, valid: jax.Array | None, resets: jax.Array | None,
              restart: Any) -> tuple[Any, jax.Array]:
        return self.cell.chunk(params, state, self.unpack(packed), valid, resets, restart)


@dataclasses.dataclass(frozen=True)
class LinearChunkwiseInnerCell(LinearInnerCell, ChunkwiseInnerCell):
    """Both: the inner cell of a windowed cell that is a :class:`jrnn.LinearRecurrence` and :class:`jrnn.Chunkwise`."""


def inner_cell(cell: Windowed) -> InnerCell:
    """The cell of ``cell``'s inner state, with the capabilities of ``cell`` that read the per-step inputs
    (:class:`jrnn.LinearRecurrence`, :class:`jrnn.Chunkwise`)."""
    linear, chunkwise = isinstance(cell, LinearRecurrence), isinstance(cell, Chunkwise)
    kind = {(False, False): InnerCell, (True, False): LinearInnerCell, (False, True): ChunkwiseInnerCell,
            (True, True): LinearChunkwiseInnerCell}[linear, chunkwise]
    return kind(cell)


def windows(cell: Windowed, params: Any, xs: jax.Array, state: WindowState, lengths: jax.Array | None,
            resets: jax.Array | None) -> tuple[jax.Array, Any, Any]:
    """Every step's window at once: ``(packed [B, T, width·C + F + 1], inner initial state, finish)``, where
    ``finish(inner_final) -> WindowState`` is the state after each sequence's last valid step.

    ``xs`` is in the order the recurrence reads it (already reversed for a reverse scan) and zero at padded steps.
    The window of step ``t`` holds ``u_τ`` for ``τ = t - width + 1 .. t``; an entry from before the step's segment
    start (step 0, or the last reset) is the initial window's (``state``'s in the first segment, the cell's own
    ``initial_state``'s after a reset), as stepping from that state would give; so is ``fresh``.
    """
    batch, time = xs.shape[:2]
    width = cell.width
    u = cell.window_input(params, xs)  # [B, T, C]
    dtype = jnp.result_type(u, xs, state.window)
    u, xs, initial = u.astype(dtype), xs.astype(dtype), state.window.astype(dtype)  # initial: [B, width-1, C]
    t = jnp.arange(time)
    if resets is None:
        start, first = jnp.zeros((batch, time), jnp.int32), jnp.ones((batch, time), bool)
    else:
        start = jax.lax.cummax(jnp.where(resets, t, 0).astype(jnp.int32), axis=1)
        first = jnp.cumsum(resets, axis=1) == 0  # in the first segment, which starts from ``state``
    restart = cell.initial_state((batch,), dtype)
    since = t[None, :] - start  # [B, T]: steps since the segment's first step
    entries = []
    for j in range(width):  # window slot j holds u at τ = t - s, s = width - 1 - j steps back
        s = width - 1 - j
        entry = jnp.pad(u, ((0, 0), (s, 0), (0, 0)))[:, :time] if s else u  # static shifts: no gather
        for k in range(j, width - 1):  # τ before the segment (since < s): the initial window's slot k = since + j
            from_initial = jnp.where(first[..., None], initial[:, None, k], restart.window.astype(dtype)[:, None, k])
            entry = jnp.where((since == k - j)[..., None], from_initial, entry)
        entries.append(entry)
    window = jnp.stack(entries, axis=2)  # [B, T, width, C]
    fresh_start = jnp.where(first[..., None], state.fresh.astype(dtype)[:, None], restart.fresh.astype(dtype)[:, None])
    fresh = jnp.where((t[None, :] == start)[..., None], fresh_start, jnp.zeros((), dtype))
    packed = jnp.concatenate([window.reshape(batch, time, -1), xs, fresh], axis=-1)

    def finish(inner: Any) -> WindowState:
        if lengths is None:
            last_window, stepped = window[:, -1, 1:], jnp.ones((batch,), bool)
        else:
            n = jnp.clip(lengths, 0, time)
            last_window = jnp.take_along_axis(window, jnp.maximum(n - 1, 0)[:, None, None, None], axis=1)[:, 0, 1:]
            stepped = n > 0
        last_window = jnp.where(stepped[:, None, None], last_window, state.window.astype(dtype))
        last_window = last_window.astype(state.window.dtype)
        fresh_out = jnp.where(stepped[:, None], jnp.zeros_like(state.fresh), state.fresh)
        return WindowState(last_window, fresh_out, inner)

    return packed, state.inner, finish
