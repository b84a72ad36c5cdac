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
from typing import Any, Iterable


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
    """A Markdown table with the union of the rows' keys as columns, in first-seen order."""
    if not rows:
        return "(no rows)"
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
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
