"""Initializers for jrnn's cells: ``jrnn.init.orthogonal()``, ``jrnn.init.identity()``, ..."""

from jrnn._src.initializers import (
    constant,
    glorot_uniform,
    identity,
    lecun_normal,
    normal,
    orthogonal,
    pytorch_uniform,
    uniform,
    zeros,
)

__all__ = ["constant", "glorot_uniform", "identity", "lecun_normal", "normal", "orthogonal", "pytorch_uniform",
           "uniform", "zeros"]
