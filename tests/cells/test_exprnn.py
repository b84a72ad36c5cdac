"""expRNN: W stays orthogonal through training, the linear recurrence preserves the state's norm, the matrix
exponential is computed once per sequence by every consumer, the initialisations are the rotations they promise,
gradients through ``expm`` match finite differences, and the optimizer recipe gives ``A`` its own learning rate."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

import jrnn

H, I, B, T = 6, 3, 4, 7


def test_w_stays_orthogonal_to_1e5_after_training_steps_that_move_a_far():
    cell = jrnn.exprnn(H)
    params = cell.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (B, T, I))
    targets = jax.random.normal(jax.random.key(2), (B, T, H))
    # A learning rate of 0.3 for A moves it by O(1) per step: far from its initial block-diagonal form.
    tx = jrnn.exprnn_optimizer(1e-2, 3e-1)

    @jax.jit
    def train_step(params, opt_state):
        grads = jax.grad(lambda p: jnp.mean(jnp.square(jrnn.scan(cell, p, xs)[0] - targets)))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    start, opt_state = params.A, tx.init(params)
    for _ in range(5):
        params, opt_state = train_step(params, opt_state)
    W = cell.recurrent_matrix(params)
    assert float(jnp.abs(params.A - start).max()) > 0.5, "the test must move A"
    assert float(jnp.abs(W.T @ W - jnp.eye(H)).max()) < 1e-5
    assert float(jnp.abs(jnp.linalg.det(W) - 1.0)) < 1e-5  # the exponential reaches SO(n) only


def test_linear_recurrence_with_zero_input_preserves_the_state_norm():
    cell = jrnn.exprnn(H, lambda z, b: z)  # s_t = W s_{t-1}
    params = cell.init(jax.random.key(3), I)
    s0 = jax.random.normal(jax.random.key(4), (B, H))
    ys, final = jax.jit(lambda p, s0: jrnn.scan(cell, p, jnp.zeros((B, 50, I)), initial_state=s0))(params, s0)
    norms = jnp.linalg.norm(ys, axis=-1)
    np.testing.assert_allclose(norms, jnp.broadcast_to(jnp.linalg.norm(s0, axis=-1)[:, None], norms.shape),
                               rtol=2e-5)
    assert float(jnp.abs(ys[:, 0] - s0).max()) > 0.1, "W is not the identity: the state moves"


def _loops_around_lu(jaxpr, stack=()):
    """For each LU factorisation (one per matrix exponential) in a jaxpr, the primitives that enclose it."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "lu":
            found.append(stack)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                inner = getattr(sub, "jaxpr", sub)
                inner = getattr(inner, "jaxpr", inner)
                if hasattr(inner, "eqns"):
                    found += _loops_around_lu(inner, stack + (eqn.primitive.name,))
    return found


@pytest.mark.parametrize("consumer, expected", [
    ("scan", 1), ("grad", 1), ("checkpointed_scan", 1), ("truncated_bptt", 1), ("bidirectional", 2),
    ("deep", 2)])
def test_the_matrix_exponential_is_computed_once_per_sequence_outside_every_time_loop(consumer, expected):
    cell = jrnn.exprnn(4)
    xs = jnp.ones((2, T, I))
    layers = {"bidirectional": jrnn.bidirectional(cell), "deep": jrnn.deep([cell, cell]),
              "truncated_bptt": jrnn.truncated_bptt(cell, k=3)}
    layer = layers.get(consumer, jrnn.RNN(cell))
    params = layer.init(jax.random.key(0), I)
    run = {"scan": lambda p: jrnn.scan(cell, p, xs),
           "grad": jax.grad(lambda p: jnp.sum(jrnn.scan(cell, p, xs)[0])),
           "checkpointed_scan": lambda p: jrnn.checkpointed_scan(cell, p, xs, segment_length=3)}.get(
               consumer, lambda p: layer.apply(p, xs))
    enclosing = _loops_around_lu(jax.make_jaxpr(run)(params).jaxpr)
    assert len(enclosing) == expected
    assert not any({"scan", "while"} & set(stack) for stack in enclosing), enclosing


def test_henaff_and_cayley_give_block_rotations_with_the_documented_angles():
    A = jrnn.init.henaff(jax.random.key(5), (5, 5))
    W = np.asarray(jax.jit(jax.scipy.linalg.expm)(A - A.T), np.float64)
    angles = np.asarray(A)[[0, 2], [1, 3]]
    assert np.all(np.abs(angles) <= math.pi)
    expected = np.zeros((5, 5))
    for k, theta in enumerate(angles):  # a rotation by theta in the plane (2k, 2k + 1); the odd unit is fixed
        c, s = math.cos(theta), math.sin(theta)
        expected[2 * k:2 * k + 2, 2 * k:2 * k + 2] = [[c, s], [-s, c]]
    expected[4, 4] = 1.0
    np.testing.assert_allclose(W, expected, atol=2e-6)
    assert np.count_nonzero(np.asarray(A)) == 2  # strictly upper triangular, two blocks

    C = np.asarray(jrnn.init.cayley(jax.random.key(6), (400, 400)), np.float64)
    entries = C[np.arange(0, 400, 2), np.arange(1, 400, 2)]
    # -tan(theta / 2) for theta ~ U(0, pi/2): in (-1, 0), with mean -(4 / pi) ln sqrt(2) = -0.441
    assert np.all((entries < 0) & (entries > -1))
    assert abs(entries.mean() + 4 / math.pi * math.log(math.sqrt(2))) < 0.03


def test_gradients_through_the_exponential_match_finite_differences_in_float64():
    with jax.enable_x64(True):
        cell = jrnn.exprnn(4, dtype=jnp.float64)
        params = cell.init(jax.random.key(7), 2)
        params = params._replace(A=params.A + 0.3 * jax.random.normal(jax.random.key(8), (4, 4), jnp.float64),
                                 b=jnp.full(4, 0.5, jnp.float64))  # |z| + b > 0 away from modReLU's kink
        xs = jax.random.normal(jax.random.key(9), (2, 4, 2), jnp.float64)

        @jax.jit
        def loss(A, U):
            ys, _ = jrnn.scan(cell, params._replace(A=A, U=U), xs)
            return jnp.sum(jnp.sin(ys))

        check_grads(loss, (params.A, params.U), order=1, modes=["rev"], eps=1e-6, atol=1e-7, rtol=1e-7)


def test_the_optimizer_recipe_gives_every_a_its_own_learning_rate_at_any_depth():
    net = jrnn.deep([jrnn.bidirectional(jrnn.exprnn(3)), jrnn.gru(2)])
    params = jax.tree_util.tree_map(  # every leaf 1: only the structure matters here
        lambda leaf: jnp.ones(leaf.shape, leaf.dtype),
        jax.eval_shape(lambda k: (net.init(k, 2), jrnn.readout(1).init(k, 2)), jax.random.key(0)))
    tx = jrnn.exprnn_optimizer(1.0, 0.1, optimizer=optax.sgd)
    updates, _ = jax.jit(lambda g: tx.update(g, tx.init(g), g))(params)
    bi = updates[0][0]
    for direction in (bi.forward, bi.backward):
        np.testing.assert_allclose(direction.A, -0.1)
        np.testing.assert_allclose(direction.U, -1.0)
        np.testing.assert_allclose(direction.b, -1.0)
    for leaf in jax.tree_util.tree_leaves((updates[0][1], updates[1])):
        np.testing.assert_allclose(leaf, -1.0)
