"""``python -m benchmarks linear`` at its smallest (jrnn only, in this process; PyTorch is not run): it writes the
table and the per-cell verdicts it documents, and the four forms (step loop, sequential, associative tree and
loop) agree, forward and every gradient, to 1e-4 in float32. Nothing about speed is checked."""

import json

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import linear

SHAPE = (1, 8, 4)  # B x T x D


def test_smallest_run_writes_the_table_and_the_forms_agree(tmp_path):
    out_md, out_json = tmp_path / "l.md", tmp_path / "l.json"
    B, T, D = SHAPE
    assert linear.main(["--no-torch", "--shapes", f"{B}x{T}x{D}", "--reps", "1", "--out", str(out_md),
                        "--json", str(out_json)]) == 0
    doc = json.loads(out_json.read_text())
    assert doc["settings"]["cells"] == list(linear.CELLS) and doc["torch"] == []
    assert len(doc["rows"]) == len(linear.CELLS) * len(linear.FORMS) * len(linear.MODES)
    for row in doc["rows"]:
        assert (row["B"], row["T"], row["D"]) == SHAPE
        assert row["median_ms"] > 0 and len(row["samples_ms"]) == 1
        assert row["max_abs_diff_vs_step"] <= 1e-4, row  # outputs (fwd) or every gradient (fwdbwd)
    assert [(t["cell"], t["form"]) for t in doc["table"]] == [(c, f) for c in linear.CELLS for f in linear.FORMS]
    assert list(doc["faster"]) == list(linear.CELLS)
    for cases in doc["faster"].values():
        assert [c["mode"] for c in cases] == list(linear.MODES)
        for c in cases:
            assert set(c["ms"]) == set(linear.SOLVERS) and c["ms"][c["faster"]] == min(c["ms"].values())
    assert doc["auto"] == {"mamba": "sequential", "hawk": "loop", "lru": "loop", "s5": "loop", "min_gru": "loop"}
    md = out_md.read_text()
    assert linear.HEADER in md
    assert "| cell | shape | form | fwd ms | fwd+bwd ms | torch ms | ratio torch/jrnn-best |" in md
    for cell in linear.CELLS:
        assert f"| {cell} | {B}x{T}x{D} | loop |" in md
        assert f"- {cell}: " in md and f"jrnn.auto takes {doc['auto'][cell]}" in md


def test_forms_agree_to_1e_4_recomputed_here():
    """The recorded differences are honest: one cell with complex state, every form's outputs and gradients
    compared here directly."""
    cell, params, xs = linear.problem("lru", *SHAPE)
    assert xs.dtype == jnp.float32
    got = {}
    for form in linear.FORMS:
        f = linear.ys_fn(cell, form)
        got[form] = (f(params, xs), jax.grad(lambda p, x, f=f: jnp.sum(f(p, x)), argnums=(0, 1))(params, xs))
    for form in linear.SOLVERS:
        for a, b in zip(jax.tree.leaves(got[form]), jax.tree.leaves(got["step"])):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)
