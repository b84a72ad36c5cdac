"""Shared pytest setup for jrnn's tests: deliberately minimal, and no global state beyond what is noted here.

``jax_numpy_rank_promotion="raise"`` (equinox's strict conftest) is *not* switched on: jrnn's bias additions
broadcast a rank-1 bias against a batched activation (``jrnn/_src/gates.py`` ``affine``, ``jrnn/_src/merge.py``
``SeedMerge.apply``), which that setting rejects. ``tests/test_cells.py::test_cells_run_under_strict_rank_promotion``
records this as a strict xfail; once those lines use ``b[None]``-style explicit broadcasting, add the line below.

    jax.config.update("jax_numpy_rank_promotion", "raise")
"""

import jax
import pytest


@pytest.fixture
def key():
    """A fixed PRNG key (new-style typed key)."""
    return jax.random.key(0)
