"""``python -m experiments --help``: plain text a terminal shows as it is, naming what a user can type."""

import re

import pytest

from experiments import __main__ as runner


def test_help_is_plain_text_and_names_every_experiment(capsys):
    with pytest.raises(SystemExit) as exit_info:
        runner.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and ":func:" not in text  # no reST markup
    assert "SHOWCASE" not in text and "OTHERS" not in text  # no internal names
    for name in runner.SHOWCASE + runner.OTHERS:
        assert re.search(rf"\b{name}\b", text), name
    assert "--fresh" in text and "OUT/report.md" in text
    assert max(len(line) for line in text.splitlines()) <= 100  # wrapped for a terminal
