"""copy: the copy-memory task of Arjovsky, Shah & Bengio 2016.

Ten symbols from {1..8}, ``T - 1`` blanks, a delimiter, ten blanks: after the delimiter the network must
reproduce the ten symbols it saw ``T`` steps earlier. The memoryless strategy (blank, then a uniform guess over 8
symbols) scores ``10 ln 8 / (T + 20)`` per step; the paper (RMSProp 1e-3, batch 20) reports that the tanh RNN
and the LSTM sit at that baseline except for the shortest delays. A row beats the baseline when its test
cross-entropy is at least 5 % below it (``ce_over_baseline < 0.95``), not within noise of it. The full profile
is the paper's setup (T ∈ {100, 200, 300, 500}, 128 units, RMSProp 1e-3, batch 20) with 6,000 steps per model, a
budget of about 1.5 hours on one CPU core.
"""

from __future__ import annotations

import functools
import pathlib

import jax
import optax

import jrnn
from experiments import _common, _models, data

BEATS = 0.95  # a row beats the baseline when its test cross-entropy is under 95 % of it

PROFILES = {
    "quick": dict(Ts=(10,), hidden=64, batch=32, steps=800, lr=5e-3, test=1000,
                  models=("tanh-rnn", "orthogonal-rnn", "lstm", "gru")),
    "full": dict(Ts=(100, 200, 300, 500), hidden=128, batch=20, steps=6000, lr=1e-3, test=2000,
                 models=("tanh-rnn", "orthogonal-rnn", "lstm", "gru")),
}


def run(profile: str, seed: int, out: pathlib.Path) -> dict:
    config = dict(PROFILES[profile], profile=profile, seed=seed)
    cache = _common.RowCache(out, "copy", config)
    rows = []
    for T in config["Ts"]:
        k_test, k_train, k_model = jax.random.split(jax.random.fold_in(jax.random.key(seed), T), 3)
        test = data.copy_memory(k_test, config["test"], T)
        sample = jax.jit(functools.partial(data.copy_memory, n=config["batch"], T=T))

        def batches(i, k_train=k_train, sample=sample):
            batch = sample(jax.random.fold_in(k_train, i))
            return jrnn.Batch(batch.xs, batch.targets)

        baseline = data.copy_baseline_ce(T)
        for name in config["models"]:
            row = cache.get(f"{name}-T{T}")
            if row is None:
                model = _models.model(name, config["hidden"], data.COPY_CLASSES)
                loss_fn = jrnn.supervised_loss(model.apply, jrnn.masked_cross_entropy)
                params = model.init(k_model, data.COPY_CLASSES)
                trainer = jrnn.train_step(loss_fn, optax.rmsprop(config["lr"]), max_norm=1.0)
                params, curve, _ = _common.fit(trainer, params, batches, steps=config["steps"], key=k_model,
                                               desc=f"copy {name} T={T}")
                test_ce = float(jax.jit(loss_fn)(params, jrnn.Batch(test.xs, test.targets), None)[0])
                row = cache.put(f"{name}-T{T}", dict(model=name, T=T, test_ce=test_ce, baseline_ce=baseline,
                                                     ce_over_baseline=test_ce / baseline,
                                                     beats_baseline=test_ce < BEATS * baseline, curve=curve))
            rows.append(row)
    plots = [_common.plot_curves([r for r in rows if r["T"] == T], out / f"copy_T{T}.png",
                                 title=f"copy memory, T = {T}", ylabel="cross-entropy per step (train)",
                                 baseline=data.copy_baseline_ce(T), baseline_label="memoryless 10 ln8/(T+20)",
                                 logy=True)
             for T in config["Ts"]]
    winners = sorted({f"{r['model']} (T={r['T']})" for r in rows if r["beats_baseline"]})
    summary = f"beat the memoryless baseline: {', '.join(winners) or 'none'}"
    return _common.record("copy", config, rows, plots=plots, summary=summary)
