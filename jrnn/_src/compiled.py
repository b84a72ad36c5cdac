"""Entry points that compile themselves when called eagerly.

Called outside ``jax.jit``, a ``jax.lax.scan`` traces and compiles its body on every call (about a second for a
small LSTM on a CPU, against milliseconds for the compiled program). The public entry points
(:func:`jrnn.scan`, :func:`jrnn.newton_scan`, and ``apply`` of :class:`jrnn.RNN`, :class:`jrnn.Bidirectional`,
:class:`jrnn.Deep`, :class:`jrnn.PreNorm` and :class:`jrnn.LanguageModel`) therefore go through
:func:`jit_when_eager`: called on concrete arrays, they run one ``jax.jit`` program per configuration (the cell,
the solver, the options, and the shapes and dtypes of the arrays), compiled on the first call and reused after.
Inside a transformation (``jit``, ``grad``, ``vmap``, ``scan``) they are traced as plain functions, so the caller's
own program holds them. Checks that read values (token ids in a vocabulary) run before the compiled part.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

# Off: every entry point runs as it is, traced again at each eager call (what jrnn did before; ``python -m
# benchmarks eager`` times both).
ENABLED = True


def _concrete(tree: Any) -> bool:
    """Whether every leaf of ``tree`` is an array that holds values (not a tracer, not a Python object)."""
    return all(isinstance(leaf, (jax.Array, np.ndarray)) and not isinstance(leaf, jax.core.Tracer)
               for leaf in jax.tree_util.tree_leaves(tree))


def _hashable(values: Sequence[Any]) -> bool:
    try:
        hash(tuple(values))
    except TypeError:
        return False
    return True


def jit_when_eager(*, static_argnums: Sequence[int] = (), static_argnames: Sequence[str] = ()) -> Callable:
    """Decorates ``fn`` to run as ``jax.jit(fn, static_argnums, static_argnames)`` when called eagerly.

    The compiled path is taken when every other argument is a concrete array pytree (None entries allowed) and
    every static argument is hashable (a cell holding an array or a list is not: it then runs as it is, uncompiled,
    with the same result). Errors raised while tracing (the argument checks) reach the caller as they are.
    ``fn.uncompiled`` is the function itself.
    """
    static_argnums, static_argnames = tuple(static_argnums), tuple(static_argnames)

    def decorate(fn: Callable) -> Callable:
        compiled = jax.jit(fn, static_argnums=static_argnums, static_argnames=static_argnames)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            static = [a for i, a in enumerate(args) if i in static_argnums]
            static += [v for k, v in kwargs.items() if k in static_argnames]
            dynamic = ([a for i, a in enumerate(args) if i not in static_argnums],
                       {k: v for k, v in kwargs.items() if k not in static_argnames})
            if ENABLED and _concrete(dynamic) and _hashable(static):
                return compiled(*args, **kwargs)
            return fn(*args, **kwargs)

        run.uncompiled = fn
        return run

    return decorate
