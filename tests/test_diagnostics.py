"""Gradient-flow diagnostics against independent computations: jax.jacrev through Python loops, the Elman
Jacobian ``diag(1 - s_t^2) W`` in NumPy, and the regimes of Pascanu et al. (2013)."""

import functools

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn

B, T, I = 2, 6, 3
LENGTHS = np.array([6, 4])
TANH_HALF = jrnn.elman(8, W_init=jrnn.init.orthogonal(0.5))  # shared, so that compiled diagnostics are reused
XS_50 = jax.random.normal(jax.random.key(1), (4, 50, 2))


def _flat(state):
    return jnp.concatenate([leaf.reshape(-1) for leaf in jax.tree_util.tree_leaves(state)])


def _output(state):
    return state.h if isinstance(state, jrnn.LSTMState) else state


@functools.partial(jax.jit, static_argnums=0)
def _jacrev_reference(cell, params, xs, R):
    """``||dL/ds_t||`` for ``L = sum_{b,t<len} <R[b,t], y[b,t]>``, one sequence at a time: the Jacobian of the
    outputs ``y_1..y_n`` of a Python loop with respect to additive perturbations ``d_t`` of its states, from
    ``jax.jacrev`` at ``d = 0``; then ``dL/ds_t = (dy/dd_t)^T R``."""
    out = []
    for b in range(B):
        n = int(LENGTHS[b])
        size = _flat(cell.initial_state(())).size

        def outputs(d, b=b, n=n):  # d[t] is added to the whole (flattened) state after step t
            s, ys = cell.initial_state(()), []
            unflatten = jax.flatten_util.ravel_pytree(s)[1]
            for t in range(n):
                s, _ = cell.step(params, s, xs[b, t])
                s = unflatten(_flat(s) + d[t])
                ys.append(_output(s))
            return jnp.concatenate(ys)

        J = jax.jacrev(outputs)(jnp.zeros((n, size)))  # [n * O, n, N]
        g = jnp.tensordot(R[b, :n].reshape(-1), J, axes=1)  # [n, N]
        out.append(jnp.concatenate([jnp.linalg.norm(g, axis=-1), jnp.zeros(T - n)]))
    return jnp.stack(out)


@pytest.mark.parametrize("name", ["elman", "lstm"])
def test_diagnostics_step_grad_norms_equal_jacrev(name):
    cell = jrnn.elman(4) if name == "elman" else jrnn.lstm(4, proj_size=2)
    params = cell.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (B, T, I))
    R = jax.random.normal(jax.random.key(2), (B, T, cell.output_size))
    got = jrnn.step_grad_norms(cell, params, xs, lengths=jnp.asarray(LENGTHS), loss_fn=lambda ys: jnp.sum(ys * R))
    np.testing.assert_allclose(got, _jacrev_reference(cell, params, xs, R), rtol=1e-5, atol=1e-7)


def _at(tree, t):
    return jax.tree_util.tree_map(lambda leaf: leaf[t], tree)


def _perturbed_loop(net_kind, cells, params, xs, R, deltas):
    """A two-recurrence network written as Python loops, each state perturbed by ``deltas[k][t]`` after step t."""
    c0, c1 = cells
    if net_kind == "deep":  # layer 2 reads layer 1's outputs
        s0, s1, ys = c0.initial_state((B,)), c1.initial_state((B,)), []
        for t in range(T):
            s0 = jax.tree_util.tree_map(jnp.add, c0.step(params[0], s0, xs[:, t])[0], _at(deltas[0], t))
            s1 = jax.tree_util.tree_map(jnp.add, c1.step(params[1], s1, _output(s0))[0], _at(deltas[1], t))
            ys.append(_output(s1))
        return jnp.sum(jnp.stack(ys, 1) * R)
    fw, bw = c0.initial_state((B,)), c1.initial_state((B,))  # bidirectional, concat, no padding
    fws, bws = [None] * T, [None] * T
    for t in range(T):
        fw = jax.tree_util.tree_map(jnp.add, c0.step(params.forward, fw, xs[:, t])[0], _at(deltas[0], t))
        fws[t] = _output(fw)
    for t in reversed(range(T)):
        bw = jax.tree_util.tree_map(jnp.add, c1.step(params.backward, bw, xs[:, t])[0], _at(deltas[1], t))
        bws[t] = _output(bw)
    ys = jnp.stack([jnp.concatenate([f, b], -1) for f, b in zip(fws, bws)], 1)
    return jnp.sum(ys * R)


@pytest.mark.parametrize("net_kind", ["deep", "bidirectional"])
def test_diagnostics_step_grad_norms_of_stacks_equal_a_perturbed_python_loop(net_kind):
    if net_kind == "deep":
        cells = (jrnn.lstm(3), jrnn.elman(2))
        net = jrnn.deep(list(cells))
    else:
        cells = (jrnn.elman(3), jrnn.gru(3))
        net = jrnn.bidirectional(*cells)
    params = net.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (B, T, I))
    R = jax.random.normal(jax.random.key(2), (B, T, net.output_size))
    zeros = tuple(jax.tree_util.tree_map(lambda s: jnp.zeros((T,) + s.shape), c.initial_state((B,))) for c in cells)
    grads = jax.jit(jax.grad(lambda d: _perturbed_loop(net_kind, cells, params, xs, R, d)))(zeros)
    expected = [np.sqrt(sum(np.sum(np.square(leaf), axis=-1) for leaf in jax.tree_util.tree_leaves(g))).T
                for g in grads]
    got = jax.tree_util.tree_leaves(jrnn.step_grad_norms(net, params, xs, loss_fn=lambda ys: jnp.sum(ys * R)))
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_diagnostics_elman_jacobians_equal_the_analytic_diag_f_prime_W():
    cell = jrnn.elman(4)
    params = cell.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (B, T, I))
    got = jrnn.state_jacobians(cell, params, xs, lengths=jnp.asarray(LENGTHS))
    U, W, b = (np.asarray(a, np.float64) for a in (params.U, params.W, params.b_U + params.b_W))
    for seq in range(B):
        s, Js = np.zeros(4), []
        for t in range(LENGTHS[seq]):
            s = np.tanh(U @ np.asarray(xs[seq, t], np.float64) + W @ s + b)
            Js.append(np.diag(1 - s ** 2) @ W)  # ds_t/ds_{t-1}
            np.testing.assert_allclose(got.step_singular_values[seq, t], np.linalg.svd(Js[-1], compute_uv=False),
                                       rtol=1e-4, atol=1e-6)
        n = LENGTHS[seq]
        for t in range(n):  # ||ds_n/ds_t|| = ||J_n ... J_{t+1}||
            P = np.eye(4)
            for J in Js[t + 1:n]:
                P = J @ P
            np.testing.assert_allclose(got.product_norms[seq, t], np.linalg.norm(P, 2), rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(got.product_norms[seq, n:], 1.0)  # padding holds the state: identity


def test_diagnostics_tanh_elman_with_norm_half_vanishes():
    cell = TANH_HALF
    params = cell.init(jax.random.key(0), 2)
    report = jrnn.gradient_report(cell, params, XS_50, jacobians=False)
    entry = report["recurrences"]["rnn"]
    norms = entry["grad_norms"]
    assert np.all(norms[:, 0] / norms[:, -1] < 1e-3)  # ||dL/ds_1|| / ||dL/ds_T||, T = 50
    assert np.all(norms[:, 0] > 0)  # measured, not underflowed to 0
    assert report["verdict"] == "vanishing" and entry["verdict"] == "vanishing"
    assert entry["elman"]["sigma_max"] == pytest.approx(0.5, rel=1e-5)
    assert entry["elman"]["bound"] == 1.0 and entry["elman"]["vanishing_guaranteed"]
    assert "sufficient" in report["reason"]


def test_gradient_report_prints_shapes_not_arrays_and_indexes_as_a_dict():
    params = TANH_HALF.init(jax.random.key(0), 2)
    report = jrnn.gradient_report(TANH_HALF, params, XS_50)
    assert isinstance(report, dict) and isinstance(report["recurrences"]["rnn"], dict)
    text = repr(report)
    assert text.startswith("Report(verdict='vanishing', reason='rnn (ElmanCell): vanishing")
    assert "'grad_norms': f32[4,50]" in text and "'step_singular_values': f32[4,50,8]" in text
    assert "array(" not in text and len(text) < 1500  # the full arrays would be 4 * 50 * (1 + 1 + 8) numbers
    entry = repr(report["recurrences"]["rnn"])
    assert entry.startswith("Report(cell='ElmanCell', reverse=False, grad_norms=f32[4,50], ratios=f32[4], ratio=")
    assert report["recurrences"]["rnn"]["grad_norms"].shape == (4, 50)


def test_diagnostics_relu_elman_with_norm_three_explodes():
    cell = jrnn.elman(8, jax.nn.relu, W_init=jrnn.init.orthogonal(3.0))
    params = cell.init(jax.random.key(0), 2)
    report = jrnn.gradient_report(cell, params, XS_50, jacobians=False)
    entry = report["recurrences"]["rnn"]
    assert report["verdict"] == "exploding"
    assert entry["ratio"] > 1e3
    assert entry["elman"]["gamma"] == 1.0 and entry["elman"]["exploding_possible"]
    assert "does not saturate" in entry["elman"]["note"]


def test_diagnostics_lstm_with_forget_bias_one_decays_far_slower_than_tanh_rnn():
    ratios = {}
    for name, cell in [("tanh", TANH_HALF),
                       ("tanh_orthogonal", jrnn.elman(8)), ("lstm", jrnn.lstm(8, forget_bias=1.0))]:
        params = cell.init(jax.random.key(0), 2)
        ratios[name] = jrnn.gradient_report(cell, params, XS_50, jacobians=False)["recurrences"]["rnn"]["ratio"]
    assert ratios["lstm"] > 1e6 * ratios["tanh"]
    assert ratios["lstm"] > 1e3 * ratios["tanh_orthogonal"]


def test_diagnostics_elman_bound_knows_gamma_for_each_activation():
    W = jrnn.init.orthogonal(2.0)(jax.random.key(0), (4, 4))
    for activation, gamma in [(jnp.tanh, 1.0), (jax.nn.sigmoid, 0.25), (jax.nn.relu, 1.0)]:
        cell = jrnn.elman(4, activation)
        bound = jrnn.elman_bound(cell, cell.init(jax.random.key(1), 2)._replace(W=W))
        assert bound["gamma"] == gamma and not bound["gamma_estimated"]
        assert bound["bound"] == 1 / gamma
        assert bound["vanishing_guaranteed"] == (2.0 < 1 / gamma)  # sigmoid: 2 < 4 guarantees vanishing
    cell = jrnn.elman(4, lambda z: 3.0 * jnp.tanh(z))
    bound = jrnn.elman_bound(cell, cell.init(jax.random.key(1), 2))
    assert bound["gamma_estimated"] and bound["gamma"] == pytest.approx(3.0, rel=1e-3)
    with pytest.raises(TypeError, match="jrnn.elman"):
        jrnn.elman_bound(jrnn.gru(4), None)


def test_diagnostics_report_covers_every_recurrence_of_a_stack():
    net = jrnn.deep([jrnn.bidirectional(jrnn.elman(3)), jrnn.gru(2)])
    params = net.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (B, T, I))
    report = jrnn.gradient_report(net, params, xs, lengths=jnp.asarray(LENGTHS))
    assert list(report["recurrences"]) == ["layers[0].forward", "layers[0].backward", "layers[1]"]
    assert report["verdict"] in ("vanishing", "exploding", "healthy")
    for entry in report["recurrences"].values():
        assert entry["grad_norms"].shape == (B, T) and entry["jacobian_norms"].shape == (B, T)
        assert np.all(entry["grad_norms"][1, LENGTHS[1]:] == 0)  # padded steps get no gradient
    assert "elman" in report["recurrences"]["layers[0].forward"]
    assert report["recurrences"]["layers[1]"]["step_singular_values"].shape == (B, T, 2)


def test_diagnostics_backward_half_under_a_last_step_loss_falls_back_to_jacobians_and_plots():
    net = jrnn.bidirectional(jrnn.elman(3))
    params = net.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (B, T, I))
    report = jrnn.gradient_report(net, params, xs)
    backward = report["recurrences"]["backward"]
    assert backward["signal"] == "jacobian"  # the loss on y_T never reaches A'_1, the backward's last state
    np.testing.assert_allclose(backward["ratios"], backward["jacobian_norms"][:, -1])  # ||dA'_1/dA'_T||
    assert report["recurrences"]["forward"]["signal"] == "loss"

    import matplotlib

    matplotlib.use("Agg")
    ax = jrnn.plot_gradient_flow(report)
    assert len(ax.get_lines()) == 2 and report["verdict"] in ax.get_title()
    line = np.median(report["recurrences"]["forward"]["grad_norms"], axis=0)
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), np.where(line > 0, line, np.nan))
    with pytest.raises(TypeError, match="gradient_report"):
        jrnn.plot_gradient_flow({"verdict": "healthy"})


def test_diagnostics_reject_unsupported_networks_and_bad_input():
    cell = jrnn.gru(3)
    params = cell.init(jax.random.key(0), I)
    with pytest.raises(TypeError, match="cell, RNN, Bidirectional or Deep"):
        jrnn.step_grad_norms(jrnn.readout(3), params, jnp.zeros((B, T, I)))
    with pytest.raises(ValueError, match=r"\[batch, time, features\]"):
        jrnn.gradient_report(cell, params, jnp.zeros((T, I)))
    with pytest.raises(ValueError, match="vanishing_below"):
        jrnn.gradient_report(cell, params, jnp.zeros((B, T, I)), vanishing_below=2.0)
