"""The models the experiments compare: a jrnn network with the seed's readout ``o_t = g(V s_t)`` on top."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

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


def cell(kind: str, hidden: int, *, T: int = 100, layer: int = 0, layers: int = 1) -> jrnn.Cell:
    """The cells by the names the experiments report.

    - ``tanh-rnn``: Elman, tanh, PyTorch's default init U(±1/√H) — what a user gets from ``nn.RNN``;
    - ``orthogonal-rnn``: Elman, tanh, orthogonal ``W`` (jrnn's default; Saxe et al. 2014);
    - ``relu-rnn``: Elman, ReLU, PyTorch's default init;
    - ``irnn``: Elman, ReLU, ``W = I``, ``U ~ N(0, 0.001²)``, zero bias (Le, Jaitly & Hinton 2015);
    - ``lstm``: forget-gate bias 1 (Gers et al. 2000; Le et al. 2015 use it too); ``gru``;
    - ``ln-lstm``, ``ln-gru``: layer-normalised (Ba et al. 2016), forget-gate bias 1 for the LSTM;
    - ``indrnn``: ReLU IndRNN with Li et al. 2018's adding-problem init for sequences of length ``T``:
      ``U ~ N(0, 0.001²)``, ``w ~ U(0, 2^(1/T))``, the last of ``layers`` layers ``w ~ U(2^(-1/T), 2^(1/T))``;
    - ``exprnn``: expRNN, Henaff init, modReLU (Lezcano-Casado & Martínez-Rubio 2019);
    - ``min-gru``, ``min-lstm`` (Feng et al. 2024), ``mgu`` (Zhou et al. 2016, Flax's form).
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
    if kind == "ln-lstm":
        return jrnn.layer_norm_lstm(hidden, forget_bias=1.0)
    if kind == "ln-gru":
        return jrnn.layer_norm_gru(hidden)
    if kind == "indrnn":
        bound = INDRNN_MAGNITUDE ** (1.0 / T)
        low = 1.0 / bound if layer == layers - 1 and layers > 1 else 0.0
        return jrnn.indrnn(hidden, U_init=jrnn.init.normal(0.001), w_init=jrnn.init.uniform_range(low, bound))
    if kind == "exprnn":
        return jrnn.exprnn(hidden)
    if kind == "min-gru":
        return jrnn.min_gru(hidden)
    if kind == "min-lstm":
        return jrnn.min_lstm(hidden)
    if kind == "mgu":
        return jrnn.mgu(hidden)
    raise ValueError(f"unknown model kind {kind!r}")


INDRNN_MAGNITUDE = 2.0  # γ of Li et al.'s |w| <= γ^(1/T) (their adding-problem code: MAG = 2)


def model(name: str, hidden: int, outputs: int, *, layers: int = 1, vocab: int = 0, T: int = 100) -> Model:
    """``name`` is a cell kind, with a ``bi-`` prefix for two directions (concatenated)."""
    bidirectional = name.startswith("bi-")
    kind = name[3:] if bidirectional else name
    stack = []
    for layer in range(layers):
        c = cell(kind, hidden, T=T, layer=layer, layers=layers)
        stack.append(jrnn.bidirectional(c) if bidirectional else c)
    return Model(name, jrnn.deep(stack), jrnn.readout(outputs), vocab)


def optimizer(name: str, base: optax.GradientTransformation, *, T: int) -> optax.GradientTransformation:
    """``base`` for every model but the IndRNN, which gets Li et al.'s projection ``|w| <= 2^(1/T)`` after it."""
    if name.removeprefix("bi-") == "indrnn":
        return optax.chain(base, jrnn.indrnn_constraint(T, INDRNN_MAGNITUDE))
    return base


def param_count(params: Any) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))
