"""``python -m benchmarks eager [--quick] [--reps 5] [--out MD]``

What an eager call of jrnn's entry points costs, three ways, on the CPU in float32: ``uncompiled``, the function
traced and its ``jax.lax.scan`` compiled again at every call (jrnn before its entry points compiled themselves;
``jrnn._src.compiled.ENABLED = False`` switches that back on for the column); ``eager``, the same call as a user
writes it (one program per configuration, compiled on the first call); ``jit``, the call inside the user's own
``jax.jit``. Each cell of the table is the median of ``reps`` calls after one warm-up call (ms). One process, one
framework: nothing else runs beside it.
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp

import jrnn
from jrnn._src import compiled

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEADER = "## Eager calls: compiled once per configuration"


def cases(quick: bool) -> dict:
    """``name -> (call, jitted call)``: each a function of nothing, its arrays built here."""
    B, T, F, H = (2, 10, 3, 8) if quick else (32, 100, 16, 128)
    k = jax.random.key(0)
    xs, lengths = jax.random.normal(k, (B, T, F)), jnp.full((B,), T - T // 5)
    cell = jrnn.lstm(H)
    p_cell = cell.init(k, F)
    net = jrnn.deep([jrnn.bidirectional(jrnn.gru(H // 2)), jrnn.lstm(H // 2)], dropout=0.2)
    p_net = net.init(k, F)
    lm = jrnn.language_model(jrnn.deep([jrnn.lstm(H // 2), jrnn.lstm(H // 2)]), 100)
    p_lm = lm.init(k)
    tokens = jax.random.randint(k, (B, T), 0, 100)
    elman = jrnn.elman(F)
    p_elman = elman.init(k, F)
    scan = jax.jit(lambda p, x, n: jrnn.scan(cell, p, x, lengths=n))
    apply = jax.jit(lambda p, x, n: net.apply(p, x, lengths=n))
    lm_apply = jax.jit(lm.apply)
    newton = jax.jit(lambda p, x: jrnn.newton_scan(elman, p, x))
    table = {
        f"jrnn.scan(lstm({H})), lengths": (lambda: jrnn.scan(cell, p_cell, xs, lengths=lengths),
                                          lambda: scan(p_cell, xs, lengths)),
        "deep([bidirectional(gru), lstm]).apply": (lambda: net.apply(p_net, xs, lengths=lengths),
                                                   lambda: apply(p_net, xs, lengths)),
        "language_model(deep([lstm, lstm])).apply": (lambda: lm.apply(p_lm, tokens), lambda: lm_apply(p_lm, tokens)),
        "jrnn.newton_scan(elman), DEER": (lambda: jrnn.newton_scan(elman, p_elman, xs),
                                          lambda: newton(p_elman, xs)),
    }
    return table, f"{B}x{T}x{F}"


def median_ms(call, reps: int) -> float:
    jax.block_until_ready(call())
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks eager", description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, 2 calls each (a smoke test)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "eager.md"))
    args = parser.parse_args(argv)
    reps = 2 if args.quick else args.reps
    table, shape = cases(args.quick)
    started = time.perf_counter()
    rows = []
    for name, (call, jitted) in table.items():
        compiled.ENABLED = False
        try:
            before = median_ms(call, reps)
        finally:
            compiled.ENABLED = True
        rows.append((name, before, median_ms(call, reps), median_ms(jitted, reps)))
        print(f"{name}: uncompiled {before:.1f} ms, eager {rows[-1][2]:.1f} ms, jit {rows[-1][3]:.1f} ms", flush=True)
    lines = [HEADER, "", "    python -m benchmarks eager" + (" --quick" if args.quick else ""), "",
             f"Machine: {platform.processor() or platform.machine()}, jax {jax.__version__}, "
             f"{datetime.date.today()}, {time.perf_counter() - started:.0f} s in all. float32; batch x time x "
             f"features {shape}; median of {reps} calls after a warm-up call (ms). `uncompiled`: traced and "
             f"compiled at every call (jrnn before its entry points compiled themselves); `eager`: the call as "
             f"written; `jit`: inside the caller's `jax.jit`.", "",
             "| call | uncompiled ms | eager ms | jit ms | uncompiled / eager |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {n} | {b:.1f} | {e:.1f} | {j:.1f} | {b / e:.0f}× |" for n, b, e, j in rows]
    pathlib.Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
