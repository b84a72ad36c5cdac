"""clipping: the gradient-clipping ablation of Pascanu, Mikolov & Bengio 2013.

The same exploding setup — an Elman RNN whose recurrent matrix starts with spectral norm ``rho > 1``, trained
with plain SGD on the adding problem — over N seeds, once with ``optax.clip_by_global_norm`` (``g <- θ g/||g||``
when ``||g|| >= θ``) and once without. A run *diverged* when its loss became non-finite (the step was skipped
by jrnn's non-finite guard) or its test MSE ended above ``divergence_factor`` times where it started. Without
clipping, the rare huge gradients of the exploding regime throw the parameters off the loss surface's
cliffs; with clipping the step length is bounded by ``lr · θ``.
"""

from __future__ import annotations

import functools
import math
import pathlib

import jax
import jax.numpy as jnp
import optax

import jrnn
from experiments import _common, _models, data

PROFILES = {
    "quick": dict(T=50, hidden=32, rho=3.0, activation="tanh", seeds=8, batch=32, steps=400, lr=0.05,
                  max_norm=5.0, divergence_factor=2.0),
    "full": dict(T=100, hidden=64, rho=3.0, activation="tanh", seeds=20, batch=32, steps=3000, lr=0.05,
                 max_norm=5.0, divergence_factor=2.0),
}


def exploding_model(config: dict) -> _models.Model:
    activation = {"tanh": jnp.tanh, "relu": jax.nn.relu}[config["activation"]]
    cell = jrnn.elman(config["hidden"], activation, W_init=jrnn.init.orthogonal(config["rho"]))
    return _models.Model(f"{config['activation']}-rnn rho={config['rho']}", jrnn.deep([cell]), jrnn.readout(1))


def run(profile: str, seed: int, out: pathlib.Path) -> dict:
    config = dict(PROFILES[profile], profile=profile, seed=seed)
    cache = _common.RowCache(out, "clipping", config)
    model = exploding_model(config)
    loss_fn = jrnn.supervised_loss(model.apply, jrnn.masked_mse, last_step=True)
    sample = jax.jit(functools.partial(data.adding_problem, n=config["batch"], T=config["T"]))
    test = data.adding_problem(jax.random.key(seed + 10_000), 1000, config["T"])
    test_loss = jax.jit(lambda p: loss_fn(p, jrnn.Batch(test.xs, test.targets), None)[0])
    rows = []
    for clip in (False, True):
        key = f"clip={clip}"
        row = cache.get(key)
        if row is None:
            trainer = jrnn.train_step(loss_fn, optax.sgd(config["lr"]), max_norm=config["max_norm"] if clip else None)
            finals, diverged, skipped, mean_curve = [], 0, 0, None
            for s in range(config["seeds"]):
                k_model, k_data, k_fit = jax.random.split(jax.random.fold_in(jax.random.key(seed), s), 3)
                params = model.init(k_model, 2)
                limit = config["divergence_factor"] * float(test_loss(params))

                def batches(i, k_data=k_data):
                    return jrnn.Batch(*sample(jax.random.fold_in(k_data, i))[:2])

                params, curve, metrics = _common.fit(trainer, params, batches, steps=config["steps"], key=k_fit,
                                                     desc=f"clipping clip={clip} seed {s}")
                final = float(test_loss(params))
                run_diverged = int(metrics["num_skipped"]) > 0 or not math.isfinite(final) or final > limit
                diverged += run_diverged
                skipped += int(metrics["num_skipped"])
                finals.append(final if math.isfinite(final) else float("inf"))
                values = [min(v, 1e6) if math.isfinite(v) else 1e6 for _, v in curve]
                mean_curve = values if mean_curve is None else [a + b for a, b in zip(mean_curve, values)]
            steps = [i for i, _ in curve]
            finite = sorted(f for f in finals if math.isfinite(f))
            row = cache.put(key, dict(
                model=model.name, clip=clip,
                setting=f"clip_by_global_norm({config['max_norm']})" if clip else "no clipping",
                runs=config["seeds"], diverged=diverged, skipped_steps=skipped,
                median_test_mse=finite[len(finite) // 2] if finite else float("inf"),
                curve=[[i, v / config["seeds"]] for i, v in zip(steps, mean_curve)]))
        rows.append(row)
    plot = _common.plot_curves(rows, out / "clipping.png", label_keys=("setting",), logy=True,
                               title=f"clipping ablation, mean over {config['seeds']} seeds",
                               ylabel="train MSE (capped at 1e6)", baseline=data.ADDING_BASELINE_MSE,
                               baseline_label="predict 1 (1/6)")
    by_clip = {r["clip"]: r for r in rows}
    summary = (f"diverged without clipping: {by_clip[False]['diverged']}/{config['seeds']}, "
               f"with clipping: {by_clip[True]['diverged']}/{config['seeds']}")
    return _common.record("clipping", config, rows, plots=[plot], summary=summary)
