"""Shared pytest setup for jrnn's tests: strict rank promotion (as equinox's conftest), and fast compiles.

The suite's time is almost all XLA compilation; ``--xla_backend_optimization_level=0`` cuts it by about 40 %
(LLVM does less work on the generated CPU code). It changes how fast the compiled programs run, not what they
compute to within float32 round-off; no test here times anything. It must be set before jax is imported.
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    """A fixed PRNG key (new-style typed key)."""
    return jax.random.key(0)
