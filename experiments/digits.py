"""digits: scikit-learn's handwritten digits read as sequences of 8 rows of 8 pixels.

Deep (1, 2, 3 layers) and bidirectional LSTMs classify each image from the mean over time of the per-row
logits; test accuracy on a stratified held-out quarter. A weak anchor: a NumPy RNN reaches about 92 %.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import optax

import jrnn
from experiments import _common, _models, data

PROFILES = {
    "quick": dict(hidden=32, batch=64, steps=250, lr=1e-2, layers=(1, 2, 3), models=("lstm", "bi-lstm")),
    "full": dict(hidden=128, batch=64, steps=3000, lr=2e-3, layers=(1, 2, 3), models=("lstm", "bi-lstm")),
}


def class_logits(model, params, xs, key=None):
    logits, _ = model.apply(params, xs, key=key)
    return jnp.mean(logits, axis=1)


def run(profile: str, seed: int, out: pathlib.Path) -> dict:
    config = dict(PROFILES[profile], profile=profile, seed=seed)
    cache = _common.RowCache(out, "digits", config)
    train, test = data.digits(seed)
    n, B = train.xs.shape[0], config["batch"]
    k_model, k_order = jax.random.split(jax.random.key(seed))
    order = jax.random.permutation(k_order, n)

    def batches(i):
        index = jnp.take(order, jnp.arange(i * B, (i + 1) * B) % n)
        return jrnn.Batch(train.xs[index], train.targets[index])

    rows = []
    for layers in config["layers"]:
        for name in config["models"]:
            key = f"{name}-L{layers}"
            row = cache.get(key)
            if row is None:
                model = _models.model(name, config["hidden"], 10, layers=layers)

                def loss_fn(params, batch, key, model=model):
                    logits = class_logits(model, params, batch.xs, key)
                    return optax.softmax_cross_entropy_with_integer_labels(logits, batch.targets).mean(), {}

                params = model.init(k_model, 8)
                trainer = jrnn.train_step(loss_fn, optax.adam(config["lr"]), max_norm=1.0)
                params, curve, _ = _common.fit(trainer, params, batches, steps=config["steps"], key=k_model,
                                               desc=f"digits {key}")
                predictions = jnp.argmax(jax.jit(lambda p, m=model: class_logits(m, p, test.xs))(params), -1)
                row = cache.put(key, dict(model=name, layers=layers,
                                          accuracy=float(jnp.mean(predictions == test.targets)),
                                          params=_models.param_count(params), curve=curve))
            rows.append(row)
    plot = _common.plot_curves(rows, out / "digits.png", title="digits: 8 rows of 8 pixels",
                               ylabel="cross-entropy (train)", label_keys=("model", "layers"), logy=True)
    best = max(rows, key=lambda r: r["accuracy"])
    summary = f"best {best['model']} with {best['layers']} layer(s): {best['accuracy']:.1%} test accuracy"
    return _common.record("digits", config, rows, plots=[plot], summary=summary)
