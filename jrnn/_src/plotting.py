"""A plot of gradient flow through time, from :func:`jrnn.gradient_report` (matplotlib, imported lazily)."""

from __future__ import annotations

from typing import Any

import numpy as np

from jrnn._src.extras import require


def _pyplot():
    return require("matplotlib.pyplot", "plot", "jrnn.plot_gradient_flow")


def plot_gradient_flow(report: dict, ax: Any = None, *, sequence: int | None = None) -> Any:
    """Plots ``||dL/ds_t||`` against t on a log scale, one line per recurrence, titled with the verdict.

    Args:
      report: the dict from :func:`jrnn.gradient_report`.
      ax: a matplotlib ``Axes`` to draw on; a new figure's by default.
      sequence: plot this sequence of the batch; by default the median over the batch at each step.

    Returns:
      The ``Axes``.

    Example:
      >>> import jax, jrnn
      >>> cell = jrnn.lstm(8)
      >>> params = cell.init(jax.random.key(0), input_size=2)
      >>> report = jrnn.gradient_report(cell, params, jax.random.normal(jax.random.key(1), (4, 30, 2)))
      >>> import matplotlib; matplotlib.use("Agg")  # no screen needed
      >>> ax = jrnn.plot_gradient_flow(report)
      >>> ax.get_yscale(), ax.get_xlabel()
      ('log', 't')
    """
    if not isinstance(report, dict) or "recurrences" not in report:
        raise TypeError("jrnn.plot_gradient_flow: expected the dict from jrnn.gradient_report, "
                        f"got {type(report).__name__}")
    if ax is None:
        _, ax = _pyplot().subplots(figsize=(6, 4))
    for name, entry in report["recurrences"].items():
        norms = np.asarray(entry["grad_norms"], dtype=float)
        if sequence is None:
            line = np.median(norms, axis=0)
        elif not 0 <= sequence < norms.shape[0]:
            raise ValueError(f"jrnn.plot_gradient_flow: expected 0 <= sequence < {norms.shape[0]}, got {sequence}")
        else:
            line = norms[sequence]
        t = np.arange(1, line.shape[0] + 1)
        ax.semilogy(t, np.where(line > 0, line, np.nan), label=f"{name} ({entry['cell']}): {entry['verdict']}")
    ax.set_xlabel("t")
    ax.set_ylabel("||dL/ds_t||")
    ax.set_title(f"gradient flow: {report['verdict']}")
    ax.legend(fontsize="small")
    return ax
