"""PyTorch's ``nn.RNN`` (tanh), ``nn.LSTM`` and ``nn.GRU`` on the CPU, batch-first, float32.

``fwd`` runs the module under ``torch.no_grad()``; ``fwdbwd`` runs it with ``x.requires_grad`` and calls
``ys.backward(g)`` (fresh ``.grad`` buffers each call). Peak memory is measured with ``torch.profiler``'s
allocation events (``profile_memory=True``): the running sum of the bytes allocated and freed during one
fwd+bwd call, maximised over the call. It counts what the call allocates (activations, the oneDNN workspace,
gradients), not the inputs or parameters that exist before it, as XLA's temp+output bytes do for JAX.
"""

from __future__ import annotations

import json
import os
import tempfile

from benchmarks.grid import Config, inputs


def make_module(cfg: Config, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    if cfg.cell == "elman":
        return torch.nn.RNN(cfg.input_size, cfg.hidden, nonlinearity="tanh", batch_first=True)
    if cfg.cell == "lstm":
        return torch.nn.LSTM(cfg.input_size, cfg.hidden, batch_first=True)
    if cfg.cell == "gru":
        return torch.nn.GRU(cfg.input_size, cfg.hidden, batch_first=True)
    raise ValueError(cfg.cell)


def build(impl: str, cfg: Config, seed: int = 0):
    """``(fwd, fwdbwd, info)`` for ``impl`` ``'torch'`` (the worker's default threads) or ``'torch_1t'`` (a worker
    set to one thread); info holds the peak memory of fwd+bwd."""
    import torch

    if impl not in ("torch", "torch_1t"):
        raise ValueError(impl)
    module = make_module(cfg, seed)
    x_np, g_np = inputs(cfg, seed)
    x = torch.from_numpy(x_np)
    x_grad = x.clone().requires_grad_(True)
    g = torch.from_numpy(g_np)

    def fwd():
        with torch.no_grad():
            return module(x)[0]

    def fwdbwd():
        module.zero_grad(set_to_none=True)
        x_grad.grad = None
        ys, _ = module(x_grad)
        ys.backward(g)
        return x_grad.grad

    fwdbwd()
    return fwd, fwdbwd, dict(peak_bytes_fwdbwd=_peak_bytes(fwdbwd))


def _peak_bytes(fn) -> int | None:
    from torch.profiler import ProfilerActivity, profile

    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "trace.json")
            prof.export_chrome_trace(path)
            with open(path) as f:
                events = json.load(f)["traceEvents"]
    except Exception:  # noqa: BLE001 - best effort
        return None
    running = peak = 0
    for e in sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"]):
        running += e["args"]["Bytes"]
        peak = max(peak, running)
    return int(peak)


def gemm(n: int = 2048):
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    return lambda: a @ b


def block(out):
    return out
