"""Initializers for jrnn's cells: ``jrnn.init.orthogonal()``, ``jrnn.init.identity()``, ...

Every ``*_init`` argument (``U_init``, ``W_init``, ``b_init``, ``V_init``, ...) takes an initializer, a function
``(key, shape, dtype) -> Array`` as in ``jax.nn.initializers``. The ones without a setting are initializers as
they are: ``zeros``, ``glorot_uniform``, ``lecun_normal``, ``he_normal``, ``henaff``, ``cayley``. The ones with a
setting are factories that you call, even for their defaults: ``orthogonal(scale=1.0)``, ``identity(scale=1.0)``,
``constant(value)``, ``uniform(bound)``, ``uniform_range(low, high)``, ``normal(stddev)``,
``pytorch_uniform(hidden_size)``. Write ``W_init=jrnn.init.orthogonal()``; ``W_init=jrnn.init.orthogonal`` is a
``TypeError`` when the cell is built, naming the call that fixes it.
"""

from jrnn._src.initializers import (
    cayley,
    constant,
    glorot_uniform,
    he_normal,
    henaff,
    identity,
    lecun_normal,
    normal,
    orthogonal,
    pytorch_uniform,
    uniform,
    uniform_range,
    zeros,
)

__all__ = ["cayley", "constant", "glorot_uniform", "he_normal", "henaff", "identity", "lecun_normal", "normal",
           "orthogonal", "pytorch_uniform", "uniform", "uniform_range", "zeros"]
