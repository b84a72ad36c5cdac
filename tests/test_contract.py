"""The cell contract, for every cell jrnn ships (``tests/registry.py``), in float64.

For each cell, with lengths (a full, a short and an empty sequence), in reverse, from a random initial state:

- every solver that applies to it (:func:`jrnn.auto`; :func:`jrnn.fused` where a kernel is registered;
  :func:`jrnn.associative` for a :class:`jrnn.LinearRecurrence`; :func:`jrnn.deer`, :func:`jrnn.quasi_deer` and
  :func:`jrnn.elk` for every cell, the first two converging) equals :func:`jrnn.sequential`, the definition, in its
  outputs and final state, and (but for ELK, whose gradient is quasi-DEER's) in its gradients with respect to the
  parameters, the inputs and the initial state;
- with state dropout (and input, output and weight dropout) on a :class:`jrnn.StateMaskable` cell, one key gives
  the same masks and the same values and gradients on every solver; a cell that is not one refuses state dropout;
- the sequential scan's gradients equal central finite differences (``jax.test_util.check_grads``);
- the layers built on a cell compute its scan: ``jrnn.RNN(cell).step`` scanned over time is ``apply``,
  ``jrnn.scan`` of ``jrnn.RNN(cell)`` and of ``jrnn.deep([cell])`` (by their own ``apply`` and by their ``step``)
  and the Flax NNX and Linen modules equal ``jrnn.scan(cell)``; a language model's ``step`` after a prefill equals
  one ``apply`` over the whole sequence, and greedy ``jrnn.generate`` picks the ``apply``'s argmax.

Compilation is nearly all of the time: each test traces everything it compares into one ``jit``, at tiny sizes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
import registry
from flax import nnx
from jax.test_util import check_grads

import jrnn
import jrnn.flax
from jrnn._src.solvers.newton import Newton

H, B, T, F = 3, 3, 6, 2
LENGTHS = np.array([T, 2, 0], np.int32)  # a full, a short and an empty sequence
TOL = dict(rtol=1e-9, atol=1e-9)  # float64; the Newton solvers converge to 1e-10
DROPOUT = jrnn.recurrent_dropout(input=0.3, state=0.4, output=0.2, weight=0.3)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _problem(name, seed=0):
    """``(cell, params, xs [B, T, *input], s0)`` in float64, every parameter drawn from N(0, 0.6²)."""
    cell = registry.make(name, H, jnp.float64)
    params = ref.random_params(cell, seed, F, dtype=np.float64)
    shape = (B, T) + registry.step_input_shape(cell, F)
    xs = ref.device(np.random.default_rng(seed + 1).standard_normal(shape), np.float64)
    return cell, params, xs, ref.random_state(cell, B, seed + 2, dtype=jnp.float64)


def _solvers(cell, state_mask=False):
    """The solvers that apply to ``cell`` (with state dropout when ``state_mask``), by its capabilities, each once:
    :func:`jrnn.auto` only where it takes a solver not already listed. The sequential scan is the reference."""
    capabilities = registry.capabilities(cell)
    solvers = {"sequential": jrnn.sequential()}
    if "fused" in capabilities and not state_mask:
        solvers["fused"] = jrnn.fused(unroll=4)  # T = 6: a remainder step after the unrolled loop
    if "linear_recurrence" in capabilities and not state_mask:
        solvers["associative"] = jrnn.associative()
        solvers["associative_loop"] = jrnn.associative(method="loop")
    if "chunkwise" in capabilities and not state_mask:
        solvers["chunked"] = jrnn.chunked(4)  # T = 6: a padded last chunk
    chosen = jrnn.auto().choose(cell, state_mask=state_mask)
    if chosen not in solvers.values():
        solvers["auto"] = jrnn.auto()
    solvers["deer"] = jrnn.deer()
    if not state_mask:
        solvers.update(quasi_deer=jrnn.quasi_deer(), elk=jrnn.elk())
    return solvers


def _loss(cell, solver, dropout=None, key=None, resets=None, reverse=True):
    """``(params, xs, s0, lengths) -> (loss, (ys, final_state, converged))``: a weighted sum of every output and
    ``sin`` of every final state entry, so that each one's gradient is distinct. A Newton solver runs through
    :func:`jrnn.newton_scan`, which says whether Newton converged (its fallback would hide it); under dropout,
    which only :func:`jrnn.scan` takes, ``converged`` is True. A complex state entry adds ``sin`` of its real and of
    its imaginary part."""

    def loss(params, xs, s0, lengths):
        kwargs = dict(lengths=lengths, initial_state=s0, reverse=reverse, resets=resets)
        converged = jnp.bool_(True)
        if isinstance(solver, Newton) and dropout is None:
            ys, final, info = jrnn.newton_scan(cell, params, xs, solver=solver, **kwargs)
            converged = info.converged
        else:
            ys, final = jrnn.scan(cell, params, xs, solver=solver, dropout=dropout, key=key, **kwargs)
        weights = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype).reshape(ys.shape))
        parts = [part for leaf in jax.tree_util.tree_leaves(final)  # a complex state: its real and imaginary parts
                 for part in ((jnp.real(leaf), jnp.imag(leaf)) if jnp.iscomplexobj(leaf) else (leaf,))]
        total = jnp.sum(weights * ys) + sum(jnp.sum(jnp.sin(part)) for part in parts)
        return total, (ys, final, converged)

    return loss


def _assert_trees_close(got, want, what, **tol):
    got_leaves, got_def = jax.tree_util.tree_flatten(got)
    want_leaves, want_def = jax.tree_util.tree_flatten(want)
    assert got_def == want_def, f"{what}: {got_def} != {want_def}"
    for i, (a, e) in enumerate(zip(got_leaves, want_leaves, strict=True)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), err_msg=f"{what}, leaf {i}", **(tol or TOL))


# ----------------------------------------------------------------------------------------------------------------
# Solvers: values and gradients equal the sequential scan's.
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", registry.NAMES)
def test_every_solver_equals_the_sequential_scan_in_values_and_gradients(name):
    cell, params, xs, s0 = _problem(name)
    solvers = _solvers(cell)
    # State dropout (with input, output and weight dropout): one key, the same masks on every solver that takes it.
    masked = _solvers(cell, state_mask=True) if "state_maskable" in registry.capabilities(cell) else {}
    key = jax.random.key(7)

    @jax.jit
    def run(params, xs, s0, lengths):
        return ({n: _grads(n, _loss(cell, solver))(params, xs, s0, lengths) for n, solver in solvers.items()},
                {n: _grads(n, _loss(cell, solver, DROPOUT, key))(params, xs, s0, lengths)
                 for n, solver in masked.items()})

    plain, dropped = run(params, xs, s0, ref.device(LENGTHS, np.int32))
    _, (ys, final, _) = plain["sequential"]
    assert np.all(np.asarray(ys)[1, LENGTHS[1]:] == 0.0) and np.all(np.asarray(ys)[2] == 0.0), "padded outputs"
    _assert_trees_close(jax.tree_util.tree_map(lambda a: a[2], final), jax.tree_util.tree_map(lambda a: a[2], s0),
                        f"{name}: an empty sequence's final state is its initial state", rtol=0, atol=0)
    for results, what in ((plain, ""), (dropped, " with dropout")):
        for n, (grads, (got_ys, got_final, converged)) in results.items():
            want_grads, (want_ys, want_final, _) = results["sequential"]
            # DEER and quasi-DEER are exact after T iterations. ELK only nearly: its damping stops it short of 1e-10
            # where the Jacobians are large (the Elman and layer-norm cells here), and its fallback is the answer.
            assert bool(converged) or n == "elk", f"{name}: {n} did not converge"
            _assert_trees_close((got_ys, got_final), (want_ys, want_final), f"{name}: {n} values{what}")
            if grads is not None:
                _assert_trees_close(grads, want_grads, f"{name}: {n} gradients{what}")
    if masked:
        assert not np.allclose(dropped["sequential"][1][0], ys, atol=1e-3), "the masks must change the outputs"


# Packed segments: row 0 restarts at steps 2 and 3 (a segment of one step), row 1 at step 1, row 2 at step 4, past
# its (empty) length, where a reset changes nothing.
RESETS = np.zeros((B, T), bool)
RESETS[0, [2, 3]] = RESETS[1, 1] = RESETS[2, 4] = True


def _segments(cell, params, xs, s0, reverse):
    """The reference for ``resets=RESETS``: every segment scanned on its own by ``jrnn.sequential()`` without
    resets; the one read first (the first, or backwards the last) from ``s0``, the others from the cell's
    ``initial_state``; outputs put side by side, the final state the one read last."""
    rows, finals = [], []
    for b in range(B):
        n = int(LENGTHS[b])
        starts = [0] + [t for t in range(1, n) if RESETS[b, t]]
        bounds = [(lo, hi) for lo, hi in zip(starts, starts[1:] + [n]) if hi > lo]
        final = jax.tree_util.tree_map(lambda a, b=b: a[b:b + 1], s0)
        pieces = {}
        for i, (lo, hi) in enumerate(bounds[::-1] if reverse else bounds):
            initial = final if i == 0 else cell.initial_state((1,), jnp.float64)
            pieces[lo], final = jrnn.scan(cell, params, xs[b:b + 1, lo:hi], initial_state=initial, reverse=reverse,
                                          solver=jrnn.sequential())
        step = jax.eval_shape(lambda: jrnn.scan(cell, params, xs[:1, :1], solver=jrnn.sequential())[0])
        padding = jnp.zeros((1, T - n) + step.shape[2:], jnp.float64)
        rows.append(jnp.concatenate([pieces[lo] for lo in sorted(pieces)] + [padding], axis=1))
        finals.append(final)
    return jnp.concatenate(rows), jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *finals)


# The Newton solvers' resets are one code path for every cell (the flattened state's restart, ``_Flat.f``): they are
# checked on one cell of each state structure, a tuple (LSTM), complex (LRU), a window (Hawk) and log space (minLSTM).
NEWTON_WITH_RESETS = ("lstm", "lru", "hawk_block", "min_lstm")


@pytest.mark.parametrize("name", registry.NAMES)
def test_every_solver_takes_packed_segments_equal_to_scanning_each_segment_alone(name):
    cell, params, xs, s0 = _problem(name)
    solvers = _solvers(cell)
    if name not in NEWTON_WITH_RESETS:
        solvers = {n: solver for n, solver in solvers.items() if n not in ("deer", "quasi_deer", "elk")}
    lengths = ref.device(LENGTHS, np.int32)
    resets = jnp.asarray(RESETS)

    @jax.jit
    def run(params, xs, s0):
        values = {reverse: jrnn.scan(cell, params, xs, lengths=lengths, initial_state=s0, reverse=reverse,
                                     resets=resets, solver=jrnn.sequential()) for reverse in (False, True)}
        grads = {n: _grads(n, _loss(cell, solver, resets=resets))(params, xs, s0, lengths)
                 for n, solver in solvers.items()}
        return values, grads

    values, grads = run(params, xs, s0)
    for reverse in (False, True):
        _assert_trees_close(values[reverse], _segments(cell, params, xs, s0, reverse),
                            f"{name}: resets (reverse={reverse}) against each segment alone")
    want_grads, (want_ys, want_final, _) = grads["sequential"]
    _assert_trees_close((want_ys, want_final), values[True], f"{name}: the loss's scan")
    for n, (got, (ys, final, converged)) in grads.items():
        assert bool(converged) or n == "elk", f"{name}: {n} did not converge with resets"
        _assert_trees_close((ys, final), (want_ys, want_final), f"{name}: {n} values with resets")
        if got is not None:
            _assert_trees_close(got, want_grads, f"{name}: {n} gradients with resets")


def _grads(solver_name, loss):
    """``(params, xs, s0, lengths) -> (gradients, aux)`` with respect to ``params``, ``xs`` and ``s0``; ELK's
    gradients are None: its adjoint is quasi-DEER's (the reverse loop of vector-Jacobian products at the solution),
    compared on every cell, and only its forward iteration is its own."""
    if solver_name == "elk":
        return lambda *args: (None, loss(*args)[1])
    return jax.grad(loss, argnums=(0, 1, 2), has_aux=True)


NOT_MASKABLE = [n for n in registry.NAMES if n not in registry.with_capability("state_maskable")]


@pytest.mark.parametrize("name", NOT_MASKABLE)
def test_a_cell_that_is_not_state_maskable_refuses_state_dropout(name):
    cell = registry.make(name, H)
    params = jax.eval_shape(lambda k: cell.init(k, F), jax.random.key(0))
    xs = jnp.zeros((B, T) + registry.step_input_shape(cell, F))
    with pytest.raises(TypeError, match=r"state dropout needs a cell whose step takes state_mask="):
        jrnn.scan(cell, params, xs, dropout=jrnn.recurrent_dropout(state=0.5), key=jax.random.key(0))


# ----------------------------------------------------------------------------------------------------------------
# Finite differences of the definition.
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", registry.NAMES)
def test_sequential_scan_gradients_equal_finite_differences(name):
    cell, params, xs, s0 = _problem(name, seed=3)
    lengths = ref.device(LENGTHS, np.int32)
    loss = _loss(cell, jrnn.sequential())
    check_grads(jax.jit(lambda p, x, s: loss(p, x, s, lengths)[0]), (params, xs, s0), order=1, modes=["rev"],
                eps=1e-6, atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# What is built on a cell computes its scan.
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", registry.NAMES)
def test_layers_networks_and_flax_modules_compute_the_cells_scan(name):
    cell, params, xs, s0 = _problem(name, seed=5)
    rnn, stack = jrnn.RNN(cell), jrnn.deep([cell])

    @jax.jit
    def run(params, xs, s0, lengths):
        kwargs = dict(lengths=lengths, reverse=True)
        want = jrnn.scan(cell, params, xs, initial_state=s0, **kwargs)
        got = {
            "scan(RNN)": jrnn.scan(rnn, params, xs, initial_state=s0, **kwargs),
            "scan(RNN, sequential)": jrnn.scan(rnn, params, xs, initial_state=s0, solver=jrnn.sequential(),
                                               **kwargs),
            "scan(deep)": _unwrap(jrnn.scan(stack, (params,), xs, initial_state=(s0,), **kwargs)),
            "scan(deep, sequential)": _unwrap(jrnn.scan(stack, (params,), xs, initial_state=(s0,),
                                                        solver=jrnn.sequential(), **kwargs)),
            "nnx.RNN": jrnn.flax.nnx.RNN(cell, F, reverse=True, params=params).run(xs, lengths=lengths,
                                                                                  initial_state=s0),
            "linen.RNN": jrnn.flax.linen.RNN(cell, reverse=True).apply(
                {"params": {"rnn": params}}, xs, lengths=lengths, initial_state=s0, method="run"),
        }
        forward = jrnn.RNN(cell).apply(params, xs, initial_state=s0)
        stepped = jax.lax.scan(lambda s, x: jrnn.RNN(cell).step(params, s, x), s0, jnp.swapaxes(xs, 0, 1))
        return want, got, forward, (jnp.swapaxes(stepped[1], 0, 1), stepped[0])

    want, got, forward, stepped = run(params, xs, s0, ref.device(LENGTHS, np.int32))
    for what, result in got.items():
        _assert_trees_close(result, want, f"{name}: {what}")
    _assert_trees_close(stepped, forward, f"{name}: RNN.step scanned")


def _unwrap(result):
    ys, (state,) = result
    return ys, state


def test_nnx_module_of_a_feature_map_cell_initialises_and_runs():
    """``jrnn.flax.nnx.RNN`` takes ``input_size``, the channels, for a :class:`jrnn.InputShaped` cell too."""
    for name in registry.with_capability("input_shaped"):
        cell = registry.make(name, H)
        module = jrnn.flax.nnx.RNN(cell, F, rngs=nnx.Rngs(params=0))
        xs = jnp.ones((B, T) + registry.step_input_shape(cell, F))
        assert module(xs).shape == (B, T) + registry.step_input_shape(cell, cell.output_size)


VOCAB, PROMPT, STEPS = 5, 3, 3
VECTOR_INPUT = [n if n not in registry.with_capability("input_shaped") else pytest.param(
    n, marks=pytest.mark.skip(reason="a language model embeds tokens as vectors; this cell reads feature maps"))
    for n in registry.NAMES]


@pytest.mark.parametrize("name", VECTOR_INPUT)
def test_language_model_step_after_a_prefill_is_apply_and_greedy_generation_is_its_argmax(name):
    cell = registry.make(name, H, jnp.float64)
    model = jrnn.language_model(cell, VOCAB, F, dtype=jnp.float64)
    params = jax.tree_util.tree_map(lambda a: 2.0 * a, model.init(jax.random.key(0)))
    params = params._replace(readout=params.readout._replace(
        b=ref.device(np.random.default_rng(1).standard_normal(VOCAB), np.float64)))
    prompt = ref.device(np.random.default_rng(2).integers(0, VOCAB, (B, PROMPT)), np.int32)
    tokens, _ = jrnn.generate(model, params, prompt, steps=STEPS, key=jax.random.key(3), temperature=0.0)
    sequence = jnp.concatenate([prompt, tokens], axis=1)

    @jax.jit
    def run(params, sequence):
        whole, final = model.apply(params, sequence)
        _, state = model.apply(params, sequence[:, :PROMPT])
        state, stepped = jax.lax.scan(lambda s, token: model.step(params, s, token), state,
                                      sequence[:, PROMPT:].T)
        return whole, final, jnp.swapaxes(stepped, 0, 1), state

    whole, final, stepped, state = run(params, sequence)
    _assert_trees_close((stepped, state), (whole[:, PROMPT:], final), f"{name}: step after prefill")
    np.testing.assert_array_equal(np.argmax(whole[:, PROMPT - 1:-1], axis=-1), tokens)
