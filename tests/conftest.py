"""Fixtures shared by jrnn's tests (the process-wide JAX settings are in the repository's root ``conftest.py``).

The tests mirror the package's layout (``tests/cells``, ``tests/solvers``, ``tests/interop``, ``tests/flax``); the
references they share (``reference.py``, ``reference_modern.py``, ``registry.py``) live here, at the top, and are
imported by name from any folder.
"""

import pathlib
import sys

import jax
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))


@pytest.fixture
def key():
    """A fixed PRNG key (new-style typed key)."""
    return jax.random.key(0)
