"""``jrnn.generate`` against a Python loop over ``model.step``; ``jrnn.sample_logits`` against its definitions
(argmax, the top-k set, the nucleus) and, statistically, against the distribution it should sample."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

import jrnn

V, B, P, STEPS = 5, 3, 4, 7


@functools.cache
def _model():
    """A two-layer stack, with a prompt pass through the fused path and steps through the cells."""
    model = jrnn.language_model(jrnn.deep([jrnn.lstm(6), jrnn.gru(6)]), V, 4)
    params = jax.tree_util.tree_map(lambda a: 2.0 * a, model.init(jax.random.key(0)))  # peakier distributions
    return model, params, jax.jit(model.step)


def _mask_top_k(logits, k):
    order = np.argsort(-logits, kind="stable")  # ties: the lower index first
    keep = np.zeros(logits.shape[-1], bool)
    keep[order[:k]] = True
    return keep


def _mask_nucleus(logits, p):
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")
    before = np.cumsum(probs[order]) - probs[order]
    keep = np.zeros(logits.shape[-1], bool)
    keep[order[before < p]] = True
    return keep


def _reference_sample(key, logits, temperature, top_k, top_p):
    """Temperature, then the top-k mask, then the nucleus mask, each computed in NumPy row by row; then the
    same ``jax.random.categorical`` draw (so that equal keys give equal tokens)."""
    logits = np.asarray(logits)
    if temperature == 0:
        return np.argmax(logits, axis=-1)
    scaled = np.array(jnp.asarray(logits) / jnp.float32(temperature))
    for row in range(scaled.shape[0]):
        if top_k is not None:
            scaled[row] = np.where(_mask_top_k(scaled[row], top_k), scaled[row], -np.inf)
        if top_p is not None:
            scaled[row] = np.where(_mask_nucleus(scaled[row].astype(np.float64), top_p), scaled[row], -np.inf)
    return np.asarray(jax.random.categorical(key, jnp.asarray(scaled), axis=-1))


def _python_loop(prompt, lengths, key, steps, temperature=1.0, top_k=None, top_p=None, stop_token=None):
    """The docstring's loop, with the prompt fed token by token through ``model.step``, one sequence at a time."""
    model, params, step = _model()
    rows = []
    for b in range(prompt.shape[0]):
        state = model.initial_state((1,))
        for t in range(lengths[b]):
            state, logits = step(params, state, prompt[b:b + 1, t])
        rows.append((state, logits))
    state = jax.tree_util.tree_map(lambda *r: np.concatenate(r), *[s for s, _ in rows])
    logits = np.concatenate([np.asarray(lg) for _, lg in rows])
    done = np.zeros(prompt.shape[0], bool)
    tokens = []
    for k in jax.random.split(key, steps):
        token = _reference_sample(k, logits, temperature, top_k, top_p).astype(np.int32)
        if stop_token is not None:
            token = np.where(done, stop_token, token)
        new_state, logits = step(params, state, token)
        if stop_token is not None:  # the stop token itself is read; nothing after it
            new_state = jax.tree_util.tree_map(
                lambda n, o, done=done: np.where(done.reshape((-1,) + (1,) * (n.ndim - 1)), o, n), new_state, state)
            done = done | (token == stop_token)
        state = new_state
        tokens.append(token)
    return np.stack(tokens, axis=1), state


def _prompt(seed, lengths):
    prompt = np.random.default_rng(seed).integers(0, V, (B, P))
    prompt[np.arange(P)[None, :] >= np.asarray(lengths)[:, None]] = V + 3  # padding outside the vocabulary
    return prompt


def _assert_same(actual, expected):
    tokens, state = actual
    np.testing.assert_array_equal(tokens, expected[0])
    for a, e in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(expected[1]), strict=True):
        np.testing.assert_allclose(a, e, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("options", [dict(temperature=1.0), dict(temperature=0.7, top_k=3, top_p=0.8)])
def test_generate_equals_a_python_loop_over_step_with_mixed_prompt_lengths(options):
    model, params, _ = _model()
    lengths = np.array([P, 1, 3])
    prompt, key = _prompt(1, lengths), jax.random.key(2)
    tokens, state = jrnn.generate(model, params, prompt, prompt_lengths=jnp.asarray(lengths), steps=STEPS, key=key,
                                  **options)
    _assert_same((tokens, state), _python_loop(prompt, lengths, key, STEPS, **options))
    assert tokens.dtype == jnp.int32 and tokens.shape == (B, STEPS)


def test_each_prompt_continues_from_its_own_last_token():
    # Greedy continuations of a padded batch equal those of each prompt alone, and differ between prompts
    # that share a prefix but end at different lengths.
    model, params, _ = _model()
    lengths = np.array([P, 2, 3])
    prompt = _prompt(3, lengths)
    prompt[1, :2] = prompt[2, :2] = prompt[0, :2]
    tokens, _ = jrnn.generate(model, params, prompt, prompt_lengths=jnp.asarray(lengths), steps=STEPS,
                              key=jax.random.key(0), temperature=0)
    _assert_same((tokens, _), _python_loop(prompt, lengths, jax.random.key(0), STEPS, temperature=0))
    for b in range(B):
        alone, _ = _python_loop(prompt[b:b + 1], lengths[b:b + 1], jax.random.key(0), STEPS, temperature=0)
        np.testing.assert_array_equal(tokens[b], alone[0])


def test_temperature_zero_is_argmax_and_top_k_one_is_the_same_greedy_continuation():
    model, params, _ = _model()
    prompt = _prompt(4, [P] * B)
    greedy = jrnn.generate(model, params, prompt, steps=STEPS, key=jax.random.key(5), temperature=0)
    _assert_same(greedy, _python_loop(prompt, [P] * B, jax.random.key(5), STEPS, temperature=0))
    top1 = jrnn.generate(model, params, prompt, steps=STEPS, key=jax.random.key(6), top_k=1)  # another key
    _assert_same(top1, greedy)


def test_after_a_stop_token_every_token_is_the_stop_token_and_the_state_stops():
    model, params, _ = _model()
    lengths = np.array([P, 2, 1])
    prompt, key = _prompt(7, lengths), jax.random.key(8)
    stop = 2
    tokens, state = jrnn.generate(model, params, prompt, prompt_lengths=jnp.asarray(lengths), steps=STEPS, key=key,
                                  temperature=1.5, stop_token=stop)
    _assert_same((tokens, state), _python_loop(prompt, lengths, key, STEPS, temperature=1.5, stop_token=stop))
    first_stops = []
    for row in np.asarray(tokens):
        hits = np.flatnonzero(row == stop)
        if hits.size:
            first_stops.append(hits[0])
            np.testing.assert_array_equal(row[hits[0]:], stop)
    assert any(first < STEPS - 2 for first in first_stops), "the seed makes a row stop early enough to test it"


def test_generate_jits_as_a_whole_with_the_options_closed_over():
    model, params, _ = _model()
    lengths = jnp.array([3, 1, 2])
    prompt = _prompt(9, np.asarray(lengths))
    sample = jax.jit(functools.partial(jrnn.generate, model, steps=STEPS, temperature=0.9, top_p=0.9))
    jitted = sample(params, prompt, key=jax.random.key(10), prompt_lengths=lengths)
    _assert_same(jitted, jrnn.generate(model, params, prompt, prompt_lengths=lengths, steps=STEPS,
                                       key=jax.random.key(10), temperature=0.9, top_p=0.9))


def test_return_logits_keeps_tokens_and_state_and_zeroes_the_logits_after_a_stop_token():
    model, params, _ = _model()
    lengths = np.array([P, 2, 1])
    prompt, key = _prompt(7, lengths), jax.random.key(8)
    options = dict(prompt_lengths=jnp.asarray(lengths), steps=STEPS, key=key, temperature=1.5, stop_token=2)
    tokens, state = jrnn.generate(model, params, prompt, **options)
    tokens_l, state_l, logits = jrnn.generate(model, params, prompt, return_logits=True, **options)
    _assert_same((tokens_l, state_l), (tokens, state))
    assert logits.shape == (B, STEPS, V) and logits.dtype == jnp.float32
    stopped = np.asarray(tokens) == 2
    after_stop = np.cumsum(stopped, axis=1) - stopped > 0  # forced tokens, after each row's first stop token
    assert after_stop.any() and (~after_stop).any()
    np.testing.assert_array_equal(np.asarray(logits)[after_stop], 0.0)
    assert np.all(np.any(np.asarray(logits)[~after_stop] != 0, axis=-1))


# ----------------------------------------------------------------------------------------------------------------
# sample_logits: the candidate sets (property tests) and the sampled distribution (chi-square)
# ----------------------------------------------------------------------------------------------------------------

# Logits on a grid of 0.1: ties are exact (and broken by the lower index, here and in jrnn), and distinct logits
# have clearly distinct probabilities, in float32 as in float64.
ROWS = 16
logit_rows = st.lists(st.integers(-40, 40), min_size=ROWS * V, max_size=ROWS * V).map(
    lambda xs: (np.array(xs, np.float32) / 10).reshape(ROWS, V))


@settings(max_examples=25, deadline=None, database=None)
@given(logits=logit_rows, k=st.integers(1, V), temperature=st.sampled_from([0.5, 1.0, 2.0]),
       seed=st.integers(0, 2 ** 16))
def test_top_k_never_emits_a_token_outside_the_k_largest_logits(logits, k, temperature, seed):
    tokens = np.asarray(jrnn.sample_logits(jax.random.key(seed), logits, temperature=temperature, top_k=k))
    for row, token in zip(logits, tokens):
        assert _mask_top_k(row, k)[token], (row, k, token)


@settings(max_examples=25, deadline=None, database=None)
@given(logits=logit_rows, p=st.floats(0.05, 1.0), k=st.sampled_from([None, 2, 4]), seed=st.integers(0, 2 ** 16))
def test_top_p_never_emits_a_token_outside_the_nucleus(logits, p, k, seed):
    tokens = np.asarray(jrnn.sample_logits(jax.random.key(seed), logits, top_k=k, top_p=p))
    for row, token in zip(logits.astype(np.float64), tokens):
        if k is not None:
            row = np.where(_mask_top_k(row, k), row, -np.inf)
        probs = np.exp(row - row.max())
        probs /= probs.sum()
        before = np.cumsum(np.sort(probs)[::-1]) - np.sort(probs)[::-1]
        assume(np.all(np.abs(before - p) > 1e-5))  # no token on the edge of the nucleus, within rounding
        assert _mask_nucleus(row, p)[token], (row, p, token)


def test_sampled_frequencies_match_the_distribution_chi_square():
    probs = np.array([0.4, 0.25, 0.15, 0.12, 0.08])
    n = 20000
    logits = jnp.broadcast_to(jnp.log(jnp.asarray(probs, jnp.float32)), (n, V))
    cases = {  # options -> the distribution they should sample
        "t=1": (dict(), probs),
        "t=0.5": (dict(temperature=0.5), probs ** 2 / np.sum(probs ** 2)),
        "top_k=3": (dict(top_k=3), np.r_[probs[:3], 0, 0] / probs[:3].sum()),
        "top_p=0.6": (dict(top_p=0.6), np.r_[probs[:2], 0, 0, 0] / probs[:2].sum()),  # 0.4 < 0.6 <= 0.65
    }
    for i, (name, (options, expected)) in enumerate(cases.items()):
        tokens = np.asarray(jrnn.sample_logits(jax.random.key(100 + i), logits, **options))
        counts = np.bincount(tokens, minlength=V)
        support = expected > 0
        assert np.all(counts[~support] == 0), name
        result = stats.chisquare(counts[support], n * expected[support])
        assert result.pvalue > 1e-3, (name, counts, result)


# ----------------------------------------------------------------------------------------------------------------
# Bad arguments
# ----------------------------------------------------------------------------------------------------------------

def test_every_bad_argument_is_an_error_naming_what_was_expected():
    model, params, _ = _model()
    prompt, key = _prompt(0, [P] * B), jax.random.key(0)
    generate = functools.partial(jrnn.generate, model, params, prompt, steps=3, key=key)
    cases = [
        (dict(temperature=-0.5), ValueError, r"temperature >= 0 \(0 is greedy\), got -0.5"),
        (dict(temperature="hot"), TypeError, "temperature to be a number"),
        (dict(top_k=0), ValueError, r"top_k in \[1, 5\] \(the vocabulary size\), got 0"),
        (dict(top_k=V + 1), ValueError, r"top_k in \[1, 5\] \(the vocabulary size\), got 6"),
        (dict(top_k=2.0), TypeError, "top_k to be None or an int"),
        (dict(top_p=0.0), ValueError, r"top_p in \(0, 1\], got 0.0"),
        (dict(top_p=1.5), ValueError, r"top_p in \(0, 1\], got 1.5"),
        (dict(steps=0), ValueError, "steps to be a positive int, got 0"),
        (dict(key=None), TypeError, "key to be a PRNG key"),
        (dict(stop_token=V), ValueError, r"stop_token in the vocabulary \[0, 5\), got 5"),
        (dict(prompt_lengths=jnp.array([P, 0, 1])), ValueError, r"prompt_lengths in \[1, 4\].*got min 0"),
        (dict(prompt_lengths=jnp.array([P + 1, 1, 1])), ValueError, r"prompt_lengths in \[1, 4\].*max 5"),
        (dict(prompt_lengths=jnp.array([1, 1])), ValueError, r"lengths of shape \(3,\)"),
        (dict(return_logits=1), TypeError, "expected return_logits to be a bool, got 1"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            generate(**kwargs)
    bad_prompts = [
        (_with(prompt, (1, 2), V), ValueError, r"prompt tokens in the vocabulary \[0, 5\), got 1 outside it"),
        (prompt.astype(np.float32), TypeError, "integer prompt"),
        (prompt[0], ValueError, r"prompt of shape \[batch, time\]"),
        (prompt[:, :0], ValueError, "at least one token"),
    ]
    for bad, error, message in bad_prompts:
        with pytest.raises(error, match=message):
            jrnn.generate(model, params, bad, steps=3, key=key)
    # A padded position may hold anything; a valid one may not.
    with pytest.raises(ValueError, match="outside it"):
        jrnn.generate(model, params, _with(prompt, (1, 0), -1), steps=3, key=key, prompt_lengths=jnp.array([4, 1, 1]))
    with pytest.raises(TypeError, match="expected model to be a jrnn.language_model"):
        jrnn.generate(jrnn.lstm(3), params, prompt, steps=3, key=key)
    with pytest.raises(TypeError, match="got a traced value"):
        jax.jit(lambda t: jrnn.generate(model, params, prompt, steps=3, key=key, temperature=t))(1.0)
    with pytest.raises(ValueError, match=r"top_k in \[1, 5\]"):
        jrnn.sample_logits(key, jnp.zeros((2, V)), top_k=9)
    with pytest.raises(TypeError, match="floating-point logits"):
        jrnn.sample_logits(key, jnp.zeros((2, V), jnp.int32))


def _with(a, index, value):
    a = np.array(a, copy=True)
    a[index] = value
    return a


def test_reference_is_independent_of_the_code_it_checks():
    # The NumPy masks agree with hand-computed sets on a fixed example (logits of probabilities 0.5, 0.3, 0.2).
    logits = np.log(np.array([0.2, 0.5, 0.3]))
    assert _mask_top_k(logits, 2).tolist() == [False, True, True]
    assert _mask_nucleus(logits, 0.45).tolist() == [False, True, False]
    assert _mask_nucleus(logits, 0.55).tolist() == [False, True, True]
    assert _mask_nucleus(logits, 1.0).tolist() == [True, True, True]
