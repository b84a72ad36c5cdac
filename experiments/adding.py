"""adding: the adding problem of Le, Jaitly & Hinton 2015 (after Hochreiter & Schmidhuber 1997).

Two of T values drawn from U[0, 1] are marked; the network must output their sum at the last step. Predicting
1 gives MSE 1/6 ≈ 0.167, the baseline. Le et al. report that the IRNN and the LSTM solve it where a tanh RNN
stays at the baseline as T grows; the paper's setup is 100 hidden units, batch 16, SGD with clipping,
T ∈ {150, 200, 300, 400}. The full profile keeps the paper's task, T, width, batch and test set size but trains
with Adam for 15,000 steps per model (a budget of about 1.5 hours on one CPU core; SGD within it was not tried;
the IRNN at a smaller learning rate, 3e-4). The quick profile runs T = 100 in a couple of minutes, and gives the IRNN,
which learns the task more slowly, 100 units and more steps at a smaller learning rate. The IndRNN (Li et al.
2018) is their adding-problem network: two ReLU layers with elementwise recurrent weights kept in
``|w| <= 2^(1/T)`` after every step (``jrnn.indrnn_constraint``), ``U ~ N(0, 0.001²)``, Adam 2e-4 in their
setup. ``ln-lstm`` is the layer-normalised LSTM (Ba et al. 2016). The long profile is T = 1000, where Li et al.
report that the LSTM fails and the IndRNN does not: their setup for the IndRNN (2 × 128 units, batch 32, Adam
2e-4, 5,000 steps), against the LSTM (1,500 steps) and the layer-normalised LSTM (800 steps), 128 units, Adam
1e-3: about an hour on one core (0.20, 0.44 and 0.89 s per step alone on a quiet core, about 1.45 times that
beside another run).
"""

from __future__ import annotations

import functools
import pathlib

import jax
import optax

import jrnn
from experiments import _common, _models, data

PROFILES = {
    "quick": dict(Ts=(100,), hidden=32, batch=32, steps=1200, lr=1e-2, max_norm=1.0, test=2000, optimizer="adam",
                  models=("tanh-rnn", "irnn", "lstm", "gru", "indrnn", "ln-lstm"),
                  overrides={"irnn": dict(hidden=100, batch=64, steps=5000, lr=3e-4),
                             "indrnn": dict(layers=2, hidden=64, steps=800, lr=2e-3), "ln-lstm": dict(steps=400)}),
    "full": dict(Ts=(150, 200, 300, 400), hidden=100, batch=16, steps=15000, lr=2e-3, max_norm=1.0, test=10000,
                 optimizer="adam", models=("tanh-rnn", "irnn", "lstm", "gru"),
                 overrides={"irnn": dict(lr=3e-4)}),
    "long": dict(Ts=(1000,), hidden=128, batch=32, steps=1500, lr=1e-3, max_norm=1.0, test=2000, optimizer="adam",
                 models=("indrnn", "lstm", "ln-lstm"),
                 overrides={"indrnn": dict(layers=2, steps=5000, lr=2e-4), "ln-lstm": dict(steps=800)}),
}


FAR_BELOW = 0.25  # a row is "far below the baseline" when its test MSE is under a quarter of 1/6


def optimizer(config: dict) -> optax.GradientTransformation:
    if config["optimizer"] == "adam":
        return optax.adam(config["lr"])
    return optax.sgd(config["lr"])


def run(profile: str, seed: int, out: pathlib.Path) -> dict:
    config = dict(PROFILES[profile], profile=profile, seed=seed)
    cache = _common.RowCache(out, "adding", config)
    rows = []
    for T in config["Ts"]:
        k_test, k_train, k_model = jax.random.split(jax.random.fold_in(jax.random.key(seed), T), 3)
        test = data.adding_problem(k_test, config["test"], T)

        def batches(i, sample, k_train=k_train):
            batch = sample(jax.random.fold_in(k_train, i))
            return jrnn.Batch(batch.xs, batch.targets)

        for name in config["models"]:
            row = cache.get(f"{name}-T{T}")
            if row is None:
                settings = {**config, **config["overrides"].get(name, {})}
                model = _models.model(name, settings["hidden"], 1, layers=settings.get("layers", 1), T=T)
                loss_fn = jrnn.supervised_loss(model.apply, jrnn.masked_mse, last_step=True)
                params = model.init(k_model, 2)
                trainer = jrnn.train_step(loss_fn, _models.optimizer(name, optimizer(settings), T=T),
                                          max_norm=settings["max_norm"])
                sample = jax.jit(functools.partial(data.adding_problem, n=settings["batch"], T=T))
                params, curve, metrics = _common.fit(trainer, params, functools.partial(batches, sample=sample),
                                                     steps=settings["steps"], key=k_model, log_every=20,
                                                     desc=f"adding {name} T={T}")
                test_mse = float(jax.jit(loss_fn)(params, jrnn.Batch(test.xs, test.targets), None)[0])
                row = cache.put(f"{name}-T{T}", dict(
                    model=name, T=T, test_mse=test_mse, baseline_mse=data.ADDING_BASELINE_MSE,
                    far_below_baseline=test_mse < FAR_BELOW * data.ADDING_BASELINE_MSE,
                    skipped_steps=int(metrics["num_skipped"]), curve=curve))
            rows.append(row)
    plots = [_common.plot_curves([r for r in rows if r["T"] == T], out / f"adding_T{T}.png",
                                 title=f"adding problem, T = {T}", ylabel="MSE (train batch)",
                                 baseline=data.ADDING_BASELINE_MSE, baseline_label="predict 1 (1/6)", logy=True)
             for T in config["Ts"]]
    solved = [f"{r['model']} (T={r['T']}, {r['test_mse']:.3g})" for r in rows if r["far_below_baseline"]]
    stuck = [f"{r['model']} (T={r['T']}, {r['test_mse']:.3g})" for r in rows if not r["far_below_baseline"]]
    summary = (f"test MSE under a quarter of the baseline 1/6: {', '.join(solved) or 'none'}; "
               f"not: {', '.join(stuck) or 'none'}")
    return _common.record("adding", config, rows, plots=plots, summary=summary)
