"""Packed documents in a language model: :func:`jrnn.pack_documents` and ``resets`` through
:meth:`jrnn.LanguageModel.apply`, :class:`jrnn.Batch` and :func:`jrnn.supervised_loss`, against each document
run on its own."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn

DOCS = [np.array([1, 2, 3, 4, 5]), np.array([6, 7]), np.array([8, 9, 1, 2, 3, 4, 5, 6]), np.array([7, 8, 9])]


def test_pack_documents_cuts_the_concatenated_stream_and_flags_each_documents_first_token():
    inputs, targets, resets = jrnn.pack_documents(DOCS, num_streams=2, window=3)
    stream = np.concatenate(DOCS)
    want_inputs, want_targets = jrnn.stream_windows(stream, 2, 3)
    np.testing.assert_array_equal(inputs, want_inputs)
    np.testing.assert_array_equal(targets, want_targets)
    starts = {5, 7, 15}  # positions in the stream where documents 2, 3, 4 start
    per_stream = (stream.size - 1) // 2
    for i in range(inputs.shape[0]):
        for s in range(2):
            for t in range(3):
                assert resets[i, s, t] == ((s * per_stream + i * 3 + t) in starts)
    assert resets.dtype == bool


@pytest.mark.parametrize("bad, message", [
    ([], "non-empty sequence"),
    (np.arange(5), "non-empty sequence"),
    ([np.arange(3), np.zeros((2, 2), int)], "document 1"),
    ([np.arange(3), np.array([], int)], "document 1"),
    ([np.linspace(0, 1, 4)], "document 0"),
])
def test_pack_documents_names_what_it_expected(bad, message):
    with pytest.raises(ValueError, match=message):
        jrnn.pack_documents(bad, num_streams=1, window=2)


@pytest.mark.parametrize("layer", ["gru", "mamba"])
def test_a_language_model_over_packed_windows_equals_each_document_run_alone(layer):
    """Two windows of one stream, the state carried between them: every document's logits equal those of the
    document alone from the zero state, even the one that continues into the second window."""
    cell = jrnn.gru(6) if layer == "gru" else jrnn.mamba(6, state_size=2)
    model = jrnn.language_model(jrnn.deep([cell, jrnn.gru(5)]), vocab_size=10, embed_size=4)
    params = model.init(jax.random.key(0))
    inputs, _, resets = jrnn.pack_documents(DOCS, num_streams=1, window=8)  # [2, 1, 8]
    state, logits = None, []
    for i in range(inputs.shape[0]):
        out, state = model.apply(params, inputs[i], initial_state=state, resets=resets[i])
        logits.append(out[0])
    logits = np.concatenate(logits)
    stream = np.concatenate(DOCS)[:logits.shape[0]]
    offset = 0
    for document in DOCS:
        n = min(document.size, stream.size - offset)
        if n <= 0:
            break
        alone, _ = model.apply(params, jnp.asarray(document[None, :n]))
        np.testing.assert_allclose(logits[offset:offset + n], np.asarray(alone[0]), rtol=1e-5, atol=1e-5)
        offset += n
    # Without resets the second document reads the first one's context.
    unpacked, _ = model.apply(params, inputs[0])
    assert not np.allclose(np.asarray(unpacked[0, 5:]), logits[5:8], atol=1e-4)


def test_a_batch_with_resets_reaches_apply_through_supervised_loss():
    model = jrnn.language_model(jrnn.gru(5), vocab_size=10, embed_size=4)
    params = model.init(jax.random.key(1))
    inputs, targets, resets = jrnn.pack_documents(DOCS, num_streams=2, window=4)
    loss_fn = jrnn.supervised_loss(model.apply, jrnn.masked_cross_entropy)
    assert resets[1].any()  # documents 2 and 3 start in the second window
    packed, _ = loss_fn(params, jrnn.Batch(inputs[1], targets[1], resets=resets[1]), None)
    logits, _ = model.apply(params, inputs[1], resets=resets[1])
    want = jrnn.masked_cross_entropy(logits, jnp.asarray(targets[1]), None)
    np.testing.assert_allclose(float(packed), float(want), rtol=1e-6)
    plain, _ = loss_fn(params, jrnn.Batch(inputs[1], targets[1]), None)
    assert abs(float(plain) - float(packed)) > 1e-6
