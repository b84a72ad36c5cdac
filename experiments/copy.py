"""copy: the copy-memory task of Arjovsky, Shah & Bengio 2016.

Ten symbols from {1..8}, ``T - 1`` blanks, a delimiter, ten blanks: after the delimiter the network must
reproduce the ten symbols it saw ``T`` steps earlier. The memoryless strategy (blank, then a uniform guess over 8
symbols) scores ``10 ln 8 / (T + 20)`` per step; the paper (RMSProp 1e-3, batch 20) reports that the tanh RNN
and the LSTM sit at that baseline except for the shortest delays. A row beats the baseline when its test
cross-entropy is at least 5 % below it (``ce_over_baseline < 0.95``), not within noise of it. The full profile
is the paper's setup (T ∈ {100, 200, 300, 500}, 128 units, RMSProp 1e-3, batch 20) with 6,000 steps per model, a
budget of about 1.5 hours on one CPU core. The orthogonal RNN ``exprnn`` (Lezcano-Casado & Martínez-Rubio 2019,
``W = expm(A - Aᵀ)``, modReLU) trains with its paper's two learning rates, ten times smaller for ``A``. The long
profile is expRNN's own setup at T = 1000 (190 units, batch 128, RMSprop 2e-4 and 2e-5 for ``A``) for 1,600 of
the paper's 4,000 steps, against the LSTM (128 units, batch 128, RMSprop 1e-3) for 400: about an hour on one
core (0.93 s and 1.84 s per step alone on a quiet core, about 1.45 times that beside another run).
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
                  models=("tanh-rnn", "orthogonal-rnn", "lstm", "gru", "exprnn"),
                  overrides={"exprnn": dict(lr=2e-3, lr_A=2e-4)}),
    "full": dict(Ts=(100, 200, 300, 500), hidden=128, batch=20, steps=6000, lr=1e-3, test=2000,
                 models=("tanh-rnn", "orthogonal-rnn", "lstm", "gru"), overrides={}),
    "long": dict(Ts=(1000,), hidden=128, batch=128, steps=400, lr=1e-3, test=1000, models=("exprnn", "lstm"),
                 overrides={"exprnn": dict(hidden=190, steps=1600, lr=2e-4, lr_A=2e-5)}),
}


def optimizer(name: str, settings: dict) -> optax.GradientTransformation:
    """RMSprop; for the expRNN the paper's recipe, PyTorch's RMSprop with a separate learning rate for ``A``."""
    if name == "exprnn":
        return jrnn.exprnn_optimizer(settings["lr"], settings["lr_A"])
    return optax.rmsprop(settings["lr"])


def run(profile: str, seed: int, out: pathlib.Path) -> dict:
    config = dict(PROFILES[profile], profile=profile, seed=seed)
    cache = _common.RowCache(out, "copy", config)
    rows = []
    for T in config["Ts"]:
        k_test, k_train, k_model = jax.random.split(jax.random.fold_in(jax.random.key(seed), T), 3)
        test = data.copy_memory(k_test, config["test"], T)

        def batches(i, sample, k_train=k_train):
            batch = sample(jax.random.fold_in(k_train, i))
            return jrnn.Batch(batch.xs, batch.targets)

        baseline = data.copy_baseline_ce(T)
        for name in config["models"]:
            row = cache.get(f"{name}-T{T}")
            if row is None:
                settings = {**config, **config["overrides"].get(name, {})}
                model = _models.model(name, settings["hidden"], data.COPY_CLASSES)
                loss_fn = jrnn.supervised_loss(model.apply, jrnn.masked_cross_entropy)
                params = model.init(k_model, data.COPY_CLASSES)
                trainer = jrnn.train_step(loss_fn, optimizer(name, settings), max_norm=1.0)
                sample = jax.jit(functools.partial(data.copy_memory, n=settings["batch"], T=T))
                params, curve, _ = _common.fit(trainer, params, functools.partial(batches, sample=sample),
                                               steps=settings["steps"], key=k_model, desc=f"copy {name} T={T}")
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
