"""Stateful language modelling on one long token stream, as char-rnn does it: parallel streams cut into
consecutive windows, the state carried from each window to the next; and the held-out bits per token."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jrnn._src import checks


def _stream(tokens: Any, where: str) -> np.ndarray:
    array = np.asarray(tokens)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{where}: expected tokens to be a 1-D integer array (one long stream), got "
                         f"{'dtype ' + str(array.dtype) if array.ndim == 1 else 'shape ' + str(array.shape)}")
    return array


def stream_windows(tokens: Any, num_streams: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Cuts one long token stream into char-rnn's training windows: ``inputs[N, S, W]``, ``targets[N, S, W]``.

    The stream ``w_0 .. w_{n-1}`` is split into ``S = num_streams`` contiguous streams of ``L = (n - 1) // S``
    (input, next token) pairs each, and each stream into ``N = L // W`` consecutive windows of ``W = window``
    steps (Karpathy's char-rnn; Zaremba et al. 2014's PTB batching)::

        inputs[i, s, t]  = w[s L + i W + t]
        targets[i, s, t] = w[s L + i W + t + 1]

    Window ``i + 1`` of stream ``s`` starts where window ``i`` stopped, so the final state of window ``i`` is the
    right initial state for window ``i + 1``: carry it, with its gradient stopped, through
    ``jrnn.Batch(inputs[i], targets[i], initial_state=state)`` and the ``metrics["aux"]["final_state"]`` that
    :func:`jrnn.train_step` returns (one update per window: truncated BPTT with ``k1 = k2 = W``). The last
    ``L - N W`` pairs of each stream and the last ``(n - 1) - S L`` pairs of the whole are left out.

    Args:
      tokens: ``[n]`` integer token ids, one stream (a NumPy array stays on the host).
      num_streams: ``S``, the batch size: streams trained side by side.
      window: ``W``, the steps per window (and the truncation length of the gradient).

    Returns:
      ``(inputs, targets)``, NumPy arrays of shape ``[N, S, W]`` and the dtype of ``tokens``.

    Example:
      >>> import numpy as np, jrnn
      >>> inputs, targets = jrnn.stream_windows(np.arange(21), num_streams=2, window=3)
      >>> inputs.shape, inputs[1].tolist(), targets[1].tolist()
      ((3, 2, 3), [[3, 4, 5], [13, 14, 15]], [[4, 5, 6], [14, 15, 16]])
    """
    where = "jrnn.stream_windows"
    tokens = _stream(tokens, where)
    num_streams = checks.positive_int("num_streams", num_streams, where)
    window = checks.positive_int("window", window, where)
    per_stream = (tokens.size - 1) // num_streams
    count = per_stream // window
    if count < 1:
        raise ValueError(f"{where}: expected at least num_streams * window + 1 = {num_streams * window + 1} tokens "
                         f"for one window per stream, got {tokens.size}")
    used = count * window

    def cut(offset):
        streams = tokens[offset:offset + num_streams * per_stream].reshape(num_streams, per_stream)[:, :used]
        return np.ascontiguousarray(streams.reshape(num_streams, count, window).transpose(1, 0, 2))

    return cut(0), cut(1)


def pack_documents(documents: Any, num_streams: int, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`stream_windows` over documents packed end to end, with where each one starts:
    ``inputs, targets, resets``, each ``[N, S, W]``.

    The documents are concatenated into one stream and cut exactly as :func:`stream_windows` cuts it;
    ``resets[i, s, t]`` is True where ``inputs[i, s, t]`` is a document's first token (but the stream's first).
    Pass them on, ``model.apply(params, inputs[i], initial_state=state, resets=resets[i])`` or
    ``jrnn.Batch(inputs[i], targets[i], initial_state=state, resets=resets[i])``: at a reset the network's state is
    its zero initial state again, so no document reads another's context, while the state carried from the previous
    window still continues the document that window ended in. The target of a document's last token is the next
    document's first; end each document with an end-of-document token to make that prediction a learnable one.

    Args:
      documents: a sequence of 1-D integer arrays (each at least one token).
      num_streams: ``S``, the batch size.
      window: ``W``, the steps per window.

    Returns:
      ``(inputs, targets, resets)``: NumPy arrays ``[N, S, W]`` (tokens' dtype, and bool).

    Example:
      >>> import numpy as np, jrnn
      >>> docs = [np.array([1, 2, 3]), np.array([4, 5]), np.array([6, 7, 8, 9])]
      >>> inputs, targets, resets = jrnn.pack_documents(docs, num_streams=1, window=4)
      >>> inputs[0].tolist(), resets[0].astype(int).tolist()
      ([[1, 2, 3, 4]], [[0, 0, 0, 1]])
      >>> inputs[1].tolist(), resets[1].astype(int).tolist()
      ([[5, 6, 7, 8]], [[0, 1, 0, 0]])
    """
    where = "jrnn.pack_documents"
    if isinstance(documents, np.ndarray | jax.Array) or not hasattr(documents, "__len__") or len(documents) == 0:
        raise ValueError(f"{where}: expected documents to be a non-empty sequence of 1-D integer arrays, got "
                         f"{type(documents).__name__}")
    arrays = []
    for i, document in enumerate(documents):
        array = np.asarray(document)
        if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{where}: expected document {i} to be a non-empty 1-D integer array, got shape "
                             f"{array.shape} and dtype {array.dtype}")
        arrays.append(array)
    tokens = np.concatenate(arrays)
    starts = np.zeros(tokens.size, np.int8)
    starts[np.cumsum([a.size for a in arrays[:-1]], dtype=np.int64)] = 1
    inputs, targets = stream_windows(tokens, num_streams, window)
    resets, _ = stream_windows(starts, num_streams, window)
    return inputs, targets, resets.astype(bool)


@functools.partial(jax.jit, static_argnums=0)
def _stream_nll(model: Any, params: Any, inputs: jax.Array, targets: jax.Array,
                lengths: jax.Array) -> jax.Array:
    """The summed negative log-likelihood (nats) of each window, the state carried across windows."""

    def body(state, window):
        x, y, n = window
        logits, state = model.apply(params, x, lengths=n, initial_state=state)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        valid = jnp.arange(x.shape[1])[None, :] < n[:, None]
        return state, jnp.sum(jnp.where(valid, nll, jnp.zeros_like(nll)))

    state = model.initial_state((inputs.shape[1],))
    _, sums = jax.lax.scan(body, state, (inputs, targets, lengths))
    return sums


def bits_per_token(model: Any, params: Any, tokens: Any, *, num_streams: int = 1, window: int = 1024) -> float:
    """The held-out cross-entropy of a language model on one long stream, in bits per token, the state carried.

    ``-(1 / (n - 1)) Σ_{t=1}^{n-1} log2 p(w_t | w_0 .. w_{t-1})``: every token after the first is predicted
    from everything before it, the state carried through the whole stream (no reset at window boundaries, so no
    loss of context). For a character-level model it is bits per character, the measure compressors are compared
    by (an arithmetic coder driven by the model would spend this many bits, to within a few bits in total).

    With ``num_streams = S > 1`` the stream is cut into ``S`` contiguous parts scored side by side (faster); part
    ``s`` starts from the zero state, so its first few tokens see less context than with ``S = 1``. Each part
    runs in windows of ``window`` steps through the model's ``apply`` (its default solver) inside one ``lax.scan``:
    one compiled program per model and stream length.

    Args:
      model: a :func:`jrnn.language_model` (anything hashable with its ``apply`` and ``initial_state``).
      params: the model's parameters.
      tokens: ``[n]`` integer token ids, ``n >= 2``.
      num_streams: ``S``, parts scored side by side.
      window: the steps per ``apply`` call (a speed and memory knob only: the result does not depend on it).

    Returns:
      Bits per token, a Python float (the sum is taken in float64).

    Example:
      >>> import jax, numpy as np, jrnn
      >>> model = jrnn.language_model(jrnn.lstm(8), vocab_size=4)
      >>> bpt = jrnn.bits_per_token(model, model.init(jax.random.key(0)), np.array([0, 1, 2, 3] * 50))
      >>> 1.5 < bpt < 2.5  # about log2(4) = 2 bits before training
      True
    """
    where = "jrnn.bits_per_token"
    tokens = _stream(tokens, where)
    num_streams = checks.positive_int("num_streams", num_streams, where)
    window = checks.positive_int("window", window, where)
    pairs = tokens.size - 1
    if pairs < 1:
        raise ValueError(f"{where}: expected at least 2 tokens (one to predict from one), got {tokens.size}")
    vocab = getattr(model, "vocab_size", None)
    if vocab is not None and (tokens.min() < 0 or tokens.max() >= vocab):
        raise ValueError(f"{where}: expected tokens in the vocabulary [0, {vocab}), got min {tokens.min()}, "
                         f"max {tokens.max()}")
    per_stream = -(-pairs // num_streams)
    count = -(-per_stream // window)
    stream_pairs = np.clip(pairs - per_stream * np.arange(num_streams), 0, per_stream)  # the last part is shorter
    j = np.arange(count * window)
    pair = np.minimum(per_stream * np.arange(num_streams)[:, None] + j[None, :], pairs - 1)  # [S, count * W]
    valid = j[None, :] < stream_pairs[:, None]

    def windows(a):
        a = np.where(valid, a[pair], 0)
        return a.reshape(num_streams, count, window).transpose(1, 0, 2)

    lengths = np.clip(stream_pairs[None, :] - window * np.arange(count)[:, None], 0, window).astype(np.int32)
    sums = _stream_nll(model, params, windows(tokens[:-1]), windows(tokens[1:]), lengths)
    return float(np.sum(np.asarray(sums, np.float64)) / pairs / math.log(2.0))
