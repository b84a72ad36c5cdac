"""``jrnn.chunked(size)``: chunks of steps evaluated at once by a ``jrnn.Chunkwise`` cell (Mamba-2's SSD form),
against the sequential scan, which steps the cell one step at a time: values, final states and every gradient, for
chunk sizes that divide ``T``, that do not, of one step and of more than ``T``, with lengths, resets, reverse and a
random initial state. The registry's contract tests run it on every chunkwise cell too (size 4 on T = 6)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import registry

import jrnn

B, T, F = 3, 11, 6
LENGTHS = np.array([11, 7, 0])
RESETS = np.zeros((B, T), bool)
RESETS[0, [4, 5]] = True  # two segments back to back, the second one step long
RESETS[1, 3] = True


def _problem(dtype):
    cell = jrnn.mamba2(F, state_size=3, expand=2, head_dim=2, n_groups=2, dtype=dtype)
    params = cell.init(jax.random.key(0), F)
    noise = jax.tree.map(lambda p: 0.3 * jax.random.normal(jax.random.key(5), p.shape, p.dtype), params)
    params = jax.tree.map(jnp.add, params, noise)  # away from the initialisation's symmetries (D = 1, norm = 1)
    xs = jax.random.normal(jax.random.key(1), (B, T, F), dtype)
    s0 = jax.tree.map(lambda a: jax.random.normal(jax.random.key(3), a.shape, a.dtype), cell.initial_state((B,), dtype))
    return cell, params, xs, s0


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("size", [1, 3, 16])  # one step; not dividing T = 11; more than T
def test_chunks_equal_the_sequential_scan_in_values_and_gradients(x64, size):
    cell, params, xs, s0 = _problem(jnp.float64)
    registry.assert_chunks_equal_steps(cell, params, xs, s0, size, jnp.asarray(LENGTHS), jnp.asarray(RESETS),
                                       rtol=1e-10, atol=1e-10)


def test_float32_chunks_agree_to_1e_5():
    """The documented float32 tolerance: the chunk sums exponentials of summed log decays, the loop multiplies
    the decays one step at a time."""
    cell, params, xs, s0 = _problem(jnp.float32)
    xs = jnp.tile(xs, (1, 20, 1))  # T = 220: many chunks
    a, fa = jrnn.scan(cell, params, xs, initial_state=s0, solver=jrnn.chunked(64))
    b, fb = jrnn.scan(cell, params, xs, initial_state=s0, solver=jrnn.sequential())
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fa.inner, fb.inner, rtol=1e-5, atol=1e-5)


def test_differentiating_stores_one_state_per_chunk():
    """The reason for the form: under ``jax.grad`` the scan over chunks saves the state at chunk boundaries, not
    at every step (the largest residual of the forward is counted in the linearised program)."""
    cell, params, xs, _ = _problem(jnp.float32)
    xs = jnp.tile(xs, (1, 12, 1))  # T = 132
    state_size = cell.intermediate_size * cell.state_size

    def saved(solver):
        loss = lambda p: jnp.sum(jrnn.scan(cell, p, xs, solver=solver)[0])  # noqa: E731
        _, vjp = jax.vjp(loss, params)
        leaves = [leaf for leaf in jax.tree.leaves(vjp) if hasattr(leaf, "shape")]
        return max(int(np.prod(leaf.shape)) // (B * state_size) for leaf in leaves if leaf.shape[-1:] == (state_size,)
                   or leaf.shape[-3:] == (cell.num_heads, cell.head_dim, cell.state_size))

    assert saved(jrnn.chunked(33)) <= 132 // 33 + 1 < saved(jrnn.sequential())


def test_chunked_refuses_what_it_cannot_evaluate():
    xs = jnp.zeros((2, 5, 3))
    cell = jrnn.gru(4)
    params = cell.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"jrnn.chunked\(\) needs a cell that evaluates a chunk .* got a GRUCell"):
        jrnn.scan(cell, params, xs, solver=jrnn.chunked(2))
    with pytest.raises(ValueError, match=r"expected size to be a positive int"):
        jrnn.chunked(0)
    m2 = jrnn.mamba2(4, state_size=2, head_dim=2)
    with pytest.raises(ValueError, match=r"jrnn.chunked\(\) takes no state dropout"):
        jrnn.chunked(2).check(m2, "here", state_mask=True)
