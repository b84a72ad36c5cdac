"""Mamba's synthetic tasks (experiments/selective_copy.py, experiments/induction_heads.py): the data generators
against their definitions, the backbone's streamed evaluation against one scan, and tiny runs of both."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import _backbone, _common, induction_heads, selective_copy


def test_selective_copy_layout_tokens_and_answers():
    L, M, n = 40, 16, 64
    tokens, targets = map(np.asarray, selective_copy.selective_copy(jax.random.key(0), n, L, M))
    assert tokens.shape == (n, L + 2 * M) and targets.shape == (n, M)
    assert tokens.dtype == targets.dtype == np.int32
    inner, markers = tokens[:, :L + M], tokens[:, L + M:]
    assert np.all(markers == selective_copy.MARKER) and not np.any(inner == selective_copy.MARKER)
    assert targets.min() >= 1 and targets.max() <= selective_copy.VOCAB - 2
    for row, answer in zip(inner, targets):
        positions = np.flatnonzero(row != selective_copy.NOISE)
        assert len(positions) == M, "exactly M data tokens, at distinct positions"
        np.testing.assert_array_equal(row[positions], answer)  # the answers are the data tokens, in order
    assert len({tuple(np.flatnonzero(row)) for row in inner}) > n // 2, "the spacing varies between sequences"
    assert set(np.unique(targets)) == set(range(1, 15)), "every data symbol is drawn"


def test_selective_copy_positions_are_uniform_over_the_inner_sequence():
    L, M = 16, 4
    tokens, _ = selective_copy.selective_copy(jax.random.key(1), 4000, L, M)
    occupancy = np.mean(np.asarray(tokens[:, :L + M]) != 0, axis=0)
    np.testing.assert_allclose(occupancy, M / (L + M), atol=0.03)


def test_induction_heads_layout_and_answer():
    T, n = 50, 200
    tokens, targets = map(np.asarray, induction_heads.induction_heads(jax.random.key(0), n, T))
    assert tokens.shape == (n, T) and targets.shape == (n, 1)
    trigger = induction_heads.TRIGGER
    assert np.all(tokens[:, -1] == trigger)
    assert np.all(np.sum(tokens == trigger, axis=1) == 2), "the trigger appears once, then at the end"
    assert tokens.min() >= 0 and tokens.max() <= trigger and not np.any(tokens == induction_heads.VOCAB - 1)
    first = np.argmax(tokens == trigger, axis=1)
    assert first.max() <= T - 3
    np.testing.assert_array_equal(targets[:, 0], tokens[np.arange(n), first + 1])
    assert targets.max() < trigger


@pytest.mark.parametrize("generate", [
    lambda key: selective_copy.selective_copy(key, 8, 12, 4),
    lambda key: induction_heads.induction_heads(key, 8, 12),
])
def test_generators_are_deterministic_by_key(generate):
    first, second, other = generate(jax.random.key(3)), generate(jax.random.key(3)), generate(jax.random.key(4))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_induction_heads_rejects_a_sequence_too_short_for_a_trigger_and_its_token():
    with pytest.raises(ValueError, match="T >= 3"):
        induction_heads.induction_heads(jax.random.key(0), 2, 2)


@pytest.mark.parametrize("kind", ["lstm", "s5", "hawk", "mamba", "mamba2", "gated_delta_net", "mlstm"])
def test_streamed_answers_equal_one_scan_of_the_whole_sequence(kind):
    model = _backbone.backbone(kind, d_model=8, layers=2, vocab=16)
    params = model.init(jax.random.key(0))
    tokens, _ = induction_heads.induction_heads(jax.random.key(1), 3, 32)
    whole, _ = model.apply(params, tokens)
    streamed = _backbone.answer_logits(model, params, tokens, answers=2, chunk=8)
    np.testing.assert_allclose(streamed, whole[:, -2:], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of chunk"):
        _backbone.answer_logits(model, params, tokens, answers=1, chunk=5)


def test_the_glu_follows_only_the_time_invariant_cells():
    assert _backbone.backbone("lru", d_model=4, layers=1, vocab=16).glu
    assert not _backbone.backbone("lstm", d_model=4, layers=1, vocab=16).glu
    params = _backbone.backbone("s5", d_model=4, layers=2, vocab=16, options={"state": 2}).init(jax.random.key(0))
    assert [b.glu.shape for b in params.blocks] == [(8, 4), (8, 4)]


def test_accuracy_counts_every_answer_token():
    model = _backbone.backbone("lstm", d_model=4, layers=1, vocab=16)
    params = model.init(jax.random.key(0))
    tokens, targets = selective_copy.selective_copy(jax.random.key(2), 10, 6, 3)
    predicted = jnp.argmax(_backbone.answer_logits(model, params, tokens, answers=3), -1)
    expected = float(jnp.mean(predicted == targets))
    assert _backbone.accuracy(model, params, tokens, targets, batch=4) == pytest.approx(expected)


TINY = {
    "selective_copy": dict(L=6, M=3, d_model=4, layers=2, batch=4, steps=3, lr=1e-2, warmup=1, test=8,
                           models=("mamba", "lru", "lstm"), options={"mamba": {"state_size": 2}}),
    "induction_heads": dict(train_length=8, d_model=4, layers=2, batch=4, steps=3, lr=1e-2, warmup=1,
                            test_lengths=(8, 16, 32), test=4, eval_batch=4, chunk=8, models=("mamba", "s5"),
                            options={"s5": {"state": 2}}),
}


@pytest.fixture
def tiny(monkeypatch):
    for name, profile in TINY.items():
        monkeypatch.setitem({"selective_copy": selective_copy, "induction_heads": induction_heads}[name].PROFILES,
                            "quick", profile)
    monkeypatch.setattr(_common, "progress", lambda iterable, **kw: iterable)


def test_selective_copy_runs_and_reports_the_papers_numbers(tiny, tmp_path):
    result = selective_copy.run("quick", 0, tmp_path)
    assert [r["model"] for r in result["rows"]] == ["mamba", "lru", "lstm"]
    for row in result["rows"]:
        assert row["T"] == 12 and 0.0 <= row["accuracy"] <= 1.0 and row["chance"] == pytest.approx(1 / 14)
    mamba, lru, lstm = result["rows"]
    assert (mamba["paper_model"], mamba["paper_accuracy"]) == ("Mamba", 0.998)
    assert (lru["paper_model"], lru["paper_accuracy"]) == ("S4", 0.183)
    assert "paper_accuracy" not in lstm, "the LSTM has no counterpart in the paper's table"
    assert result["config"]["paper"] == {"S4": 0.183, "S6": 0.970, "Mamba": 0.998}
    assert (tmp_path / result["plots"][0]).stat().st_size > 1000
    again = selective_copy.run("quick", 0, tmp_path / "again")
    assert [r["accuracy"] for r in again["rows"]] == [r["accuracy"] for r in result["rows"]], "seeded"


def test_induction_heads_runs_every_test_length(tiny, tmp_path):
    result = induction_heads.run("quick", 0, tmp_path)
    assert "paper_at_longest" not in result["rows"][0], "the paper tested from 2^6 on"
    for row in result["rows"]:
        assert set(row["by_length"]) == {"8", "16", "32"}
        assert row["at_longest"] == row["by_length"]["32"] and row["at_train_length"] == row["by_length"]["8"]
        assert row["longest"] == 32 and all(0.0 <= v <= 1.0 for v in row["by_length"].values())
    assert "| 2^5 = 32 |" in result["details"] and "paper: Mamba" in result["details"]
    for plot in result["plots"]:
        assert (tmp_path / plot).stat().st_size > 1000


def test_induction_heads_sets_the_papers_number_beside_a_length_it_tested(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(induction_heads.PROFILES, "quick", dict(TINY["induction_heads"], test_lengths=(64,),
                                                                chunk=64, models=("mamba", "s5")))
    mamba, s5 = induction_heads.run("quick", 0, tmp_path)["rows"]
    assert mamba["paper_at_longest"] == 1.0 and "paper_at_longest" not in s5


def test_every_profile_names_models_that_build():
    """The quick and full profiles are too long to run here: every model they name must build."""
    for module in (selective_copy, induction_heads):
        for profile in module.PROFILES.values():
            for name in profile["models"]:
                model = _backbone.backbone(name, d_model=8, layers=1, vocab=16, options=profile["options"].get(name))
                assert len(model.cells) == 1
            assert set(profile["options"]) <= set(profile["models"])
