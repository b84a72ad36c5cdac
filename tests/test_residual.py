"""``jrnn.pre_norm``: the block ``x + layer(RMSNorm(x))`` against the formula written out with NumPy around
``jrnn.scan``; its step against its apply (alone, in a ``jrnn.deep`` stack and in a language model with the final
norm); its gradients against finite differences; its errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jrnn

B, T, D = 3, 7, 4
LENGTHS = jnp.array([7, 4, 0])
RESETS = jnp.zeros((B, T), bool).at[0, 3].set(True)


def _rms(x, g, eps=1e-6):
    x = np.asarray(x, np.float64)
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * np.asarray(g)


@pytest.mark.parametrize("make", [lambda: jrnn.lstm(D), lambda: jrnn.mamba2(D, state_size=2, head_dim=2)],
                         ids=["lstm", "mamba2"])
def test_apply_is_the_input_plus_the_layer_of_its_norm(make):
    cell = make()
    block = jrnn.pre_norm(cell)
    params = block.init(jax.random.key(0), D)
    params = params._replace(norm=jax.random.uniform(jax.random.key(4), (D,), minval=0.5, maxval=1.5))
    xs = jax.random.normal(jax.random.key(1), (B, T, D))
    s0 = jax.tree.map(lambda a: jax.random.normal(jax.random.key(2), a.shape, a.dtype), cell.initial_state((B,)))
    ys, final = block.apply(params, xs, lengths=LENGTHS, initial_state=s0, resets=RESETS)
    inner, want_final = jrnn.scan(cell, params.layer, jnp.asarray(_rms(xs, params.norm), jnp.float32),
                                  lengths=LENGTHS, initial_state=s0, resets=RESETS)
    valid = (np.arange(T)[None] < np.asarray(LENGTHS)[:, None])[..., None]
    np.testing.assert_allclose(ys, np.where(valid, np.asarray(xs) + np.asarray(inner), 0.0), rtol=1e-5, atol=1e-5)
    for a, e in zip(jax.tree.leaves(final), jax.tree.leaves(want_final), strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5)


def test_a_stack_steps_as_it_applies_and_the_language_model_too():
    stack = jrnn.deep([jrnn.pre_norm(jrnn.mamba2(D, state_size=2, head_dim=2)), jrnn.pre_norm(jrnn.gru(D))])
    model = jrnn.language_model(stack, vocab_size=9, embed_size=D, norm=True)
    params = model.init(jax.random.key(0))
    params = params._replace(norm=jnp.linspace(0.5, 1.5, D))
    tokens = jax.random.randint(jax.random.key(1), (B, T), 0, 9)
    logits, final = model.apply(params, tokens)

    def step(state, token):
        return model.step(params, state, token)

    stepped_final, stepped = jax.lax.scan(step, model.initial_state((B,)), tokens.T)
    np.testing.assert_allclose(stepped.swapaxes(0, 1), logits, rtol=1e-4, atol=1e-5)
    for a, e in zip(jax.tree.leaves(stepped_final), jax.tree.leaves(final), strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5)
    ys, _ = stack.apply(params.network, model.embed(params, tokens))
    want = _rms(ys, params.norm) @ np.asarray(params.readout.V).T + np.asarray(params.readout.b)
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-4)  # the final norm, written out
    generated, _ = jrnn.generate(model, params, tokens[:, :2], steps=3, key=jax.random.key(2))
    assert generated.shape == (B, 3)


def test_gradients_match_finite_differences():
    with jax.enable_x64(True):
        block = jrnn.pre_norm(jrnn.gru(D, dtype=jnp.float64))
        params = block.init(jax.random.key(0), D)
        xs = jax.random.normal(jax.random.key(1), (2, 5, D), jnp.float64)
        loss = lambda p, x: jnp.sum(jnp.sin(block.apply(p, x)[0]))  # noqa: E731
        check_grads(loss, (params, xs), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


def test_errors_name_what_was_expected():
    with pytest.raises(ValueError, match=r"input size must be the layer's output size 4; got input_size=3"):
        jrnn.pre_norm(jrnn.lstm(4)).init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"expected a non-negative eps, got -1"):
        jrnn.pre_norm(jrnn.lstm(4), eps=-1)
    with pytest.raises(TypeError, match=r"expected a jrnn cell or sequence layer, got 'lstm'"):
        jrnn.pre_norm("lstm")
    with pytest.raises(TypeError, match=r"expected norm to be a bool, got 1"):
        jrnn.language_model(jrnn.lstm(4), 5, 4, norm=1)
