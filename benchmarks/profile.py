"""Where the time of one compiled call goes, from XLA:CPU's own trace: ``python -m benchmarks.profile``.

    python -m benchmarks.profile lstm 32 200 128 [--impl jrnn|jrnn_plain|flax|equinox] [--mode fwdbwd]

Runs the call a few times under ``jax.profiler.trace``, reads the trace's events (one per executed XLA thunk:
a fusion, a dot, a copy, a ``while`` loop) and prints the time per category, per call:

- ``GEMM (once)``: matmuls executed once per call (the input projection, the weight and input gradients);
- ``matmul (per step)``: matmuls executed once per time step;
- ``elementwise (per step)``: the gate and state fusions of each step;
- ``buffer writes (per step)``: dynamic-update-slice fusions storing a step's outputs and residuals;
- ``loop bookkeeping``: loop counters, carry copies and the like (thunks costing about 1 us each);
- ``other (once)``: layout copies, zero fills, reductions outside the loops.

Also printed: the busiest thunks, and how many threads executed each category's thunks with how much of their
time overlapping another thunk of the same call (parallel work: a GEMM split over both cores shows as two threads
and overlap; a loop whose thunks run one after another on one core shows no overlap). Tracing adds overhead per
thunk, so the totals exceed untraced timings; the proportions are what matters.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import tempfile

import jax

from benchmarks import peers_jax
from benchmarks.grid import Config

CATEGORIES = ("GEMM (once)", "matmul (per step)", "elementwise (per step)", "buffer writes (per step)",
              "loop bookkeeping", "other (once)")


def _category(name: str, count_per_call: float) -> str | None:
    per_step = count_per_call > 2
    is_matmul = name.startswith(("ynn_fusion", "dot", "xnn_fusion", "onednn")) or "dot" in name.split(".")[0]
    if name.startswith(("while", "ThunkExecutor", "$", "Pjit", "CommonPjRt", "SlinkyThreadPool", "end:",
                        "ParseArguments")) or " " in name:
        return None
    if is_matmul:
        return "matmul (per step)" if per_step else "GEMM (once)"
    if not per_step:
        return "other (once)"
    if "dynamic-update-slice" in name:
        return "buffer writes (per step)"
    if name.startswith(("copy", "wrapped_add", "add_select", "wrapped_subtract", "subtract_select", "wrapped_compare")):
        return "loop bookkeeping"
    return "elementwise (per step)"


def profile(impl: str, cfg: Config, mode: str, calls: int = 5, top: int = 12) -> dict:
    fwd, fwdbwd, _ = peers_jax.build(impl, cfg)
    fn = fwd if mode == "fwd" else fwdbwd
    for _ in range(2):
        jax.block_until_ready(fn())
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            for _ in range(calls):
                jax.block_until_ready(fn())
        files = glob.glob(os.path.join(d, "**", "*.trace.json.gz"), recursive=True)
        events = json.load(gzip.open(files[0]))["traceEvents"]
    per_name = collections.defaultdict(lambda: [0, 0.0])
    spans = collections.defaultdict(list)  # name -> [(start, end, thread)]
    for e in events:
        if e.get("ph") == "X":
            per_name[e["name"]][0] += 1
            per_name[e["name"]][1] += e.get("dur", 0.0)
            spans[e["name"]].append((e["ts"], e["ts"] + e.get("dur", 0.0), (e.get("pid"), e.get("tid"))))
    totals = collections.Counter()
    busiest = []
    by_category = collections.defaultdict(list)
    for name, (count, dur) in per_name.items():
        cat = _category(name, count / calls)
        if cat is None:
            continue
        totals[cat] += dur / calls / 1e3
        busiest.append((dur / calls / 1e3, count // calls, name, cat))
        by_category[cat] += spans[name]
    busiest.sort(reverse=True)
    thunks = sorted(s for cat in by_category.values() for s in cat)
    parallel = {c: dict(threads=len({t for _, _, t in by_category[c]}),
                        overlap=_overlap_fraction(by_category[c], thunks)) for c in CATEGORIES if by_category[c]}
    return dict(totals={c: totals[c] for c in CATEGORIES}, busiest=busiest[:top], parallel=parallel)


def _overlap_fraction(mine: list, every: list) -> float:
    """The fraction of ``mine``'s thunk time during which some other thunk (of any category) also ran."""
    import bisect

    starts = [s for s, _, _ in every]
    longest = max(e - s for s, e, _ in every)
    total = overlapped = 0.0
    for s, e, t in mine:
        total += e - s
        covered = []
        # every thunk that starts before this one ends and ends after it starts, other than itself
        for s2, e2, t2 in every[bisect.bisect_left(starts, s - longest):bisect.bisect_left(starts, e)]:
            if (s2, e2, t2) != (s, e, t) and e2 > s and s2 < e:
                covered.append((max(s, s2), min(e, e2)))
        covered.sort()
        end = s
        for a, b in covered:
            if b > end:
                overlapped += b - max(a, end)
                end = b
    return overlapped / total if total else 0.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cell", choices=("elman", "lstm", "gru"))
    parser.add_argument("B", type=int)
    parser.add_argument("T", type=int)
    parser.add_argument("H", type=int)
    parser.add_argument("--impl", default="jrnn")
    parser.add_argument("--mode", default="fwdbwd", choices=("fwd", "fwdbwd"))
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args(argv)
    cfg = Config(args.cell, args.B, args.T, args.H)
    out = profile(args.impl, cfg, args.mode, args.calls)
    total = sum(out["totals"].values())
    print(f"{args.impl} {cfg.name} {args.mode}: {total:.1f} ms of traced thunks per call")
    for cat, ms in out["totals"].items():
        print(f"  {cat:26s} {ms:8.2f} ms  {100 * ms / total:5.1f} %")
    print("  busiest thunks (ms per call, executions per call):")
    for ms, count, name, cat in out["busiest"]:
        print(f"    {ms:8.2f} ms  {count:6d}x  {name}  [{cat}]")
    print("  parallelism (threads that ran the category's thunks; share of its time overlapping another thunk):")
    for cat, par in out["parallel"].items():
        print(f"    {cat:26s} {par['threads']} thread(s), {100 * par['overlap']:5.1f} % overlapped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
