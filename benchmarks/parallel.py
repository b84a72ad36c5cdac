"""``python -m benchmarks parallel [--quick] [--cells elman,gru] [--T 1000,10000,100000] [--H 1,8,32,64] [--B 1,16]
[--solvers sequential,deer,quasi,elk] [--modes fwd,fwdbwd] [--reps 5] [--max-mib 12000] [--max-seconds 20] [--out MD]
[--json JSON]``

Parallel in time against one step after another: :func:`jrnn.scan` with its default sequential (fused) path, with
``solver=jrnn.deer()`` (Newton's method, full ``[D, D]`` state Jacobians, each iteration one
``jax.lax.associative_scan``), with ``solver=jrnn.quasi_deer()`` (diagonal Jacobians) and with ``solver=jrnn.elk()``
(diagonal, each step damped by a parallel Kalman smoother), on the CPU in float32.

Grid: cells ``jrnn.elman(H)`` (tanh) and ``jrnn.gru(H)``, sequence length T, state size H (D = H for both cells),
batch B; the input size is H as well (1 when H = 1). Modes: ``fwd`` is ``jax.jit`` of the scan's outputs ``ys``;
``fwdbwd`` is ``jax.jit(jax.grad(vdot(ys, g)))`` with respect to the parameters and the inputs (DEER's gradient is
its implicit adjoint recurrence, by associative scan; quasi-DEER's and ELK's a reverse loop of vector-Jacobian
products).

Method: for each (cell, T, H, B, mode) every solver is compiled (``jit(...).lower(...).compile()``, timed: the
compile column) and run once to warm up; then ``reps`` rounds each time one call of every solver, in an order
rotated from round to round, so that all see the same machine load. Reported: the median milliseconds, the ratio
sequential / solver (above 1: the parallel solver is faster), the compiled peak memory (XLA's
``memory_analysis()``: temp + arguments + outputs - aliased, as ``benchmarks/remat_memory.py``), and, once per
(cell, T, H, B), the Newton iterations that :func:`jrnn.newton_scan` needed on the same inputs (forward) with
whether it converged, and the largest ``|ys - ys_sequential|``; and the iterations from the warm start
``init="step"`` (every state guessed as one step from the initial state, ``f(s_0, x_t)``) instead of zeros.

Memory guard: before anything is built, each solver's peak is estimated (``estimate_mib``: about 6 copies of the
``B T D D`` Jacobians plus 8 of the ``B T D`` states for DEER, 16 of the states for ELK, 8 of them for quasi-DEER
and the sequential scan, plus inputs, outputs and gradients); above ``--max-mib`` the solver is skipped and its row says
``"skipped": "memory: ~N MiB estimated"``. The estimate sits next to the measured peak in the JSON.

Time guard: before a parallel solver is timed, one Newton iteration is (``max_iters=1``); its seconds times the
iterations the same (cell, H, B) needed at the previous T of the grid (10 at the first) estimate one call, and
above ``--max-seconds`` the solver is skipped with ``"skipped": "time: ~N s estimated per call"``. On 2 CPU cores
the largest configurations would otherwise take many minutes per call.

Writes a Markdown section (``--out``, also printed) and the rows as JSON (``--json``). Only jrnn is timed, in this
one process; nothing here changes XLA's threading.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jrnn

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEADER = "## Parallel in time (DEER, quasi-DEER, ELK) against the sequential scan"
CELLS = {"elman": jrnn.elman, "gru": jrnn.gru}
SOLVERS = {"sequential": None, "deer": jrnn.deer(), "quasi": jrnn.quasi_deer(), "elk": jrnn.elk()}
MODES = ("fwd", "fwdbwd")
FLOAT_BYTES = 4  # float32
MIB = 2 ** 20


def input_size(H: int) -> int:
    """The input size of the grid: H (which is 1 when H = 1)."""
    return H


def estimate_mib(solver: str, mode: str, B: int, T: int, H: int) -> float:
    """A rough peak (MiB) of one compiled call, from the shapes alone: the inputs ``[B, T, I]``, outputs ``[B, T, H]``
    (and the cotangent and the input gradient for ``fwdbwd``), plus ~6 copies of the ``[B, T, D, D]`` Jacobians
    (the associative scan's levels) and ~8 of the ``[B, T, D]`` states for DEER, ~16 of the states for ELK (its
    smoother's 2 x 2 Riccati matrices and three scans), ~8 of the states otherwise."""
    D, I = H, input_size(H)
    io = B * T * (I + H) + (B * T * (H + I) if mode == "fwdbwd" else 0)
    work = (16 if solver == "elk" else 8) * B * T * D + (6 * B * T * D * D if solver == "deer" else 0)
    return (io + work) * FLOAT_BYTES / MIB


def skip_reason(estimated_mib: float) -> str:
    """What a skipped row says: ``"memory: ~N MiB estimated"``."""
    return f"memory: ~{estimated_mib:.0f} MiB estimated" if estimated_mib >= 10 else \
        f"memory: ~{estimated_mib:.2g} MiB estimated"


def peak_mib(compiled) -> float | None:
    """XLA's buffer assignment of a compiled call: scratch + arguments + outputs - aliased, in MiB."""
    try:
        m = compiled.memory_analysis()
        total = m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
        return total / MIB
    except Exception:  # noqa: BLE001 - memory analysis is best effort on some backends
        return None


def problem(cell_name: str, T: int, H: int, B: int):
    """``(cell, params, xs [B, T, I], g [B, T, H])``: fixed seeds, float32."""
    cell = CELLS[cell_name](H)
    params = cell.init(jax.random.key(0), input_size(H))
    xs = jax.random.normal(jax.random.key(1), (B, T, input_size(H)), jnp.float32)
    g = jax.random.normal(jax.random.key(2), (B, T, cell.output_size), jnp.float32)
    return cell, params, xs, g


def build(cell, solver, mode: str, params, xs, g):
    """``(call, compile_s, peak_mib)``: the compiled function of ``mode`` with its arguments bound."""
    def ys_of(p, x):
        return jrnn.scan(cell, p, x, solver=solver)[0]

    if mode == "fwd":
        fn, args = ys_of, (params, xs)
    else:
        fn, args = jax.grad(lambda p, x, g: jnp.vdot(ys_of(p, x), g), argnums=(0, 1)), (params, xs, g)
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    return (lambda: jax.block_until_ready(compiled(*args))), compile_s, peak_mib(compiled)


def accuracy(cell, params, xs, solvers: list[str], fits) -> dict:
    """Per parallel solver that fits in memory: Newton iterations, final residual and convergence of
    :func:`jrnn.newton_scan` (forward) from its default zero guess, and ``max |ys - ys_sequential|``; then the
    iterations and convergence from the warm start ``init="step"`` (``f(s_0, x_t)`` at every step)."""
    if not fits("sequential"):
        return {}
    reference = np.asarray(jax.jit(lambda p, x: jrnn.scan(cell, p, x)[0])(params, xs))
    out = {}
    for name in solvers:
        if SOLVERS[name] is None or not fits(name):
            continue
        ys, _, info = jax.jit(lambda p, x, s=SOLVERS[name]: jrnn.newton_scan(cell, p, x, solver=s))(params, xs)
        warm = dataclasses.replace(SOLVERS[name], init="step")
        _, _, step = jax.jit(lambda p, x, s=warm: jrnn.newton_scan(cell, p, x, solver=s))(params, xs)
        out[name] = dict(iterations=int(info.iterations), converged=bool(info.converged),
                         residual=float(info.residual), max_abs_err=float(np.max(np.abs(np.asarray(ys) - reference))),
                         iterations_step=int(step.iterations), converged_step=bool(step.converged))
    return out


def iteration_seconds(cell, params, xs, solver) -> float:
    """The seconds of one Newton iteration (``max_iters=1``), compiled and warmed up first."""
    one = dataclasses.replace(solver, max_iters=1, fallback="none")
    fn = jax.jit(lambda p, x: jrnn.newton_scan(cell, p, x, solver=one)[0])
    jax.block_until_ready(fn(params, xs))
    start = time.perf_counter()
    jax.block_until_ready(fn(params, xs))
    return time.perf_counter() - start


def run_config(cell_name: str, T: int, H: int, B: int, solvers: list[str], modes: list[str], reps: int,
               max_mib: float, log=lambda s: None, max_seconds: float = float("inf"),
               iterations: dict | None = None) -> list[dict]:
    """Every row of one (cell, T, H, B): one per (mode, solver). ``iterations`` maps ``(cell, H, B, solver)`` to the
    Newton iterations last measured (at a smaller T), which the time guard uses; it is updated here."""
    iterations = {} if iterations is None else iterations
    fits = {(s, m): estimate_mib(s, m, B, T, H) <= max_mib for s in solvers for m in modes}
    anything = any(fits.values())
    cell, params, xs, g = problem(cell_name, T, H, B) if anything else (None,) * 4
    slow = {}
    for s in solvers:
        if anything and SOLVERS[s] is not None and fits[(s, "fwd")]:
            guess = iterations.get((cell_name, H, B, s), 10)
            seconds = iteration_seconds(cell, params, xs, SOLVERS[s]) * guess
            if seconds > max_seconds:
                slow[s] = f"time: ~{seconds:.2g} s estimated per call (~{guess} iterations)"
    for key in list(fits):
        fits[key] = fits[key] and key[0] not in slow
    acc = accuracy(cell, params, xs, solvers, lambda s: fits.get((s, "fwd"), False)) if anything else {}
    for s, found in acc.items():
        iterations[(cell_name, H, B, s)] = max(found["iterations"], 1)
    rows = []
    for mode in modes:
        base = dict(cell=cell_name, mode=mode, T=T, H=H, B=B, input_size=input_size(H))
        these = {}
        runs = {}
        for s in solvers:
            est = estimate_mib(s, mode, B, T, H)
            row = dict(base, solver=s, estimated_mib=round(est, 3), skipped=None)
            if s in slow:
                row["skipped"] = slow[s]
            elif not fits[(s, mode)]:
                row["skipped"] = skip_reason(est)
            else:
                call, compile_s, peak = build(cell, SOLVERS[s], mode, params, xs, g)
                call()  # warm up
                runs[s] = call
                row.update(compile_s=compile_s, peak_mib=peak)
            row.update(acc.get(s, {}))
            these[s] = row
        samples = {s: [] for s in runs}
        order = list(runs)
        for r in range(reps):
            shift = r % len(order) if order else 0
            for s in order[shift:] + order[:shift]:
                start = time.perf_counter()
                runs[s]()
                samples[s].append(1e3 * (time.perf_counter() - start))
        for s, times in samples.items():
            these[s].update(median_ms=statistics.median(times), min_ms=min(times), samples_ms=times)
        sequential = these.get("sequential", {}).get("median_ms")
        for s, row in these.items():
            if sequential is not None and row.get("median_ms") and s != "sequential":
                row["speedup"] = sequential / row["median_ms"]
        rows += these.values()
        log(f"{cell_name} {mode} T={T} H={H} B={B}: " + ", ".join(
            f"{s} {r['median_ms']:.2f} ms" if r.get("median_ms") else f"{s} skipped" for s, r in these.items()))
    return rows


# --- Markdown -----------------------------------------------------------------------------------------------------

def _ms(v) -> str:
    return f"{v:.3g}" if v >= 100 else f"{v:.2f}"


def _cell(row: dict | None, field: str) -> str:
    if row is None:
        return ""
    if row.get("skipped"):
        return "skipped" if field != "median_ms" else f"skipped ({row['skipped']})"
    v = row.get(field)
    if v is None:
        return "-"
    if field == "median_ms":
        return _ms(v)
    if field == "speedup":
        return f"{v:.2f}"
    if field in ("iterations", "iterations_step"):
        converged = row.get("converged" if field == "iterations" else "converged_step")
        return f"{v}" + ("" if converged else " (not converged)")
    if field == "max_abs_err":
        return f"{v:.1e}"
    if field == "peak_mib":
        return f"{v:.3g}"
    if field == "compile_s":
        return f"{v:.2f}"
    return str(v)


def crossovers(rows: list[dict], cell: str, mode: str) -> list[str]:
    """One line per (B, H): the smallest T at which each parallel solver beat the sequential scan."""
    lines = []
    keys = sorted({(r["B"], r["H"]) for r in rows if r["cell"] == cell and r["mode"] == mode})
    solvers = list(dict.fromkeys(r["solver"] for r in rows if r["solver"] != "sequential"))
    for B, H in keys:
        parts = []
        for s in solvers:
            wins = sorted(r["T"] for r in rows if (r["cell"], r["mode"], r["B"], r["H"], r["solver"]) ==
                          (cell, mode, B, H, s) and r.get("speedup", 0) > 1)
            parts.append(f"{s} from T={wins[0]}" if wins else f"{s} none in the grid")
        if parts:
            lines.append(f"- B={B} H={H}: " + "; ".join(parts))
    return lines


def markdown(doc: dict) -> str:
    rows, settings = doc["rows"], doc["settings"]
    solvers = settings["solvers"]
    parallel = [s for s in solvers if s != "sequential"]
    m = doc["machine"]
    out = [HEADER, "", f"    {doc['command']}", "",
           f"Machine: {m['processor'] or 'unknown processor'}, {m['cpus']} CPUs, jax {m['jax']}, {doc['date']}. "
           f"float32; input size = H; median of {settings['reps']} interleaved rounds (ms); ratios are sequential / "
           f"solver (above 1: the parallel solver is faster); iterations and error are those of `jrnn.newton_scan` "
           f"forward against the sequential `ys` (from the zero guess; \"step init\" from the warm start "
           f"`init='step'`, f(s_0, x_t) at every step); peak memory from XLA's compiled memory analysis; skipped above "
           f"~{settings['max_mib']:g} MiB estimated or ~{settings.get('max_seconds', float('inf')):g} s per call "
           f"estimated (see the module docstring).", ""]
    fields = ([("median_ms", f"{s} ms", s) for s in solvers]
              + ([("speedup", f"seq/{s}", s) for s in parallel] if "sequential" in solvers else [])
              + [("iterations", f"{s} iters", s) for s in parallel]
              + [("iterations_step", f"{s} iters, step init", s) for s in parallel]
              + [("max_abs_err", f"{s} err", s) for s in parallel]
              + [("peak_mib", f"{s} MiB", s) for s in solvers]
              + [("compile_s", f"{s} compile s", s) for s in solvers])
    for cell in settings["cells"]:
        for mode in settings["modes"]:
            these = [r for r in rows if r["cell"] == cell and r["mode"] == mode]
            if not these:
                continue
            out += [f"### {cell}, {mode}", "", "| T | H | B | " + " | ".join(h for _, h, _ in fields) + " |",
                    "|" + "---:|" * (3 + len(fields))]
            for T, H, B in sorted({(r["T"], r["H"], r["B"]) for r in these}, key=lambda k: (k[2], k[1], k[0])):
                by = {r["solver"]: r for r in these if (r["T"], r["H"], r["B"]) == (T, H, B)}
                out.append(f"| {T} | {H} | {B} | " + " | ".join(_cell(by.get(s), f) for f, _, s in fields) + " |")
            out += ["", "Crossover (smallest T at which the parallel solver is faster than sequential):"]
            out += crossovers(rows, cell, mode) + [""]
    return "\n".join(out)


# --- Command line -------------------------------------------------------------------------------------------------

def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks parallel", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="elman, T=1000, H in {1, 8}, B=1, 2 rounds")
    parser.add_argument("--cells", default=None, help="comma-separated subset of " + ",".join(CELLS))
    parser.add_argument("--T", default=None, help="comma-separated sequence lengths (default 1000,10000,100000)")
    parser.add_argument("--H", default=None, help="comma-separated state sizes (default 1,8,32,64)")
    parser.add_argument("--B", default=None, help="comma-separated batch sizes (default 1,16)")
    parser.add_argument("--solvers", default=",".join(SOLVERS), help="comma-separated subset of " + ",".join(SOLVERS))
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of " + ",".join(MODES))
    parser.add_argument("--reps", type=int, default=None, help="timed rounds per configuration (default 5, quick 2)")
    parser.add_argument("--max-mib", type=float, default=12000.0, help="skip a solver estimated above this (MiB)")
    parser.add_argument("--max-seconds", type=float, default=20.0,
                        help="skip a parallel solver whose call is estimated above this (seconds)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "parallel.md")
    parser.add_argument("--json", type=pathlib.Path, default=ROOT / "benchmarks" / "parallel.json")
    args = parser.parse_args(argv)
    args.cells = args.cells.split(",") if args.cells else (["elman"] if args.quick else list(CELLS))
    args.T = _ints(args.T) if args.T else ([1000] if args.quick else [1000, 10000, 100000])
    args.H = _ints(args.H) if args.H else ([1, 8] if args.quick else [1, 8, 32, 64])
    args.B = _ints(args.B) if args.B else ([1] if args.quick else [1, 16])
    args.solvers = args.solvers.split(",")
    args.modes = args.modes.split(",")
    args.reps = args.reps or (2 if args.quick else 5)
    for name, given, allowed in (("cell", args.cells, CELLS), ("solver", args.solvers, SOLVERS),
                                 ("mode", args.modes, MODES)):
        unknown = [v for v in given if v not in allowed]
        if unknown:
            parser.error(f"unknown {name} {unknown}; expected some of {list(allowed)}")
    return args


def machine() -> dict:
    processor = platform.processor()
    if not processor:  # empty on many Linux systems
        try:
            processor = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                              if line.startswith("model name")), "")
        except OSError:
            processor = ""
    return dict(processor=processor, cpus=os.cpu_count(), jax=jax.__version__, platform=platform.platform(),
                device=str(jax.devices()[0].platform))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    started = time.time()
    rows, iterations = [], {}

    def write() -> str:  # after every configuration, so that an interrupted run keeps what it measured
        doc = dict(command=" ".join(["python -m benchmarks parallel", *argv]),
                   date=datetime.date.today().isoformat(), seconds=round(time.time() - started, 1),
                   machine=machine(),
                   settings=dict(cells=args.cells, T=args.T, H=args.H, B=args.B, solvers=args.solvers,
                                 modes=args.modes, reps=args.reps, max_mib=args.max_mib,
                                 max_seconds=args.max_seconds),
                   rows=rows)
        text = markdown(doc)
        for path, content in ((args.json, json.dumps(doc, indent=1) + "\n"), (args.out, text + "\n")):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        return text

    text = write()
    for cell in args.cells:
        for B in args.B:
            for H in args.H:
                for T in args.T:
                    rows += run_config(cell, T, H, B, args.solvers, args.modes, args.reps, args.max_mib,
                                       log=lambda s: print(s, file=sys.stderr, flush=True),
                                       max_seconds=args.max_seconds, iterations=iterations)
                    text = write()
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
