"""Sampling from a language model: one token from logits (temperature, top-k, nucleus), and whole continuations
as one ``lax.scan`` over the model's ``step``."""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jrnn._src import checks
from jrnn._src.lm import LanguageModel, check_state, check_token_range, check_tokens, concrete
from jrnn._src.losses import last_valid
from jrnn._src.sequences import keep_where


def _number(name: str, value: Any, where: str) -> float:
    """A Python (or NumPy) real number; a traced value is refused, since it decides the compiled program."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.ndarray, jax.Array)):
        raise TypeError(f"{where}: expected {name} to be a number, got {value!r}")
    if not concrete(value):
        raise TypeError(f"{where}: expected {name} to be a Python number, got a traced value; it is part of the "
                        "compiled program (close over it with functools.partial before jax.jit)")
    if np.ndim(value) != 0:
        raise TypeError(f"{where}: expected {name} to be a number, got an array of shape {np.shape(value)}")
    return float(value)


def sampling_options(temperature: Any, top_k: Any, top_p: Any, vocab_size: int,
                     where: str) -> tuple[float, int | None, float | None]:
    """Checks ``temperature >= 0``, ``1 <= top_k <= V`` and ``0 < top_p <= 1``; returns them as Python numbers."""
    temperature = _number("temperature", temperature, where)
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ValueError(f"{where}: expected temperature >= 0 (0 is greedy), got {temperature!r}")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, (numbers.Integral, np.integer)):
            raise TypeError(f"{where}: expected top_k to be None or an int in [1, {vocab_size}], got {top_k!r}")
        top_k = int(top_k)
        if not 1 <= top_k <= vocab_size:
            raise ValueError(f"{where}: expected top_k in [1, {vocab_size}] (the vocabulary size), got {top_k}")
    if top_p is not None:
        top_p = _number("top_p", top_p, where)
        if not 0 < top_p <= 1:
            raise ValueError(f"{where}: expected top_p in (0, 1], got {top_p!r}")
    return temperature, top_k, top_p


def _keep_top_k(logits: jax.Array, k: int) -> jax.Array:
    """Exactly the ``k`` largest logits of each row (ties: the lower index first, as ``lax.top_k``)."""
    vocab = logits.shape[-1]
    _, index = jax.lax.top_k(logits, k)
    rows = index.reshape(-1, k)
    keep = jax.vmap(lambda i: jnp.zeros((vocab,), bool).at[i].set(True))(rows)
    return keep.reshape(logits.shape)


def _keep_nucleus(logits: jax.Array, p: float) -> jax.Array:
    """The nucleus of each row: the most probable tokens, in order, until their probability reaches ``p``."""
    vocab = logits.shape[-1]
    probs = jax.nn.softmax(logits, axis=-1).reshape(-1, vocab)
    order = jnp.argsort(-probs, axis=-1, stable=True)
    sorted_probs = jnp.take_along_axis(probs, order, axis=-1)
    before = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs  # the mass of the more probable tokens
    keep_sorted = before < p  # the first token always (0 < p)
    keep = jax.vmap(lambda o, k: jnp.zeros((vocab,), bool).at[o].set(k))(order, keep_sorted)
    return keep.reshape(logits.shape)


def _sample(key: jax.Array, logits: jax.Array, temperature: float, top_k: int | None,
            top_p: float | None) -> jax.Array:
    if temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / jnp.asarray(temperature, logits.dtype)
    if top_k is not None and top_k < logits.shape[-1]:
        logits = jnp.where(_keep_top_k(logits, top_k), logits, -jnp.inf)
    if top_p is not None and top_p < 1:
        logits = jnp.where(_keep_nucleus(logits, top_p), logits, -jnp.inf)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def sample_logits(key: jax.Array, logits: jax.Array, *, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> jax.Array:
    """Draws one token per row of ``logits[..., V]``: ``w ~ softmax(logits / τ)`` restricted to a candidate set.

    In this order (as Hugging Face's samplers): divide by the temperature ``τ``; with ``top_k``, keep the ``k``
    largest logits (Fan, Lewis & Dauphin 2018); with ``top_p``, keep the nucleus of what is left, the most
    probable tokens in order until their probability sums to at least ``p`` (Holtzman et al. 2020, "The Curious
    Case of Neural Text Degeneration"); then sample from the renormalised distribution over the kept tokens
    (``jax.random.categorical``, the Gumbel-max trick). ``temperature=0`` is greedy, ``argmax(logits)``, the
    same token ``top_k=1`` gives. A token outside the candidate set is never drawn.

    Args:
      key: a PRNG key; one key draws every row independently.
      logits: ``[..., V]`` unnormalised log-probabilities.
      temperature: ``τ >= 0``, a Python number: below 1 sharpens, above 1 flattens, 0 is argmax.
      top_k: None, or the number of candidates ``1 <= k <= V``.
      top_p: None, or the nucleus mass ``0 < p <= 1`` (1 keeps every token).

    Returns:
      ``[...]`` int32 token ids.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
      >>> jrnn.sample_logits(jax.random.key(0), logits, temperature=0).tolist()
      [0]
      >>> int(jrnn.sample_logits(jax.random.key(1), logits, top_p=0.6)[0]) in (0, 1)  # nucleus {0, 1}
      True
    """
    where = "jrnn.sample_logits"
    logits = jnp.asarray(logits)
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"{where}: expected logits of shape [..., vocab_size], got shape {logits.shape}")
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise TypeError(f"{where}: expected floating-point logits, got dtype {logits.dtype}")
    options = sampling_options(temperature, top_k, top_p, logits.shape[-1], where)
    return _sample(key, logits, *options)


def _generate(model: Any, steps: int, options: tuple, stop_token: int | None, return_logits: bool, params: Any,
              prompt: jax.Array, prompt_lengths: jax.Array | None, initial_state: Any,
              key: jax.Array) -> tuple[jax.Array, Any] | tuple[jax.Array, Any, jax.Array]:
    logits, state = model.apply(params, prompt, lengths=prompt_lengths, initial_state=initial_state)
    logits = last_valid(logits, prompt_lengths)  # each prompt's own last position
    done = jnp.zeros((prompt.shape[0],), bool)

    def body(carry, step_key):
        state, logits, done = carry
        token = _sample(step_key, logits, *options)
        drawn_from = logits
        if stop_token is not None:
            token = jnp.where(done, jnp.int32(stop_token), token)
            drawn_from = jnp.where(done[:, None], jnp.zeros_like(logits), logits)  # forced tokens: logits 0
        new_state, logits = model.step(params, state, token)
        if stop_token is not None:
            new_state = keep_where(~done, new_state, state)  # the stop token itself is read, nothing after it
            done = done | (token == stop_token)
        return (new_state, logits, done), ((token, drawn_from) if return_logits else token)

    (state, _, _), out = jax.lax.scan(body, (state, logits, done), jax.random.split(key, steps))
    if return_logits:
        tokens, step_logits = out
        return tokens.T, state, jnp.swapaxes(step_logits, 0, 1)
    return out.T, state


_generate_jit = jax.jit(_generate, static_argnums=(0, 1, 2, 3, 4))


def generate(model: Any, params: Any, prompt: jax.Array, *, steps: int, key: jax.Array,
             prompt_lengths: jax.Array | None = None, initial_state: Any = None, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, stop_token: int | None = None,
             return_logits: bool = False) -> tuple[jax.Array, Any] | tuple[jax.Array, Any, jax.Array]:
    """Continues each prompt by ``steps`` tokens sampled from a language model; one compiled program.

    The prompt runs through ``model.apply`` (the whole prompt at once, the network's solvers); each prompt
    continues from its own last token. Sampling is one ``lax.scan`` over ``model.step``, equal to this loop::

        logits, state = model.apply(params, prompt, lengths=prompt_lengths, initial_state=initial_state)
        logits = last_valid(logits, prompt_lengths)          # [B, V], at each prompt's own last token
        tokens, drawn_from = [], []
        for t, k in enumerate(jax.random.split(key, steps)):
            token = sample_logits(k, logits, temperature=temperature, top_k=top_k, top_p=top_p)
            drawn_from.append(logits)                          # the logits token t is drawn from
            state, logits = model.step(params, state, token)   # read the sampled token
            tokens.append(token)
        return jnp.stack(tokens, axis=1), state                # + jnp.stack(drawn_from, axis=1) with return_logits

    ``temperature=0`` is greedy decoding: ``token = argmax(logits)`` at every step, no randomness (the key is
    still required, and unused).

    With ``return_logits=True`` it also returns ``logits[B, steps, V]``, the model's logits each token was drawn
    from (before the temperature, top-k and top-p): ``logits[:, t]`` scores token ``t`` given the prompt and
    tokens ``< t``, so it equals ``model.apply`` on the prompt followed by the generated tokens (teacher-forced
    recomputation), and it is differentiable in ``params`` (and ``initial_state``): a loss on the model's own
    samples (self-critical sequence training, scheduled sampling) takes its gradient through it, with the
    sampled tokens held fixed. The log-probability of the drawn tokens at temperature ``τ > 0`` without top-k or
    top-p is ``log_softmax(logits / τ)`` at ``tokens``. After a sequence's stop token (where tokens are forced,
    not drawn) the logits are 0.

    With ``stop_token``, once a sequence has emitted it, its later tokens are ``stop_token`` and its state stops:
    the final state has read the sequence's tokens up to and including its first ``stop_token``. Without it, the
    final state has read every returned token, so it continues the text (pass it back as ``initial_state`` with
    the next prompt).

    The checks run in Python and ``generate`` compiles itself once per model, ``steps`` and option values (a
    jrnn model is hashable), so calling it again with new params, prompts or keys reuses the program. Inside your
    own ``jax.jit``, close over the options, which decide the program, and pass the arrays::

        sample = jax.jit(functools.partial(jrnn.generate, model, steps=200, temperature=0.8, top_k=20))
        tokens, state = sample(params, prompt, key=key)

    Args:
      model: a :func:`jrnn.language_model` (or anything with its ``vocab_size``, ``apply`` and ``step``).
      params: the model's parameters.
      prompt: ``[B, P]`` integer token ids, ``P >= 1``; ids in ``[0, V)`` at the valid positions (checked when
        concrete); padding may hold anything.
      steps: the number of tokens to generate, a positive int.
      key: a PRNG key; step ``t`` samples with ``jax.random.split(key, steps)[t]``.
      prompt_lengths: optional ``[B]`` integer lengths, ``1 <= prompt_lengths[b] <= P`` (checked when concrete);
        prompt ``b`` is ``prompt[b, :prompt_lengths[b]]``.
      initial_state: optional network state with batch shape ``[B]`` before the prompt, with the structure of
        ``model.initial_state((B,))``; zeros by default. An encoder's final state seeds a decoder here (seq2seq):
        pass it as it is when the decoder's network has the encoder's state structure, or through your own
        bridge function (e.g. ``jnp.concatenate`` of a bidirectional encoder's two states).
      temperature: ``τ >= 0``, a Python number; 0 is greedy (argmax), as in :func:`jrnn.sample_logits`.
      top_k: None, or keep the ``k`` most probable tokens, ``1 <= k <= V``.
      top_p: None, or keep the nucleus of mass ``p``, ``0 < p <= 1``.
      stop_token: None, or a token id in ``[0, V)`` that ends a sequence.
      return_logits: a bool; True also returns the logits each token was drawn from.

    Returns:
      ``(tokens[B, steps], final_state)``, int32 tokens; with ``return_logits``, ``(tokens[B, steps], final_state,
      logits[B, steps, V])``.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> model = jrnn.language_model(jrnn.gru(16), vocab_size=5, embed_size=8)
      >>> params = model.init(jax.random.key(0))
      >>> prompt = jnp.array([[1, 2, 3], [4, 0, 0]])
      >>> tokens, state = jrnn.generate(model, params, prompt, prompt_lengths=jnp.array([3, 1]), steps=6,
      ...                               key=jax.random.key(1), temperature=0.8, top_k=3)
      >>> tokens.shape, state.shape
      ((2, 6), (2, 16))
      >>> tokens, state, logits = jrnn.generate(model, params, prompt, steps=6, key=jax.random.key(1),
      ...                                       temperature=0, return_logits=True)       # greedy
      >>> logits.shape, bool((tokens == logits.argmax(-1)).all())
      ((2, 6, 5), True)
    """
    where = "jrnn.generate"
    if not isinstance(model, LanguageModel):
        raise TypeError(f"{where}: expected model to be a jrnn.language_model(...) (a jrnn.LanguageModel), got "
                        f"{type(model).__name__}")
    vocab = model.vocab_size
    steps = checks.positive_int("steps", steps, where)
    options = sampling_options(temperature, top_k, top_p, vocab, where)
    if stop_token is not None:
        if isinstance(stop_token, bool) or not isinstance(stop_token, (numbers.Integral, np.integer)):
            raise TypeError(f"{where}: expected stop_token to be None or an int in [0, {vocab}), got {stop_token!r}")
        stop_token = int(stop_token)
        if not 0 <= stop_token < vocab:
            raise ValueError(f"{where}: expected stop_token in the vocabulary [0, {vocab}), got {stop_token}")
    if not isinstance(return_logits, bool):
        raise TypeError(f"{where}: expected return_logits to be a bool, got {return_logits!r}")
    if key is None:
        raise TypeError(f"{where}: expected key to be a PRNG key (jax.random.key(seed)), got None")
    prompt = check_tokens(prompt, vocab, where, rank=2, name="prompt")
    batch, length = prompt.shape
    if length < 1:
        raise ValueError(f"{where}: expected a prompt of at least one token (shape [batch, P], P >= 1), got shape "
                         f"{prompt.shape}")
    prompt_lengths = checks.lengths(prompt_lengths, batch, where)
    valid = None
    if prompt_lengths is not None and concrete(prompt_lengths):
        n = np.asarray(prompt_lengths)
        if n.size and (n.min() < 1 or n.max() > length):
            raise ValueError(f"{where}: expected prompt_lengths in [1, {length}] (every prompt needs a last token "
                             f"to continue from), got min {n.min()}, max {n.max()}")
        valid = np.arange(length)[None, :] < n[:, None]
    if prompt_lengths is None or valid is not None:
        check_token_range(prompt, vocab, where, "prompt tokens", valid)
    if initial_state is not None:
        check_state(initial_state, model, batch, where)
    try:
        hash(model)
        run = _generate_jit
    except TypeError:  # an unhashable user model: traced as a plain function (jit it yourself)
        run = _generate
    return run(model, steps, options, stop_token, return_logits, params, prompt, prompt_lengths, initial_state, key)
