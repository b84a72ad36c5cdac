"""jrnn as a package: the wheel and sdist, a core-only install, the optional extras' errors, the version, and the
docstring examples (every ``Example:`` block runs under pytest's ``--doctest-modules``)."""

from __future__ import annotations

import ast
import doctest
import importlib
import os
import pathlib
import pkgutil
import re
import subprocess
import sys
import tomllib
import venv
import zipfile

import pytest

import jrnn

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _modules():
    """Every module of the ``jrnn`` package."""
    yield jrnn
    for info in pkgutil.walk_packages(jrnn.__path__, "jrnn."):
        yield importlib.import_module(info.name)


def test_every_example_block_is_a_doctest():
    """Each ``Example:`` in a docstring of ``jrnn/`` is one that doctest collects and that holds ``>>>`` lines, so
    ``--doctest-modules`` runs it (an example doctest cannot reach, e.g. in a nested function, fails here)."""
    in_source = sum(path.read_text().count("Example:") for path in (ROOT / "jrnn").rglob("*.py"))
    finder = doctest.DocTestFinder(exclude_empty=False)
    found = 0
    for module in _modules():
        for test in finder.find(module, module.__name__):
            if test.docstring and "Example:" in test.docstring:
                assert test.examples, f"{test.name}: an Example: block without >>> lines, which doctest cannot run"
                found += test.docstring.count("Example:")
    assert in_source > 20
    assert found == in_source, f"{in_source - found} Example: block(s) are in docstrings doctest does not collect"


def test_every_lower_bound_is_pinned_in_the_minimum_constraints_ci_can_run():
    """jrnn's own dependencies and its features' extras (not the tools of test, docs and lint)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for name in ("torch", "flax", "plot", "checkpoint", "keras", "equinox", "experiments"):
        requirements += [r for r in project["optional-dependencies"][name] if not r.startswith("jrnn")]
    bounds = dict(re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", r.split(";")[0].strip()).groups()
                  for r in requirements if ">=" in r)
    pins = dict(line.split("==") for line in (ROOT / ".ci" / "minimum.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    for name, bound in bounds.items():
        assert name in pins, f".ci/minimum.txt does not pin {name}, which pyproject.toml bounds at >={bound}"
        pinned = tuple(int(v) for v in pins[name].split("."))
        assert pinned[:len(bound.split("."))] == tuple(int(v) for v in bound.split(".")), (name, bound, pins[name])


def test_version_lives_in_one_place_and_starts_the_changelog():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "jrnn.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", jrnn.__version__)
    releases = re.findall(r"^## \[?(\d+\.\d+\.\d+)\]?", (ROOT / "CHANGELOG.md").read_text(), flags=re.M)
    assert releases and releases[0] == jrnn.__version__


BLOCK_IMPORTS = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # makes `import name` raise ImportError, as if it were not installed
"""

OPTIONAL_FEATURES = {
    "torch": ("torch", "import jrnn; jrnn.to_torch(jrnn.elman(2).init(jax.random.key(0), 1))"),
    "flax": ("flax", "import jrnn.flax"),
    "plot": ("matplotlib", "import jrnn; jrnn.plot_gradient_flow({'recurrences': {}})"),
    "checkpoint": ("orbax", "import jrnn; jrnn.save_checkpoint('/nonexistent', {}, step=0)"),
    "keras": ("keras", "import jrnn; jrnn.from_keras(None)"),
    "equinox": ("equinox", "import jrnn; jrnn.from_equinox(None)"),
}


@pytest.mark.parametrize("extra", sorted(OPTIONAL_FEATURES))
def test_optional_feature_without_its_extra_names_the_extra(extra):
    """With the extra's package hidden, ``import jrnn`` and the core still work, and the feature raises an
    ``ImportError`` that says which extra to install."""
    blocked, use = OPTIONAL_FEATURES[extra]
    code = BLOCK_IMPORTS.format(blocked=[blocked]) + f"""
import jax, jax.numpy as jnp, jrnn
ys, _ = jrnn.scan(jrnn.gru(3), jrnn.gru(3).init(jax.random.key(0), 2), jnp.ones((1, 4, 2)))
assert ys.shape == (1, 4, 3)
try:
    {use}
except ImportError as error:
    print("ImportError:", error)
else:
    print("no error")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"pip install 'jrnn[{extra}]'" in out.stdout, out.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """``python -m build`` of this checkout: ``(wheel, sdist)`` paths."""
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], capture_output=True,
                           text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,), (sdist,) = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    return wheel, sdist


def test_wheel_and_sdist_pass_twine_check_and_ship_py_typed(dist):
    wheel, sdist = dist
    check = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    assert wheel.name.startswith(f"jrnn-{jrnn.__version__}-py3-none-any")
    names = zipfile.ZipFile(wheel).namelist()
    assert "jrnn/py.typed" in names and "jrnn/_src/scan.py" in names
    assert not [n for n in names if n.startswith(("tests/", "experiments/", "benchmarks/"))]


def test_wheel_alone_installs_a_working_core_in_a_fresh_environment(dist, tmp_path):
    """The wheel in a new virtual environment with no extras: ``import jrnn`` and a tiny ``jrnn.scan`` work, and an
    optional feature (a plot) raises the ImportError that names its extra, for real this time."""
    wheel, _ = dist
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / ("Scripts" if os.name == "nt" else "bin") / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              str(wheel)], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    code = """
import importlib.util, jax, jax.numpy as jnp, jrnn
cell = jrnn.lstm(4)
ys, state = jax.jit(lambda p, x: jrnn.scan(cell, p, x, lengths=jnp.array([3, 1])))(cell.init(jax.random.key(0), 2),
                                                                                 jnp.ones((2, 3, 2)))
assert ys.shape == (2, 3, 4) and float(jnp.abs(ys[1, 1:]).max()) == 0.0
assert importlib.util.find_spec("matplotlib") is None and importlib.util.find_spec("torch") is None
try:
    jrnn.plot_gradient_flow({'recurrences': {}})
except ImportError as error:
    print(error)
print(jrnn.__version__, jrnn.__file__)
"""
    run = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "pip install 'jrnn[plot]'" in run.stdout
    assert jrnn.__version__ in run.stdout and str(env) in run.stdout  # the installed copy, not this checkout


def _requires_dist(wheel: pathlib.Path) -> dict[str, list[str]]:
    """The wheel's ``Requires-Dist`` lines by extra (``""``: the core), markers dropped: ``{"bench": [...]}``."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(name).decode()
    by_extra: dict[str, list[str]] = {}
    for line in re.findall(r"^Requires-Dist: (.+)$", metadata, flags=re.M):
        requirement, _, marker = line.partition(";")
        extra = re.search(r"extra == \"([^\"]+)\"", marker)
        by_extra.setdefault(extra.group(1) if extra else "", []).append(requirement.replace(" ", ""))
    return by_extra


def _closure(by_extra: dict[str, list[str]], extra: str) -> set[str]:
    """Every requirement that ``pip install 'jrnn[extra]'`` asks for, through the extras that name other extras."""
    found: set[str] = set(by_extra[""])
    todo, seen = [extra], set()
    while todo:
        name = todo.pop()
        seen.add(name)
        for requirement in by_extra[name]:
            nested = re.fullmatch(r"jrnn\[([^\]]+)\]", requirement)
            if nested:
                todo += [e for e in nested.group(1).split(",") if e not in seen]
            else:
                found.add(requirement)
    return found


def test_wheel_metadata_carries_the_floors_ci_pins_and_the_readme_commands_pull_no_torch_range(dist):
    """Issue 23: the floors in the wheel are ``.ci/minimum.txt``'s pins (jaxlib with jax), and the two commands of the
    README's first code block cannot resolve torch to a range, which pip fills with the newest (CUDA) build: the
    showcase's extra asks for no torch, the tests' extra pins the CPU build ``[bench]`` was measured with. Only the
    ``[torch]`` extra is a range, and the README's install section says to install the CPU build before it."""
    by_extra = _requires_dist(dist[0])
    floors = dict(re.fullmatch(r"([a-z0-9_.-]+)>=([0-9.]+)", r).groups() for r in by_extra[""])
    assert set(floors) == {"jax", "numpy", "optax"}, by_extra[""]
    pins = dict(line.split("==") for line in (ROOT / ".ci" / "minimum.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    assert {name: pins[name] for name in floors} == floors
    assert pins["jaxlib"] == pins["jax"]

    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```")[1]
    commands = re.findall(r'pip install -e "\.\[(\w+)\]"', first_block)
    assert commands == ["experiments", "test"], first_block
    for extra in commands:
        torches = {r for r in _closure(by_extra, extra) if re.match(r"torch\b", r)}
        assert not torches or "torch==2.13.0" in torches, (extra, torches)
    assert not {r for r in _closure(by_extra, "experiments") if r.startswith("torch")}
    ranged = [extra for extra in by_extra if extra and any(re.fullmatch(r"torch>=[0-9.]+", r) for r in by_extra[extra])]
    assert ranged == ["torch"], ranged
    install = readme[readme.index("## Install"):readme.index("## Quick start")]
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in install
    assert f"jax {pins['jax']}" in readme[readme.index("Tested versions:"):]


def test_no_experiment_imports_torch():
    """``pip install -e ".[experiments]"`` installs no PyTorch, so nothing under ``experiments/`` may import it."""
    for path in sorted((ROOT / "experiments").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.split(".")[0] == "torch"], f"{path.name}:{node.lineno} imports torch"


@pytest.mark.parametrize("package", ["experiments", "benchmarks"])
def test_python_m_runs_outside_the_checkout(package, tmp_path):
    """``pip install -e .`` puts the checkout's root on ``sys.path`` (pyproject's ``package-dir``), so
    ``python -m experiments`` works from any directory, not only the root."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-m", package, "--help"], capture_output=True, text=True, cwd=tmp_path,
                         env=env, timeout=300)
    assert run.returncode == 0, (f"`python -m {package}` outside the checkout failed; an editable install made before "
                                 f"pyproject set package-dir needs `pip install -e .` again:\n{run.stderr[-2000:]}")
    assert f"python -m {package}" in run.stdout
