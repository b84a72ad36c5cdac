"""IndRNN: the recurrent-magnitude constraint as one optax transform in ``jrnn.train_step``, and the gradient of an
active ReLU unit, which is the product ``w^(T-t)`` that the constraint bounds."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jrnn

H, I, B, T = 4, 2, 3, 6


def test_constraint_is_one_line_in_train_step_and_bounds_w_leaving_every_other_update_alone():
    net = jrnn.deep([jrnn.indrnn(H), jrnn.indrnn(H)])
    head = jrnn.readout(1)
    params = (net.init(jax.random.key(0), I), head.init(jax.random.key(1), H))

    def apply(p, xs, **kw):
        ys, final = net.apply(p[0], xs, **kw)
        return head.apply(p[1], ys), final

    loss_fn = jrnn.supervised_loss(apply)
    batch = jrnn.Batch(jax.random.normal(jax.random.key(2), (B, T, I)), 5.0 + jnp.zeros((B, T, 1)))
    bound = 2.0 ** (1 / T)
    plain = jrnn.train_step(loss_fn, optax.sgd(0.5), max_norm=None)
    bounded = jrnn.train_step(loss_fn, optax.chain(optax.sgd(0.5), jrnn.indrnn_constraint(T, 2.0)), max_norm=None)

    def after(trainer, steps=3):
        p, opt_state = params, trainer.init(params)
        for i in range(steps):
            p, opt_state, _ = trainer.step(p, opt_state, batch, jax.random.key(i))
        return p

    free, clipped = after(plain), jax.device_get(after(bounded))
    ws = [layer.w for layer in clipped[0]]
    assert max(float(jnp.abs(w).max()) for w in [layer.w for layer in free[0]]) > bound, "the test must push w out"
    for w in ws:
        assert np.all(np.abs(w) <= np.nextafter(np.float32(bound), np.float32(np.inf)))
    # The first step is the same for both; only w was projected, so U, b and the readout agree after it.
    one_free, one_clipped = after(plain, 1), after(bounded, 1)
    for layer_free, layer_clipped in zip(one_free[0], one_clipped[0]):
        np.testing.assert_array_equal(layer_free.U, layer_clipped.U)
        np.testing.assert_array_equal(layer_free.b, layer_clipped.b)
        np.testing.assert_allclose(layer_clipped.w, np.clip(layer_free.w, -bound, bound), rtol=1e-7)


def test_constraint_needs_params_and_a_positive_magnitude():
    tx = jrnn.indrnn_constraint(10)
    params = jrnn.indrnn(2).init(jax.random.key(0), 1)
    with pytest.raises(ValueError, match="expected params"):
        tx.update(params, tx.init(params))
    with pytest.raises(ValueError, match="positive magnitude"):
        jrnn.indrnn_constraint(10, magnitude=0.0)


def test_an_active_relu_unit_carries_its_gradient_as_w_to_the_power_of_the_distance():
    """With positive inputs every unit stays active, so ds_T/ds_0 = diag(w)^T exactly (Li et al. 2018, eq. 4)."""
    cell = jrnn.indrnn(H)
    w = jnp.array([0.5, 0.9, 1.0, 1.2])
    params = jrnn.IndRNNParams(U=jnp.ones((H, I)), w=w, b=jnp.ones(H))
    xs = jnp.ones((1, T, I))
    s0 = jnp.ones((1, H))
    jac = jax.jacrev(lambda s0: jrnn.scan(cell, params, xs, initial_state=s0)[1][0])(s0)[:, 0]
    np.testing.assert_allclose(jac, np.diag(np.asarray(w, np.float64) ** T), rtol=1e-6)
