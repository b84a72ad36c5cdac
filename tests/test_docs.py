"""The documentation's code runs: every ```python block of README.md and docs/**/*.md, in order, one namespace per
page (so a page's later blocks use what its earlier ones defined).

A block that cannot run here (it needs several hosts, or data of your own) is preceded by a line
``<!-- not run: <reason> -->``; it is still checked to compile.
"""

from __future__ import annotations

import pathlib
import re
import sys
import types

import jax
import matplotlib
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(?P<marker><!-- not run: [^>]+-->\s*\n)?^```python\n(?P<code>.*?)^```", flags=re.M | re.S)
PAGES = sorted(p.relative_to(ROOT).as_posix() for p in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
               if "```python" in p.read_text())


def blocks(page: str) -> list[tuple[int, str, bool]]:
    """``(line, code, runs)`` for each ```python block of ``page``."""
    text = (ROOT / page).read_text()
    return [(text[:m.start("code")].count("\n") + 1, m.group("code"), m.group("marker") is None)
            for m in BLOCK.finditer(text)]


def test_pages_with_code_are_found():
    assert "README.md" in PAGES and "docs/concepts/cells.md" in PAGES


@pytest.mark.parametrize("page", PAGES)
def test_page_code_runs(page, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # a page that writes files writes them here
    module = types.ModuleType("docs_" + re.sub(r"\W", "_", page))  # a real module: dataclasses look it up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for line, code, runs in blocks(page):
        compiled = compile(code, f"{page}:{line}", "exec")
        if runs:
            # Keras's own code broadcasts implicitly (its biases, its orthogonal initializer): under the suite's
            # strict rank promotion it cannot run, so a block that imports it runs with JAX's default.
            with jax.numpy_rank_promotion("allow" if "import keras" in code or ", keras" in code else "raise"):
                exec(compiled, module.__dict__)  # noqa: S102 - the documentation's own examples
