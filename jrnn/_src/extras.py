"""Optional dependencies: each optional feature imports its package through :func:`require`, which names the extra
that installs it when the package is missing."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Imports ``module`` for ``feature``; raises an ``ImportError`` naming ``pip install 'jrnn[extra]'`` if it is
    not installed.

    Example:
      >>> from jrnn._src.extras import require
      >>> require("numpy", "core", "a doctest").__name__
      'numpy'
      >>> require("no_such_package", "plot", "jrnn.some_feature")
      Traceback (most recent call last):
      ...
      ImportError: jrnn.some_feature needs no_such_package, ...: pip install 'jrnn[plot]'
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{feature} needs {module.split('.')[0]}, which jrnn does not install by default: "
                          f"pip install 'jrnn[{extra}]'") from error
