"""Smoke runs of every experiment and of the showcase with tiny budgets: records, JSON, report, plots, resume."""

import importlib
import json

import pytest

from experiments import __main__ as runner
from experiments import _common

TINY = {
    "vanishing": dict(T=6, hidden=4, batch=2, features=2, rhos=(0.5, 3.0), models=("lstm", "indrnn")),
    "adding": dict(Ts=(6,), hidden=4, batch=4, steps=2, lr=1e-2, max_norm=1.0, test=8, optimizer="adam",
                   models=("tanh-rnn", "irnn", "indrnn"), overrides={"irnn": dict(steps=3), "indrnn": dict(layers=2)}),
    "copy": dict(Ts=(3,), hidden=4, batch=4, steps=2, lr=1e-3, test=8, models=("lstm", "exprnn"),
                 overrides={"exprnn": dict(lr_A=1e-4)}),
    "clipping": dict(T=5, hidden=4, rho=3.0, activation="tanh", seeds=2, batch=4, steps=2, lr=0.05, max_norm=5.0,
                     divergence_factor=2.0),
    "fill_blank": dict(T=8, hidden=4, train=32, test=16, batch=8, steps=2, lr=1e-2, answers=3, fillers=4,
                       models=("lstm", "bi-lstm")),
    "digits": dict(hidden=4, batch=8, steps=2, lr=1e-2, layers=(1,), models=("bi-lstm",)),
    "char_lm": dict(models=("tanh-rnn", "lstm"), params=3000, embed=4, batch=2, window=8, chars=48,
                    lr={"tanh-rnn": 1e-2, "lstm": 1e-2}, max_norm=5.0, evals=2, valid_chars=300, eval_streams=2,
                    test_streams=2, prompt="def ", sample_chars=5, temperatures=(0.5, 1.0), sample_models=("lstm",),
                    limit=2000),
    "selective_copy": dict(L=6, M=3, d_model=4, layers=1, batch=4, steps=2, lr=1e-2, warmup=1, test=8,
                           models=("lstm", "lru"), options={"lru": {"state": 2}}),
    "induction_heads": dict(train_length=8, d_model=4, layers=1, batch=4, steps=2, lr=1e-2, warmup=1,
                            test_lengths=(8, 16), test=4, eval_batch=4, chunk=8, models=("lstm", "lru"), options={}),
}

# The documented keys of each experiment's rows (README and issue 4).
ROW_KEYS = {
    "vanishing": {"model", "T", "decay_rate"},
    "adding": {"model", "T", "test_mse"},
    "copy": {"model", "T", "test_ce", "baseline_ce"},
    "clipping": {"model", "clip", "diverged"},
    "fill_blank": {"model", "accuracy"},
    "digits": {"model", "layers", "accuracy"},
    "char_lm": {"model", "test_bpc", "params"},
    "selective_copy": {"model", "T", "accuracy"},
    "induction_heads": {"model", "train_length", "at_longest", "by_length"},
}


@pytest.fixture
def tiny(monkeypatch):
    for name, profile in TINY.items():
        module = importlib.import_module(f"experiments.{name}")
        monkeypatch.setitem(module.PROFILES, "quick", profile)
    monkeypatch.setattr(_common, "progress", lambda iterable, **kw: iterable)


def test_showcase_lists_every_experiment_with_a_tiny_profile():
    assert set(runner.SHOWCASE) == set(TINY)


def test_showcase_writes_report_json_and_plots(tiny, tmp_path, capsys):
    assert runner.main(["--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    for name in runner.SHOWCASE:
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["experiment"] == name
        assert result["config"]["profile"] == "quick"
        assert result["rows"], name
        for row in result["rows"]:
            assert ROW_KEYS[name] <= set(row), (name, row.keys())
        assert f"## {name}" in report
        for plot in result["plots"]:
            assert (tmp_path / plot).stat().st_size > 1000
            assert f"]({plot})" in report
    assert not list((tmp_path / ".partial").glob("*.json")), "finished experiments leave no partial rows"
    printed = capsys.readouterr().out
    assert "| model |" in printed and "report.md" in printed


def test_model_names_follow_the_documented_convention(tiny, tmp_path):
    result = runner.run_one("fill_blank", "quick", 0, tmp_path)
    assert [r["model"] for r in result["rows"]] == ["lstm", "bi-lstm"]


def test_interrupted_experiment_resumes_without_recomputing_finished_rows(tiny, tmp_path, monkeypatch):
    calls = []
    real_fit = _common.fit

    def failing_fit(*args, **kwargs):
        calls.append(kwargs["desc"])
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated interruption")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(_common, "fit", failing_fit)
    with pytest.raises(KeyboardInterrupt):
        runner.run_one("adding", "quick", 0, tmp_path)
    saved = json.loads((tmp_path / ".partial" / "adding.json").read_text())
    assert list(saved["rows"]) == ["tanh-rnn-T6"]

    calls.clear()
    monkeypatch.setattr(_common, "fit", lambda *a, **k: (calls.append(k["desc"]), real_fit(*a, **k))[1])
    result = runner.run_one("adding", "quick", 0, tmp_path)
    assert calls == ["adding irnn T=6", "adding indrnn T=6"], "only the unfinished models are trained again"
    assert [r["model"] for r in result["rows"]] == ["tanh-rnn", "irnn", "indrnn"]
    assert result["rows"][0] == saved["rows"]["tanh-rnn-T6"]


def test_a_different_config_does_not_reuse_saved_rows(tmp_path):
    cache = _common.RowCache(tmp_path, "x", {"steps": 1})
    cache.put("a", {"model": "a"})
    assert _common.RowCache(tmp_path, "x", {"steps": 1}).get("a") == {"model": "a"}
    assert _common.RowCache(tmp_path, "x", {"steps": 2}).get("a") is None


def test_runs_are_reproducible_for_a_seed(tiny, tmp_path):
    first = runner.run_one("clipping", "quick", 3, tmp_path / "a")
    second = runner.run_one("clipping", "quick", 3, tmp_path / "b")
    strip = lambda rows: [{k: v for k, v in r.items()} for r in rows]  # noqa: E731
    assert strip(first["rows"]) == strip(second["rows"])


def test_char_lm_records_the_corpus_the_baselines_and_samples(tiny, tmp_path):
    result = runner.run_one("char_lm", "quick", 0, tmp_path)
    config = result["config"]
    for split in ("train", "valid", "test"):
        assert config["corpus"][split]["bytes"] == 2000 and len(config["corpus"][split]["sha256"]) == 64
    assert config["corpus"]["python"].count(".") == 2
    for name in ("unigram", "zlib -9", "bz2 -9", "lzma -9e"):
        assert set(config["baselines"][name]) == {"with_train", "alone"}
    lstm = result["rows"][1]
    assert set(lstm["samples"]) == {"0.5", "1.0"} and all(s.startswith("def ") for s in lstm["samples"].values())
    assert "temperature 0.5" in result["details"] and "lzma -9e" in result["details"]


def test_a_named_profile_runs_by_name_and_an_unknown_one_is_refused(tiny, tmp_path, monkeypatch):
    adding = importlib.import_module("experiments.adding")
    monkeypatch.setitem(adding.PROFILES, "long", dict(TINY["adding"], models=("indrnn",)))
    assert runner.main(["adding", "--profile", "long", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "adding.json").read_text())
    assert result["config"]["profile"] == "long" and [r["model"] for r in result["rows"]] == ["indrnn"]
    with pytest.raises(SystemExit):
        runner.main(["adding", "--profile", "nope", "--out", str(tmp_path)])


@pytest.mark.parametrize("name", ["vanishing", "adding", "copy"])
def test_every_profile_names_models_that_exist(name):
    """The full and long profiles are too long to run here: at least every model they name must build."""
    from experiments import _models

    for profile in importlib.import_module(f"experiments.{name}").PROFILES.values():
        for model in profile["models"]:
            assert _models.cell(model.removeprefix("bi-"), 4) is not None
        assert set(profile.get("overrides", {})) <= set(profile["models"])


def test_every_char_lm_profile_names_networks_that_exist_and_dropout_models_use_their_key():
    import jax
    import jax.numpy as jnp

    from experiments import char_lm

    for profile in char_lm.PROFILES.values():
        for name in profile["models"]:
            assert char_lm.build(name, 32 if char_lm.blocks(name) else 4, 7, 3) is not None
    model = char_lm.build("lstm+vd", 4, 7, 3)
    params = model.init(jax.random.key(0))
    tokens = jnp.arange(12).reshape(2, 6) % 7
    train = [model.apply(params, tokens, key=jax.random.key(k))[0] for k in (1, 2)]
    evaluation = model.apply(params, tokens)[0]
    assert not jnp.allclose(train[0], train[1]) and jnp.allclose(evaluation, model.apply(params, tokens)[0])
