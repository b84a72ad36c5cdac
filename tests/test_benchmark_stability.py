"""``python -m benchmarks stability`` runs and writes what it documents (a short T; nothing about speed is timed):
every outcome is an iteration count, ``overflow`` or ``no``, each checked here against its definition."""

import json

import jax
import numpy as np

import jrnn
from benchmarks import stability


def test_short_run_writes_outcomes_that_match_their_definitions(tmp_path):
    out_md, out_json = tmp_path / "s.md", tmp_path / "s.json"
    assert stability.main(["--T", "150", "--max-iters", "40", "--dampings", "1e-8", "--out", str(out_md),
                           "--json", str(out_json)]) == 0
    doc = json.loads(out_json.read_text())
    assert doc["solvers"] == ["deer", "quasi", "elk 1e-08"]
    assert len(doc["rows"]) == len(stability.scalar_cases()) + len(stability.elman4_cases())
    for row in doc["rows"]:
        for name in doc["solvers"]:
            assert row[name] in ("overflow", "no") or 1 <= row[name] <= 40
    # one row re-derived by hand: the first scalar case DEER overflows on, ELK's outcome against newton_scan
    row = next(r for r in doc["rows"] if r["deer"] == "overflow" and r["family"] == "scalar")
    cell, params, xs = stability.problem(row, 150)
    assert xs.dtype == jax.numpy.float32 and params.W.dtype == jax.numpy.float32
    _, _, info = jrnn.newton_scan(cell, params, xs, solver=jrnn.deer(max_iters=40, fallback="none"))
    assert not np.isfinite(float(info.residual))
    ys, _, info = jrnn.newton_scan(cell, params, xs, solver=jrnn.elk(1e-8, max_iters=40, fallback="none"))
    err = float(np.max(np.abs(np.asarray(ys) - np.asarray(jrnn.scan(cell, params, xs)[0]))))
    assert row["elk 1e-08"] == stability.outcome(info, err)
    summary = doc["summary"]["elk 1e-08"]
    assert summary["of"] == len(doc["rows"]) and summary["of_hard"] == sum(r["deer"] == "overflow" for r in doc["rows"])
    md = out_md.read_text()
    assert stability.HEADER in md and "| scalar w=1.5 c=0 σ=0.3 |" in md
