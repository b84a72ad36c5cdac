"""Process-wide pytest setup for jrnn's tests and for the docstring examples in ``jrnn/`` (``--doctest-modules``).

- strict rank promotion (as equinox's conftest): an implicit broadcast between arrays of different ranks is an
  error, in the tests and in every ``Example:`` block (except the Keras ones: Keras broadcasts ranks itself);
- fast compiles: the suite's time is almost all XLA compilation, and ``--xla_backend_optimization_level=0`` cuts it
  by about 40 % (LLVM does less work on the generated CPU code). It changes how fast the compiled programs run,
  not what they compute to within float32 round-off; no test here times anything. It must be set before jax is
  imported;
- JAX's caches cleared after each test module: an xdist worker compiles thousands of programs, and twice a worker
  crashed late in the run (a segfault inside XLA's compile, on doctests that pass alone); holding every program
  is the suspected cause, not a proven one. A module's programs are not reused by the next.
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True, scope="module")
def _clear_jax_caches():
    """Drops the compiled programs of a finished test module (see the module docstring)."""
    yield
    jax.clear_caches()


@pytest.fixture(autouse=True)
def _keras_broadcasts_ranks(request):
    """Keras itself broadcasts ranks implicitly (a bias ``[H]`` onto ``[B, H]``, its orthogonal initializer), so
    the docstring examples that build Keras layers run with JAX's default; tests/interop/test_keras_interop.py keeps
    jrnn strict and relaxes only around Keras's own calls."""
    if request.node.nodeid.startswith("jrnn/_src/interop/keras.py"):
        with jax.numpy_rank_promotion("allow"):
            yield
    else:
        yield
