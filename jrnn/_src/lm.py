"""The language model: embedding, a one-directional network, and the seed's readout ``o_t = g(V s_t)`` with
``g = softmax`` over the vocabulary."""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn._src import checks, presets
from jrnn._src.compiled import jit_when_eager
from jrnn._src.contract import CannotStep, Cell, SequenceLayer
from jrnn._src.deep import _dropout, as_layer
from jrnn._src.readout import Readout, ReadoutParams, readout
from jrnn._src.residual import rms_norm
from jrnn._src.sequences import valid_mask


class LanguageModelParams(NamedTuple):
    """Parameters of :func:`language_model`.

    Attributes:
      embedding: ``E`` ``[V, D]``, row ``E[w]`` the input vector of token ``w``; None with one-hot inputs.
      network: the network's parameters.
      readout: ``ReadoutParams(V, b)``: ``V`` ``[V, H]`` hidden-to-logits (None when tied to ``embedding``),
        ``b`` ``[V]``.
      norm: ``[H]``, the scale of the RMSNorm before the readout (``norm=True``), or None.
    """

    embedding: jax.Array | None
    network: Any
    readout: ReadoutParams
    norm: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class LanguageModel:
    """A sequence model over integer tokens; build it with :func:`language_model`. For tokens ``w_1..w_T``::

        x_t      = drop_e(E[w_t])                    (one_hot(w_t) without an embedding table)
        s_t, y_t = network.step(s_{t-1}, x_t)
        logits_t = V drop_o(y_t) + b                 (V = E with tying; V RMSNorm(drop_o(y_t)) + b with norm)
        p(w_{t+1} | w_1..w_t) = softmax(logits_t)

    ``drop_e`` and ``drop_o`` are inverted dropout at rates ``embed_dropout`` and ``output_dropout``, on only when
    :meth:`apply` gets a key (training); without a key, and in :meth:`step`, they are the identity.

    Attributes:
      network: the one-directional network (a cell is held as a forward :class:`jrnn.RNN`).
      vocab_size: ``V``, the number of token ids (``0 .. V - 1``).
      embed_size: ``D``, the embedding width, or None for one-hot inputs.
      tie: whether the readout's ``V`` is the embedding ``E``.
      head: the :class:`jrnn.Readout` to ``V`` logits.
      E_init: the embedding's initializer.
      norm: whether an RMSNorm (learned scale, ``eps`` 1e-6) comes before the readout.
      embed_dropout: ``p_e``, the dropout rate on the network's inputs ``x_t``.
      output_dropout: ``p_o``, the dropout rate on the network's outputs ``y_t``.
    """

    network: SequenceLayer
    vocab_size: int
    embed_size: int | None
    tie: bool
    head: Readout
    E_init: Callable
    norm: bool = False
    embed_dropout: float = 0.0
    output_dropout: float = 0.0

    @property
    def input_size(self) -> int:
        """The network's input size: ``D``, or ``V`` with one-hot inputs."""
        return self.embed_size or self.vocab_size

    def init(self, key: jax.Array) -> LanguageModelParams:
        """Fresh parameters: ``E`` from ``E_init`` (default ``N(0, 1/D)``: rows of norm about 1, like one-hot
        vectors), the network's own initialisation, ``V`` from the readout's (skipped when tied), ``b = 0``."""
        k_embed, k_net, k_head = jax.random.split(key, 3)
        embedding = None
        if self.embed_size:
            embedding = self.E_init(k_embed, (self.vocab_size, self.embed_size), self.head.dtype)
        network = self.network.init(k_net, self.input_size)
        head = self.head.init(k_head, self.network.output_size)
        norm = jnp.ones((self.network.output_size,), self.head.dtype) if self.norm else None
        return LanguageModelParams(embedding, network, head._replace(V=None) if self.tie else head, norm)

    def initial_state(self, batch_shape=(), dtype=None) -> Any:
        """The network's zero state."""
        return self.network.initial_state(batch_shape, dtype)

    def embed(self, params: LanguageModelParams, tokens: jax.Array) -> jax.Array:
        """``tokens[...] -> x[..., D]``: rows of ``E``, or one-hot vectors ``[..., V]``."""
        if params.embedding is None:
            return jax.nn.one_hot(tokens, self.vocab_size, dtype=self.head.dtype)
        outside = (tokens < 0) | (tokens >= self.vocab_size)  # NaN rows, not wrapped negative ids
        tokens = jnp.where(outside, jnp.full_like(tokens, self.vocab_size), tokens)
        return jnp.take(params.embedding, tokens, axis=0, mode="fill", fill_value=jnp.nan)

    def logits(self, params: LanguageModelParams, ys: jax.Array) -> jax.Array:
        """``ys[..., H] -> logits[..., V]``, the readout ``V y + b`` (``V RMSNorm(y) + b`` with ``norm``)."""
        if self.norm:
            ys = rms_norm(ys, params.norm, 1e-6)
        head = params.readout._replace(V=params.embedding) if self.tie else params.readout
        return self.head.apply(head, ys)

    def apply(self, params: LanguageModelParams, tokens: jax.Array, *, lengths: jax.Array | None = None,
              initial_state: Any = None, key: jax.Array | None = None,
              resets: jax.Array | None = None) -> tuple[jax.Array, Any]:
        """``tokens[B, T] -> (logits[B, T, V], final_state)``: ``logits[:, t]`` scores the token after ``t``.

        The network runs over the whole sequence at once (each layer with its solver). With ``lengths``, tokens
        at padded steps are never read (any value, even outside the vocabulary, is fine there), their logits are 0,
        and the final state is each sequence's own last state. Train with :func:`jrnn.supervised_loss`
        ``(model.apply, jrnn.masked_cross_entropy)`` on ``jrnn.Batch(tokens[:, :-1], tokens[:, 1:])``.

        With a ``key`` the embedding and output dropout are on (training). The key is split in three, ``k_e,
        k_network, k_o = jax.random.split(key, 3)``: ``k_e`` draws the input mask ``m_e ~ Bernoulli(1 - p_e)`` of
        shape ``[B, T, D]`` (a fresh mask at every step and feature, as PyTorch's ``nn.Dropout``), ``k_o`` the
        output mask ``[B, T, H]``, each kept entry divided by its keep probability (``x_t = m_e ⊙ E[w_t] / (1 -
        p_e)``), and ``k_network`` is the key of the network's own ``apply`` (its :func:`jrnn.deep` and
        :func:`jrnn.recurrent_dropout` dropout). Without a key the model is exactly the one without dropout.

        Args:
          params: the model's parameters.
          tokens: ``[B, T]`` integer token ids in ``[0, V)`` (checked when the array is concrete; a traced id
            outside the vocabulary gives NaN inputs with an embedding table, zero inputs with one-hot).
          lengths: optional ``[B]`` integer valid lengths.
          initial_state: optional network state with batch shape ``[B]`` (e.g. carried from the previous window
            of a long stream); zeros by default.
          key: a PRNG key turns dropout on (training): the embedding and output dropout and the network's own;
            None turns it off (evaluation).
          resets: optional ``[B, T]`` bool, True where a packed document starts: the state there is the initial
            state again, so no document reads another's context (:func:`jrnn.scan`; :func:`jrnn.stream_windows`
            with ``documents=`` makes them).

        Returns:
          ``(logits[B, T, V], final_state)``.
        """
        where = "jrnn.LanguageModel.apply"
        tokens = check_tokens(tokens, self.vocab_size, where, rank=2, name="tokens")
        lengths = checks.lengths(lengths, tokens.shape[0], where)
        mask = valid_mask(lengths, *tokens.shape)
        if mask is None:
            check_token_range(tokens, self.vocab_size, where, "tokens")
        else:
            if concrete(mask):
                check_token_range(tokens, self.vocab_size, where, "tokens", np.asarray(mask))
            tokens = jnp.where(mask, tokens, jnp.zeros_like(tokens))
        if initial_state is not None:
            check_state(initial_state, self, tokens.shape[0], where)
        return self._forward(params, tokens, lengths, initial_state, key, resets)

    @jit_when_eager(static_argnums=(0,))
    def _forward(self, params, tokens, lengths, initial_state, key, resets):
        """:meth:`apply` after the checks that read values (compiled when called eagerly)."""
        mask = valid_mask(lengths, *tokens.shape)
        k_embed = k_network = k_output = None
        if key is not None:
            k_embed, k_network, k_output = jax.random.split(key, 3)
        xs = self.embed(params, tokens)
        if k_embed is not None and self.embed_dropout:
            xs = _dropout(k_embed, self.embed_dropout, xs)
        options = {} if resets is None else {"resets": resets}
        ys, state = self.network.apply(params.network, xs, lengths=lengths, initial_state=initial_state,
                                       key=k_network, **options)
        if k_output is not None and self.output_dropout:
            ys = _dropout(k_output, self.output_dropout, ys)
        logits = self.logits(params, ys)
        if mask is not None:
            logits = jnp.where(mask[:, :, None], logits, jnp.zeros_like(logits))
        return logits, state

    def step(self, params: LanguageModelParams, state: Any, token: jax.Array) -> tuple[Any, jax.Array]:
        """One token: ``(state, token[B]) -> (state, logits[B, V])``, the network's ``step`` between the
        embedding and the readout (dropout off). Scanning it over ``tokens[:, t]`` equals :meth:`apply`.

        Args:
          params: the model's parameters.
          state: the network's state, batch shape ``[B]``.
          token: ``[B]`` integer token ids in ``[0, V)`` (checked when concrete).

        Returns:
          ``(new_state, logits[B, V])``, the logits scoring the next token.
        """
        where = "jrnn.LanguageModel.step"
        token = check_tokens(token, self.vocab_size, where, rank=1, name="token")
        check_token_range(token, self.vocab_size, where, "token")
        state, y = self.network.step(params.network, state, self.embed(params, token))
        return state, self.logits(params, y)


def concrete(x: Any) -> bool:
    """Whether ``x`` holds values now (not a tracer inside ``jit``, ``grad`` or ``scan``)."""
    return not isinstance(x, jax.core.Tracer)


def check_state(state: Any, model: LanguageModel, batch: int, where: str) -> None:
    """Raises when ``state``'s leaf shapes are not those of ``model.initial_state((batch,))`` (a None entry stands
    for a zero state, as a :func:`jrnn.deep` layer's); checked on shapes alone, so it runs on traced states too."""
    expected = jax.eval_shape(lambda: model.initial_state((batch,)))

    def same(given, want):
        if given is not None and not (isinstance(want, jax.ShapeDtypeStruct) and np.shape(given) == want.shape):
            raise ValueError

    try:
        jax.tree_util.tree_map(same, state, expected, is_leaf=lambda x: x is None)
        return
    except (ValueError, TypeError):
        pass
    shapes = [np.shape(leaf) for leaf in jax.tree_util.tree_leaves(state)]
    if shapes == [leaf.shape for leaf in jax.tree_util.tree_leaves(expected)]:  # e.g. a list for a tuple
        return
    describe = functools.partial(jax.tree_util.tree_map, lambda leaf: tuple(np.shape(leaf)))
    raise ValueError(f"{where}: expected initial_state structured as the network's state "
                     f"{describe(expected)} (batch {batch}), got {describe(state)}; an encoder's state of another "
                     "structure needs a bridge function mapping it to this one")


def check_tokens(tokens: Any, vocab_size: int, where: str, *, rank: int, name: str) -> jax.Array:
    """Checks an integer token array of the given rank; returns it as an array."""
    tokens = jnp.asarray(tokens)
    expected = {1: "[batch]", 2: "[batch, time]"}[rank]
    if tokens.ndim != rank:
        raise ValueError(f"{where}: expected {name} of shape {expected} (integer ids in [0, {vocab_size})), "
                         f"got shape {tokens.shape}")
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise TypeError(f"{where}: expected integer {name} (ids in [0, {vocab_size})), got dtype {tokens.dtype}")
    return tokens


def check_token_range(tokens: jax.Array, vocab_size: int, where: str, name: str,
                      valid: np.ndarray | None = None) -> None:
    """Raises when a concrete ``tokens`` (at the ``valid`` positions) holds an id outside ``[0, vocab_size)``."""
    if not concrete(tokens) or tokens.size == 0:
        return
    values = np.asarray(tokens)
    if valid is not None:
        values = values[valid]
    bad = values[(values < 0) | (values >= vocab_size)]
    if bad.size:
        raise ValueError(f"{where}: expected {name} in the vocabulary [0, {vocab_size}), got {bad.size} outside "
                         f"it (e.g. {int(bad[0])}; min {int(values.min())}, max {int(values.max())})")


def language_model(network: Any, vocab_size: int, embed_size: int | None = None, *, tie: bool = False,
                   norm: bool = False, embed_dropout: float = 0.0, output_dropout: float = 0.0,
                   E_init: Callable | None = None, init: str | None = None,
                   dtype: Any = jnp.float32) -> LanguageModel:
    """A language model over ``vocab_size`` token ids: embedding → ``network`` → readout to logits.

    The seed's readout ``o_t = g(V s_t)`` with ``g = softmax`` over the vocabulary is a language model: it gives
    ``p(w_{t+1} | w_1..w_t)``. For input tokens ``w_t``::

        x_t      = drop_e(E[w_t])              E [V, D], or one_hot(w_t) when embed_size is None
        s_t, y_t = network(s_{t-1}, x_t)       any one-directional network: a cell or a stack
        logits_t = V drop_o(y_t) + b           V [V, H]; V = E with tie=True (Press & Wolf 2017)

    Its :meth:`~jrnn.LanguageModel.apply` runs whole sequences (the network's solvers), its
    :meth:`~jrnn.LanguageModel.step` one token (what :func:`jrnn.generate` scans). Train it with
    ``jrnn.supervised_loss(model.apply, jrnn.masked_cross_entropy)``; carry the final state from one window of a
    long stream to the next (char-rnn, Karpathy 2015) with ``jrnn.Batch(..., initial_state=state)``.

    Args:
      network: a cell, or a one-directional network (a forward :class:`jrnn.RNN`, a :func:`jrnn.deep` stack of
        forward layers, a :func:`jrnn.truncated_bptt` of those). Not a bidirectional or reverse layer: a
        language model predicts token ``t + 1`` from tokens ``<= t``, and such a layer reads the tokens after ``t``.
      vocab_size: ``V``, a positive int; tokens are ids ``0 .. V - 1``.
      embed_size: ``D``, the width of a learned embedding table ``E``; None feeds one-hot vectors (char-rnn's
        choice; the first layer's input weights then play the part of ``E``).
      tie: share ``E`` with the readout's ``V`` (Press & Wolf 2017, "Using the Output Embedding to Improve
        Language Models", EACL; Inan et al. 2017): ``V · D`` fewer parameters. Needs ``embed_size`` equal to the
        network's output size.
      norm: an RMSNorm with a learned scale (init 1) before the readout, ``logits_t = V RMSNorm(y_t) + b``: the
        final norm of a stack of :func:`jrnn.pre_norm` blocks, whose residual stream is never normalised otherwise.
      embed_dropout: ``p_e``, ``0 <= p_e < 1``: dropout on the network's inputs ``x_t`` ``[B, T, D]`` (the
        embedded tokens; the one-hot vectors without a table), a fresh mask at every step and feature.
      output_dropout: ``p_o``, ``0 <= p_o < 1``: dropout on the network's outputs ``y_t`` ``[B, T, H]`` before
        the readout (and its norm). Both are inverted dropout (a kept entry is divided by ``1 - p``), on only
        when :meth:`~jrnn.LanguageModel.apply` gets a ``key`` (which it splits as its docstring says), never in
        :meth:`~jrnn.LanguageModel.step` (generation). With ``jrnn.deep(..., dropout=p)`` between the layers and
        ``tie=True``, this is PyTorch's examples/word_language_model ``RNNModel``: ``drop(encoder(input))`` →
        RNN → ``drop(output)`` → decoder (Zaremba et al. 2014, "Recurrent Neural Network Regularization").
      E_init: the initializer of ``E``; the default ``lecun_normal`` draws ``N(0, 1/D)``.
      init: None (jrnn's defaults), or ``"pytorch"`` / ``"flax"`` / ``"keras"``: that library's defaults for the
        embedding (``nn.Embedding`` N(0, 1); ``nn.Embed`` N(0, 1/D); ``Embedding`` U(±0.05)) and for the readout
        (:func:`jrnn.readout`'s ``init``); an explicit ``E_init`` wins. The network's cells take their own
        ``init=`` (docs: porting, "Matching a run from another library").
      dtype: the dtype of ``E``, ``V`` and ``b``.

    Returns:
      A :class:`LanguageModel`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> model = jrnn.language_model(jrnn.deep([jrnn.lstm(16), jrnn.lstm(16)]), vocab_size=10, embed_size=16,
      ...                             tie=True)
      >>> params = model.init(jax.random.key(0))
      >>> logits, state = model.apply(params, jnp.array([[1, 2, 3], [4, 5, 0]]), lengths=jnp.array([3, 2]))
      >>> logits.shape, len(state)
      ((2, 3, 10), 2)
      >>> state, next_logits = model.step(params, state, jnp.array([7, 8]))
      >>> next_logits.shape
      (2, 10)

      PyTorch's word_language_model ``RNNModel`` (LSTM, 2 layers, dropout 0.5, tied):

      >>> rnn_model = jrnn.language_model(jrnn.deep([jrnn.lstm(16)] * 2, dropout=0.5), vocab_size=10,
      ...                                 embed_size=16, tie=True, embed_dropout=0.5, output_dropout=0.5)
      >>> params = rnn_model.init(jax.random.key(0))
      >>> tokens = jnp.array([[1, 2, 3], [4, 5, 0]])
      >>> train_logits, _ = rnn_model.apply(params, tokens, key=jax.random.key(1))   # dropout on
      >>> eval_logits, _ = rnn_model.apply(params, tokens)                            # dropout off
      >>> bool(jnp.allclose(train_logits, eval_logits))
      False
    """
    where = "jrnn.language_model"
    vocab_size = checks.positive_int("vocab_size", vocab_size, where)
    if embed_size is not None:
        embed_size = checks.positive_int("embed_size", embed_size, where)
    for name, flag in (("tie", tie), ("norm", norm)):
        if not isinstance(flag, bool):
            raise TypeError(f"{where}: expected {name} to be a bool, got {flag!r}")
    embed_dropout = _rate("embed_dropout", embed_dropout, where)
    output_dropout = _rate("output_dropout", output_dropout, where)
    (E_init,) = presets.defaults(where, init, E_init=E_init)
    if not callable(E_init):
        raise TypeError(f"{where}: expected a callable E_init(key, shape, dtype), got {E_init!r}")
    try:
        layer = as_layer(network)
    except TypeError:
        raise TypeError(f"{where}: expected network to be a jrnn cell or a one-directional network (jrnn.RNN, "
                        f"jrnn.deep), got {network!r}") from None
    if tie and embed_size is None:
        raise ValueError(f"{where}: tie=True shares the embedding E [V, D] with the readout V [V, H], so it needs "
                         f"an embedding: pass embed_size={layer.output_size} (the network's output size); got "
                         "embed_size=None (one-hot inputs)")
    if tie and embed_size != layer.output_size:
        raise ValueError(f"{where}: tie=True shares the embedding E [V, D] with the readout V [V, H], so it needs "
                         f"embed_size D equal to the network's output size H = {layer.output_size}; got "
                         f"embed_size={embed_size}")
    _check_steps(layer, embed_size or vocab_size, where)
    return LanguageModel(layer, vocab_size, embed_size, tie, readout(vocab_size, init=init, dtype=dtype), E_init, norm,
                         embed_dropout, output_dropout)


def _rate(name: str, rate: Any, where: str) -> float:
    """A dropout rate ``0 <= p < 1`` as a Python float."""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise TypeError(f"{where}: expected {name} to be a number in [0, 1), got {rate!r}")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{where}: expected 0 <= {name} < 1 (a dropout rate), got {rate!r}")
    return float(rate)


def _check_steps(layer: Any, input_size: int, where: str) -> None:
    """Traces (without computing) one step of ``layer``, so that a network that cannot step is refused now."""
    if not isinstance(layer, Cell):
        raise TypeError(f"{where}: expected a network that can step one token at a time (a cell, a forward "
                        f"jrnn.RNN, a jrnn.deep stack of those), got {type(layer).__name__}, which has no step")
    params = jax.eval_shape(lambda: layer.init(jax.random.key(0), input_size))
    state = jax.eval_shape(lambda: layer.initial_state((1,)))
    try:
        jax.eval_shape(layer.step, params, state, jax.ShapeDtypeStruct((1, input_size), jnp.float32))
    except CannotStep as error:
        raise ValueError(f"{where}: expected a one-directional network, as a language model predicts token t + 1 "
                         f"from tokens <= t; {error.reason}") from None
