"""flax_classifier: a Flax NNX sequence classifier built on ``jrnn.flax``, trained data-parallel.

The model: ``nnx.Embed`` → ``jrnn.flax.nnx.Deep`` of two bidirectional LSTM layers (dropout between them) → the
mean over each sequence's valid steps → ``nnx.Linear``; trained with ``nnx.Optimizer`` (Adam, clipped) under
``nnx.jit``, the batch sharded over every local device with :mod:`jrnn.sharding` (one device on a laptop).

The task ("marker order"), synthetic and of variable length: a sequence of ``L`` tokens (``L`` uniform in
``[min_len, max_len]``, padding after it) holds filler tokens and three markers ``A``, ``B``, ``C``, each once, at
random positions; the label is the order in which the markers appear, one of the 3! = 6 permutations. Every
sequence holds the same multiset of markers, so the label is in the order of the whole sequence, not in its
tokens: the control model, the same classifier without the recurrent layers (a bag of embeddings), stays at
chance (1/6, 16.7 %).

Measured with ``python -m experiments flax_classifier --quick`` (500 Adam steps of 64 sequences, lengths 6-20;
about 30-45 s on 2 CPU cores): the bi-LSTM classifier reaches 100.0 % test accuracy on 2048 held-out sequences
(seed 0 and seed 1; also with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``, 4 devices), the bag of
embeddings 16.85 % (seed 0) and 17.4 % (seed 1), chance level. The full profile (lengths 10-60, 3000 steps) has
not been measured yet.
"""

from __future__ import annotations

import itertools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jrnn
import jrnn.flax
from experiments import _common
from jrnn import sharding

PROFILES = {
    "quick": dict(min_len=6, max_len=20, fillers=8, embed=16, hidden=32, layers=2, dropout=0.1, batch=64, steps=500,
                  lr=3e-3, test=2048),
    "full": dict(min_len=10, max_len=60, fillers=16, embed=32, hidden=64, layers=2, dropout=0.1, batch=64,
                 steps=3000, lr=2e-3, test=4096),
}
MARKERS = 3
ORDERS = list(itertools.permutations(range(MARKERS)))  # label k: the markers appear in the order ORDERS[k]
PAD = 0


def marker_order(rng: np.random.Generator, n: int, *, min_len: int, max_len: int, fillers: int):
    """``(tokens[n, max_len] int32, lengths[n], labels[n])``. Tokens: 0 padding, 1..3 the markers A, B, C,
    4..3+fillers the fillers."""
    lengths = rng.integers(min_len, max_len + 1, n)
    tokens = rng.integers(1 + MARKERS, 1 + MARKERS + fillers, (n, max_len))
    tokens[np.arange(max_len)[None, :] >= lengths[:, None]] = PAD
    labels = rng.integers(0, len(ORDERS), n)
    for b in range(n):
        positions = np.sort(rng.choice(lengths[b], MARKERS, replace=False))
        for position, marker in zip(positions, ORDERS[labels[b]]):
            tokens[b, position] = 1 + marker
    return tokens.astype(np.int32), lengths.astype(np.int32), labels.astype(np.int32)


def masked_mean(h: jax.Array, lengths: jax.Array) -> jax.Array:
    """The mean of ``h[B, T, H]`` over each sequence's valid steps ``t < lengths[b]``."""
    mask = jnp.arange(h.shape[1])[None, :, None] < lengths[:, None, None]
    return jnp.sum(jnp.where(mask, h, 0.0), axis=1) / jnp.maximum(lengths, 1)[:, None]


class Classifier(nnx.Module):
    """Embedding → ``layers`` bidirectional LSTM layers (``jrnn.flax.nnx.Deep``) → mean over valid steps → logits.

    With ``layers=0`` the recurrent stack is left out: the bag-of-embeddings control.
    """

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, classes: int, dropout: float, *,
                 rngs: nnx.Rngs):
        self.embed = nnx.Embed(vocab, embed, rngs=rngs)
        if layers:
            self.rnn = jrnn.flax.nnx.Deep([jrnn.bidirectional(jrnn.lstm(hidden))] * layers, embed, dropout=dropout,
                                          rngs=rngs)
            width = 2 * hidden
        else:
            self.rnn = None
            width = embed
        self.head = nnx.Linear(width, classes, rngs=rngs)

    def __call__(self, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
        h = self.embed(tokens)
        if self.rnn is not None:
            h = self.rnn(h, lengths=lengths)
        return self.head(masked_mean(h, lengths))


def loss_fn(model: Classifier, batch: dict) -> jax.Array:
    logits = model(batch["tokens"], batch["lengths"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()


@nnx.jit
def train_step(model: Classifier, optimizer: nnx.Optimizer, batch: dict) -> jax.Array:
    loss, grads = nnx.value_and_grad(loss_fn)(model, batch)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def predict(model: Classifier, batch: dict) -> jax.Array:
    return jnp.argmax(model(batch["tokens"], batch["lengths"]), axis=-1)


def train(name: str, layers: int, config: dict, seed: int) -> dict:
    mesh = sharding.data_mesh(jax.local_devices())
    vocab = 1 + MARKERS + config["fillers"]
    model = Classifier(vocab, config["embed"], config["hidden"], layers, len(ORDERS), config["dropout"],
                       rngs=nnx.Rngs(params=seed, dropout=seed + 1))
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(config["lr"]))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    nnx.update(model, sharding.replicate(nnx.state(model), mesh))  # parameters replicated on every device
    nnx.update(optimizer, sharding.replicate(nnx.state(optimizer), mesh))
    task = dict(min_len=config["min_len"], max_len=config["max_len"], fillers=config["fillers"])
    rng = np.random.default_rng(seed)

    def batch(n):
        tokens, lengths, labels = marker_order(rng, n, **task)
        return sharding.shard_batch({"tokens": tokens, "lengths": lengths, "labels": labels}, mesh)

    model.train()
    curve = []
    bar = _common.progress(range(config["steps"]), desc=f"flax_classifier {name}", total=config["steps"])
    for i in bar:
        loss = train_step(model, optimizer, batch(config["batch"]))
        if i % 10 == 0 or i == config["steps"] - 1:
            curve.append((i, float(loss)))
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{curve[-1][1]:.3f}")

    model.eval()
    test_rng = np.random.default_rng(10_000 + seed)  # held out: a stream the training batches never draw from
    tokens, lengths, labels = marker_order(test_rng, config["test"], **task)
    test = sharding.shard_batch({"tokens": tokens, "lengths": lengths}, mesh)
    accuracy = float(np.mean(np.asarray(predict(model, test)) == labels))
    params = sum(x.size for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
    return dict(model=name, layers=layers, params=int(params), devices=int(mesh.size), accuracy=accuracy,
                final_loss=curve[-1][1], curve=curve)


def run(profile: str, seed: int, out: pathlib.Path) -> dict:
    config = dict(PROFILES[profile], profile=profile, seed=seed, chance=1 / len(ORDERS))
    cache = _common.RowCache(out, "flax_classifier", config)
    rows = []
    for name, layers in (("bi-lstm", config["layers"]), ("bag-of-embeddings", 0)):
        row = cache.get(name) or cache.put(name, train(name, layers, config, seed))
        rows.append(row)
    plot = _common.plot_curves(rows, out / "flax_classifier.png", title="flax_classifier: marker order (6 classes)",
                               ylabel="cross-entropy (train)", baseline=float(np.log(len(ORDERS))),
                               baseline_label="chance (ln 6)")
    bilstm, control = rows
    summary = (f"Flax NNX bi-LSTM x{config['layers']} (jrnn.flax): {bilstm['accuracy']:.1%} test accuracy on "
               f"marker order; bag of embeddings {control['accuracy']:.1%}; chance {config['chance']:.1%}")
    return _common.record("flax_classifier", config, rows, plots=[plot], summary=summary)
