"""Multi-query associative recall (experiments/mqar.py): the generator against its definition, the loss and the
accuracy against their definitions on hand-made logits, and a tiny run of the sweep."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jrnn
from experiments import _backbone, _common, mqar


def test_mqar_layout_pairs_queries_and_targets():
    n, T, K, vocab = 64, 40, 4, 32
    tokens, targets = (np.asarray(a) for a in mqar.mqar(jax.random.key(0), n, T, K, vocab))
    assert tokens.shape == targets.shape == (n, T)
    for row, want in zip(tokens, targets):
        keys, values = row[:2 * K:2], row[1:2 * K:2]
        assert len(set(keys)) == K and keys.min() >= 1 and keys.max() < vocab // 2  # distinct, first half
        assert values.min() >= vocab // 2 and values.max() < vocab  # second half
        asked = np.flatnonzero(want >= 0)
        assert len(asked) == K and asked.min() >= 2 * K and np.all((asked - 2 * K) % 2 == 0)
        assert sorted(row[asked]) == sorted(keys), "each key is asked once"
        pairs = dict(zip(keys, values))
        assert all(want[p] == pairs[row[p]] for p in asked), "the target is the asked key's value"
        rest = np.setdiff1d(np.arange(2 * K, T), asked)
        assert np.all(row[rest] == 0) and np.all(want[:2 * K] == -1)


def test_query_gaps_follow_the_power_law():
    """Zoology's spacing: gap g (in slots of two steps) with probability ∝ g^(a-1), a = 0.01: the first slot is
    the likeliest, and the frequencies fall as the law says (the first slot against the tenth: 10^0.99 ≈ 9.8)."""
    T, K = 84, 1
    tokens, targets = mqar.mqar(jax.random.key(1), 20000, T, K, 8)
    gaps = (np.argmax(np.asarray(targets) >= 0, axis=1) - 2 * K) // 2
    counts = np.bincount(gaps, minlength=(T - 2 * K) // 2)
    assert counts.argmax() == 0
    assert counts[0] / counts[9] == pytest.approx(10 ** (1 - mqar.POWER_A), rel=0.2)


def test_mqar_refuses_too_small_a_vocabulary_or_sequence():
    with pytest.raises(ValueError, match=r"expected vocab >= 2K \+ 2 and T >= 4K, got vocab=8, T=64, K=4"):
        mqar.mqar(jax.random.key(0), 1, 64, 4, 8)
    with pytest.raises(ValueError, match=r"got vocab=64, T=12, K=4"):
        mqar.mqar(jax.random.key(0), 1, 12, 4, 64)


def test_loss_and_accuracy_count_only_the_queries():
    model = _backbone.backbone("lstm", d_model=4, layers=1, vocab=8)
    params = model.init(jax.random.key(0))
    tokens = jnp.array([[1, 5, 0, 1, 0, 0]])
    targets = jnp.array([[-1, -1, -1, 5, -1, -1]])
    logits, _ = model.apply(params, tokens)
    want = -jax.nn.log_softmax(logits[0, 3])[5]
    got, _ = mqar.query_loss(model)(params, jrnn.Batch(tokens, targets), None)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert mqar.accuracy(model, params, tokens, targets) == float(logits[0, 3].argmax() == 5)


def test_a_tiny_sweep_runs_and_takes_each_models_best_learning_rate(monkeypatch, tmp_path):
    monkeypatch.setitem(mqar.PROFILES, "quick", dict(settings=((16, 2),), vocab=8, d_models=(4,), layers=1, batch=4,
                                                     steps=3, warmup=1, lrs=(1e-3, 1e-2), test=8,
                                                     models=("mamba2", "lstm"), options={}, stop_at=None))
    monkeypatch.setattr(_common, "progress", lambda iterable, **kw: iterable)
    result = mqar.run("quick", 0, tmp_path)
    assert [(r["model"], r["T"], r["K"], r["d_model"]) for r in result["rows"]] == [("mamba2", 16, 2, 4),
                                                                                    ("lstm", 16, 2, 4)]
    for row in result["rows"]:
        assert set(row["by_lr"]) == {"0.001", "0.01"} and row["accuracy"] == max(row["by_lr"].values())
        assert row["by_lr"][f"{row['best_lr']:g}"] == row["accuracy"] and row["solved"] == (row["accuracy"] >= 0.99)
        assert row["steps"] == 3
    assert (tmp_path / result["plots"][0]).stat().st_size > 1000


def test_every_profile_names_models_that_build():
    for profile in mqar.PROFILES.values():
        for name in profile["models"]:
            for d_model in profile["d_models"]:
                model = _backbone.backbone(name, d_model=d_model, layers=1, vocab=profile["vocab"],
                                           options=profile["options"].get(name))
                assert len(model.cells) == 1


def test_training_stops_once_the_validation_queries_are_solved(monkeypatch):
    """The full profile's early stop: ``until`` is asked every 100 steps; the first True ends training there."""
    monkeypatch.setattr(_common, "progress", lambda iterable, **kw: iterable)
    model = _backbone.backbone("lstm", d_model=4, layers=1, vocab=8)
    sample = functools.partial(mqar.mqar, n=2, T=8, K=2, vocab=8)
    asked = []

    def until(params):
        asked.append(len(asked))
        return len(asked) == 2

    _, curve = _backbone.train(model, sample, steps=350, lr=1e-3, warmup=1, key=jax.random.key(0), desc="",
                               loss=mqar.query_loss(model), until=until)
    assert curve[-1][0] + 1 == 200 and len(asked) == 2
