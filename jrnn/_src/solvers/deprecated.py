"""The keywords that ``solver=`` replaced (``fused=``, ``unroll=``, ``matmul_dtype=``), kept for one release.

Each still works and warns with a ``DeprecationWarning`` that names its replacement (CHANGELOG.md has the
migration table). :data:`UNSET` tells a keyword left out from one passed with its old default.
"""

from __future__ import annotations

import warnings
from typing import Any

from jrnn._src import checks
from jrnn._src.solvers.auto import Auto
from jrnn._src.solvers.base import Solver
from jrnn._src.solvers.fused import Fused
from jrnn._src.solvers.newton import Newton
from jrnn._src.solvers.sequential import Sequential


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()


def warn(where: str, old: str, new: str, stacklevel: int = 3) -> None:
    warnings.warn(f"{where}: {old} is deprecated and will be removed in the next release; use {new} "
                  f"(CHANGELOG.md, 'Migrating to solvers')", DeprecationWarning, stacklevel=stacklevel + 1)


def solver_from_keywords(where: str, solver: Solver | None, *, unroll: Any = UNSET, fused: Any = UNSET,
                         matmul_dtype: Any = UNSET, stacklevel: int = 3) -> Solver | None:
    """``solver``, or the solver that the deprecated keywords ask for (with a warning for each keyword given)."""
    given = {name: value for name, value in (("unroll", unroll), ("fused", fused), ("matmul_dtype", matmul_dtype))
             if value is not UNSET}
    if not given:
        return solver
    unroll = given.get("unroll", 1)
    fused = given.get("fused", True)
    matmul_dtype = given.get("matmul_dtype")
    if unroll is not True:
        unroll = checks.positive_int("unroll", unroll, where)
    dtype = checks.matmul_dtype(matmul_dtype, where)
    if isinstance(solver, Newton) and dtype is not None:
        raise ValueError(f"{where}: expected matmul_dtype=None with the Newton solver {solver.method!r} (mixed "
                         f"precision is an option of jrnn.fused), got {matmul_dtype!r}")
    if dtype is not None and not fused:
        raise ValueError(f"{where}: matmul_dtype={matmul_dtype!r} needs the fused path, which fused=False turns "
                         f"off; use solver=jrnn.fused(matmul_dtype)")
    if dtype is not None:
        replacement = Fused(dtype, unroll)
        spelled = f"solver=jrnn.fused({matmul_dtype!r}{'' if unroll == 1 else f', unroll={unroll!r}'})"
    elif not fused:
        replacement = Sequential(unroll)
        spelled = f"solver=jrnn.sequential({'' if unroll == 1 else f'unroll={unroll!r}'})"
    else:
        replacement = Auto(unroll)
        spelled = ("solver=jrnn.fused(unroll=...) or jrnn.sequential(unroll=...)" if unroll != 1
                   else "the default solver (jrnn.auto())")
    old = ", ".join(f"{name}={value!r}" for name, value in given.items())
    if solver is not None and not isinstance(solver, Auto):
        warn(where, old, f"the solver's own options ({old} is ignored beside solver={solver!r})", stacklevel)
        return solver
    warn(where, old, spelled, stacklevel)
    return replacement
