"""Initializers for jrnn's cells: ``jrnn.init.orthogonal()``, ``jrnn.init.identity()``, ..."""

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
