"""``python -m benchmarks linear [--quick] [--cells mamba,mamba2,gated_delta_net,mlstm,hawk,lru,s5,min_gru]
[--shapes 8x256x64,8x1024x64] [--reps 5] [--no-torch] [--torch-seconds 5] [--out MD] [--json JSON]``

The linear-recurrence cells, diagonal (``mamba``, ``hawk``, ``lru``, ``s5``, ``min_gru``) and with a matrix state
per head (``mamba2``, ``gated_delta_net``, ``mlstm``), three to five ways, on the CPU in float32: ``step``, a
``jax.lax.scan`` over ``cell.step`` written here (the plain loop, no solver); ``sequential``,
``jrnn.scan(..., solver=jrnn.sequential())``; for a :class:`jrnn.LinearRecurrence` (not Gated DeltaNet, whose
transition is a dense matrix, nor the mLSTM) ``associative``, ``jrnn.scan(..., solver=jrnn.associative())`` (the
tree, ``O(log T)`` depth) and ``loop``, ``jrnn.scan(..., solver=jrnn.associative(method="loop"))`` (the coefficients
for the whole sequence, then a ``jax.lax.scan`` of one multiply-add per step); for a :class:`jrnn.Chunkwise` cell
``chunked``, ``jrnn.scan(..., solver=jrnn.chunked(cell.chunk_size))`` (the size :func:`jrnn.auto` takes: 64 for
Mamba-2; for Gated DeltaNet and the mLSTM the value size per head rounded up to a power of two within [16, 64]).
Against transformers' PyTorch modules where there is one: ``MambaMixer`` (its slow CPU path, no ``mamba_ssm``
kernels) for ``mamba``, ``Mamba2Mixer`` (its ``torch_forward``, the chunked SSD with ``chunk_size = 64``) for
``mamba2``, ``Qwen3NextGatedDeltaNet`` (its ``torch_chunk_gated_delta_rule``, chunks of 64; fla is CUDA-only) for
``gated_delta_net``, ``xLSTMLayer`` (``mode="train"``: its native chunkwise kernel, chunks of 64) for ``mlstm``, and
``RecurrentGemmaRecurrentBlock`` (called with ``position_ids = arange(T)``, no cache) for ``hawk``.

Cells, at a shape ``BxTxD`` (D the model width, which is also the input size): ``jrnn.mamba(D, state_size=16)``
(E = 2D channels, conv width 4), ``jrnn.mamba2(D, state_size=64, head_dim=32)`` (2D/32 heads, one group; below
D = 16, one head), ``jrnn.gated_delta_net(D, num_heads=4)`` (d_k = d_v = D/4), ``jrnn.mlstm(D, num_heads=4)``
(d_qk = D/8, d_v = D/4), ``jrnn.hawk_block(D)`` (one head, conv width 4), ``jrnn.lru(D, D)``, ``jrnn.s5(D, D)`` and
``jrnn.min_gru(D)``. Modes: ``fwd`` is ``jax.jit`` of the outputs ``ys``; ``fwdbwd`` is
``jax.jit(jax.grad(sum(ys)))`` with respect to the parameters and the inputs (PyTorch: ``forward`` under
``torch.no_grad()``, and ``forward`` then ``ys.sum().backward()`` with the input requiring a gradient).

Method: for each (cell, shape, mode) the forms are compiled and run once to warm up; then ``reps`` rounds each
time one call of every form, in an order rotated from round to round, so that all see the same machine load; the
median is reported. PyTorch runs afterwards in a process of its own (``python -m benchmarks.linear --torch-worker``,
as ``benchmarks/worker.py``: PyTorch's OpenMP threads and XLA's thread pool never share a process), warmed up, then
``reps`` calls per mode, fewer where the warm-up call says they would take over ``--torch-seconds``, and the
warm-up call alone where it took longer than that (``MambaMixer``'s slow path takes many seconds per fwd+bwd call at
T = 1024; the JSON keeps each count, ``warm_up_only`` marking the latter). The ratio
is PyTorch's fwd+bwd median over the fastest jrnn form's (above 1: jrnn is faster). Each cell's line says which of
the solvers (``sequential``, ``associative``, ``loop``, ``chunked``) measured fastest here, forward and
forward+backward, next to the one :func:`jrnn.auto` takes for the cell on this backend: the question of which
solver it should take.

Writes a Markdown section (``--out``, also printed) and the rows as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEADER = ("## Linear recurrences, diagonal and matrix-state: step loop, sequential, associative (tree and loop) and "
          "chunked solvers, PyTorch")
CELLS = ("mamba", "mamba2", "gated_delta_net", "mlstm", "hawk", "lru", "s5", "min_gru")
FORMS = ("step", "sequential", "associative", "loop", "chunked")
SOLVERS = ("sequential", "associative", "loop", "chunked")  # the forms jrnn.auto chooses among
CHUNK = 64  # the chunk_size of Mamba2Mixer and of xLSTMLayer's chunkwise kernel
MODES = ("fwd", "fwdbwd")
SHAPES = ((8, 256, 64), (8, 1024, 64))
QUICK_SHAPES = ((2, 64, 16),)
TORCH_CELLS = ("mamba", "mamba2", "gated_delta_net", "mlstm", "hawk")  # those with a transformers module


# --- jrnn (this process) ------------------------------------------------------------------------------------------

def make_cell(name: str, D: int):
    import jrnn

    return {"mamba": lambda: jrnn.mamba(D, state_size=16), "hawk": lambda: jrnn.hawk_block(D),
            "mamba2": lambda: jrnn.mamba2(D, state_size=64, head_dim=min(32, 2 * D)),
            "gated_delta_net": lambda: jrnn.gated_delta_net(D, num_heads=min(4, D)),
            "mlstm": lambda: jrnn.mlstm(D, num_heads=min(4, D // 2)),
            "lru": lambda: jrnn.lru(D, D), "s5": lambda: jrnn.s5(D, D), "min_gru": lambda: jrnn.min_gru(D)}[name]()


def problem(name: str, B: int, T: int, D: int):
    """``(cell, params, xs [B, T, D])``: fixed seeds, float32."""
    import jax
    import jax.numpy as jnp

    cell = make_cell(name, D)
    params = cell.init(jax.random.key(0), D)
    xs = jax.random.normal(jax.random.key(1), (B, T, D), jnp.float32)
    return cell, params, xs


def ys_fn(cell, form: str):
    """``(params, xs) -> ys [B, T, O]`` of one form."""
    import jax
    import jax.numpy as jnp

    import jrnn

    if form == "step":
        def run(p, x):
            state = cell.initial_state((x.shape[0],), x.dtype)
            _, ys = jax.lax.scan(lambda s, xt: cell.step(p, s, xt), state, jnp.swapaxes(x, 0, 1))
            return jnp.swapaxes(ys, 0, 1)
        return run
    return lambda p, x: jrnn.scan(cell, p, x, solver=solver_of(form, cell))[0]


def solver_of(form: str, cell):
    import jrnn

    if form == "chunked":
        return jrnn.chunked(cell.chunk_size)
    return {"sequential": jrnn.sequential(), "associative": jrnn.associative(),
            "loop": jrnn.associative(method="loop")}[form]


def forms_of(name: str) -> tuple[str, ...]:
    """The forms that apply to the cell: ``associative`` and ``loop`` only for a :class:`jrnn.LinearRecurrence`,
    ``chunked`` only for a :class:`jrnn.Chunkwise` one."""
    import jrnn

    cell = make_cell(name, 8)
    applies = dict(associative=isinstance(cell, jrnn.LinearRecurrence), loop=isinstance(cell, jrnn.LinearRecurrence),
                   chunked=isinstance(cell, jrnn.Chunkwise))
    return tuple(form for form in FORMS if applies.get(form, True))


def auto_form(name: str) -> str:
    """The form :func:`jrnn.auto` takes for the cell on this backend."""
    import jrnn

    chosen = jrnn.auto().choose(make_cell(name, 8))
    cell = make_cell(name, 8)
    return next(form for form in SOLVERS if form in forms_of(name) and solver_of(form, cell) == chosen)


def build(cell, form: str, mode: str, params, xs):
    """``(call, compile_s)``: the compiled function of ``mode`` with its arguments bound; ``call`` returns its
    result (ready)."""
    import jax
    import jax.numpy as jnp

    fn = ys_fn(cell, form)
    if mode == "fwdbwd":
        fn = jax.grad(lambda p, x, f=fn: jnp.sum(f(p, x)), argnums=(0, 1))
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(params, xs).compile()
    compile_s = time.perf_counter() - start
    return (lambda: jax.block_until_ready(compiled(params, xs))), compile_s


def max_diff(a, b) -> float:
    import jax
    import numpy as np

    return max((float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) if np.size(u) else 0.0)
               for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def run_jrnn(name: str, B: int, T: int, D: int, reps: int, log=lambda s: None) -> list[dict]:
    """One row per (mode, form) of one (cell, shape), plus each row's largest difference from the ``step`` form's
    result (outputs for ``fwd``, every gradient for ``fwdbwd``)."""
    cell, params, xs = problem(name, B, T, D)
    forms = forms_of(name)
    rows = []
    for mode in MODES:
        runs, results, these = {}, {}, {}
        for form in forms:
            call, compile_s = build(cell, form, mode, params, xs)
            results[form] = call()  # warm up
            runs[form] = call
            these[form] = dict(cell=name, B=B, T=T, D=D, mode=mode, form=form, compile_s=compile_s)
        for form in forms:
            these[form]["max_abs_diff_vs_step"] = max_diff(results[form], results["step"])
        samples = {f: [] for f in forms}
        for r in range(reps):
            shift = r % len(forms)
            for form in forms[shift:] + forms[:shift]:
                start = time.perf_counter()
                runs[form]()
                samples[form].append(1e3 * (time.perf_counter() - start))
        for form, times in samples.items():
            these[form].update(median_ms=statistics.median(times), min_ms=min(times), samples_ms=times)
        rows += these.values()
        log(f"{name} {B}x{T}x{D} {mode}: " + ", ".join(f"{f} {these[f]['median_ms']:.2f} ms" for f in forms))
    return rows


# --- PyTorch (its own process) ------------------------------------------------------------------------------------

def torch_module(name: str, D: int):
    """``(module, forward(x) -> ys)``: transformers' module for ``name`` at width D, in evaluation mode."""
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()  # the slow path's warning
    torch.manual_seed(0)
    if name == "mamba":
        from transformers.models.mamba.modeling_mamba import MambaMixer

        config = transformers.MambaConfig(hidden_size=D, state_size=16, expand=2, conv_kernel=4,
                                          time_step_rank="auto", num_hidden_layers=1)
        module = MambaMixer(config, layer_idx=0).eval()
        return module, lambda x: module(x)
    if name == "mamba2":
        from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer

        config = transformers.Mamba2Config(hidden_size=D, state_size=64, expand=2, head_dim=32,
                                           num_heads=2 * D // 32, n_groups=1, conv_kernel=4, chunk_size=CHUNK,
                                           num_hidden_layers=1)
        module = Mamba2Mixer(config, layer_idx=0).eval()
        return module, lambda x: module(x)
    if name == "gated_delta_net":
        from transformers.models.qwen3_next.modeling_qwen3_next import Qwen3NextGatedDeltaNet

        heads = min(4, D)
        config = transformers.Qwen3NextConfig(hidden_size=D, linear_num_key_heads=heads, linear_num_value_heads=heads,
                                              linear_key_head_dim=D // heads, linear_value_head_dim=D // heads,
                                              linear_conv_kernel_dim=4, num_hidden_layers=1,
                                              layer_types=["linear_attention"])
        module = Qwen3NextGatedDeltaNet(config, layer_idx=0).eval()  # its torch_chunk_gated_delta_rule, chunks of 64
        return module, lambda x: module(x)
    if name == "mlstm":
        from transformers.models.xlstm.modeling_xlstm import xLSTMLayer

        config = transformers.xLSTMConfig(hidden_size=D, num_heads=min(4, D // 2), mode="train", chunk_size=CHUNK,
                                          num_hidden_layers=1, autocast_kernel_dtype="float32",
                                          return_last_states=True)
        module = xLSTMLayer(config).eval()  # mode="train": its native chunkwise kernel
        return module, lambda x: module(x)[0]
    from transformers import RecurrentGemmaConfig
    from transformers.models.recurrent_gemma.modeling_recurrent_gemma import RecurrentGemmaRecurrentBlock

    config = RecurrentGemmaConfig(hidden_size=D, lru_width=D, num_attention_heads=2, conv1d_width=4,
                                  num_hidden_layers=1, vocab_size=8, intermediate_size=8)
    module = RecurrentGemmaRecurrentBlock(config, layer_idx=0).eval()

    def forward(x):
        position_ids = torch.arange(x.shape[1])[None].expand(x.shape[0], -1)
        return module(x, position_ids=position_ids, attention_mask=None, use_cache=False)[0]
    return module, forward


def time_torch(name: str, B: int, T: int, D: int, reps: int, max_seconds: float = float("inf")) -> dict:
    import torch

    module, forward = torch_module(name, D)
    x = torch.randn(B, T, D)

    def fwd():
        with torch.no_grad():
            forward(x)

    def fwdbwd():
        module.zero_grad(set_to_none=True)
        xg = x.detach().requires_grad_(True)
        forward(xg).sum().backward()

    out = dict(cell=name, B=B, T=T, D=D, threads=torch.get_num_threads(), torch=torch.__version__)
    for mode, call in (("fwd", fwd), ("fwdbwd", fwdbwd)):
        start = time.perf_counter()
        call()  # warm up
        warm_s = time.perf_counter() - start
        # the slow path at T = 1024 takes many seconds a call: fewer calls, and above the budget the warm-up's alone
        # (PyTorch compiles nothing, so its first call is a fair sample)
        these = min(reps, int(max_seconds / warm_s))
        times = [] if these else [1e3 * warm_s]
        for _ in range(these):
            start = time.perf_counter()
            call()
            times.append(1e3 * (time.perf_counter() - start))
        out[mode] = dict(median_ms=statistics.median(times), min_ms=min(times), samples_ms=times, reps=len(times),
                         warm_up_only=not these)
    return out


def torch_worker(request_path: str, answer_path: str) -> int:
    request = json.loads(pathlib.Path(request_path).read_text())
    answers = []
    for name, B, T, D in request["configs"]:
        try:
            answers.append(time_torch(name, B, T, D, request["reps"], request["max_seconds"]))
        except Exception as e:  # noqa: BLE001 - reported in the table instead
            answers.append(dict(cell=name, B=B, T=T, D=D, error=f"{type(e).__name__}: {e}"))
        print(f"torch {name} {B}x{T}x{D}: " + (answers[-1].get("error") or ", ".join(
            f"{m} {answers[-1][m]['median_ms']:.2f} ms" for m in MODES)), file=sys.stderr, flush=True)
    pathlib.Path(answer_path).write_text(json.dumps(answers))
    return 0


def run_torch(configs: list[tuple], reps: int, max_seconds: float = float("inf")) -> list[dict]:
    """PyTorch's timings of ``configs`` ((cell, B, T, D) tuples), from a process of its own."""
    if not configs:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        request, answer = pathlib.Path(tmp) / "request.json", pathlib.Path(tmp) / "answer.json"
        request.write_text(json.dumps(dict(configs=configs, reps=reps, max_seconds=max_seconds)))
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        done = subprocess.run([sys.executable, "-m", "benchmarks.linear", "--torch-worker", str(request),
                               str(answer)], cwd=ROOT, env=env)
        if done.returncode != 0 or not answer.exists():
            return [dict(cell=c, B=B, T=T, D=D, error=f"the torch worker exited with {done.returncode}")
                    for c, B, T, D in configs]
        return json.loads(answer.read_text())


# --- Markdown -----------------------------------------------------------------------------------------------------

def _ms(v) -> str:
    return "-" if v is None else (f"{v:.3g}" if v >= 100 else f"{v:.2f}")


def summarise(doc: dict) -> None:
    """Adds ``table`` (one entry per cell, shape and form, torch as a form of its own), ``faster`` (per cell: which
    solver form had the smallest median, per shape and mode) and ``auto`` (per cell: the form :func:`jrnn.auto`
    takes) to ``doc``."""
    rows, torch_rows = doc["rows"], doc["torch"]
    table, faster = [], {}
    keys = list(dict.fromkeys((r["cell"], r["B"], r["T"], r["D"]) for r in rows))
    for cell, B, T, D in keys:
        by = {(r["form"], r["mode"]): r for r in rows if (r["cell"], r["B"], r["T"], r["D"]) == (cell, B, T, D)}
        tr = next((t for t in torch_rows if (t["cell"], t["B"], t["T"], t["D"]) == (cell, B, T, D)), None)
        forms = [f for f in FORMS if (f, "fwd") in by]
        best = min(by[(f, "fwdbwd")]["median_ms"] for f in forms)
        best_fwd = min(by[(f, "fwd")]["median_ms"] for f in forms)
        for form in forms:
            table.append(dict(cell=cell, shape=f"{B}x{T}x{D}", form=form, fwd_ms=by[(form, "fwd")]["median_ms"],
                              fwdbwd_ms=by[(form, "fwdbwd")]["median_ms"], torch_ms=None, ratio=None))
        if tr is not None:
            entry = dict(cell=cell, shape=f"{B}x{T}x{D}", form="torch", fwd_ms=None, fwdbwd_ms=None,
                         torch_ms=None, ratio=None, error=tr.get("error"))
            if "error" not in tr:
                entry.update(fwd_ms=tr["fwd"]["median_ms"], fwdbwd_ms=tr["fwdbwd"]["median_ms"],
                             torch_ms=tr["fwdbwd"]["median_ms"], ratio=tr["fwdbwd"]["median_ms"] / best,
                             ratio_fwd=tr["fwd"]["median_ms"] / best_fwd)
            table.append(entry)
        for mode in MODES:
            ms = {form: by[(form, mode)]["median_ms"] for form in SOLVERS if form in forms}
            faster.setdefault(cell, []).append(dict(shape=f"{B}x{T}x{D}", mode=mode, ms=ms,
                                                    faster=min(ms, key=ms.__getitem__)))
    doc["table"], doc["faster"] = table, faster
    doc["auto"] = {cell: auto_form(cell) for cell in faster}


def verdict(cases: list[dict]) -> str:
    """``"loop fastest in 3 of 4"``: the form fastest in the most cases (ties: the first in ``SOLVERS``)."""
    present = [form for form in SOLVERS if form in cases[0]["ms"]]
    wins = {form: sum(c["faster"] == form for c in cases) for form in present}
    best = max(present, key=wins.__getitem__)
    return f"{best} fastest in {wins[best]} of {len(cases)}"


def markdown(doc: dict) -> str:
    m, s = doc["machine"], doc["settings"]
    out = [HEADER, "", f"    {doc['command']}", "",
           f"Machine: {m['processor'] or 'unknown processor'}, {m['cpus']} CPUs, jax {m['jax']}, "
           f"torch {m.get('torch') or '-'}, transformers {m.get('transformers') or '-'}, {doc['date']}, "
           f"{doc['seconds']:g} s in all. float32; shape BxTxD (D the model width and input size); median of "
           f"{s['reps']} interleaved rounds (ms; PyTorch's calls stop after ~{s['torch_seconds']:g} s; "
           f"slower ones are their warm-up call alone). `step`: `jax.lax.scan` over `cell.step`; `sequential` / "
           f"`associative` (the tree) / `loop` (`jrnn.associative(method=\"loop\")`): `jrnn.scan` with that "
           f"solver; `torch`: transformers' module (slow CPU path), fwd under "
           f"`no_grad`. torch ms is PyTorch's fwd+bwd; ratio = torch fwd+bwd / the fastest jrnn form's fwd+bwd "
           f"(above 1: jrnn is faster).", "",
           "| cell | shape | form | fwd ms | fwd+bwd ms | torch ms | ratio torch/jrnn-best |",
           "|---|---|---|---:|---:|---:|---:|"]
    for t in doc["table"]:
        if t.get("error"):
            out.append(f"| {t['cell']} | {t['shape']} | torch | failed: {t['error']} | | | |")
            continue
        ratio = "-" if t["ratio"] is None else f"{t['ratio']:.2f}"
        out.append(f"| {t['cell']} | {t['shape']} | {t['form']} | {_ms(t['fwd_ms'])} | {_ms(t['fwdbwd_ms'])} | "
                   f"{_ms(t['torch_ms'])} | {ratio} |")
    out += ["", f"The fastest solver on this {m.get('backend', 'cpu')} (smallest median; fwd and fwd+bwd per shape; "
                f"ms for sequential / associative / loop, and / chunked for a chunkwise cell) and the one `jrnn.auto` "
                f"takes:", ""]
    for cell, cases in doc["faster"].items():
        detail = "; ".join(f"{c['shape']} {c['mode']} {c['faster']} ("
                           + " / ".join(_ms(ms) for ms in c["ms"].values()) + ")" for c in cases)
        out.append(f"- {cell}: {verdict(cases)}; jrnn.auto takes {doc['auto'][cell]} — {detail}")
    return "\n".join(out)


# --- Command line -------------------------------------------------------------------------------------------------

def parse_shapes(text: str) -> tuple:
    return tuple(tuple(int(v) for v in s.split("x")) for s in text.split(","))


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks linear", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one small shape (2x64x16), 3 rounds")
    parser.add_argument("--cells", default=",".join(CELLS), help="comma-separated subset of " + ",".join(CELLS))
    parser.add_argument("--shapes", default=None, help="comma-separated BxTxD (default 8x256x64,8x1024x64)")
    parser.add_argument("--reps", type=int, default=None, help="timed rounds per configuration (default 5, quick 3)")
    parser.add_argument("--no-torch", action="store_true", help="time jrnn only")
    parser.add_argument("--torch-seconds", type=float, default=5.0,
                        help="PyTorch's timed calls per (cell, shape, mode) stop at about this many seconds; a call "
                             "slower than this is timed by its warm-up alone (default 5)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "linear.md")
    parser.add_argument("--json", type=pathlib.Path, default=ROOT / "benchmarks" / "linear.json")
    args = parser.parse_args(argv)
    args.cells = args.cells.split(",")
    unknown = [c for c in args.cells if c not in CELLS]
    if unknown:
        parser.error(f"unknown cell {unknown}; expected some of {list(CELLS)}")
    try:
        args.shapes = parse_shapes(args.shapes) if args.shapes else (QUICK_SHAPES if args.quick else SHAPES)
    except ValueError:
        parser.error(f"expected --shapes as comma-separated BxTxD, got {args.shapes!r}")
    args.reps = args.reps or (3 if args.quick else 5)
    if args.reps < 1:
        parser.error(f"expected --reps >= 1, got {args.reps}")
    return args


def machine() -> dict:
    import jax

    processor = platform.processor()
    if not processor:  # empty on many Linux systems
        try:
            processor = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                              if line.startswith("model name")), "")
        except OSError:
            processor = ""
    info = dict(processor=processor, cpus=os.cpu_count(), jax=jax.__version__, backend=jax.default_backend(),
                platform=platform.platform(),
                loadavg_1min=os.getloadavg()[0])
    for name in ("torch", "transformers"):  # versions only, without importing them here
        try:
            from importlib.metadata import version

            info[name] = version(name)
        except Exception:  # noqa: BLE001
            info[name] = None
    return info


def run(args: argparse.Namespace, command: str, log=lambda s: None) -> dict:
    started = time.time()
    rows = []
    for cell in args.cells:
        for B, T, D in args.shapes:
            rows += run_jrnn(cell, B, T, D, args.reps, log=log)
    configs = [] if args.no_torch else [(c, B, T, D) for c in args.cells if c in TORCH_CELLS
                                        for B, T, D in args.shapes]
    torch_rows = run_torch(configs, args.reps, args.torch_seconds)
    doc = dict(command=command, date=datetime.date.today().isoformat(), seconds=round(time.time() - started, 1),
               machine=machine(), settings=dict(cells=args.cells, shapes=[list(s) for s in args.shapes],
                                                reps=args.reps, torch_seconds=args.torch_seconds,
                                                forms=list(FORMS), modes=list(MODES)),
               rows=rows, torch=torch_rows)
    summarise(doc)
    return doc


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--torch-worker"]:
        return torch_worker(*argv[1:3])
    args = parse(argv)
    doc = run(args, " ".join(["python -m benchmarks linear", *argv]),
              log=lambda s: print(s, file=sys.stderr, flush=True))
    text = markdown(doc)
    for path, content in ((args.json, json.dumps(doc, indent=1) + "\n"), (args.out, text + "\n")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
