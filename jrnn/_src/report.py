"""``Report``: the dict that :func:`jrnn.train_step`'s metrics and :func:`jrnn.gradient_report` return, readable
when printed: scalars as numbers, arrays as their dtype and shape."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


class Report(dict):
    """A plain ``dict`` (index it, iterate it, ``json.dumps`` it) whose ``repr`` is one line a person can read:
    scalars are shown as numbers and arrays as ``dtype[shape]``, as in ``jax.make_jaxpr``'s output.

    It is a pytree node (with dict-key paths), so it goes through ``jax.jit``, ``jax.vmap`` and
    ``jax.tree_util`` as a dict does; keys keep their insertion order.

    Example:
      >>> import jax.numpy as jnp
      >>> from jrnn._src.report import Report
      >>> metrics = Report(loss=jnp.float32(0.5), aux={"final_state": jnp.zeros((4, 8))})
      >>> metrics
      Report(loss=0.5, aux={'final_state': f32[4,8]})
      >>> metrics["aux"]["final_state"].shape
      (4, 8)
    """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={_short(v)}' for k, v in self.items())})"

    __str__ = __repr__


def _short(x: Any) -> str:
    """A one-line description of ``x``: numbers as numbers, arrays as ``dtype[shape]``, containers recursively."""
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k!r}: {_short(v)}" for k, v in x.items()) + "}"
    if isinstance(x, tuple) and hasattr(x, "_fields"):  # a NamedTuple, e.g. LSTMState(h, c)
        return f"{type(x).__name__}(" + ", ".join(f"{k}={_short(v)}" for k, v in zip(x._fields, x)) + ")"
    if isinstance(x, (tuple, list)):
        inner = ", ".join(_short(v) for v in x)
        return f"({inner},)" if isinstance(x, tuple) and len(x) == 1 else (f"({inner})" if isinstance(x, tuple)
                                                                           else f"[{inner}]")
    if isinstance(x, float):
        return _float(x)
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        if x.shape == () and not isinstance(x, jax.core.Tracer):
            value = np.asarray(x).item()
            return _float(value) if isinstance(value, float) else repr(value)
        return f"{_dtype(x.dtype)}[{','.join(str(d) for d in x.shape)}]"
    return repr(x)


def _float(x: float) -> str:
    text = f"{x:.4g}"
    return text if any(c in text for c in ".en") else text + ".0"  # 1.0, not 1; nan and inf as they are


def _dtype(dtype: Any) -> str:
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return "bool"
    return f"{dtype.kind}{8 * dtype.itemsize}" if dtype.kind in "fiuc" else dtype.name


def _flatten_with_keys(report: Report):
    keys = tuple(report)
    return [(jax.tree_util.DictKey(k), report[k]) for k in keys], keys


jax.tree_util.register_pytree_with_keys(Report, _flatten_with_keys, lambda keys, children: Report(zip(keys, children)),
                                        lambda report: (list(report.values()), tuple(report)))
