"""A worker script run once per pytest session, even under pytest-xdist: the workers share the session's base
temporary directory, and a lock lets one of them run it while the others wait (test_sharded.py, test_sharded_scan.py:
each worker otherwise runs its own copy, a minute each on 2 cores)."""

from __future__ import annotations

import contextlib
import os
import pathlib
import subprocess
import sys

try:
    import fcntl
except ImportError:  # Windows: no flock, each worker runs its own
    fcntl = None


def run_once(tmp_path_factory, name: str, script: str, env: dict, timeout: float) -> pathlib.Path:
    """Runs ``python script OUT`` once per session with ``env``, where ``OUT`` is the returned directory; the run is
    taken as done when ``OUT/facts.json`` exists. The repository is put on ``PYTHONPATH`` (jrnn importable
    uninstalled too)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER") and fcntl is not None:
        root = root.parent
    out = root / f"jrnn_{name}"
    repo = str(pathlib.Path(__file__).resolve().parent.parent)
    env = dict(env, PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    with _exclusive(root / f"jrnn_{name}.lock"):
        if not (out / "facts.json").exists():
            out.mkdir(exist_ok=True)
            proc = subprocess.run([sys.executable, script, str(out)], env=env, capture_output=True, text=True,
                                  timeout=timeout)
            assert proc.returncode == 0, f"worker failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return out


@contextlib.contextmanager
def _exclusive(path):
    """An inter-process lock: POSIX ``flock``; without it (Windows) none."""
    if fcntl is None:
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
