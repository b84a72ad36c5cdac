"""``python -m benchmarks.dropout_cost [--shape 32x200x128] [--cells lstm,gru,elman] [--reps 15]``

What :func:`jrnn.recurrent_dropout` costs: forward+backward of one layer (``jax.grad`` of ``sum(ys * g)`` with
respect to the parameters and the inputs), fused and plain paths, without dropout, with the state mask alone (the
only one inside the loop), and with every mask (input, state, output, weight) drawn from a fresh key per call.
Each round times every variant once, in an order rotated from round to round, so that all see the same machine
load; the medians are printed as a Markdown table. Nothing is written.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

import jrnn

CELLS = {"elman": jrnn.elman, "lstm": jrnn.lstm, "gru": jrnn.gru}
VARIANTS = {
    "none": None,
    "state 0.25": jrnn.recurrent_dropout(state=0.25),
    "all (0.25, 0.25, 0.25, 0.5)": jrnn.recurrent_dropout(input=0.25, state=0.25, output=0.25, weight=0.5),
}


def build(cell, dropout, fused, B, T, H):
    params = cell.init(jax.random.key(0), H)
    xs = jax.random.normal(jax.random.key(1), (B, T, H))
    g = jax.random.normal(jax.random.key(2), (B, T, cell.output_size))

    def loss(p, x, key):
        solver = jrnn.auto() if fused else jrnn.sequential()
        ys = jrnn.scan(cell, p, x, solver=solver, dropout=dropout, key=None if dropout is None else key)[0]
        return jnp.vdot(ys, g)

    fn = jax.jit(jax.grad(loss, argnums=(0, 1)))
    return lambda key: jax.block_until_ready(fn(params, xs, key))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dropout_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="32x200x128", help="BxTxH (input size = H)")
    parser.add_argument("--cells", default="lstm,gru,elman")
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args(argv)
    B, T, H = (int(v) for v in args.shape.split("x"))
    print(f"forward+backward, B={B} T={T} H={H}, median ms of {args.reps} rounds")
    print("| cell | path | " + " | ".join(VARIANTS) + " |")
    print("|---|---|" + "---|" * len(VARIANTS))
    for name in args.cells.split(","):
        for fused in (True, False):
            runs = {v: build(CELLS[name](H), d, fused, B, T, H) for v, d in VARIANTS.items()}
            keys = jax.random.split(jax.random.key(3), args.reps + 1)
            for run in runs.values():
                run(keys[0])  # compile and warm up
            times = {v: [] for v in runs}
            order = list(runs)
            for r in range(args.reps):
                for v in order[r % len(order):] + order[:r % len(order)]:
                    start = time.perf_counter()
                    runs[v](keys[r + 1])
                    times[v].append(1e3 * (time.perf_counter() - start))
            cells = " | ".join(f"{statistics.median(times[v]):.1f}" for v in runs)
            print(f"| {name} | {'fused' if fused else 'plain'} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
