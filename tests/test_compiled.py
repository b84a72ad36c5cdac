"""Eager calls of the public entry points compile once per configuration (jrnn/_src/compiled.py).

The count of traces is read off a cell whose ``step`` counts how often Python runs it: a second eager call with
the same cell and shapes must not run it again, and its results must equal the uncompiled function's.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from jrnn._src import compiled
from jrnn._src import scan as scan_module

B, T, I = 2, 7, 3


@dataclasses.dataclass(frozen=True)
class Counting:
    """An Elman cell that counts how often its ``step`` is traced (Python runs it)."""

    inner: object
    tag: object = dataclasses.field(default_factory=object)  # each instance its own cache entry
    traces: list = dataclasses.field(default_factory=lambda: [0], compare=False, hash=False)

    hidden_size = property(lambda self: self.inner.hidden_size)
    output_size = property(lambda self: self.inner.output_size)

    def init(self, key, input_size):
        return self.inner.init(key, input_size)

    def initial_state(self, batch_shape=(), dtype=None):
        return self.inner.initial_state(batch_shape, dtype)

    def input_size(self, params):
        return self.inner.input_size(params)

    def step(self, params, state, x):
        self.traces[0] += 1
        return self.inner.step(params, state, x)


@pytest.fixture
def data():
    xs = jax.random.normal(jax.random.key(0), (B, T, I))
    return xs, jnp.array([7, 4])


def test_a_second_eager_scan_runs_the_compiled_program(data):
    xs, lengths = data
    cell = Counting(jrnn.elman(5))
    params = cell.init(jax.random.key(1), I)
    first = jrnn.scan(cell, params, xs, lengths=lengths, solver=jrnn.sequential())
    traced = cell.traces[0]
    assert traced > 0
    second = jrnn.scan(cell, params, xs + 1.0, lengths=lengths, solver=jrnn.sequential())
    assert cell.traces[0] == traced, "the second eager call traced the cell again"
    # A new shape is a new program; the same values as the function run without compiling.
    jrnn.scan(cell, params, xs[:, :5], solver=jrnn.sequential())
    assert cell.traces[0] > traced
    expected = scan_module._frame.uncompiled(cell, params, xs + 1.0, lengths, None, False, jrnn.sequential(), None,
                                             None, "test")
    for got, want in zip(jax.tree_util.tree_leaves(second), jax.tree_util.tree_leaves(expected[:2])):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert not np.allclose(first[0], second[0])


def test_under_jit_the_callers_program_holds_the_scan(data):
    xs, _ = data
    cell = Counting(jrnn.elman(5))
    params = cell.init(jax.random.key(1), I)
    f = jax.jit(lambda p, x: jrnn.scan(cell, p, x, solver=jrnn.sequential())[0])
    f(params, xs)
    traced = cell.traces[0]
    f(params, xs * 2)
    assert cell.traces[0] == traced
    np.testing.assert_allclose(f(params, xs), jrnn.scan(cell, params, xs, solver=jrnn.sequential())[0], rtol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: jrnn.RNN(jrnn.lstm(4)),
    lambda: jrnn.bidirectional(jrnn.gru(4)),
    lambda: jrnn.deep([jrnn.lstm(4), jrnn.gru(4)], dropout=0.5),
    lambda: jrnn.pre_norm(jrnn.lstm(3)),
], ids=["rnn", "bidirectional", "deep", "pre_norm"])
def test_layers_compiled_eagerly_equal_uncompiled(make, data, monkeypatch):
    xs, lengths = data
    layer = make()
    params = layer.init(jax.random.key(2), I)
    key = jax.random.key(3)
    got = layer.apply(params, xs, lengths=lengths, key=key)
    monkeypatch.setattr(compiled, "ENABLED", False)
    want = layer.apply(params, xs, lengths=lengths, key=key)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_an_unhashable_cell_runs_uncompiled_with_the_same_result(data):
    xs, _ = data
    inner = jrnn.elman(5)
    params = inner.init(jax.random.key(1), I)

    @dataclasses.dataclass(frozen=True)
    class Unhashable(Counting):
        table: list = dataclasses.field(default_factory=list)  # a list field: hash() raises

    cell = Unhashable(inner)
    with pytest.raises(TypeError):
        hash(cell)
    got, _ = jrnn.scan(cell, params, xs, solver=jrnn.sequential())
    traced = cell.traces[0]
    jrnn.scan(cell, params, xs, solver=jrnn.sequential())
    assert cell.traces[0] > traced  # traced again: not compiled, nothing cached
    np.testing.assert_allclose(got, jrnn.scan(inner, params, xs, solver=jrnn.sequential())[0], rtol=1e-6)


def test_value_checks_still_run_eagerly():
    model = jrnn.language_model(jrnn.lstm(4), vocab_size=5, embed_size=3)
    params = model.init(jax.random.key(0))
    tokens = jnp.array([[1, 2, 7]])
    with pytest.raises(ValueError, match=r"expected tokens in the vocabulary \[0, 5\), got 1 outside it"):
        model.apply(params, tokens)
    logits, _ = model.apply(params, tokens, lengths=jnp.array([2]))  # the bad id is padding: not read
    assert logits.shape == (1, 3, 5) and np.all(np.asarray(logits[0, 2]) == 0)


def test_a_wrong_state_structure_is_named_under_jit_too(data):
    """A NamedTuple where an array belongs: the structure error, eagerly (now compiled) and inside jit."""
    xs, _ = data
    cell = jrnn.elman(5)
    params = cell.init(jax.random.key(1), I)
    wrong = jrnn.lstm(5).initial_state((B,))
    with pytest.raises(ValueError, match="expected initial_state structured as"):
        jrnn.scan(cell, params, xs, initial_state=wrong)
    with pytest.raises(ValueError, match="expected initial_state structured as"):
        jax.jit(lambda s: jrnn.scan(cell, params, xs, initial_state=s))(wrong)


def test_the_eager_benchmark_writes_its_table(tmp_path):
    from benchmarks import eager

    out = tmp_path / "eager.md"
    assert eager.main(["--quick", "--out", str(out)]) == 0
    rows = [line.split("|")[1:-1] for line in out.read_text().splitlines() if line.startswith("| jrnn.") or
            line.startswith("| deep") or line.startswith("| language_model")]
    assert len(rows) == 4
    for row in rows:
        assert all(float(cell) > 0 for cell in row[1:4]), row
