"""jrnn.from_torch / jrnn.to_torch against PyTorch itself: outputs, final states and gradients.

The grid: each cell (Elman tanh, LSTM, GRU) × 1–3 layers × one or two directions × bias on/off × batch_first ×
with/without lengths × with/without an initial state, plus Elman relu and LSTM with proj_size at two layers,
one or two directions, with/without lengths and initial state. float32, atol 1e-4.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import jrnn

B, T, I, H, P = 3, 6, 4, 5, 3
ATOL = 1e-4


def make_module(kind, num_layers, bidirectional, bias, batch_first, seed=0):
    torch.manual_seed(seed)
    common = dict(num_layers=num_layers, bidirectional=bidirectional, bias=bias, batch_first=batch_first)
    if kind == "rnn_tanh":
        return torch.nn.RNN(I, H, nonlinearity="tanh", **common)
    if kind == "rnn_relu":
        return torch.nn.RNN(I, H, nonlinearity="relu", **common)
    if kind == "lstm":
        return torch.nn.LSTM(I, H, **common)
    if kind == "lstm_proj":
        return torch.nn.LSTM(I, H, proj_size=P, **common)
    if kind == "gru":
        return torch.nn.GRU(I, H, **common)
    raise AssertionError(kind)


def make_inputs(module, kind, with_lengths, with_hx, seed=1):
    rng = np.random.default_rng(seed)
    D = 2 if module.bidirectional else 1
    L = module.num_layers
    h_out = P if kind == "lstm_proj" else H
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    if not module.batch_first:
        x = np.swapaxes(x, 0, 1).copy()
    lengths = np.array([T, 2, 4], np.int64) if with_lengths else None
    hx = None
    if with_hx:
        h0 = rng.standard_normal((L * D, B, h_out)).astype(np.float32)
        hx = (h0, rng.standard_normal((L * D, B, H)).astype(np.float32)) if kind.startswith("lstm") else h0
    # Cotangents that weigh every output and final-state entry differently.
    gy = rng.standard_normal((B, T, D * h_out) if module.batch_first else (T, B, D * h_out)).astype(np.float32)
    gh = rng.standard_normal((L * D, B, h_out)).astype(np.float32)
    gc = rng.standard_normal((L * D, B, H)).astype(np.float32)
    return x, lengths, hx, (gy, gh, gc)


def torch_reference(module, x, lengths, hx, cotangents):
    """Outputs, final states and gradients of sum(y*gy) + sum(h_n*gh) (+ sum(c_n*gc)) from PyTorch."""
    gy, gh, gc = cotangents
    xt = torch.tensor(x, requires_grad=True)
    hxt = None
    if hx is not None:
        hxt = tuple(torch.tensor(a, requires_grad=True) for a in hx) if isinstance(hx, tuple) else \
            torch.tensor(hx, requires_grad=True)
    if lengths is None:
        y, hn = module(xt, hxt)
    else:
        packed = pack_padded_sequence(xt, torch.tensor(lengths), batch_first=module.batch_first,
                                      enforce_sorted=False)
        out, hn = module(packed, hxt)
        y, _ = pad_packed_sequence(out, batch_first=module.batch_first, total_length=T)
    is_lstm = isinstance(module, torch.nn.LSTM)
    loss = (y * torch.tensor(gy)).sum()
    if is_lstm:
        loss = loss + (hn[0] * torch.tensor(gh)).sum() + (hn[1] * torch.tensor(gc)).sum()
    else:
        loss = loss + (hn * torch.tensor(gh)).sum()
    module.zero_grad()
    loss.backward()
    grads = {name: p.grad.numpy().copy() for name, p in module.named_parameters()}
    hx_grad = None
    if hx is not None:
        hx_grad = tuple(a.grad.numpy() for a in hxt) if is_lstm else hxt.grad.numpy()
    final = tuple(a.detach().numpy() for a in hn) if is_lstm else hn.detach().numpy()
    return y.detach().numpy(), final, grads, xt.grad.numpy(), hx_grad


def jrnn_run(fn, params, x, lengths, hx, cotangents):
    gy, gh, gc = cotangents

    def loss(params, x, hx):
        y, hn = fn(params, x, hx, None if lengths is None else jnp.asarray(lengths))
        total = jnp.sum(y * gy)
        if fn.is_lstm:
            return total + jnp.sum(hn[0] * gh) + jnp.sum(hn[1] * gc), (y, hn)
        return total + jnp.sum(hn * gh), (y, hn)

    hx_j = None if hx is None else jax.tree_util.tree_map(jnp.asarray, hx)
    argnums = (0, 1) if hx is None else (0, 1, 2)
    grads, (y, hn) = jax.jit(jax.grad(loss, argnums=argnums, has_aux=True))(params, jnp.asarray(x), hx_j)
    return y, hn, grads


def assert_close(actual, expected, what):
    np.testing.assert_allclose(np.asarray(actual), expected, atol=ATOL, rtol=0, err_msg=what)


def check_against_torch(kind, num_layers, bidirectional, bias, batch_first, with_lengths, with_hx):
    module = make_module(kind, num_layers, bidirectional, bias, batch_first)
    x, lengths, hx, cot = make_inputs(module, kind, with_lengths, with_hx)
    t_y, t_final, t_grads, t_xgrad, t_hxgrad = torch_reference(module, x, lengths, hx, cot)

    fn, params = jrnn.from_torch(module)
    y, hn, grads = jrnn_run(fn, params, x, lengths, hx, cot)

    assert_close(y, t_y, "output y")
    for a, e, name in zip(jax.tree_util.tree_leaves(hn), jax.tree_util.tree_leaves(t_final), ("h_n", "c_n")):
        assert_close(a, e, name)
    named = jrnn.to_torch(grads[0])
    assert sorted(named) == sorted(t_grads), "gradient names differ from torch's parameter names"
    for name, g in t_grads.items():
        assert_close(named[name].numpy(), g, f"d loss / d {name}")
    assert_close(grads[1], t_xgrad, "d loss / d x")
    if hx is not None:
        for a, e in zip(jax.tree_util.tree_leaves(grads[2]), jax.tree_util.tree_leaves(t_hxgrad)):
            assert_close(a, e, "d loss / d hx")
    if lengths is not None:
        padded = np.arange(T)[None, :] >= lengths[:, None]  # [B, T]
        y_bt = np.asarray(y) if batch_first else np.swapaxes(np.asarray(y), 0, 1)
        assert np.all(y_bt[padded] == 0.0), "padded outputs must be exactly 0"


# Every combination at 1 and 2 layers (2 already passes one layer's outputs to the next); 3 layers once per cell and
# direction, with bias, lengths and an initial state, in both layouts.
GRID = list(itertools.product(["rnn_tanh", "lstm", "gru"], [1, 2], [False, True], [True, False],
                              [True, False], [False, True], [False, True]))
GRID += list(itertools.product(["rnn_tanh", "lstm", "gru"], [3], [False, True], [True], [True, False], [True],
                               [True]))
EXTRA = list(itertools.product(["rnn_relu", "lstm_proj"], [2], [False, True], [True], [True], [False, True],
                               [False, True]))


def _id(config):
    kind, layers, bi, bias, bf, lens, hx = config
    return (f"{kind}-L{layers}-{'bi' if bi else 'uni'}-{'bias' if bias else 'nobias'}-"
            f"{'bf' if bf else 'tf'}-{'lengths' if lens else 'full'}-{'hx' if hx else 'nohx'}")


@pytest.mark.parametrize("config", GRID + EXTRA, ids=[_id(c) for c in GRID + EXTRA])
def test_matches_torch_outputs_states_and_gradients(config):
    check_against_torch(*config)
