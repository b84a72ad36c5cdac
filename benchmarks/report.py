"""Ratios, targets, and the Markdown written to ``BENCHMARKS.md``."""

from __future__ import annotations

import pathlib

REFERENCE = "jrnn"
PEERS = ("torch", "torch_1t", "flax", "equinox", "jrnn_plain", "jrnn_bf16", "jrnn_all", "jrnn_all_mt")
ALL_CORES = "jrnn_all"  # the all-cores configuration the targets use: jrnn.sharding.cpu_devices()'s default
LABELS = {"jrnn": "jrnn", "jrnn_plain": "jrnn plain", "jrnn_bf16": "jrnn bf16",
          "torch": "PyTorch", "torch_1t": "PyTorch 1 thread", "flax": "Flax nn.RNN", "equinox": "Equinox+scan",
          "jrnn_all": "jrnn all cores", "jrnn_all_mt": "jrnn all cores (XLA threads)"}
MODES = {"fwd": "fwd", "fwdbwd": "fwd+bwd"}
ANALYSIS = pathlib.Path(__file__).resolve().parent / "analysis.md"
PARALLEL = pathlib.Path(__file__).resolve().parent / "parallel.md"  # written by `python -m benchmarks parallel`
STABILITY = pathlib.Path(__file__).resolve().parent / "stability.md"  # written by `python -m benchmarks stability`


def ratios(result: dict) -> dict:
    """``peer median / jrnn median`` per peer and mode: above 1 means jrnn is faster."""
    impls = result["impls"]
    if REFERENCE not in impls:
        return {}
    out = {}
    for peer, entry in impls.items():
        if peer == REFERENCE:
            continue
        out[peer] = {m: entry[m]["median_ms"] / impls[REFERENCE][m]["median_ms"] for m in MODES}
    return out


def targets(results: list, torch_impl: str = "torch") -> list:
    """The issue's targets, per configuration: LSTM and GRU forward+backward >= 1.3x PyTorch and >= 1.5x Flax,
    forward >= 1x PyTorch; Elman ahead of every peer in both modes. ``torch_impl='torch_1t'`` checks the same
    targets with PyTorch on one thread in place of PyTorch's default."""
    rows = []
    for res in results:
        r = res.get("ratios", {})
        cell = res["config"]["cell"]
        wanted = []
        if cell in ("lstm", "gru"):
            wanted = [(torch_impl, "fwdbwd", 1.3), ("flax", "fwdbwd", 1.5), (torch_impl, "fwd", 1.0)]
        elif cell == "elman":
            wanted = [(p, m, 1.0) for p in (torch_impl, "flax", "equinox", "jrnn_plain") for m in MODES]
        for peer, mode, need in wanted:
            if peer not in r:
                continue
            got = r[peer][mode]
            rows.append(dict(config=res["name"], peer=peer, mode=mode, required=need, ratio=got, met=got >= need,
                             shortfall=None if got >= need else need / got))
    return rows


def all_cores_targets(results: list) -> list:
    """The all-cores targets, per configuration: with every core (``jrnn_all``), LSTM and GRU forward+backward
    >= 1.3x PyTorch and forward >= 1.0x PyTorch at B >= 16; at B = 1, jrnn on one device keeps its lead (>= 1x)."""
    rows = []
    for res in results:
        impls, cfg = res["impls"], res["config"]
        if cfg["cell"] not in ("lstm", "gru") or "torch" not in impls:
            continue
        who = ALL_CORES if cfg["B"] >= 16 else REFERENCE if cfg["B"] == 1 else None
        if who is None or who not in impls:
            continue
        for mode, need in (("fwdbwd", 1.3 if cfg["B"] >= 16 else 1.0), ("fwd", 1.0)):
            got = impls["torch"][mode]["median_ms"] / impls[who][mode]["median_ms"]
            rows.append(dict(config=res["name"], jrnn=who, peer="torch", mode=mode, required=need, ratio=got,
                             met=got >= need, shortfall=None if got >= need else need / got))
    return rows


def _all_cores_table(doc: dict) -> str:
    variants = [i for i in (REFERENCE, ALL_CORES, "jrnn_all_mt", "torch")
                if any(i in res["impls"] for res in doc["results"])]
    lines = ["| config | " + " | ".join(f"{LABELS[i]} fwd | f+b" for i in variants)
             + " | all cores vs PyTorch fwd | f+b | all cores vs 1 device fwd | f+b |",
             "|---|" + "---|---|" * (len(variants) + 2)]
    for res in doc["results"]:
        impls = res["impls"]
        if ALL_CORES not in impls:
            continue
        cells = [res["name"]] + [x for i in variants for x in (_ms(impls.get(i), "fwd"), _ms(impls.get(i), "fwdbwd"))]
        for base in ("torch", REFERENCE):
            for m in MODES:
                cells.append(f"{impls[base][m]['median_ms'] / impls[ALL_CORES][m]['median_ms']:.2f}x"
                             if base in impls else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


ABLATION_ROWS = (
    ("jrnn_plain", "jrnn.scan(solver=jrnn.sequential()): lax.scan over cell.step, per-step input matmul, autodiff"),
    ("abl_hoist_scan", "+ input projection as one GEMM before a lax.scan (time-major), autodiff"),
    ("abl_fused_autodiff", "fused loop (time-major, gates in place, one tanh), autodiff of the loop"),
    ("jrnn", "fused loop + custom VJP (after-loop weight GEMMs, in-place gradient buffer): jrnn.scan's fused path"),
    ("abl_packed", "fused path, LSTM carry (h, c) packed into one array"),
    ("abl_unroll2", "fused path, unroll 2"),
    ("abl_unroll4", "fused path, unroll 4"),
    ("abl_unroll8", "fused path, unroll 8"),
    ("jrnn_bf16", "fused path, bfloat16 matmul operands (f32 accumulation and state)"),
)


def ablation(results: list) -> list:
    """For each configuration run with the ablation variants: every variant's medians and speedup over the plain
    path (``jrnn_plain``), and the loop carries of its fwd+bwd program."""
    rows = []
    for res in results:
        impls = res["impls"]
        base_name = "jrnn_plain"
        if not any(name.startswith("abl_") for name in impls) or base_name not in impls:
            continue
        base = impls[base_name]
        variants = {}
        for name, _ in ABLATION_ROWS:
            if name in impls:
                e = impls[name]
                variants[name] = {m: dict(median_ms=e[m]["median_ms"],
                                          speedup_vs_plain=base[m]["median_ms"] / e[m]["median_ms"]) for m in MODES}
                variants[name]["loop_carry_fwdbwd"] = e.get("loop_carry_fwdbwd")
                variants[name]["peak_bytes_fwdbwd"] = e.get("peak_bytes_fwdbwd")
        rows.append(dict(config=res["name"], baseline=base_name, variants=variants))
    return rows


def _ablation_tables(doc: dict) -> str:
    out = []
    for block in ablation(doc["results"]):
        out += [f"**{block['config']}**", "",
                "| variant | fwd ms | fwd+bwd ms | speedup vs plain (fwd / fwd+bwd) | loop carries (fwd+bwd) "
                "| peak MiB |", "|---|---|---|---|---|---|"]
        for name, label in ABLATION_ROWS:
            v = block["variants"].get(name)
            if not v:
                continue
            peak = v.get("peak_bytes_fwdbwd")
            out.append(f"| {label} | {v['fwd']['median_ms']:.1f} | {v['fwdbwd']['median_ms']:.1f} | "
                       f"{v['fwd']['speedup_vs_plain']:.2f}x / {v['fwdbwd']['speedup_vs_plain']:.2f}x | "
                       f"{v.get('loop_carry_fwdbwd')} | {peak / 2 ** 20:.1f} |" if peak else " - |")
        out.append("")
    return "\n".join(out)


def _ms(entry, mode):
    return f"{entry[mode]['median_ms']:.1f}" if entry else "-"


def _x(r, peer, mode):
    return f"{r[peer][mode]:.2f}x" if peer in r else "-"


def _load_line(loads: list, cpus) -> str:
    """The load during the run; above one process per core, other jobs shared the machine."""
    if not loads:
        return ""
    line = f"1-minute load average during the run: {min(loads):.1f} to {max(loads):.1f}"
    if cpus and max(loads) > cpus + 0.5:
        return line + (f" (other jobs shared the {cpus} cores; every ratio below is between timings taken in the "
                       "same rounds, so it sees the same load).")
    return line + f" (the benchmark's own processes on {cpus} cores: a quiet machine)."


def one_line(result: dict) -> str:
    r = result.get("ratios", {})
    parts = [f"{LABELS.get(p, p)} {r[p]['fwd']:.2f}/{r[p]['fwdbwd']:.2f}"
             for p in ("torch", "flax", "equinox") if p in r]
    return "vs " + ", ".join(parts) + " (fwd/fwd+bwd speedup)"


def summary_table(doc: dict) -> str:
    lines = ["| config | jrnn fwd ms | fwd+bwd ms | vs PyTorch fwd | fwd+bwd | vs PyTorch 1 thread fwd | "
             "fwd+bwd | vs Flax fwd | fwd+bwd | vs Equinox fwd | fwd+bwd | vs jrnn plain fwd | fwd+bwd |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for res in doc["results"]:
        ref = res["impls"].get(REFERENCE)
        r = res.get("ratios", {})
        cells = [res["name"], _ms(ref, "fwd"), _ms(ref, "fwdbwd")]
        for peer in ("torch", "torch_1t", "flax", "equinox", "jrnn_plain"):
            cells += [_x(r, peer, "fwd"), _x(r, peer, "fwdbwd")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _medians_table(doc: dict) -> str:
    impls = [i for i in (REFERENCE,) + PEERS if any(i in res["impls"] for res in doc["results"])]
    head = "| config | " + " | ".join(f"{LABELS.get(i, i)} fwd | f+b" for i in impls) + " |"
    lines = [head, "|---|" + "---|---|" * len(impls)]
    for res in doc["results"]:
        cells = [res["name"]]
        for i in impls:
            e = res["impls"].get(i)
            cells += [_ms(e, "fwd"), _ms(e, "fwdbwd")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _gflops_table(doc: dict) -> str:
    impls = [i for i in (REFERENCE, "torch", "torch_1t", "flax", "equinox", "jrnn_plain")
             if any(i in res["impls"] for res in doc["results"])]
    head = ("| config | GEMM jax | GEMM torch | GEMM torch 1 thread | "
            + " | ".join(f"{LABELS.get(i, i)} fwd | f+b" for i in impls) + " |")
    lines = [head, "|---|---|---|---|" + "---|---|" * len(impls)]
    for res in doc["results"]:
        g = res["gemm_gflops"]
        cells = [res["name"]] + [f"{g[fw]:.0f}" if fw in g else "-" for fw in ("jax", "torch", "torch1")]
        for i in impls:
            e = res["impls"].get(i)
            for m in MODES:
                cells.append(f"{e[m]['gflops']:.0f} ({100 * e[m]['fraction_of_gemm']:.0f}%)" if e else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _memory_table(doc: dict) -> str:
    impls = [i for i in (REFERENCE,) + PEERS if any(i in res["impls"] for res in doc["results"])]
    lines = ["| config | " + " | ".join(LABELS.get(i, i) for i in impls) + " |", "|---|" + "---|" * len(impls)]
    for res in doc["results"]:
        cells = [res["name"]]
        for i in impls:
            e = res["impls"].get(i)
            b = e and e.get("peak_bytes_fwdbwd")
            cells.append(f"{b / 2 ** 20:.2f}" if b else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _targets_table(rows: list) -> str:
    lines = ["| config | target | ratio | met |", "|---|---|---|---|"]
    for t in rows:
        verdict = "yes" if t["met"] else f"**no**: {100 * (t['shortfall'] - 1):.0f}% short"
        lines.append(f"| {t['config']} | {MODES[t['mode']]} >= {t['required']:.1f}x {LABELS.get(t['peer'], t['peer'])} "
                     f"| {t['ratio']:.2f}x | {verdict} |")
    return "\n".join(lines)


def markdown(doc: dict) -> str:
    m = doc["machine"]
    v = m.get("versions", {})
    loads = [x for res in doc["results"] for x in res.get("loadavg_1min", [])]
    missed = [t for t in doc["targets"] if not t["met"]]
    parts = [
        "# jrnn benchmarks: CPU, against PyTorch, Flax and Equinox",
        "",
        "Generated by the command below (`benchmarks/`); do not edit by hand except `benchmarks/analysis.md`, "
        "which is included at the end, followed by `benchmarks/parallel.md` (`python -m benchmarks parallel`) and "
        "`benchmarks/stability.md` (`python -m benchmarks stability`).",
        "",
        "```",
        doc["command"],
        "```",
        "",
        f"Run {doc['date']} ({doc['seconds']:.0f} s): {m.get('cpu', '?')}, {m.get('cpus')} cores; "
        + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
        _load_line(loads, m.get("cpus")),
        "",
        "## Method",
        "",
        "- One worker process per framework (PyTorch's OpenMP threads and XLA's thread pool slow each other down "
        "many times over inside one process). For each configuration all implementations are compiled and "
        f"warmed up, then {doc['settings']['reps']} rounds run; each round times one call of every "
        "(implementation, mode) and one 2048^3 float32 GEMM per framework, in an order rotated every round. "
        "Numbers are medians over rounds.",
        "- `fwd`: the output sequence; `fwd+bwd`: the gradient of `<ys, g>` for a fixed random `g` with respect "
        "to every parameter and the input (PyTorch: `ys.backward(g)` with `x.requires_grad`).",
        "- float32, batch-major `[B, T, I]`, I = H, one layer, zero initial state. jrnn runs PyTorch's weights "
        "through `jrnn.from_torch`: `jrnn` is that network as a user runs it (jrnn.deep -> jrnn.RNN -> "
        "jrnn.scan, whose default fused path is jrnn/_src/solvers/fused.py); `jrnn plain` is "
        "`jrnn.scan(cell, params, xs, solver=jrnn.sequential())`, a lax.scan over `cell.step` differentiated by JAX; "
        "`jrnn bf16` is `jrnn.scan(..., solver=jrnn.fused(jnp.bfloat16))`, bfloat16 matmul operands with f32 "
        "accumulation and state, shown for information, not used for the targets. Flax is Linen `nn.RNN` of "
        "`SimpleCell`, `OptimizedLSTMCell`, `GRUCell`; Equinox is `eqx.nn.LSTMCell` / `GRUCell` vmapped over the batch "
        "under `lax.scan` (Equinox has no Elman cell).",
        "- Ratios are `peer median / jrnn median`: above 1, jrnn is faster.",
        "- `PyTorch` runs with its default thread count (one OpenMP thread per core); `PyTorch 1 thread` is a "
        "second PyTorch process set to `torch.set_num_threads(1)`. When other jobs hold the cores, PyTorch's "
        "OpenMP threads wait for each other at every operation's barrier and its default configuration slows "
        "down many times over; the one-thread row shows PyTorch without that effect.",
        "- GFLOP/s count the matmul FLOPs `2 B T G H (I + H)` (G gates) forward and 3x that for fwd+bwd; the "
        "percentage is of the same framework's 2048^3 GEMM measured in the same rounds.",
        "- Peak memory of fwd+bwd, MiB: JAX, XLA's compiled `memory_analysis()` (temp + output bytes: what one "
        "call allocates beyond its inputs); PyTorch, the maximum of the running sum of the allocation events "
        "of `torch.profiler` (`profile_memory=True`) over one call (activations, oneDNN workspace, gradients).",
        "",
        "## Summary: speedup of jrnn's fused path",
        "",
        summary_table(doc),
        "",
        "## Targets",
        "",
        "Against PyTorch as it runs by default (its own thread count):",
        "",
        (f"{len(doc['targets']) - len(missed)} of {len(doc['targets'])} met." if doc["targets"] else "None."),
        "",
        _targets_table(doc["targets"]) if doc["targets"] else "",
        "",
        "The same targets against PyTorch on one thread (XLA runs each step of the loops on one core; see the "
        "analysis):",
        "",
        (f"{sum(t['met'] for t in doc['targets_1t'])} of {len(doc['targets_1t'])} met."
         if doc.get("targets_1t") else "Not run."),
        "",
        _targets_table(doc["targets_1t"]) if doc.get("targets_1t") else "",
        "",
        "## Every core: the batch split over one device per core",
        "",
        "`jrnn all cores` is the `jrnn.from_torch` network under `jrnn.sharding.batch_parallel`, in a worker that "
        "called `jrnn.sharding.cpu_devices()` first: one XLA CPU device per core, each running its share of the "
        "batch (`jax.shard_map`; the parameter gradients are summed over the devices), with one intra-op thread "
        "per device (`cpu_devices`' default); `(XLA threads)` keeps XLA's thread pool on every device instead. "
        "PyTorch is the same as above (its default threads).",
        "",
        _all_cores_table(doc) if any(ALL_CORES in res["impls"] for res in doc["results"]) else "Not run.",
        "",
        "Targets with every core (B >= 16: fwd+bwd >= 1.3x and fwd >= 1.0x PyTorch; B = 1: one device >= 1x):",
        "",
        (f"{sum(t['met'] for t in doc['targets_all'])} of {len(doc['targets_all'])} met."
         if doc.get("targets_all") else "Not run."),
        "",
        _targets_table(doc["targets_all"]) if doc.get("targets_all") else "",
        "",
        "## Median milliseconds",
        "",
        _medians_table(doc),
        "",
        "## Achieved GFLOP/s (fraction of the same framework's GEMM)",
        "",
        _gflops_table(doc),
        "",
        "## Peak memory of fwd+bwd (MiB)",
        "",
        _memory_table(doc),
        "",
        "## Ablation: the fused path one technique at a time",
        "",
        "Same rounds as above (`benchmarks/ablation.py`). Loop carries: the number of arrays each compiled `while` "
        "loop of the fwd+bwd program carries (jax#40150: on XLA:CPU the cost of a loop iteration grows with it).",
        "",
        _ablation_tables(doc) if ablation(doc["results"]) else "Not run (`--no-ablation`).",
        "",
    ]
    if ANALYSIS.exists():
        parts += [ANALYSIS.read_text().rstrip(), ""]
    for section in (PARALLEL, STABILITY):
        if section.exists():
            parts += [section.read_text().rstrip(), ""]
    return "\n".join(parts)
