"""What every experiment shares: the result record, its JSON file, tables and progress bars.

An experiment is a module ``experiments/NAME.py`` with::

    def run(profile: str, seed: int, out: pathlib.Path) -> dict

``profile`` is ``"quick"`` (a minute or two on 2 CPU cores) or ``"full"`` (the paper's setup). ``run`` writes its
plots (PNG) into ``out`` and returns the record ``{"experiment": NAME, "config": {...}, "rows": [{...}, ...]}``
with one row per model (and T, where it varies), plus optionally ``"plots": [file names]`` and
``"summary": "one line"``.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Iterable
from typing import Any


def record(name: str, config: dict, rows: list[dict], *, plots: Iterable[str] = (), summary: str = "") -> dict:
    """The result record of one experiment."""
    return {"experiment": name, "config": config, "rows": rows, "plots": list(plots), "summary": summary}


def write_json(result: dict, out: pathlib.Path) -> pathlib.Path:
    """Writes ``out/NAME.json``."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{result['experiment']}.json"
    path.write_text(json.dumps(result, indent=2, default=_plain))
    return path


def _plain(value: Any) -> Any:
    try:
        return value.item()
    except AttributeError:
        return str(value)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def markdown_table(rows: list[dict]) -> str:
    """A Markdown table with the union of the rows' scalar keys as columns, in first-seen order."""
    if not rows:
        return "(no rows)"
    columns: list[str] = []
    for row in rows:
        columns += [k for k, v in row.items() if k not in columns and not isinstance(v, (list, dict))]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def progress(iterable: Iterable, *, desc: str, total: int | None = None) -> Iterable:
    """A tqdm progress bar when tqdm is installed, else the iterable itself."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


class RowCache:
    """Rows already computed by an interrupted run, so that a rerun resumes instead of starting over.

    Each finished row is written at once to ``out/.partial/NAME.json`` under a key (the model, and T where it
    varies) together with the experiment's config; a rerun with the same config takes the saved rows and
    computes only the missing ones. A different config starts that experiment afresh.
    """

    def __init__(self, out: pathlib.Path, name: str, config: dict):
        self.path = out / ".partial" / f"{name}.json"
        self.config = json.loads(json.dumps(config, default=_plain))
        saved = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.rows: dict = saved.get("rows", {}) if saved.get("config") == self.config else {}

    def get(self, key: str) -> dict | None:
        return self.rows.get(key)

    def put(self, key: str, row: dict) -> dict:
        self.rows[key] = json.loads(json.dumps(row, default=_plain))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"config": self.config, "rows": self.rows}))
        tmp.replace(self.path)
        return self.rows[key]

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def fit(trainer, params, batches, *, steps: int, key, desc: str, log_every: int = 10, until=None,
        check_every: int = 100):
    """Runs ``trainer.step`` (a :func:`jrnn.train_step`) over ``steps`` batches with a progress bar.

    ``batches(i)`` returns the i-th :class:`jrnn.Batch`. Returns ``(params, curve)``, ``curve`` a list of
    ``(step, loss)`` every ``log_every`` steps and at the last step run, and the metrics of the last step. With
    ``until(params) -> bool``, asked every ``check_every`` steps, training stops early once it says True.
    """
    import jax

    opt_state = trainer.init(params)
    curve, metrics = [], {}
    bar = progress(range(steps), desc=desc, total=steps)
    for i in bar:
        key, sub = jax.random.split(key)
        params, opt_state, metrics = trainer.step(params, opt_state, batches(i), sub)
        done = until is not None and (i + 1) % check_every == 0 and i + 1 < steps and until(params)
        if i % log_every == 0 or i == steps - 1 or done:
            loss = float(metrics["loss"])
            curve.append((i, loss))
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss:.4g}")
        if done:
            break
    return params, curve, metrics


def plot_curves(rows: list[dict], path: pathlib.Path, *, title: str, ylabel: str, label_keys=("model",),
                baseline: float | None = None, baseline_label: str = "baseline", logy: bool = False) -> str:
    """Plots each row's ``curve`` (``[[step, value], ...]``) into the PNG ``path``; returns its file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for row in rows:
        curve = row.get("curve") or []
        if curve:
            steps, values = zip(*curve)
            ax.plot(steps, values, label=" ".join(str(row[k]) for k in label_keys if k in row))
    if baseline is not None:
        ax.axhline(baseline, color="black", linestyle="--", linewidth=1, label=baseline_label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path.name
