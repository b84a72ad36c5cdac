"""mqar: multi-query associative recall (Arora et al. 2023, "Zoology: measuring and improving recall in efficient
language models", arXiv 2312.04927, section 3).

A sequence opens with ``K`` key-value pairs ``k_1 v_1 k_2 v_2 ... k_K v_K`` (keys drawn without replacement from
the first half of the vocabulary, values from the second half); the rest of the sequence is the token 0 (written
here from the paper's description; the Zoology generator's filler may differ) except for the ``K`` keys asked
again, in a random order, at positions whose spacing follows Zoology's power law (``p(gap g) ∝ g^(a-1)``,
``a = 0.01``: most queries early, some far). At each query the network must output that key's value, next-token
style. A recurrent model must keep all ``K`` pairs in its state. The paper's finding: attention solves it at every
width, while the gated-convolution models need a width that grows with the sequence and the number of pairs. Its
grid: (T, K) = (64, 4), (128, 8), (256, 16); 2-layer models; d_model 64 to 512; a learning-rate sweep per model,
the best taken. Here that grid scaled to a CPU, every model in the same pre-norm residual backbone
(experiments/_backbone.py); a model "solves" a setting at ≥ 99 % of the queries right on held-out sequences.
"""

from __future__ import annotations

import functools
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import _backbone, _common, _models

POWER_A = 0.01  # Zoology's query-spacing power law
SOLVED = 0.99

PROFILES = {
    # (T, K) = (64, 4) at one width, three recurrent blocks and the LSTM, two learning rates each; Gated DeltaNet
    # with fla's Δ initialisation, as in the full profile (transformers' forgets within a step: 4.4 % here).
    "quick": dict(settings=((64, 4),), vocab=64, d_models=(64,), layers=2, batch=64, steps=600, warmup=50,
                  lrs=(3e-3, 1e-2), test=512, models=("mamba2", "gated_delta_net", "mlstm", "lstm"),
                  options={"gated_delta_net": {"dt_range": (0.001, 0.1)}}, stop_at=None),
    # The paper's three settings at d_model 64, vocabulary 256 (the paper's is 8192), two learning rates; a run
    # stops once 99.5 % of a held-out validation set's queries are right (checked every 100 steps). Gated
    # DeltaNet takes the paper's (and fla's) Δ initialisation, log-uniform on [0.001, 0.1] (transformers' dt_bias
    # = 1 forgets within a step at this width: docs/experiments.md). About 40 minutes on 2 cores.
    "full": dict(settings=((64, 4), (128, 8), (256, 16)), vocab=256, d_models=(64,), layers=2, batch=32,
                 steps=800, warmup=50, lrs=(3e-3, 1e-2), test=1024,
                 models=("mamba2", "gated_delta_net", "mlstm", "lstm"),
                 options={"gated_delta_net": {"dt_range": (0.001, 0.1)}}, stop_at=0.995),
    # Gated DeltaNet alone at the full profile's vocabulary 256 and (64, 4), with twice its batch and ~2x its steps:
    # whether it learns the task given the budget (docs/experiments.md).
    "budget": dict(settings=((64, 4),), vocab=256, d_models=(64,), layers=2, batch=64, steps=1500, warmup=50,
                   lrs=(3e-3,), test=512, models=("gated_delta_net",),
                   options={"gated_delta_net": {"dt_range": (0.001, 0.1)}}, stop_at=None),
    # The width sweep beside the full profile's d_model 64: the two shorter settings at d_model 32 and 128, every
    # other setting as there (not yet run: about an hour on 2 cores).
    "widths": dict(settings=((64, 4), (128, 8)), vocab=256, d_models=(32, 128), layers=2, batch=32, steps=800,
                   warmup=50, lrs=(3e-3, 1e-2), test=1024, models=("mamba2", "gated_delta_net", "mlstm", "lstm"),
                   options={"gated_delta_net": {"dt_range": (0.001, 0.1)}}, stop_at=0.995),
}


def mqar(key: jax.Array, n: int, T: int, K: int, vocab: int) -> tuple[jax.Array, jax.Array]:
    """``n`` sequences: ``(tokens [n, T], targets [n, T])``, ``targets`` the value at each query step and -1
    elsewhere. Needs ``vocab >= 2K + 2`` (K distinct keys in ``1 .. vocab/2 - 1``) and ``T >= 4K``."""
    half = vocab // 2
    if half - 1 < K or T < 4 * K:
        raise ValueError(f"mqar: expected vocab >= 2K + 2 and T >= 4K, got vocab={vocab}, T={T}, K={K}")
    k_keys, k_values, k_order, k_gaps = jax.random.split(key, 4)
    keys = jax.vmap(lambda k: jax.random.choice(k, jnp.arange(1, half), (K,), replace=False))(
        jax.random.split(k_keys, n))
    values = jax.random.randint(k_values, (n, K), half, vocab)
    pairs = jnp.stack([keys, values], axis=-1).reshape(n, 2 * K)
    slots = (T - 2 * K) // 2  # a query at 2K + 2g; the step after it is free
    weights = POWER_A * jnp.arange(1, slots + 1, dtype=jnp.float32) ** (POWER_A - 1)
    gaps = jax.vmap(lambda k: jax.random.choice(k, slots, (K,), replace=False, p=weights / weights.sum()))(
        jax.random.split(k_gaps, n))
    order = jax.vmap(lambda k: jax.random.permutation(k, K))(jax.random.split(k_order, n))
    rows = jnp.arange(n)[:, None]
    positions = 2 * K + 2 * gaps
    tokens = jnp.zeros((n, T), jnp.int32).at[:, :2 * K].set(pairs).at[rows, positions].set(keys[rows, order])
    targets = jnp.full((n, T), -1, jnp.int32).at[rows, positions].set(values[rows, order])
    return tokens, targets


def query_loss(model: _backbone.Backbone):
    """Cross-entropy at the query steps (``targets >= 0``), averaged over them."""

    def loss_fn(params, batch, key):
        logits, _ = model.apply(params, batch.xs)
        mask = batch.targets >= 0
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(batch.targets, 0))
        return jnp.sum(jnp.where(mask, ce, 0.0)) / jnp.maximum(mask.sum(), 1), {}

    return loss_fn


def accuracy(model: _backbone.Backbone, params, tokens: jax.Array, targets: jax.Array, batch: int = 256) -> float:
    """The fraction of query steps whose most likely token is the value."""
    apply = jax.jit(lambda p, t: model.apply(p, t)[0].argmax(-1))
    right = total = 0
    for start in range(0, tokens.shape[0], batch):
        guess = np.asarray(apply(params, tokens[start:start + batch]))
        want = np.asarray(targets[start:start + batch])
        right += int(((guess == want) & (want >= 0)).sum())
        total += int((want >= 0).sum())
    return right / total


def _solved(model: _backbone.Backbone, valid: tuple[jax.Array, jax.Array], at: float, params) -> bool:
    """Whether at least ``at`` of the validation queries are right (the early stop of the full profile)."""
    return accuracy(model, params, *valid) >= at


def run(profile: str, seed: int, out: pathlib.Path) -> dict:
    config = dict(PROFILES[profile], profile=profile, seed=seed, power_a=POWER_A, solved_at=SOLVED)
    cache = _common.RowCache(out, "mqar", config)
    vocab = config["vocab"]
    rows = []
    for T, K in config["settings"]:
        k_test, k_train, k_valid = jax.random.split(jax.random.fold_in(jax.random.key(seed), T), 3)
        test_tokens, test_targets = mqar(k_test, config["test"], T, K, vocab)
        valid = mqar(k_valid, 256, T, K, vocab)
        sample = functools.partial(mqar, n=config["batch"], T=T, K=K, vocab=vocab)
        for name in config["models"]:
            for d_model in config["d_models"]:
                key = f"{name}-T{T}-D{d_model}"
                row = cache.get(key)
                if row is None:
                    start, runs = time.perf_counter(), []
                    for lr in config["lrs"]:  # the sweep: the best learning rate is the model's result
                        model = _backbone.backbone(name, d_model=d_model, layers=config["layers"], vocab=vocab,
                                                   options=config["options"].get(name))
                        until = None
                        if config["stop_at"] is not None:  # solved on held-out sequences: stop
                            until = functools.partial(_solved, model, valid, config["stop_at"])
                        params, curve = _backbone.train(model, sample, steps=config["steps"], lr=lr,
                                                        warmup=config["warmup"], key=k_train, loss=query_loss(model),
                                                        desc=f"mqar {key} lr {lr:g}", until=until)
                        runs.append(dict(lr=lr, accuracy=accuracy(model, params, test_tokens, test_targets),
                                         curve=curve, params=_models.param_count(params), steps=curve[-1][0] + 1))
                    best = max(runs, key=lambda r: r["accuracy"])
                    row = cache.put(key, dict(model=name, T=T, K=K, d_model=d_model, accuracy=best["accuracy"],
                                              best_lr=best["lr"], solved=best["accuracy"] >= SOLVED,
                                              steps=best["steps"],
                                              by_lr={f"{r['lr']:g}": r["accuracy"] for r in runs},
                                              params=best["params"], seconds=round(time.perf_counter() - start, 1),
                                              curve=best["curve"]))
                rows.append(row)
    plot = _common.plot_curves(rows, out / "mqar.png", title="MQAR (best learning rate per model)",
                               ylabel="cross-entropy at the queries (train)", label_keys=("model", "T", "d_model"),
                               baseline=float(np.log(vocab - vocab // 2)), baseline_label="chance over the values")
    summary = "query accuracy: " + ", ".join(f"{r['model']} (T {r['T']}, K {r['K']}, D {r['d_model']}) "
                                             f"{r['accuracy']:.1%}" for r in rows)
    result = _common.record("mqar", config, rows, plots=[plot], summary=summary)
    result["details"] = ("Zoology (Arora et al. 2023; vocabulary 8192, T up to 256, d_model 64 to 512): attention "
                         "solves every setting at every width, while the gated-convolution models need a width that "
                         f"grows with T and K; here vocabulary {vocab}, {config['steps']} steps per learning rate.")
    return result
