"""The JAX implementations: jrnn (fused and plain), Flax Linen ``nn.RNN`` and Equinox cells under ``lax.scan``.

Each builder returns ``(fwd, fwdbwd)``, two zero-argument callables running one compiled call:

- ``fwd``: the output sequence ``ys[B, T, H]`` of a batch-major input;
- ``fwdbwd``: the gradient of ``<ys, g>`` (a fixed random cotangent ``g``) with respect to every parameter and
  the input, as ``torch``'s ``ys.backward(g)`` computes with ``x.requires_grad``.

jrnn gets PyTorch's weights through ``jrnn.from_torch``; Flax and Equinox use their own initialisations (only
speed is compared here; equality with PyTorch is tested in ``tests/solvers/test_fused.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import jax
import jax.numpy as jnp

import jrnn
from benchmarks import ablation
from benchmarks.grid import Config, inputs
from benchmarks.peers_torch import make_module


def _compile(fn: Callable, params, x, g):
    """``(fwd, fwdbwd, memory)``: jitted calls with their arguments bound, and fwd+bwd's compiled peak bytes."""
    fwd = jax.jit(fn)

    def loss(p, xs, cot):
        return jnp.vdot(fn(p, xs), cot)

    fwdbwd = jax.jit(jax.grad(loss, argnums=(0, 1)))
    x, g = jnp.asarray(x), jnp.asarray(g)
    compiled = fwdbwd.lower(params, x, g).compile()
    info = dict(peak_bytes_fwdbwd=_peak_bytes(compiled), loop_carry_fwdbwd=_loop_carries(compiled))
    return (lambda: fwd(params, x)), (lambda: compiled(params, x, g)), info


def _peak_bytes(compiled) -> int | None:
    """XLA's buffer assignment: scratch (temp) plus output bytes, i.e. what one call allocates beyond its inputs."""
    try:
        m = compiled.memory_analysis()
        return int(m.temp_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes)
    except Exception:  # noqa: BLE001 - memory analysis is best effort on some backends
        return None


def _loop_carries(compiled) -> list[int]:
    """The number of arrays each compiled ``while`` loop carries (its tuple's elements, loop counter included),
    the quantity whose per-iteration cost jax#40150 measured on XLA:CPU."""
    counts = []
    for line in compiled.as_text().splitlines():
        match = re.search(r"= \((.*)\) while\(", line)
        if match:
            counts.append(len(re.findall(r"[a-z]+\d*\[[\d,]*\]", match.group(1))))
    return counts


def build(impl: str, cfg: Config, seed: int = 0):
    """``(fwd, fwdbwd, info)`` for one implementation (info: peak memory and loop carries of fwd+bwd), or raises
    ``NotImplementedError`` if it has no such cell (Equinox has no Elman cell)."""
    x, g = inputs(cfg, seed)
    if impl.startswith(("jrnn", "abl_")):
        fn_torch, params = jrnn.from_torch(make_module(cfg, seed))
        layer = fn_torch.network.layers[0]
        cell, p = layer.cell, params[0]
        if impl.startswith("abl_"):
            fn = ablation.variant(impl, cell)
        elif impl == "jrnn":  # the from_torch network: jrnn.deep -> jrnn.RNN -> jrnn.scan (fused path)
            fn, p = (lambda p, xs: fn_torch(p, xs)[0]), params
        elif impl == "jrnn_plain":
            fn = lambda p, xs: jrnn.scan(cell, p, xs, solver=jrnn.sequential())[0]  # noqa: E731
        elif impl in ("jrnn_all", "jrnn_all_mt"):  # every core: the batch split over the worker's CPU devices
            fn, p = jrnn.sharding.batch_parallel(lambda p, xs: fn_torch(p, xs)[0]), params
        elif impl == "jrnn_bf16":
            fn = lambda p, xs: jrnn.scan(cell, p, xs, solver=jrnn.fused(jnp.bfloat16))[0]  # noqa: E731
        else:
            raise ValueError(impl)
        return _compile(fn, p, x, g)
    if impl == "flax":
        return _compile(*_flax(cfg, x), x, g)
    if impl == "equinox":
        return _compile(*_equinox(cfg), x, g)
    raise ValueError(f"unknown implementation {impl!r}")


def _flax(cfg: Config, x):
    import flax.linen as nn

    cells = {"elman": nn.SimpleCell, "lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}
    rnn = nn.RNN(cells[cfg.cell](cfg.hidden))
    params = rnn.init(jax.random.key(0), jnp.asarray(x))
    return (lambda p, xs: rnn.apply(p, xs)), params


def _equinox(cfg: Config):
    import equinox as eqx

    if cfg.cell == "elman":
        raise NotImplementedError("Equinox has no Elman (vanilla RNN) cell")
    make = {"lstm": eqx.nn.LSTMCell, "gru": eqx.nn.GRUCell}[cfg.cell]
    cell = make(cfg.input_size, cfg.hidden, key=jax.random.key(0))
    params, static = eqx.partition(cell, eqx.is_array)
    is_lstm = cfg.cell == "lstm"

    def fn(p, xs):
        c = eqx.combine(p, static)
        step = jax.vmap(c)
        h0 = jnp.zeros((xs.shape[0], cfg.hidden), xs.dtype)
        state0 = (h0, h0) if is_lstm else h0

        def body(state, x_t):
            state = step(x_t, state)
            return state, (state[0] if is_lstm else state)

        _, ys = jax.lax.scan(body, state0, jnp.swapaxes(xs, 0, 1))
        return jnp.swapaxes(ys, 0, 1)

    return fn, params


def gemm(n: int = 2048):
    """A large ``n x n x n`` float32 GEMM, the machine's reference speed."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.matmul)
    return lambda: f(a, b)


def block(out):
    return jax.block_until_ready(out)
