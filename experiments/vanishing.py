"""vanishing: how far back the gradient reaches, ‖∂L/∂s_t‖ against the distance T − t, at initialisation.

The loss is the sum of each sequence's last output, so the error enters at step T only and ‖∂L/∂s_t‖ measures
what is left of it t steps earlier (Pascanu, Mikolov & Bengio 2013). For the Elman RNN
``∂s_T/∂s_t = Π diag(f'(z_k)) W``, so ``‖∂s_T/∂s_t‖ ≤ (γ σ_max(W))^{T−t}``: the gradient must decay at least at
the rate ``−ln(γ σ_max(W))`` per step (γ = 1 for tanh and ReLU), the *bound rate*; tanh's saturation (f' < 1)
makes it decay faster still. ``decay_rate`` is the fitted slope of ``−ln ‖∂L/∂s_t‖`` against T − t (median over
the batch): positive decays, negative explodes. The LSTM's additive memory path and the GRU's interpolation
have no such simple bound; their rates are measured only. The norms are computed in float64, whose range
(about 1e±308) holds what T = 400 produces. The later cells: the IndRNN's gradient through an active unit is
``w^{T−t}`` with ``|w| <= 2^{1/T}`` (it cannot fall below 1/2 over the sequence through its own recurrence), the
expRNN's orthogonal ``W`` passes it on unchanged wherever modReLU is active, the layer-normalised LSTM and GRU
rescale it at every step, and minGRU, minLSTM and MGU interpolate like the GRU.
"""

from __future__ import annotations

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

import jrnn
from experiments import _common, _models

LATER = ("indrnn", "exprnn", "ln-lstm", "ln-gru", "min-gru", "min-lstm", "mgu")  # docs/concepts/modern-cells.md
LATER_QUICK = ("indrnn", "exprnn", "ln-lstm", "min-gru", "mgu")  # their siblings ln-gru and min-lstm decay alike
PROFILES = {
    "quick": dict(T=100, hidden=64, batch=16, features=4, rhos=(0.5, 0.9, 1.5, 3.0),
                  models=("orthogonal-rnn", "relu-rnn", "irnn", "lstm", "gru", *LATER_QUICK)),
    "full": dict(T=400, hidden=128, batch=64, features=4, rhos=(0.5, 0.8, 0.9, 0.95, 1.1, 1.5, 3.0),
                 models=("orthogonal-rnn", "relu-rnn", "irnn", "lstm", "gru", *LATER)),
}


def cells(config: dict) -> dict:
    H = config["hidden"]
    out = {f"tanh-rnn rho={rho}": jrnn.elman(H, jnp.tanh, W_init=jrnn.init.orthogonal(rho)) for rho in config["rhos"]}
    for kind in config["models"]:
        out[kind] = _models.cell(kind, H, T=config["T"])
    return out


def fitted_rate(norms: np.ndarray) -> float:
    """Least-squares slope of ``-ln norm`` against the distance ``T - t`` over the steps with a positive norm."""
    distance = np.arange(norms.size)[::-1].astype(float)
    ok = np.isfinite(norms) & (norms > 0)
    if ok.sum() < 2:
        return float("nan")
    slope = np.polyfit(distance[ok], np.log(norms[ok]), 1)[0]
    return float(-slope)


def run(profile: str, seed: int, out: pathlib.Path) -> dict:
    config = dict(PROFILES[profile], profile=profile, seed=seed)
    k_x, k_model = jax.random.split(jax.random.key(seed))
    xs = jax.random.normal(k_x, (config["batch"], config["T"], config["features"]))
    rows = []
    models = cells(config)
    for name, cell in _common.progress(models.items(), desc="vanishing", total=len(models)):
        params = cell.init(k_model, config["features"])
        with jax.enable_x64(True):  # float64: at T = 400 the norms span more than float32's range
            as64 = lambda a: jnp.asarray(a, jnp.float64)  # noqa: E731
            norms64 = jrnn.step_grad_norms(cell, jax.tree_util.tree_map(as64, params), as64(xs))
            norms = np.median(np.asarray(norms64), axis=0)  # [T]
        row = dict(model=name, T=config["T"], decay_rate=fitted_rate(norms),
                   first_over_last=float(norms[0] / norms[-1]))
        if isinstance(cell, jrnn.ElmanCell):
            bound = jrnn.elman_bound(cell, params)
            row["sigma_max_W"] = float(bound["sigma_max"])
            row["bound_rate"] = -math.log(float(bound["gamma"]) * float(bound["sigma_max"]))
        row["curve"] = [[config["T"] - 1 - t, float(v)] for t, v in enumerate(norms)][::-1]
        rows.append(row)
    plot = _plot(rows, out / "vanishing.png", config)
    vanish = [r["model"] for r in rows if r["first_over_last"] < 1e-3]
    explode = [r["model"] for r in rows if r["first_over_last"] > 1e3]
    summary = (f"vanishing (ratio < 1e-3): {', '.join(vanish) or 'none'}; "
               f"exploding (> 1e3): {', '.join(explode) or 'none'}")
    return _common.record("vanishing", config, rows, plots=[plot], summary=summary)


def _plot(rows: list[dict], path: pathlib.Path, config: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.4), dpi=110)
    for row in rows:
        distance, values = np.asarray(row["curve"]).T
        relative = np.where(values > 0, values / values[0], np.nan)  # exact zeros (dead ReLUs) leave gaps
        ax.plot(distance, relative, label=f"{row['model']} ({row['decay_rate']:+.3f}/step)")
    ax.set_yscale("log")
    ax.set_ylim(1e-40, 1e20)
    ax.set_xlabel("distance T − t (steps)")
    ax.set_ylabel("‖∂L/∂s_t‖ / ‖∂L/∂s_T‖ (median over the batch)")
    ax.set_title(f"gradient reaching back in time at initialisation, T = {config['T']}, H = {config['hidden']}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path.name
