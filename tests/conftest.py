"""Shared pytest setup for jrnn's tests: strict rank promotion (as equinox's conftest), nothing else global."""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    """A fixed PRNG key (new-style typed key)."""
    return jax.random.key(0)
