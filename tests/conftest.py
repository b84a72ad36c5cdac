"""Fixtures shared by jrnn's tests (the process-wide JAX settings are in the repository's root ``conftest.py``)."""

import jax
import pytest


@pytest.fixture
def key():
    """A fixed PRNG key (new-style typed key)."""
    return jax.random.key(0)
