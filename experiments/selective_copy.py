"""selective_copy: Mamba's selective copying task (Gu & Dao 2023, arXiv 2312.00752, Table 1).

``M = 16`` data tokens stand at random positions among ``L`` noise tokens, then ``M`` marker tokens ask for
them: at the ``i``-th marker the network must output the ``i``-th data token (the generator of the S4
repository's copying task with ``variable=True``, which the paper's task follows: vocabulary ``A = 16`` with the
noise token 0, the data tokens 1..14 and the marker 15; chance 1/14). The spacing varies from sequence to
sequence, so a time-invariant filter (S4; here jrnn.s5 and jrnn.lru) cannot line the tokens up, while a
selective recurrence, whose step size and input and output matrices depend on the token (S6, jrnn.mamba), can
skip the noise. The paper (2-layer models, D = 64, sequence length 4096, 400k steps) reports per-token accuracy
S4 18.3 %, S6 97.0 % and Mamba 99.8 %; here the same task at a length and a width a CPU can train, every model
in the same pre-norm residual backbone (experiments/_backbone.py), scored on held-out sequences.
"""

from __future__ import annotations

import functools
import pathlib
import time

import jax
import jax.numpy as jnp

from experiments import _backbone, _common, _models

VOCAB = 16  # 0 noise, 1..14 data, 15 marker: the paper's vocabulary of 16
NOISE, MARKER = 0, VOCAB - 1
PAPER = {"S4": 0.183, "S6": 0.970, "Mamba": 0.998}  # Table 1: no gate + S4, no gate + S6, Mamba block + S6
PAPER_COUNTERPART = {"mamba": "Mamba", "s5": "S4", "lru": "S4"}  # the paper's model of the same kind

PROFILES = {
    # Scaled to a CPU: 8 data tokens in T = 72 and a narrow Mamba block (expand 1, N = 8; the paper's are 2 and
    # 16), the same 2000 steps for every model; about 1.5 minutes on 2 idle cores (Mamba's steps are most of it).
    "quick": dict(L=56, M=8, d_model=32, layers=2, batch=32, steps=2000, lr=5e-3, warmup=50, test=1024,
                  models=("mamba", "s5", "lstm"), options={"mamba": dict(expand=1, state_size=8)}),
    # The paper's 16 data tokens and its block sizes (D = 64, expand 2, N = 16) at T = 256: 49 minutes on 2 shared
    # cores (per-step times measured: Mamba 0.45 s, Hawk 0.09 s, S5 and LRU 0.05 s, LSTM 0.04 s). Mamba reached
    # 61 % and was still improving at 4000 steps: more steps are what this profile most needs.
    "full": dict(L=224, M=16, d_model=64, layers=2, batch=32, steps=4000, lr=2e-3, warmup=200, test=2048,
                 models=("mamba", "hawk", "s5", "lru", "lstm"), options={}),
}


def selective_copy(key: jax.Array, n: int, L: int, M: int = 16, vocab: int = VOCAB) -> tuple[jax.Array, jax.Array]:
    """``n`` sequences of the selective copying task: ``(tokens[n, L + 2M], targets[n, M])``.

    The first ``L + M`` steps hold ``M`` data tokens, drawn uniformly from ``1 .. vocab - 2``, at ``M`` distinct
    positions drawn uniformly (kept in order) and the noise token 0 everywhere else; the last ``M`` steps hold
    the marker ``vocab - 1``. ``targets`` are the data tokens in order: the answer at the ``i``-th marker step.
    """
    k_tokens, k_positions = jax.random.split(key)
    targets = jax.random.randint(k_tokens, (n, M), 1, vocab - 1)
    keys = jax.random.split(k_positions, n)
    positions = jax.vmap(lambda k: jnp.sort(jax.random.choice(k, L + M, (M,), replace=False)))(keys)
    inner = jnp.zeros((n, L + M), jnp.int32).at[jnp.arange(n)[:, None], positions].set(targets)
    tokens = jnp.concatenate([inner, jnp.full((n, M), vocab - 1, jnp.int32)], axis=1)
    return tokens, targets


def run(profile: str, seed: int, out: pathlib.Path) -> dict:
    config = dict(PROFILES[profile], profile=profile, seed=seed, vocab=VOCAB, paper=PAPER)
    cache = _common.RowCache(out, "selective_copy", config)
    L, M = config["L"], config["M"]
    k_test, k_train = jax.random.split(jax.random.key(seed))
    test_tokens, test_targets = selective_copy(k_test, config["test"], L, M)
    sample = functools.partial(selective_copy, n=config["batch"], L=L, M=M)
    rows = []
    for name in config["models"]:
        row = cache.get(name)
        if row is None:
            start = time.perf_counter()
            model = _backbone.backbone(name, d_model=config["d_model"], layers=config["layers"], vocab=VOCAB,
                                       options=config["options"].get(name))
            params, curve = _backbone.train(model, sample, steps=config["steps"], lr=config["lr"],
                                            warmup=config["warmup"], key=k_train, desc=f"selective_copy {name}")
            accuracy = _backbone.accuracy(model, params, test_tokens, test_targets, batch=256)
            row = dict(model=name, T=L + 2 * M, accuracy=accuracy, chance=1 / (VOCAB - 2))
            if name in PAPER_COUNTERPART:  # the paper's number for its model of the same kind, at T = 4096
                row.update(paper_model=PAPER_COUNTERPART[name], paper_accuracy=PAPER[PAPER_COUNTERPART[name]])
            row = cache.put(name, dict(row, params=_models.param_count(params),
                                       seconds=round(time.perf_counter() - start, 1), curve=curve))
        rows.append(row)
    plot = _common.plot_curves(rows, out / "selective_copy.png", title=f"selective copying, T = {L + 2 * M}",
                               ylabel="cross-entropy at the markers (train)", baseline=float(jnp.log(VOCAB - 2)),
                               baseline_label="chance, ln 14")
    summary = ("per-token accuracy: " + ", ".join(f"{r['model']} {r['accuracy']:.1%}" for r in rows)
               + f" (T = {L + 2 * M}; paper at 4096: S4 18.3 %, S6 97.0 %, Mamba 99.8 %)")
    result = _common.record("selective_copy", config, rows, plots=[plot], summary=summary)
    result["details"] = ("The paper's Table 1 (T = 4096, 2-layer models, D = 64): "
                         + ", ".join(f"{model} {value:.1%}" for model, value in PAPER.items())
                         + f"; here T = {L + 2 * M}, D = {config['d_model']}, {config['steps']} steps.")
    return result

