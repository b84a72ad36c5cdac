"""adding: the adding problem of Le, Jaitly & Hinton 2015 (after Hochreiter & Schmidhuber 1997).

Two of T values drawn from U[0, 1] are marked; the network must output their sum at the last step. Predicting
1 gives MSE 1/6 ≈ 0.167, the baseline. Le et al. report that the IRNN and the LSTM solve it where a tanh RNN
stays at the baseline as T grows; the paper's setup is 100 hidden units, batch 16, SGD with clipping,
T ∈ {150, 200, 300, 400}. The quick profile uses Adam to fit a couple of minutes on two CPU cores.
"""

from __future__ import annotations

import functools
import pathlib

import jax
import jax.numpy as jnp
import optax

import jrnn
from experiments import _common, _models, data

PROFILES = {
    "quick": dict(Ts=(100,), hidden=64, batch=64, steps=600, lr=3e-3, max_norm=1.0, test=2000,
                  models=("tanh-rnn", "irnn", "lstm", "gru"), optimizer="adam"),
    "full": dict(Ts=(150, 200, 300, 400), hidden=100, batch=16, steps=20000, lr=1e-2, max_norm=10.0, test=10000,
                 models=("tanh-rnn", "irnn", "lstm", "gru"), optimizer="sgd"),
}


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
        sample = jax.jit(functools.partial(data.adding_problem, n=config["batch"], T=T))

        def batches(i, k_train=k_train, sample=sample):
            batch = sample(jax.random.fold_in(k_train, i))
            return jrnn.Batch(batch.xs, batch.targets)

        for name in config["models"]:
            row = cache.get(f"{name}-T{T}")
            if row is None:
                model = _models.model(name, config["hidden"], 1)
                loss_fn = jrnn.supervised_loss(model.apply, jrnn.masked_mse, last_step=True)
                params = model.init(k_model, 2)
                trainer = jrnn.train_step(loss_fn, optimizer(config), max_norm=config["max_norm"])
                params, curve, metrics = _common.fit(trainer, params, batches, steps=config["steps"], key=k_model,
                                                     desc=f"adding {name} T={T}")
                test_mse = float(jax.jit(lambda p: loss_fn(p, jrnn.Batch(test.xs, test.targets), None)[0])(params))
                row = cache.put(f"{name}-T{T}", dict(
                    model=name, T=T, test_mse=test_mse, baseline_mse=data.ADDING_BASELINE_MSE,
                    solved=test_mse < 0.1 * data.ADDING_BASELINE_MSE, skipped_steps=int(metrics["num_skipped"]),
                    curve=curve))
            rows.append(row)
    plots = [_common.plot_curves([r for r in rows if r["T"] == T], out / f"adding_T{T}.png",
                                 title=f"adding problem, T = {T}", ylabel="MSE (train batch)",
                                 baseline=data.ADDING_BASELINE_MSE, baseline_label="predict 1 (1/6)", logy=True)
             for T in config["Ts"]]
    solved = sorted({r["model"] for r in rows if r["solved"]})
    summary = f"below a tenth of the baseline: {', '.join(solved) or 'none'}"
    return _common.record("adding", config, rows, plots=plots, summary=summary)
