"""The cells after LSTM and GRU keep the cell contract: each against its NumPy equations (tests/reference_modern.py)
one step at a time, through ``jrnn.scan`` (lengths, both directions, an initial state), composed
(``jrnn.bidirectional`` inside ``jrnn.deep``, ``jrnn.checkpointed_scan``, ``jrnn.truncated_bptt``), in the Flax
modules and in the diagnostics. Each comparison is traced into one ``jit`` per cell: compilation is the cost.
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
import reference_modern as refm
import registry
from flax import nnx

import jrnn
import jrnn.flax

I = 3  # input features (channels for the ConvLSTM)
B, T = 3, 5
LENGTHS = np.array([5, 2, 0], np.int32)  # a full, a short and an empty sequence
TOL = dict(rtol=2e-5, atol=2e-5)  # float32 against float64


class Case(NamedTuple):
    name: str
    cell: object
    ref_step: object  # params -> ((state, x) -> (state, y)) in NumPy
    x_shape: tuple  # one step's input without the batch axis


def _ref(step, **kw):
    return lambda p: (lambda s, x: step(p, s, x, **kw))


CONV = jrnn.conv_lstm(2, spatial_shape=(3, 4), kernel_size=(3, 2), peephole=True)
CASES = [  # the registry's cells (tests/registry.py), and configurations it leaves out
    Case("layer_norm_lstm", registry.make("layer_norm_lstm", 4), _ref(refm.layer_norm_lstm_step), (I,)),
    Case("layer_norm_gru", registry.make("layer_norm_gru", 4), _ref(refm.layer_norm_gru_step), (I,)),
    Case("indrnn", registry.make("indrnn", 4), _ref(refm.indrnn_step), (I,)),
    Case("exprnn", registry.make("exprnn", 4), _ref(refm.exprnn_step), (I,)),
    Case("min_gru", jrnn.min_gru(4), _ref(refm.min_gru_step), (I,)),  # the compositions below: associative
    Case("min_lstm", registry.make("min_lstm", 4), _ref(refm.min_lstm_step), (I,)),  # the loop on a CPU
    Case("mgu_reset_before", jrnn.mgu(4, reset_after=False), _ref(refm.mgu_step, reset_after=False), (I,)),
    Case("conv_lstm_peephole", CONV, _ref(refm.conv_lstm_step), (3, 4, I)),
]
IDS = [c.name for c in CASES]


def _inputs(case, seed, batch=B, time=T):
    return ref.device(np.random.default_rng(seed).standard_normal((batch, time) + case.x_shape))


def _states(state, batch):
    return ref.state_rows(state, batch)


def _assert_close(got, want, **tol):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, **(tol or TOL))


def _assert_state(got, want_rows):
    ref.assert_states_close(got, ref.stack_states(want_rows), **TOL)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_step_and_scan_equal_the_numpy_loop_with_lengths_both_ways_and_an_initial_state(case):
    params = ref.random_params(case.cell, seed=1, input_size=I)
    s0 = ref.random_state(case.cell, B, seed=2)
    xs, lengths = _inputs(case, 3), ref.device(LENGTHS, np.int32)

    @jax.jit
    def run(params, s0, xs, lengths):
        step = case.cell.step(params, s0, xs[:, 0])
        forward = jrnn.scan(case.cell, params, xs, lengths=lengths, initial_state=s0)
        backward = jrnn.scan(case.cell, params, xs, lengths=lengths, initial_state=s0, reverse=True)
        return step, forward, backward

    (state1, y1), (ys, final), (ys_rev, final_rev) = run(params, s0, xs, lengths)
    step = case.ref_step(params)
    rows = [step(s, ref.f64(xs[b, 0])) for b, s in enumerate(_states(s0, B))]
    _assert_close(y1, np.stack([r[1] for r in rows]))
    _assert_state(state1, [r[0] for r in rows])
    for reverse, got_ys, got_final in ((False, ys, final), (True, ys_rev, final_rev)):
        want_ys, want_finals = refm.run_batch(step, _states(s0, B), xs, LENGTHS, reverse=reverse)
        _assert_close(got_ys, want_ys)
        _assert_state(got_final, want_finals)
        assert np.all(np.asarray(got_ys)[2] == 0.0), "an empty sequence outputs exact zeros"


# The compositions are generic over cells; what they must get right per cell is what the contract lets vary: a
# prepare step (expRNN), a parallel path (minGRU) and a feature-map input with a named-tuple state (ConvLSTM).
SPECIAL = [c for c in CASES if c.name in ("exprnn", "min_gru", "conv_lstm_peephole")]
SPECIAL_IDS = [c.name for c in SPECIAL]
SOLVER = {"min_gru": jrnn.associative()}  # a linear cell's own solver, through every composition


@pytest.mark.parametrize("case", SPECIAL, ids=SPECIAL_IDS)
def test_bidirectional_in_deep_checkpointed_and_truncated_scans_equal_numpy(case):
    """Layer 1 a bidirectional pair (sum merge), layer 2 the same cell on its outputs; and the memory-bounded and
    truncated scans of one layer, whose forward pass is the plain loop's."""
    H = case.cell.output_size
    solver = SOLVER.get(case.name)
    net = jrnn.deep([jrnn.bidirectional(case.cell, merge="sum", solver=solver), case.cell], solver=solver)
    params = ref.random_params(net, seed=4, input_size=I)
    xs, lengths = _inputs(case, 5), ref.device(LENGTHS, np.int32)
    single = params[1]  # a cell's parameters for inputs of H features: feed it layer-2-shaped inputs
    xs_h = _inputs(case._replace(x_shape=case.x_shape[:-1] + (H,)), 6)

    @jax.jit
    def run(params, xs, xs_h, lengths):
        deep = net.apply(params, xs, lengths=lengths)
        remat = jrnn.checkpointed_scan(case.cell, single, xs_h, lengths=lengths, segment_length=2, reverse=True,
                                       solver=solver)
        truncated = jrnn.truncated_bptt(jrnn.RNN(case.cell, solver=solver), k=2).apply(single, xs_h, lengths=lengths)
        return deep, remat, truncated

    (ys, (bi_final, final)), remat, truncated = run(params, xs, xs_h, lengths)
    zeros = _states(case.cell.initial_state((B,)), B)
    fwd, bwd, second = (case.ref_step(p) for p in (params[0].forward, params[0].backward, single))
    layer1, fwd_finals = refm.run_bidirectional_sum(fwd, bwd, xs, LENGTHS, zeros)
    want_ys, want_finals = refm.run_batch(second, zeros, layer1, LENGTHS)
    _assert_close(ys, want_ys)
    _assert_state(final, want_finals)
    _assert_state(bi_final.forward, fwd_finals)
    for got, reverse in ((remat, True), (truncated, False)):
        want_ys, want_finals = refm.run_batch(second, zeros, xs_h, LENGTHS, reverse=reverse)
        _assert_close(got[0], want_ys)
        _assert_state(got[1], want_finals)


@pytest.mark.parametrize("case", [*SPECIAL, CASES[2]], ids=[*SPECIAL_IDS, CASES[2].name])
def test_gradient_report_norms_match_the_analytic_last_step_and_finite_differences(case):
    """``||dL/ds_t||`` for L = the sum of the last output: at t = T it is ``sqrt(#outputs)`` (dL/dy = 1, y = h);
    one step earlier it is checked by central differences of the NumPy loop in float64."""
    params = ref.random_params(case.cell, seed=7, input_size=I, scale=0.4)
    xs = _inputs(case, 8, batch=2, time=4)
    report = jrnn.gradient_report(case.cell, params, xs, jacobians=case.cell is not CONV)
    norms = report["recurrences"]["rnn"]["grad_norms"]
    assert report["verdict"] in ("healthy", "vanishing", "exploding")
    outputs = int(np.prod(case.x_shape[:-1])) * case.cell.output_size
    np.testing.assert_allclose(norms[:, -1], np.sqrt(outputs), rtol=1e-6)

    step = case.ref_step(params)
    zero = _states(case.cell.initial_state((2,)), 2)
    for b in range(2):
        state = zero[b]
        for t in range(2):
            state, _ = step(state, ref.f64(xs[b, t]))
        grad = _central_differences(lambda s, b=b: step(step(s, ref.f64(xs[b, 2]))[0], ref.f64(xs[b, 3]))[1].sum(),
                                    state)
        np.testing.assert_allclose(norms[b, 1], np.linalg.norm(grad), rtol=1e-4)


def _central_differences(loss, state, eps=1e-6):
    """``dloss/dstate`` (every leaf of a NumPy state, flattened and concatenated) by central differences."""
    leaves, treedef = jax.tree_util.tree_flatten(state)
    flat = np.concatenate([leaf.ravel() for leaf in leaves])
    splits = np.cumsum([leaf.size for leaf in leaves])[:-1]

    def at(v):
        parts = [part.reshape(leaf.shape) for part, leaf in zip(np.split(v, splits), leaves)]
        return loss(jax.tree_util.tree_unflatten(treedef, parts))

    return np.array([(at(flat + eps * e) - at(flat - eps * e)) / (2 * eps) for e in np.eye(flat.size)])


@pytest.mark.parametrize("name", ["min_gru", "conv_lstm_peephole"])
def test_flax_modules_run_the_new_cells_like_numpy(name):
    """NNX for a cell with a parallel path; Linen for the five-axis ConvLSTM input (and its shape check)."""
    case = next(c for c in CASES if c.name == name)
    xs, lengths = _inputs(case, 9), ref.device(LENGTHS, np.int32)
    if name == "conv_lstm_peephole":
        module = jrnn.flax.linen.RNN(case.cell, reverse=True)
        variables = module.init(jax.random.key(0), xs)
        params = variables["params"]["rnn"]
        ys = jax.jit(lambda v, xs, n: module.apply(v, xs, lengths=n))(variables, xs, lengths)
        reverse = True
    else:
        module = jrnn.flax.nnx.RNN(case.cell, I, solver=SOLVER[name], rngs=nnx.Rngs(params=0))
        params = module.params
        ys = nnx.jit(lambda m, xs, n: m(xs, lengths=n))(module, xs, lengths)
        reverse = False
    zeros = _states(case.cell.initial_state((B,)), B)
    want, _ = refm.run_batch(case.ref_step(params), zeros, xs, LENGTHS, reverse=reverse)
    _assert_close(ys, want)


def test_mgu_equals_flax_mgu_cell_with_converted_weights():
    H = 4
    flax_cell = nn.MGUCell(features=H)
    x = ref.device(np.random.default_rng(0).standard_normal((B, I)))
    h = ref.device(np.random.default_rng(1).standard_normal((B, H)))
    variables = flax_cell.init(jax.random.key(0), h, x)
    p = jax.tree_util.tree_map(np.asarray, variables["params"])
    # Make every bias non-zero, so that each one's place is tested.
    rng = np.random.default_rng(2)
    for name in ("if", "in", "hn"):
        p[name]["bias"] = rng.standard_normal(H).astype(np.float32)
    variables = {"params": p}
    params = jrnn.MGUParams(U=jnp.concatenate([p["if"]["kernel"].T, p["in"]["kernel"].T]),
                            W=jnp.concatenate([p["hf"]["kernel"].T, p["hn"]["kernel"].T]),
                            b_U=jnp.concatenate([p["if"]["bias"], p["in"]["bias"]]),
                            b_W=jnp.concatenate([jnp.zeros(H), p["hn"]["bias"]]))

    @jax.jit
    def both(variables, params, h, x):
        return flax_cell.apply(variables, h, x), jrnn.mgu(H).step(params, h, x)

    (flax_h, flax_y), (h_new, y) = both(variables, params, h, x)
    np.testing.assert_allclose(h_new, flax_h, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y, flax_y, rtol=1e-6, atol=1e-6)
    # and the NumPy equations of the reset-after form agree with both
    want = refm.mgu_step(params, ref.f64(h[0]), ref.f64(x[0]))[0]
    np.testing.assert_allclose(h_new[0], want, **TOL)


def test_a_cell_with_a_feature_map_input_checks_the_whole_input_shape():
    params = CONV.init(jax.random.key(0), I)
    with pytest.raises(ValueError, match=r"expected xs of shape \[batch, time, 3, 4, 3\], got shape \(2, 5, 4, 3, 3\)"):
        jrnn.scan(CONV, params, jnp.zeros((2, 5, 4, 3, 3)))
    with pytest.raises(ValueError, match=r"expected xs of shape \[batch, time, 3, 4, 3\], got shape \(2, 5, 3\)"):
        jrnn.scan(CONV, params, jnp.zeros((2, 5, 3)))
    ys, state = jrnn.scan(CONV, params, jnp.zeros((2, 0, 3, 4, 3)))
    assert ys.shape == (2, 0, 3, 4, 2) and state.h.shape == (2, 3, 4, 2)
