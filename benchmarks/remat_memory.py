"""Peak memory of BPTT through jrnn.scan vs jrnn.checkpointed_scan, from XLA's compiled memory analysis.

    python benchmarks/remat_memory.py [--time 10000] [--batch 16] [--hidden 128] [--run]

For each cell it compiles ``jax.jit(jax.grad(loss))`` with ``jrnn.scan`` (its default fused solver, and
``solver=jrnn.sequential()``) and with the checkpointed scan (default segment ``ceil(sqrt(T))`` and a few other lengths)
and prints ``temp_size_in_bytes`` (XLA's scratch buffers: the stored residuals live there) and the total with
arguments and outputs. Nothing is executed unless ``--run``, which also checks that the gradients agree.
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np

import jrnn


def analyse(fn, *args):
    compiled = jax.jit(fn).lower(*args).compile()
    m = compiled.memory_analysis()
    total = m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
    return compiled, m.temp_size_in_bytes, total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--time", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--run", action="store_true", help="also run both and compare the gradients")
    a = parser.parse_args()
    T, B, H, F = a.time, a.batch, a.hidden, a.features
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; B={B} T={T} H={H} F={F}; float32")
    print(f"{'cell':6} {'loss on':>12} {'scan':>22} {'temp MiB':>10} {'total MiB':>10}")
    xs = jax.random.normal(jax.random.key(1), (B, T, F))
    losses = {"all outputs": lambda ys, state: jnp.sum(ys ** 2),
              "final state": lambda ys, state: sum(jnp.sum(s ** 2) for s in jax.tree_util.tree_leaves(state))}
    for name, cell in [("elman", jrnn.elman(H)), ("lstm", jrnn.lstm(H)), ("gru", jrnn.gru(H))]:
        params = cell.init(jax.random.key(0), F)
        for loss_name, score in losses.items():
            variants = [("fused", None), ("plain", False)] + [(f"checkpointed S={s}", s)
                                                              for s in (math.ceil(math.sqrt(T)), 10, 1000)]
            grads = {}
            for label, segment in variants:
                def loss(p, xs, segment=segment, score=score, cell=cell):
                    if segment is None or segment is False:
                        solver = jrnn.auto() if segment is None else jrnn.sequential()
                        return score(*jrnn.scan(cell, p, xs, solver=solver))
                    return score(*jrnn.checkpointed_scan(cell, p, xs, segment_length=segment))
                compiled, temp, total = analyse(jax.grad(loss), params, xs)
                print(f"{name:6} {loss_name:>12} {label:>22} {temp / 2**20:10.1f} {total / 2**20:10.1f}")
                if a.run:
                    grads[label] = compiled(params, xs)
            if a.run:
                ref = jax.tree_util.tree_leaves(grads["plain"])
                for label, g in grads.items():
                    err = max(float(np.max(np.abs(np.asarray(u) - np.asarray(v))) / np.max(np.abs(np.asarray(u))))
                              for u, v in zip(ref, jax.tree_util.tree_leaves(g)))
                    print(f"{'':42} {label:>22}: max relative gradient difference vs plain {err:.1e}")


if __name__ == "__main__":
    main()
