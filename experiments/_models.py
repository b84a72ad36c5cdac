"""The models the experiments compare: a jrnn network with the seed's readout ``o_t = g(V s_t)`` on top."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import jrnn


class ModelParams(NamedTuple):
    body: Any
    head: jrnn.ReadoutParams


@dataclasses.dataclass(frozen=True)
class Model:
    """``o = V · body(x) + b`` at every step; integer token inputs are one-hot encoded over ``vocab`` first."""

    name: str
    body: jrnn.Deep
    head: jrnn.Readout
    vocab: int = 0

    def init(self, key: jax.Array, input_size: int) -> ModelParams:
        k_body, k_head = jax.random.split(key)
        body = self.body.init(k_body, self.vocab or input_size)
        return ModelParams(body, self.head.init(k_head, self.body.output_size))

    def apply(self, params: ModelParams, xs: jax.Array, *, lengths=None, initial_state=None, key=None):
        if self.vocab:
            xs = jax.nn.one_hot(xs, self.vocab)
        ys, final = self.body.apply(params.body, xs, lengths=lengths, initial_state=initial_state, key=key)
        return self.head.apply(params.head, ys), final


def cell(kind: str, hidden: int) -> jrnn.Cell:
    """The cells by the names the experiments report.

    - ``tanh-rnn``: Elman, tanh, PyTorch's default init U(±1/√H) — what a user gets from ``nn.RNN``;
    - ``orthogonal-rnn``: Elman, tanh, orthogonal ``W`` (jrnn's default; Saxe et al. 2014);
    - ``relu-rnn``: Elman, ReLU, PyTorch's default init;
    - ``irnn``: Elman, ReLU, ``W = I``, ``U ~ N(0, 0.001²)``, zero bias (Le, Jaitly & Hinton 2015);
    - ``lstm``: forget-gate bias 1 (Gers et al. 2000; Le et al. 2015 use it too); ``gru``.
    """
    torch_init = jrnn.init.pytorch_uniform(hidden)
    if kind == "tanh-rnn":
        return jrnn.elman(hidden, jnp.tanh, U_init=torch_init, W_init=torch_init, b_init=torch_init)
    if kind == "orthogonal-rnn":
        return jrnn.elman(hidden, jnp.tanh)
    if kind == "relu-rnn":
        return jrnn.elman(hidden, jax.nn.relu, U_init=torch_init, W_init=torch_init, b_init=torch_init)
    if kind == "irnn":
        return jrnn.elman(hidden, jax.nn.relu, U_init=jrnn.init.normal(0.001), W_init=jrnn.init.identity())
    if kind == "lstm":
        return jrnn.lstm(hidden, forget_bias=1.0)
    if kind == "gru":
        return jrnn.gru(hidden)
    raise ValueError(f"unknown model kind {kind!r}")


def model(name: str, hidden: int, outputs: int, *, layers: int = 1, vocab: int = 0) -> Model:
    """``name`` is a cell kind, with a ``bi-`` prefix for two directions (concatenated)."""
    bidirectional = name.startswith("bi-")
    kind = name[3:] if bidirectional else name
    stack = [jrnn.bidirectional(cell(kind, hidden)) if bidirectional else cell(kind, hidden)
             for _ in range(layers)]
    return Model(name, jrnn.deep(stack), jrnn.readout(outputs), vocab)


def param_count(params: Any) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))
