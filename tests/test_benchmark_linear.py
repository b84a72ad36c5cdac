"""``python -m benchmarks linear`` at its smallest (two cells, jrnn only, in this process; PyTorch is not run): it
writes the table and the per-cell verdicts it documents, and the forms (step loop, sequential, associative tree and
loop, chunked) agree, forward and every gradient, to 1e-4 in float32. Nothing about speed is checked."""

import json

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import linear

SHAPE = (1, 8, 4)  # B x T x D
CELLS = ("mamba2", "lru")  # one chunkwise cell, one not: every form


def test_auto_takes_what_the_table_says_for_each_cell():
    assert {cell: linear.auto_form(cell) for cell in linear.CELLS} == {
        "mamba": "sequential", "mamba2": "chunked", "gated_delta_net": "chunked", "mlstm": "chunked", "hawk": "loop",
        "lru": "loop", "s5": "loop", "min_gru": "loop"}
    assert {cell for cell in linear.CELLS if "chunked" in linear.forms_of(cell)} == {"mamba2", "gated_delta_net",
                                                                                      "mlstm"}
    assert linear.forms_of("mlstm") == ("step", "sequential", "chunked")  # not a linear recurrence


def test_smallest_run_writes_the_table_and_the_forms_agree(tmp_path):
    out_md, out_json = tmp_path / "l.md", tmp_path / "l.json"
    B, T, D = SHAPE
    assert linear.main(["--no-torch", "--cells", ",".join(CELLS), "--shapes", f"{B}x{T}x{D}", "--reps", "1",
                        "--out", str(out_md), "--json", str(out_json)]) == 0
    doc = json.loads(out_json.read_text())
    assert doc["settings"]["cells"] == list(CELLS) and doc["torch"] == []
    forms = {cell: linear.forms_of(cell) for cell in CELLS}
    assert forms["mamba2"] == linear.FORMS and "chunked" not in forms["lru"]
    assert len(doc["rows"]) == sum(len(f) for f in forms.values()) * len(linear.MODES)
    for row in doc["rows"]:
        assert (row["B"], row["T"], row["D"]) == SHAPE
        assert row["median_ms"] > 0 and len(row["samples_ms"]) == 1
        assert row["max_abs_diff_vs_step"] <= 1e-4, row  # outputs (fwd) or every gradient (fwdbwd)
    assert [(t["cell"], t["form"]) for t in doc["table"]] == [(c, f) for c in CELLS for f in forms[c]]
    assert list(doc["faster"]) == list(CELLS)
    for cell, cases in doc["faster"].items():
        assert [c["mode"] for c in cases] == list(linear.MODES)
        for c in cases:
            assert set(c["ms"]) == set(linear.SOLVERS) & set(forms[cell])
            assert c["ms"][c["faster"]] == min(c["ms"].values())
    assert doc["auto"] == {"mamba2": "chunked", "lru": "loop"}
    md = out_md.read_text()
    assert linear.HEADER in md
    assert "| cell | shape | form | fwd ms | fwd+bwd ms | torch ms | ratio torch/jrnn-best |" in md
    for cell in CELLS:
        assert f"| {cell} | {B}x{T}x{D} | loop |" in md
        assert f"- {cell}: " in md and f"jrnn.auto takes {doc['auto'][cell]}" in md


def test_forms_agree_to_1e_4_recomputed_here():
    """The recorded differences are honest: one cell with complex state, every form's outputs and gradients
    compared here directly."""
    cell, params, xs = linear.problem("lru", *SHAPE)
    assert xs.dtype == jnp.float32
    got = {}
    for form in linear.forms_of("lru"):
        f = linear.ys_fn(cell, form)
        got[form] = (f(params, xs), jax.grad(lambda p, x, f=f: jnp.sum(f(p, x)), argnums=(0, 1))(params, xs))
    for form in got:
        for a, b in zip(jax.tree.leaves(got[form]), jax.tree.leaves(got["step"])):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)
