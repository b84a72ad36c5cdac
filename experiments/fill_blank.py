"""fill_blank: the seed's "my phone broke, I plan to ____ a new phone".

The word in the blank is chosen by a word that comes after it (:func:`experiments.data.fill_blank`), so a
left-to-right network can only guess (accuracy ``1 / num_answers``), while a bidirectional network, which also
reads the sentence from the right (the seed's ``A'_t``), can fill it in. Both read the same sentences, with
variable lengths, and are scored by cross-entropy on the blank only.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import optax

import jrnn
from experiments import _common, _models, data

PROFILES = {
    "quick": dict(T=16, hidden=32, train=4096, test=1024, batch=64, steps=300, lr=1e-2, answers=4, fillers=12,
                  models=("lstm", "bi-lstm", "gru", "bi-gru")),
    "full": dict(T=40, hidden=64, train=20000, test=5000, batch=64, steps=3000, lr=3e-3, answers=8, fillers=32,
                 models=("lstm", "bi-lstm", "gru", "bi-gru")),
}


def blank_logits(model, params, xs, lengths, key=None):
    """The network's logits at each sentence's blank: ``[B, num_answers]``."""
    logits, _ = model.apply(params, xs, lengths=lengths, key=key)
    position = jnp.argmax(xs == data.FILL_BLANK, axis=1)
    return logits[jnp.arange(xs.shape[0]), position]


def run(profile: str, seed: int, out: pathlib.Path) -> dict:
    config = dict(PROFILES[profile], profile=profile, seed=seed)
    cache = _common.RowCache(out, "fill_blank", config)
    k_train, k_test, k_model = jax.random.split(jax.random.key(seed), 3)
    shape = dict(num_answers=config["answers"], num_fillers=config["fillers"])
    vocab = data.fill_blank_vocab(config["answers"], config["fillers"])["size"]
    train = data.fill_blank(k_train, config["train"], config["T"], **shape)
    test = data.fill_blank(k_test, config["test"], config["T"], **shape)
    B = config["batch"]

    def batches(i):
        start = (i * B) % (config["train"] - B + 1)
        return jrnn.Batch(train.xs[start:start + B], train.targets[start:start + B], train.lengths[start:start + B])

    rows = []
    for name in config["models"]:
        row = cache.get(name)
        if row is None:
            model = _models.model(name, config["hidden"], config["answers"], vocab=vocab)

            def loss_fn(params, batch, key, model=model):
                logits = blank_logits(model, params, batch.xs, batch.lengths, key)
                return optax.softmax_cross_entropy_with_integer_labels(logits, batch.targets).mean(), {}

            params = model.init(k_model, vocab)
            trainer = jrnn.train_step(loss_fn, optax.adam(config["lr"]), max_norm=1.0)
            params, curve, _ = _common.fit(trainer, params, batches, steps=config["steps"], key=k_model,
                                           desc=f"fill_blank {name}")
            logits = jax.jit(lambda p, m=model: blank_logits(m, p, test.xs, test.lengths))(params)
            accuracy = float(jnp.mean(jnp.argmax(logits, -1) == test.targets))
            row = cache.put(name, dict(model=name, accuracy=accuracy, chance=1 / config["answers"],
                                       final_train_loss=curve[-1][1], params=_models.param_count(params),
                                       curve=curve))
        rows.append(row)
    best_uni = max(r["accuracy"] for r in rows if not r["model"].startswith("bi-"))
    best_bi = max(r["accuracy"] for r in rows if r["model"].startswith("bi-"))
    summary = f"one direction ≤ {best_uni:.1%} (chance {1 / config['answers']:.0%}); two directions {best_bi:.1%}"
    plot = _common.plot_curves(rows, out / "fill_blank.png", title="fill the blank: one vs two directions",
                               ylabel="cross-entropy at the blank (train)")
    return _common.record("fill_blank", config, rows, plots=[plot], summary=summary)
