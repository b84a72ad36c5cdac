"""induction_heads: Mamba's induction-heads task and its length extrapolation (Gu & Dao 2023, arXiv 2312.00752,
section 4.1.2 and Table 11).

A sequence of random tokens holds the trigger token once, followed by the token to recall; the sequence ends with
the trigger again, and the network must output the token that followed its first appearance (the generator of the
H3 / Hyena synthetic tasks that the paper uses, with one trigger: vocabulary 16 = 14 ordinary tokens 0..13, the
trigger 14 and a no-op 15 that never appears; chance 1/14). The models are trained at one length and tested at
lengths far beyond it, where only a network whose memory does not fade with the distance can still answer. The
paper (2-layer models, D = 64, trained at 2^8 = 256) reports Mamba at 100 % at every test length from 2^6 to 2^20;
here the same task trained at a length a CPU can afford and tested up to 2^14 (full: 2^16), streamed in chunks
with each layer's state carried (experiments/_backbone.py), every model in the same pre-norm residual backbone.
"""

from __future__ import annotations

import functools
import pathlib
import time

import jax
import jax.numpy as jnp

from experiments import _backbone, _common, _models

VOCAB = 16  # 0..13 ordinary, 14 the trigger, 15 the unused no-op: the paper's vocabulary of 16
TRIGGER = VOCAB - 2
PAPER_TRAIN_LENGTH = 2 ** 8
PAPER = {"mamba": {f"2^{k}": 1.0 for k in range(6, 21)}}  # Table 11: 100 % at every test length 2^6 .. 2^20

PROFILES = {
    # Trained at 64, tested to 2^14 = 256 times that; a narrow Mamba block (expand 1, N = 8) whose step sizes Δ
    # start ten times smaller than the official init ([1e-4, 1e-2] instead of [1e-3, 1e-1]): trained at 64 with
    # the official init it kept 100 % only to 2^9 (docs/experiments.md). About 1.5 minutes on 2 idle cores.
    "quick": dict(train_length=64, d_model=32, layers=2, batch=32, steps=1600, lr=5e-3, warmup=50,
                  test_lengths=tuple(2 ** k for k in range(6, 15)), test=128, eval_batch=128, chunk=64,
                  models=("mamba", "s5", "lstm"),
                  options={"mamba": dict(expand=1, state_size=8, dt_min=1e-4, dt_max=1e-2)}),
    # The paper's training length 2^8 and block sizes (D = 64, expand 2, N = 16, the official init), tested to
    # 2^16: 56 minutes on 2 shared cores (Mamba 0.45 s per step). Measured: only Hawk learns in 4000 steps; Mamba
    # stays on its plateau at chance (the paper trains about 200k steps), see docs/experiments.md.
    "full": dict(train_length=256, d_model=64, layers=2, batch=32, steps=4000, lr=2e-3, warmup=200,
                 test_lengths=tuple(2 ** k for k in range(6, 17)), test=128, eval_batch=128, chunk=256,
                 models=("mamba", "hawk", "s5", "lru", "lstm"), options={}),
}


def induction_heads(key: jax.Array, n: int, T: int, vocab: int = VOCAB) -> tuple[jax.Array, jax.Array]:
    """``n`` sequences of the induction-heads task: ``(tokens[n, T], targets[n, 1])``.

    Every step holds an ordinary token drawn uniformly from ``0 .. vocab - 3``, except: the trigger ``vocab - 2``
    at a position ``p`` drawn uniformly from ``0 .. T - 3``, and again at the last step ``T - 1``. The target is
    the (ordinary) token at ``p + 1``, the one that followed the trigger.
    """
    if T < 3:
        raise ValueError(f"induction_heads: expected T >= 3, got {T}")
    k_tokens, k_position = jax.random.split(key)
    trigger = vocab - 2
    tokens = jax.random.randint(k_tokens, (n, T), 0, trigger)
    position = jax.random.randint(k_position, (n,), 0, T - 2)
    steps = jnp.arange(T)[None, :]
    tokens = jnp.where((steps == position[:, None]) | (steps == T - 1), trigger, tokens)
    targets = jnp.take_along_axis(tokens, position[:, None] + 1, axis=1)
    return tokens.astype(jnp.int32), targets.astype(jnp.int32)


def plot(rows: list[dict], config: dict, path: pathlib.Path) -> str:
    """Test accuracy against test length (log 2), one line per model, the training length marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for row in rows:
        tested = sorted(int(k) for k in row["by_length"])
        ax.plot(tested, [row["by_length"][str(n)] for n in tested], marker="o", markersize=3, label=row["model"])
    ax.axvline(config["train_length"], color="gray", linestyle=":", linewidth=1, label="training length")
    ax.axhline(1 / (VOCAB - 2), color="black", linestyle="--", linewidth=1, label="chance, 1/14")
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("test sequence length")
    ax.set_ylabel("accuracy of the recalled token")
    ax.set_title("induction heads: train short, test long")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path.name


def run(profile: str, seed: int, out: pathlib.Path) -> dict:
    config = dict(PROFILES[profile], profile=profile, seed=seed, vocab=VOCAB, paper=PAPER,
                  paper_train_length=PAPER_TRAIN_LENGTH)
    cache = _common.RowCache(out, "induction_heads", config)
    k_test, k_train = jax.random.split(jax.random.key(seed))
    lengths = sorted({config["train_length"], *config["test_lengths"]})  # the training length is always tested
    tests = {n: induction_heads(jax.random.fold_in(k_test, n), config["test"], n) for n in lengths}
    sample = functools.partial(induction_heads, n=config["batch"], T=config["train_length"])
    rows = []
    for name in config["models"]:
        row = cache.get(name)
        if row is None:
            start = time.perf_counter()
            model = _backbone.backbone(name, d_model=config["d_model"], layers=config["layers"], vocab=VOCAB,
                                       options=config["options"].get(name))
            params, curve = _backbone.train(model, sample, steps=config["steps"], lr=config["lr"],
                                            warmup=config["warmup"], key=k_train, desc=f"induction_heads {name}")
            trained = time.perf_counter()
            by_length = {str(n): _backbone.accuracy(model, params, *tests[n], batch=config["eval_batch"],
                                                    chunk=min(config["chunk"], n))
                         for n in _common.progress(lengths, desc=f"induction_heads {name} test")}
            longest = str(max(lengths))
            row = dict(model=name, train_length=config["train_length"],
                       at_train_length=by_length[str(config["train_length"])], at_longest=by_length[longest],
                       longest=int(longest), min_accuracy=min(by_length.values()))
            paper = PAPER.get(name, {}).get(power_of_two(int(longest)))
            if paper is not None:  # the paper's accuracy at the same test length
                row["paper_at_longest"] = paper
            row = cache.put(name, dict(row, params=_models.param_count(params),
                                       train_seconds=round(trained - start, 1),
                                       test_seconds=round(time.perf_counter() - trained, 1),
                                       by_length=by_length, curve=curve))
        rows.append(row)
    plots = [plot(rows, config, out / "induction_heads.png"),
             _common.plot_curves(rows, out / "induction_heads_train.png",
                                 title=f"induction heads, training at T = {config['train_length']}",
                                 ylabel="cross-entropy of the answer (train)", baseline=float(jnp.log(VOCAB - 2)),
                                 baseline_label="chance, ln 14")]
    longest = max(lengths)
    summary = (f"accuracy at T = {config['train_length']} (trained) / {longest}: "
               + ", ".join(f"{r['model']} {r['at_train_length']:.0%} / {r['at_longest']:.0%}" for r in rows)
               + " (paper: Mamba 100 % from 2^6 to 2^20, trained at 2^8)")
    result = _common.record("induction_heads", config, rows, plots=plots, summary=summary)
    result["details"] = details(rows, config)
    return result


def details(rows: list[dict], config: dict) -> str:
    """The report's extra Markdown: accuracy per test length, one column per model, the paper's Mamba beside."""
    header = "| test length | " + " | ".join(r["model"] for r in rows) + " | paper: Mamba (trained at 2^8) |"
    lines = [header, "|" + "---|" * (len(rows) + 2)]
    for n in sorted(int(k) for k in rows[0]["by_length"]):
        paper = PAPER["mamba"].get(power_of_two(n))
        cells = [f"{r['by_length'][str(n)]:.1%}" for r in rows]
        label = f"{power_of_two(n)} = {n}" if power_of_two(n) else str(n)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {'' if paper is None else f'{paper:.0%}'} |")
    return "\n".join(lines)


def power_of_two(n: int) -> str | None:
    """``"2^k"`` when ``n = 2^k``, else None (the paper's test lengths are powers of two)."""
    return f"2^{n.bit_length() - 1}" if n > 0 and n & (n - 1) == 0 else None
