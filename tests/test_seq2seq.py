"""Sequence to sequence: an encoder's final state seeds a :func:`jrnn.language_model` decoder through
``jrnn.generate(..., initial_state=...)``; the logits ``return_logits=True`` gives against a teacher-forced
``model.apply`` over the prompt and the generated tokens; greedy decoding against an argmax loop over
``model.step``; gradients through the generated logits against the teacher-forced gradient."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn

SRC_V, V, B, S, P, STEPS, H = 6, 7, 4, 5, 3, 6, 8
TOL = dict(rtol=1e-5, atol=1e-5)


@functools.cache
def _setup():
    """An LSTM encoder over one-hot sources; an LSTM decoder with the same state structure (``LSTMState(h, c)``)."""
    encoder = jrnn.RNN(jrnn.lstm(H))
    decoder = jrnn.language_model(jrnn.lstm(H), V, 5)
    k_enc, k_dec = jax.random.split(jax.random.key(0))
    params = {"encoder": encoder.init(k_enc, SRC_V),
              "decoder": jax.tree_util.tree_map(lambda a: 2.0 * a, decoder.init(k_dec))}  # peakier distributions
    return encoder, decoder, params


def _source(seed, batch=B):
    return np.random.default_rng(seed).integers(0, SRC_V, (batch, S))


def _encode(params, source):
    encoder, _, _ = _setup()
    _, state = encoder.apply(params["encoder"], jax.nn.one_hot(source, SRC_V))
    return state


def _prompt(seed, lengths):
    prompt = np.random.default_rng(seed).integers(0, V, (B, P))
    prompt[np.arange(P)[None, :] >= np.asarray(lengths)[:, None]] = V + 2  # padding outside the vocabulary
    return prompt


def _row(state, b):
    return jax.tree_util.tree_map(lambda a: a[b:b + 1], state)


@pytest.mark.parametrize("options", [dict(temperature=1.0), dict(temperature=0.0),
                                     dict(temperature=0.8, top_k=3, top_p=0.9)])
def test_generated_logits_equal_teacher_forced_apply_over_prompt_and_generated_tokens(options):
    _, decoder, params = _setup()
    lengths = np.array([P, 1, 2, P])
    prompt, state = _prompt(1, lengths), _encode(params, _source(2))
    tokens, final, logits = jrnn.generate(decoder, params["decoder"], prompt, prompt_lengths=jnp.asarray(lengths),
                                          steps=STEPS, key=jax.random.key(3), initial_state=state,
                                          return_logits=True, **options)
    assert logits.shape == (B, STEPS, V)
    for b in range(B):  # each row alone: its own prompt, then everything generated, read by apply
        sequence = np.concatenate([prompt[b, :lengths[b]], np.asarray(tokens[b])])[None]
        forced, forced_final = decoder.apply(params["decoder"], sequence, initial_state=_row(state, b))
        np.testing.assert_allclose(logits[b], forced[0, lengths[b] - 1:-1], **TOL)
        for a, e in zip(jax.tree_util.tree_leaves(_row(final, b)), jax.tree_util.tree_leaves(forced_final)):
            np.testing.assert_allclose(a, e, **TOL)


def test_greedy_decoding_equals_an_argmax_loop_over_step_from_the_encoder_state():
    _, decoder, params = _setup()
    state = _encode(params, _source(4))
    prompt = np.full((B, 1), 0)
    tokens, _, logits = jrnn.generate(decoder, params["decoder"], prompt, steps=STEPS, key=jax.random.key(5),
                                      initial_state=state, temperature=0, return_logits=True)
    step = jax.jit(decoder.step)
    loop_state, loop_logits = step(params["decoder"], state, jnp.asarray(prompt[:, 0]))
    expected_tokens, expected_logits = [], []
    for _ in range(STEPS):
        token = np.argmax(np.asarray(loop_logits), axis=-1)
        expected_tokens.append(token)
        expected_logits.append(np.asarray(loop_logits))
        loop_state, loop_logits = step(params["decoder"], loop_state, jnp.asarray(token, jnp.int32))
    np.testing.assert_array_equal(tokens, np.stack(expected_tokens, axis=1))
    np.testing.assert_allclose(logits, np.stack(expected_logits, axis=1), **TOL)


def test_the_encoder_state_is_used_changing_the_source_changes_the_decoding():
    _, decoder, params = _setup()
    prompt, key = np.zeros((16, 1), np.int64), jax.random.key(6)
    decode = functools.partial(jrnn.generate, decoder, params["decoder"], prompt, steps=STEPS, key=key,
                               temperature=0, return_logits=True)
    a, _, logits_a = decode(initial_state=_encode(params, _source(7, 16)))
    b, _, logits_b = decode(initial_state=_encode(params, _source(8, 16)))
    zero, _, _ = decode()
    assert np.any(np.asarray(a) != np.asarray(b)) and np.any(np.asarray(a) != np.asarray(zero))
    assert np.all(np.any(np.abs(np.asarray(logits_a[:, 0] - logits_b[:, 0])) > 1e-4, axis=-1))  # every row
    same, _, _ = decode(initial_state=_encode(params, _source(7, 16)))
    np.testing.assert_array_equal(a, same)


def test_gradients_flow_through_the_generated_logits_into_decoder_and_encoder():
    # With the tokens held fixed, the loss on generate's logits is the teacher-forced loss on the same tokens:
    # their gradients agree, and reach every parameter of both networks.
    _, decoder, params = _setup()
    source, prompt, key = _source(9), np.zeros((B, 1), np.int64), jax.random.key(10)

    def sampled_loss(params):
        tokens, _, logits = jrnn.generate(decoder, params["decoder"], prompt, steps=STEPS, key=key,
                                          initial_state=_encode(params, source), return_logits=True)
        log_p = jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[..., None], axis=-1)
        return -jnp.mean(log_p), tokens

    (_, tokens), grads = jax.jit(jax.value_and_grad(sampled_loss, has_aux=True))(params)

    def forced_loss(params):
        inputs = jnp.concatenate([jnp.asarray(prompt), tokens[:, :-1]], axis=1)
        logits, _ = decoder.apply(params["decoder"], inputs, initial_state=_encode(params, source))
        return jrnn.masked_cross_entropy(logits, tokens)

    expected = jax.jit(jax.grad(forced_loss))(params)
    for g, e in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(expected), strict=True):
        assert np.all(np.isfinite(g)) and np.any(g != 0)
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6)


def test_a_bridge_maps_a_bidirectional_encoder_state_to_a_wider_decoder():
    encoder = jrnn.bidirectional(jrnn.gru(H))
    decoder = jrnn.language_model(jrnn.gru(2 * H), V, 5)
    enc_params, dec_params = encoder.init(jax.random.key(11), SRC_V), decoder.init(jax.random.key(12))
    _, state = encoder.apply(enc_params, jax.nn.one_hot(_source(13), SRC_V))
    bridged = jnp.concatenate([state.forward, state.backward], axis=-1)  # [B, 2H]
    prompt = np.zeros((B, 1), np.int64)
    tokens, _, logits = jrnn.generate(decoder, dec_params, prompt, steps=STEPS, key=jax.random.key(14),
                                      initial_state=bridged, return_logits=True)
    forced, _ = decoder.apply(dec_params, np.concatenate([prompt, np.asarray(tokens)], axis=1), initial_state=bridged)
    np.testing.assert_allclose(logits, forced[:, :-1], **TOL)
    # The unbridged state has the encoder's structure, not the decoder's: the error says which was expected.
    message = r"jrnn.generate: expected initial_state structured as the network's state \(4, 16\) \(batch 4\), got Bi"
    with pytest.raises(ValueError, match=message + r".*needs a bridge function"):
        jrnn.generate(decoder, dec_params, prompt, steps=STEPS, key=jax.random.key(14), initial_state=state)
