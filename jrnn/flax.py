"""Flax modules over jrnn's pure functions (the optional ``flax`` extra: ``pip install 'jrnn[flax]'``).

Two namespaces with the same four modules, mirroring ``flax.nnx`` and ``flax.linen``:

- ``jrnn.flax.nnx.RNN(cell, input_size, rngs=...)``, ``.Bidirectional(forward, input_size, ...)``,
  ``.Deep(layers, input_size, dropout=..., ...)`` and ``.Recurrent(layer, input_size, ...)`` for any pure layer;
- ``jrnn.flax.linen.RNN(cell)``, ``.Bidirectional(forward)``, ``.Deep(layers, dropout=...)``, ``.Recurrent(layer)``.

They are thin: each runs ``layer.apply`` of a pure :class:`jrnn.RNN`, :class:`jrnn.Bidirectional` or
:class:`jrnn.Deep` on parameters that are the pure API's NamedTuples, kept under the name ``rnn``:

- NNX: ``module.params`` is the pytree (each array an ``nnx.Param`` inside the module, so ``nnx.Optimizer``,
  ``nnx.jit``, ``nnx.grad``, ``nnx.state``/``nnx.update`` see ordinary parameters); ``Module(..., params=p)`` or
  ``module.load(p)`` loads one.
- Linen: the variables are ``{'params': {'rnn': p}}``.

``module(xs, lengths=...)`` returns ``ys[B, T, output_size]`` (so the modules chain in ``nnx.Sequential`` and
``@nn.compact`` bodies); ``run`` returns ``(ys, final_state)``. Dropout (``Deep(dropout > 0)``) draws its key from
the ``dropout`` RNG stream unless ``deterministic``.

Example:
  >>> import jax, jax.numpy as jnp, torch, jrnn, jrnn.flax
  >>> from flax import nnx
  >>> fn, params = jrnn.from_torch(torch.nn.LSTM(3, 8, num_layers=2, bidirectional=True, batch_first=True))
  >>> model = jrnn.flax.nnx.Recurrent(fn.network, input_size=3, params=params)
  >>> ys = model(jnp.ones((2, 5, 3)))
  >>> linen_ys = jrnn.flax.linen.Recurrent(fn.network).apply({"params": {"rnn": params}}, jnp.ones((2, 5, 3)))
  >>> bool(jnp.allclose(ys, linen_ys)), ys.shape
  (True, (2, 5, 16))
"""

from jrnn._src.extras import require

require("flax", "flax", "jrnn.flax")

from jrnn._src.flax import linen as linen  # noqa: E402
from jrnn._src.flax import nnx as nnx  # noqa: E402

__all__ = ["linen", "nnx"]
