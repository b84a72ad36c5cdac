"""``python -m benchmarks [--quick] [--cells lstm,gru] [--shapes 32x200x128,...] [--reps N] [--out DIR]``

Times jrnn against PyTorch, Flax and Equinox on the CPU, forward and forward+backward, over the grid of
``benchmarks/grid.py``, and writes ``BENCHMARKS.md`` and ``benchmarks/results.json`` (``--md`` / ``--json``).

``python -m benchmarks parallel [options]`` runs ``benchmarks/parallel.py`` instead: jrnn's parallel-in-time
solvers (DEER, quasi-DEER, ELK) against its sequential scan (``python -m benchmarks parallel --help``);
``python -m benchmarks stability`` runs ``benchmarks/stability.py``: where DEER overflows, whether ELK converges;
``python -m benchmarks linear`` runs ``benchmarks/linear.py``: the diagonal linear-recurrence cells (Mamba, Hawk,
LRU, S5, minGRU) as a step loop, with the sequential and the associative solver, and against transformers' modules;
``python -m benchmarks eager`` runs ``benchmarks/eager.py``: eager calls of the entry points, compiled or not.

Method: one worker process per framework (``benchmarks/worker.py``). For each configuration every implementation
is compiled and warmed up, then ``reps`` rounds run; a round times one call of every (implementation, mode) pair
and one 2048^3 GEMM per framework, in an order rotated from round to round, so that all of them see the same
machine load. Reported: medians, the ratio of each peer's median to jrnn's (above 1: jrnn is faster), achieved
GFLOP/s and its fraction of the same round's GEMM speed, and the peak memory of forward+backward. On a few shapes
the fused path is also run one technique at a time (``benchmarks/ablation.py``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

from benchmarks import ablation, grid, report

ROOT = pathlib.Path(__file__).resolve().parent.parent
JAX_IMPLS = ("jrnn", "jrnn_plain", "flax", "equinox", "jrnn_bf16")
TORCH_IMPLS = ("torch",)
TORCH1_IMPLS = ("torch_1t",)
ALL_CORES_IMPLS = {"jaxall": ("jrnn_all",), "jaxall_mt": ("jrnn_all_mt",)}  # worker -> impls
MODES = ("fwd", "fwdbwd")
ABLATION_SHAPES = ((32, 200, 128), (1, 1000, 128))  # the ablation variants run on these shapes (and --quick's first)


class Worker:
    def __init__(self, framework: str):
        self.framework = framework
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.worker", framework], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def ask(self, **request) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.framework} worker died (see its stderr above)")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def close(self):
        try:
            self.ask(op="quit")
        except (RuntimeError, BrokenPipeError, ValueError):
            pass
        self.proc.wait(timeout=60)


def run_config(cfg: grid.Config, workers: dict, impls: dict, reps: int, pause: float, log) -> dict:
    built, skipped, info = {}, {}, {}
    for fw, worker in workers.items():
        answer = worker.ask(op="setup", config=dict(cell=cfg.cell, batch=cfg.batch, time=cfg.time,
                                                    hidden=cfg.hidden), impls=list(impls[fw]))
        built[fw] = answer["built"]
        skipped.update(answer["skipped"])
        info.update(answer["info"])
    items = [(fw, "gemm", None) for fw in workers] + [
        (fw, impl, mode) for fw in workers for impl in built[fw] for mode in MODES]
    samples: dict = {f"{impl}/{mode}" if mode else f"gemm/{fw}": [] for fw, impl, mode in items}
    load = [os.getloadavg()[0]]
    for r in range(reps):
        shift = r % len(items)
        for fw, impl, mode in items[shift:] + items[:shift]:
            if pause:
                time.sleep(pause)
            if mode is None:
                samples[f"gemm/{fw}"].append(workers[fw].ask(op="gemm")["ms"])
            else:
                samples[f"{impl}/{mode}"].append(workers[fw].ask(op="time", impl=impl, mode=mode)["ms"])
        log(".")
    load.append(os.getloadavg()[0])
    gemm_gflops = {fw: 2 * 2048 ** 3 / statistics.median(samples[f"gemm/{fw}"]) / 1e6 for fw in workers}
    result = dict(config=cfg.as_dict(), name=cfg.name, loadavg_1min=load, skipped=skipped,
                  gemm_gflops=gemm_gflops, impls={})
    for fw in workers:
        for impl in built[fw]:
            entry = dict(framework=fw, **info.get(impl, {}))
            for mode in MODES:
                s = samples[f"{impl}/{mode}"]
                med = statistics.median(s)
                gflops = cfg.flops(mode) / med / 1e6
                entry[mode] = dict(median_ms=med, min_ms=min(s), samples_ms=s, gflops=gflops,
                                   fraction_of_gemm=gflops / gemm_gflops[fw])
            result["impls"][impl] = entry
    result["ratios"] = report.ratios(result)
    return result


def machine() -> dict:
    info = dict(python=platform.python_version(), platform=platform.platform(), cpus=os.cpu_count())
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in ("jax", "jaxlib", "flax", "equinox", "torch", "numpy"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001
            versions[name] = None
    info["versions"] = versions
    return info


def parse_shapes(text: str):
    return tuple(tuple(int(v) for v in s.split("x")) for s in text.split(","))


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else list(argv)
    if given[:1] == ["parallel"]:
        from benchmarks import parallel

        return parallel.main(given[1:])
    if given[:1] == ["stability"]:
        from benchmarks import stability

        return stability.main(given[1:])
    if given[:1] == ["eager"]:
        from benchmarks import eager

        return eager.main(given[1:])
    if given[:1] == ["linear"]:
        from benchmarks import linear

        return linear.main(given[1:])
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="LSTM and GRU on two shapes, fewer rounds")
    parser.add_argument("--cells", default=None, help="comma-separated subset of elman,lstm,gru")
    parser.add_argument("--shapes", default=None, help="comma-separated BxTxH, e.g. 32x200x128 (I = H)")
    parser.add_argument("--impls", default=None,
                        help="comma-separated subset of " + ",".join(JAX_IMPLS + TORCH_IMPLS + TORCH1_IMPLS
                                                                     + sum(ALL_CORES_IMPLS.values(), ())))
    parser.add_argument("--reps", type=int, default=None, help="rounds per configuration (default 15, quick 5)")
    parser.add_argument("--pause-ms", type=float, default=2.0, help="sleep before each timed call")
    parser.add_argument("--no-ablation", action="store_true", help="skip the one-technique-at-a-time variants")
    parser.add_argument("--render", action="store_true",
                        help="run nothing: rewrite --md from the results in --json (after editing analysis.md)")
    parser.add_argument("--json", type=pathlib.Path, default=ROOT / "benchmarks" / "results.json")
    parser.add_argument("--md", type=pathlib.Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.render:
        args.md.write_text(report.markdown(json.loads(args.json.read_text())))
        print(f"wrote {args.md} from {args.json}")
        return 0

    cells = tuple(args.cells.split(",")) if args.cells else (("lstm", "gru") if args.quick else grid.CELLS)
    shapes = parse_shapes(args.shapes) if args.shapes else (grid.QUICK_SHAPES if args.quick else grid.SHAPES)
    reps = args.reps or (5 if args.quick else 15)
    every = JAX_IMPLS + TORCH_IMPLS + TORCH1_IMPLS + sum(ALL_CORES_IMPLS.values(), ())
    wanted = set(args.impls.split(",")) if args.impls else set(every)
    impls = {"jax": [i for i in JAX_IMPLS if i in wanted], "torch": [i for i in TORCH_IMPLS if i in wanted],
             "torch1": [i for i in TORCH1_IMPLS if i in wanted],
             **{fw: [i for i in these if i in wanted] for fw, these in ALL_CORES_IMPLS.items()}}
    impls = {fw: v for fw, v in impls.items() if v}
    command = "python -m benchmarks" + ("" if argv is None and len(sys.argv) == 1 else " " + " ".join(
        sys.argv[1:] if argv is None else argv))

    ablation_shapes = set(shapes[:1] if args.quick else ABLATION_SHAPES)
    with_ablation = "jax" in impls and not args.no_ablation
    workers = {fw: Worker(fw) for fw in impls}
    results = []
    started = time.time()
    try:
        for cfg in grid.grid(cells, shapes):
            sys.stderr.write(f"{cfg.name} ")
            sys.stderr.flush()
            these = dict(impls)
            if with_ablation and (cfg.batch, cfg.time, cfg.hidden) in ablation_shapes:
                these["jax"] = list(impls["jax"]) + list(ablation.VARIANTS)
            results.append(run_config(cfg, workers, these, reps, args.pause_ms / 1e3,
                                      lambda s: (sys.stderr.write(s), sys.stderr.flush())))
            sys.stderr.write(" " + report.one_line(results[-1]) + "\n")
    finally:
        for w in workers.values():
            w.close()
    doc = dict(command=command, date=datetime.datetime.now().isoformat(timespec="seconds"),
               seconds=round(time.time() - started, 1), machine=machine(),
               settings=dict(reps=reps, pause_ms=args.pause_ms, cells=list(cells), shapes=[list(s) for s in shapes],
                             impls=impls, ablation_shapes=sorted(ablation_shapes) if with_ablation else []),
               results=results, targets=report.targets(results),
               targets_1t=[t for t in report.targets(results, "torch_1t") if t["peer"] == "torch_1t"],
               targets_all=report.all_cores_targets(results), ablation=report.ablation(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    args.md.write_text(report.markdown(doc))
    print(report.summary_table(doc))
    print(f"wrote {args.md} and {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
