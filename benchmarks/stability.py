"""``python -m benchmarks stability [--T 1000] [--max-iters 200] [--dampings 1e-8,1e-4,1e-2] [--out MD] [--json JSON]``

Where DEER overflows, does ELK converge? Each solver of :func:`jrnn.newton_scan` (``fallback="none"``) runs on tanh
RNNs whose linearisation around the zero guess is expansive, in float32, and each outcome is one of: the iterations
it took to converge (to the sequential answer within 1e-4), ``overflow`` (the iterate stopped being finite: DEER's
linear solve multiplied Jacobians above 1 together) or ``no`` (finite, not converged within ``--max-iters``).

Grid (B = 4 sequences of length T, fixed seeds):

- ``scalar``: ``s_t = tanh(w s_{t-1} + σ x_t + c)``, one unit, ``x_t ~ N(0, 1)``, for w ∈ {1.5, 2, 3},
  c ∈ {0, 0.5, 1, 1.5}, σ ∈ {0.3, 1}. With c > 0 and a small σ the recurrence has one attracting fixed point
  (sequentially it is tame) while ``f' = w sech²(σ x + c)`` around the zero guess is above 1.
- ``elman4``: ``jrnn.elman(4)`` with ``W = w I + 0.2 W_0`` (``W_0`` its orthogonal initialisation), ``b ~ 0.5 N(0, 1)``,
  inputs ``0.5 N(0, 1)`` of size 2, for w ∈ {1.5, 2.5} and three seeds.

Solvers: ``jrnn.deer()``, ``jrnn.quasi_deer()`` and ``jrnn.elk(λ)`` for each ``--dampings`` value. Each solver is
compiled once (the parameters are arguments), so the whole grid takes a few minutes on 2 cores. Nothing is timed.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jrnn

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEADER = "## Stability: ELK where DEER overflows"
B = 4


def scalar_cases() -> list[dict]:
    return [dict(family="scalar", w=w, c=c, sigma=sigma)
            for w, c, sigma in itertools.product((1.5, 2.0, 3.0), (0.0, 0.5, 1.0, 1.5), (0.3, 1.0))]


def elman4_cases() -> list[dict]:
    return [dict(family="elman4", w=w, seed=seed) for w, seed in itertools.product((1.5, 2.5), (0, 1, 2))]


def problem(case: dict, T: int):
    """``(cell, params, xs)`` of one case, float32."""
    if case["family"] == "scalar":
        cell = jrnn.elman(1)
        params = cell.init(jax.random.key(0), 1)
        params = params._replace(W=jnp.full((1, 1), case["w"]), U=jnp.full((1, 1), case["sigma"]),
                                 b_U=jnp.full((1,), case["c"]), b_W=jnp.zeros(1))
        return cell, params, jax.random.normal(jax.random.key(1), (B, T, 1))
    seed = case["seed"]
    cell = jrnn.elman(4)
    params = cell.init(jax.random.key(seed), 2)
    params = params._replace(W=case["w"] * jnp.eye(4) + 0.2 * params.W,
                             b_U=0.5 * jax.random.normal(jax.random.key(seed + 7), (4,)))
    return cell, params, 0.5 * jax.random.normal(jax.random.key(seed + 1), (B, T, 2))


def solvers(dampings: list[float], max_iters: int) -> dict:
    out = {"deer": jrnn.deer(max_iters=max_iters, fallback="none"),
           "quasi": jrnn.quasi_deer(max_iters=max_iters, fallback="none")}
    for lam in dampings:
        out[f"elk {lam:g}"] = jrnn.elk(lam, max_iters=max_iters, fallback="none")
    return out


def outcome(info, err: float) -> str | int:
    if not np.isfinite(float(info.residual)):
        return "overflow"
    if bool(info.converged) and err < 1e-4:
        return int(info.iterations)
    return "no"


def run(T: int, max_iters: int, dampings: list[float], log=lambda s: None) -> list[dict]:
    named = solvers(dampings, max_iters)
    compiled = {}
    rows = []
    for case in scalar_cases() + elman4_cases():
        cell, params, xs = problem(case, T)
        want = np.asarray(jrnn.scan(cell, params, xs)[0])
        row = dict(case)
        for name, solver in named.items():
            key = (case["family"], name)
            if key not in compiled:
                compiled[key] = jax.jit(lambda p, x, s=solver, c=cell: jrnn.newton_scan(c, p, x, solver=s))
            ys, _, info = compiled[key](params, xs)
            row[name] = outcome(info, float(np.max(np.abs(np.asarray(ys) - want))))
        rows.append(row)
        log(" ".join(f"{k}={v}" for k, v in row.items()))
    return rows


def summary(rows: list[dict], names: list[str]) -> dict:
    """Per solver: converged cases overall, and converged among those where DEER overflowed."""
    hard = [r for r in rows if r["deer"] == "overflow"]
    out = {}
    for name in names:
        its = [r[name] for r in rows if isinstance(r[name], int)]
        out[name] = dict(converged=len(its), of=len(rows),
                         converged_where_deer_overflowed=sum(isinstance(r[name], int) for r in hard), of_hard=len(hard),
                         median_iterations=float(np.median(its)) if its else None)
    return out


def markdown(doc: dict) -> str:
    names = doc["solvers"]
    out = [HEADER, "", f"    {doc['command']}", "",
           f"{doc['date']}, jax {jax.__version__}, float32, T = {doc['T']}, B = {B}, at most {doc['max_iters']} "
           "iterations. A number is the iterations to converge to the sequential answer (within 1e-4); `overflow`: "
           "the iterate stopped being finite; `no`: finite, not converged.", "",
           "| solver | converged | converged where DEER overflowed | median iterations |", "|---|---:|---:|---:|"]
    for name, s in doc["summary"].items():
        med = "-" if s["median_iterations"] is None else f"{s['median_iterations']:g}"
        out.append(f"| {name} | {s['converged']} / {s['of']} | {s['converged_where_deer_overflowed']} / "
                   f"{s['of_hard']} | {med} |")
    out += ["", "| case | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for r in doc["rows"]:
        if r["family"] == "scalar":
            case = f"scalar w={r['w']:g} c={r['c']:g} σ={r['sigma']:g}"
        else:
            case = f"elman4 w={r['w']:g} seed={r['seed']}"
        out.append(f"| {case} | " + " | ".join(str(r[n]) for n in names) + " |")
    return "\n".join(out)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks stability", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--T", type=int, default=1000, help="sequence length (default 1000)")
    parser.add_argument("--max-iters", type=int, default=200, help="Newton iterations at most (default 200)")
    parser.add_argument("--dampings", default="1e-8,1e-4,1e-2", help="ELK's λ values (default 1e-8,1e-4,1e-2)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "stability.md")
    parser.add_argument("--json", type=pathlib.Path, default=ROOT / "benchmarks" / "stability.json")
    args = parser.parse_args(argv)
    if args.T < 1 or args.max_iters < 1:
        parser.error(f"expected --T and --max-iters >= 1, got {args.T} and {args.max_iters}")
    try:
        args.dampings = [float(v) for v in args.dampings.split(",")]
    except ValueError:
        parser.error(f"expected --dampings to be comma-separated numbers, got {args.dampings!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    started = time.time()
    rows = run(args.T, args.max_iters, args.dampings, log=lambda s: print(s, file=sys.stderr, flush=True))
    names = list(solvers(args.dampings, args.max_iters))
    doc = dict(command=" ".join(["python -m benchmarks stability", *argv]), date=datetime.date.today().isoformat(),
               seconds=round(time.time() - started, 1), T=args.T, max_iters=args.max_iters, solvers=names,
               summary=summary(rows, names), rows=rows)
    text = markdown(doc)
    for path, content in ((args.json, json.dumps(doc, indent=1) + "\n"), (args.out, text + "\n")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
