"""The backbone of Mamba's synthetic-task models (Gu & Dao 2023, arXiv 2312.00752): an embedding, residual
pre-norm blocks around any jrnn cell, a final norm and a readout to vocabulary logits. For tokens ``w_t``::

    x^0_t    = E[w_t]                                     E [V, D]
    x^l      = x^{l-1} + scan(cell_l, RMSNorm_l(x^{l-1}))  l = 1..L, each cell [B, T, D] -> [B, T, D]
               (+ a GLU after the cell for the linear time-invariant ones, S5 and LRU, as their papers)
    logits_t = V RMSNorm(x^L_t) + b                        V [V, D]

A task here is many-to-some: the answers are the logits of the sequence's last ``M`` steps (Mamba's selective
copying: the ``M`` marker steps; induction heads: the final trigger, ``M = 1``), scored by cross-entropy in
training and by per-token accuracy in evaluation. Evaluation streams a long sequence through the network in chunks
of fixed length, carrying every layer's state from one chunk to the next, so one compiled program scores every
test length and memory does not grow with it (the recurrence makes this exact: the same as one scan).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jrnn
from experiments import _common, _models

EPS = 1e-6


class BlockParams(NamedTuple):
    """One block: the norm's scale ``norm [D]``, the cell's params, and the GLU's ``glu [2D, D]`` (None without)."""

    norm: jax.Array
    cell: Any
    glu: jax.Array | None


class BackboneParams(NamedTuple):
    """``embedding`` E ``[V, D]``, one :class:`BlockParams` per block, the final norm's scale ``[D]``, the
    readout ``ReadoutParams(V [V, D], b [V])``."""

    embedding: jax.Array
    blocks: tuple
    final_norm: jax.Array
    readout: jrnn.ReadoutParams


def rms_norm(x: jax.Array, scale: jax.Array) -> jax.Array:
    """``x / sqrt(mean(x²) + ε) · scale`` over the last axis (Zhang & Sennrich 2019; Mamba's norm)."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + EPS) * jnp.broadcast_to(scale, x.shape)


def glu(W: jax.Array, y: jax.Array) -> jax.Array:
    """The gated output the S5 and LRU papers put after their linear recurrence: ``(W_1 z) ⊙ σ(W_2 z)`` with
    ``z = gelu(y)`` and ``W = [W_1; W_2]`` ``[2D, D]``. Pointwise in time: the block stays time-invariant."""
    a, b = jnp.split(gelu(y) @ W.T, 2, axis=-1)
    return a * jax.nn.sigmoid(b)


def gelu(y: jax.Array) -> jax.Array:
    return jax.nn.gelu(y, approximate=False)


@dataclasses.dataclass(frozen=True)
class Backbone:
    """The network above, one cell per block; ``glu`` adds :func:`glu` after each cell (for the linear,
    time-invariant ones, as their papers do). ``solver`` evaluates every block's recurrence (None:
    :func:`jrnn.auto`)."""

    name: str
    cells: tuple
    vocab: int
    d_model: int
    glu: bool = False
    solver: Any = None

    def init(self, key: jax.Array) -> BackboneParams:
        k_embed, k_head, *k_blocks = jax.random.split(key, 2 + len(self.cells))
        D = self.d_model
        blocks = []
        for c, k in zip(self.cells, k_blocks):
            k_cell, k_glu = jax.random.split(k)
            W = jax.random.normal(k_glu, (2 * D, D)) / np.sqrt(D) if self.glu else None
            blocks.append(BlockParams(jnp.ones((D,)), c.init(k_cell, D), W))
        embedding = jax.random.normal(k_embed, (self.vocab, D)) / np.sqrt(D)
        return BackboneParams(embedding, tuple(blocks), jnp.ones((D,)), jrnn.readout(self.vocab).init(k_head, D))

    def initial_state(self, batch: int) -> tuple:
        return tuple(c.initial_state((batch,)) for c in self.cells)

    def apply(self, params: BackboneParams, tokens: jax.Array, state: tuple | None = None,
              solver: Any = None) -> tuple[jax.Array, tuple]:
        """``tokens[B, T] -> (logits[B, T, V], per-block final states)``, from ``state`` (zeros if None)."""
        x = params.embedding[tokens]
        state = state or (None,) * len(self.cells)
        finals = []
        for c, p, s0 in zip(self.cells, params.blocks, state):
            y, final = jrnn.scan(c, p.cell, rms_norm(x, p.norm), initial_state=s0, solver=solver or self.solver)
            x = x + (glu(p.glu, y) if p.glu is not None else y)
            finals.append(final)
        return jrnn.readout(self.vocab).apply(params.readout, rms_norm(x, params.final_norm)), tuple(finals)


TIME_INVARIANT = ("s5", "lru")


def cell(kind: str, d_model: int, options: dict | None = None) -> jrnn.Cell:
    """A block's cell, ``[B, T, D] -> [B, T, D]``: ``mamba`` (selective S6 in Mamba's block, Gu & Dao 2023),
    ``hawk`` (the RG-LRU in Hawk's block, De et al. 2024; input-dependent decay), ``s5`` (Smith et al. 2023) and
    ``lru`` (Orvieto et al. 2023), linear and time-invariant like S4; the matrix-state blocks ``mamba2`` (Dao & Gu
    2024; heads of ``min(64, 2D)`` channels, N = 16), ``gated_delta_net`` (Yang et al. 2024) and ``mlstm`` (Beck et
    al. 2024), each with 4 heads unless told; or any of experiments/_models.py's cells (``lstm``, ``gru``,
    ``min-gru``, ...) with ``D`` units. ``options`` go to the factory of all but the last (for ``s5``, ``lru`` and
    ``hawk`` ``state`` is the hidden size, ``D`` by default)."""
    options = dict(options or {})
    if kind == "mamba":
        return jrnn.mamba(d_model, **options)
    if kind == "mamba2":
        return jrnn.mamba2(d_model, **{"head_dim": min(64, 2 * d_model), "state_size": 16, **options})
    if kind == "gated_delta_net":
        return jrnn.gated_delta_net(d_model, **options)
    if kind == "mlstm":
        return jrnn.mlstm(d_model, **options)
    if kind in ("s5", "lru", "hawk"):
        hidden = options.pop("state", d_model)
        factory = {"s5": jrnn.s5, "lru": jrnn.lru, "hawk": jrnn.hawk_block}[kind]
        return factory(hidden, output_size=d_model, **options)
    return _models.cell(kind, d_model)


def backbone(kind: str, *, d_model: int, layers: int, vocab: int, options: dict | None = None,
             solver: Any = None) -> Backbone:
    """``layers`` blocks of ``kind`` (:func:`cell`), with the GLU after the time-invariant ones."""
    return Backbone(kind, tuple(cell(kind, d_model, options) for _ in range(layers)), vocab, d_model,
                    kind in TIME_INVARIANT, solver)


def answer_loss(model: Backbone) -> Callable:
    """``loss_fn(params, batch, key) -> (loss, {})`` for :func:`jrnn.train_step`: the cross-entropy of the last
    ``M`` steps' logits against ``batch.targets[B, M]`` (``batch.xs`` holds the tokens ``[B, T]``)."""

    def loss_fn(params, batch, key):
        logits, _ = model.apply(params, batch.xs)
        answers = logits[:, logits.shape[1] - batch.targets.shape[1]:]
        return optax.softmax_cross_entropy_with_integer_labels(answers, batch.targets).mean(), {}

    return loss_fn


def train(model: Backbone, sample: Callable, *, steps: int, lr: float, warmup: int, key: jax.Array,
          desc: str, max_norm: float = 1.0, loss: Callable | None = None,
          until: Callable | None = None) -> tuple[BackboneParams, list]:
    """Adam with a linear warm-up and a cosine decay to a tenth, on fresh batches ``sample(key) -> (tokens[B, T],
    targets)`` every step, with ``loss`` (default :func:`answer_loss`, ``targets [B, M]``); ``until(params)``,
    asked every 100 steps, stops it early (:func:`experiments._common.fit`). Returns ``(params, curve)``,
    ``curve`` the training loss every 10 steps."""
    k_init, k_data = jax.random.split(key)
    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, min(warmup, steps - 1), steps, end_value=lr / 10)
    trainer = jrnn.train_step(loss or answer_loss(model), optax.adam(schedule), max_norm=max_norm)
    sample = jax.jit(sample)

    def batches(i):
        tokens, targets = sample(jax.random.fold_in(k_data, i))
        return jrnn.Batch(tokens, targets)

    params, curve, _ = _common.fit(trainer, model.init(k_init), batches, steps=steps, key=k_data, desc=desc,
                                   until=until)
    return params, curve


@functools.partial(jax.jit, static_argnums=(0, 4))
def _chunk(model: Backbone, params, tokens, state, answers: int):
    logits, state = model.apply(params, tokens, state)
    return logits[:, tokens.shape[1] - answers:], state


def answer_logits(model: Backbone, params: BackboneParams, tokens: jax.Array, answers: int,
                  chunk: int | None = None) -> jax.Array:
    """The logits of the last ``answers`` steps, ``[B, answers, V]``: the sequence streamed in chunks of
    ``chunk`` steps (``T`` a multiple of it; None: one chunk), each layer's state carried across chunks."""
    T = tokens.shape[1]
    chunk = chunk or T
    if T % chunk or answers > chunk:
        raise ValueError(f"answer_logits: T = {T} must be a multiple of chunk = {chunk} >= answers = {answers}")
    state = model.initial_state(tokens.shape[0])
    for start in range(0, T, chunk):
        logits, state = _chunk(model, params, tokens[:, start:start + chunk], state, answers)
    return logits


def accuracy(model: Backbone, params: BackboneParams, tokens: jax.Array, targets: jax.Array, *, batch: int,
             chunk: int | None = None) -> float:
    """Per-token accuracy of the argmax answers against ``targets[N, M]``, ``batch`` sequences at a time."""
    hits = 0
    for start in range(0, tokens.shape[0], batch):
        logits = answer_logits(model, params, tokens[start:start + batch], targets.shape[1], chunk)
        hits += int(jnp.sum(jnp.argmax(logits, -1) == targets[start:start + batch]))
    return hits / targets.size
