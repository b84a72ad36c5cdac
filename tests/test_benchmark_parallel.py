"""``python -m benchmarks parallel`` runs and writes what it documents (tiny sizes; nothing about speed is asserted):
every solver timed, the Newton solvers converged to the sequential scan's outputs, and a solver whose estimated
memory is above ``--max-mib`` skipped with the reason in its row and in the table."""

import json
import pathlib
import subprocess
import sys

from benchmarks import parallel

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_quick_run_writes_json_and_markdown(tmp_path):
    out_md, out_json = tmp_path / "p.md", tmp_path / "p.json"
    cmd = [sys.executable, "-m", "benchmarks", "parallel", "--quick", "--H", "8", "--T", "200", "--out", str(out_md),
           "--json", str(out_json)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out_json.read_text())["rows"]
    assert {r["solver"] for r in rows} == {"sequential", "deer", "quasi", "elk"}
    assert {(r["H"], r["T"], r["mode"]) for r in rows} == {(8, 200, "fwd"), (8, 200, "fwdbwd")}
    for r in rows:
        assert r["skipped"] is None and r["median_ms"] > 0 and len(r["samples_ms"]) == 2
        if r["solver"] != "sequential":
            assert r["iterations"] >= 1 and r["converged"]
            assert r["iterations_step"] >= 1 and r["converged_step"]  # the warm start f(s_0, x_t)
            assert r["max_abs_err"] < 1e-4
            assert r["speedup"] > 0
    md = out_md.read_text()
    assert parallel.HEADER in md and "python -m benchmarks parallel --quick" in md
    assert "| T | H | B |" in md and "elk iters, step init" in md and "|---:|" in md and "Crossover" in md
    assert md.strip() in done.stdout


def test_estimate_grows_with_the_jacobians():
    deer, quasi = (parallel.estimate_mib(s, "fwd", 16, 100_000, 64) for s in ("deer", "quasi"))
    assert deer > 64 * quasi / 8  # D² against D per step
    assert parallel.estimate_mib("deer", "fwd", 16, 100_000, 64) > 12000  # the default guard skips this one
    assert parallel.estimate_mib("deer", "fwd", 1, 1000, 8) < 12000


def test_max_mib_skips_and_says_why(tmp_path):
    T, H = 100, 8
    deer, sequential = (parallel.estimate_mib(s, "fwd", 1, T, H) for s in ("deer", "sequential"))
    limit = (deer + sequential) / 2
    assert sequential < limit < deer
    out_md, out_json = tmp_path / "p.md", tmp_path / "p.json"
    assert parallel.main(["--T", str(T), "--H", str(H), "--B", "1", "--cells", "elman", "--modes", "fwd",
                          "--solvers", "sequential,deer", "--reps", "1", "--max-mib", str(limit),
                          "--out", str(out_md), "--json", str(out_json)]) == 0
    rows = {r["solver"]: r for r in json.loads(out_json.read_text())["rows"]}
    assert rows["deer"]["skipped"] == parallel.skip_reason(deer) == f"memory: ~{deer:.2g} MiB estimated"
    assert "median_ms" not in rows["deer"] and "iterations" not in rows["deer"]
    assert rows["sequential"]["skipped"] is None and rows["sequential"]["median_ms"] > 0
    md = out_md.read_text()
    assert f"skipped ({parallel.skip_reason(deer)})" in md
    assert "deer none in the grid" in md
