"""A benchmark worker: one process per framework, so that PyTorch's OpenMP threads and XLA's thread pool never
share a process (in one process they slow each other down many times over).

Protocol: JSON lines on stdin, one JSON line answer on stdout per request.

- ``{"op": "setup", "config": {...}, "impls": [...]}`` builds and warms up every implementation; answers
  ``{"built": [...], "skipped": {impl: reason}, "info": {impl: {...}}}`` (peak memory, loop carries);
- ``{"op": "time", "impl": ..., "mode": "fwd" | "fwdbwd"}`` runs one call and answers ``{"ms": ...}``;
- ``{"op": "gemm"}`` times one 2048^3 float32 GEMM; ``{"op": "quit"}`` ends the process.

    python -m benchmarks.worker jax|jaxall|jaxall_mt|torch|torch1

``torch1`` is PyTorch limited to one thread (``torch.set_num_threads(1)``), a process of its own since the setting
is per process. ``jaxall`` and ``jaxall_mt`` split the CPU into one JAX device per core
(``jrnn.sharding.cpu_devices``), with one intra-op thread per device or XLA's default thread pool per device.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time

ALL_CORES = {"jaxall": True, "jaxall_mt": False}  # worker -> one intra-op thread per device


def main(framework: str) -> None:
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # library chatter goes to stderr, never into the protocol
    if framework in ALL_CORES:  # before JAX starts: one CPU device per core
        import jrnn

        jrnn.sharding.cpu_devices(one_thread_each=ALL_CORES[framework])
    peers = importlib.import_module("benchmarks.peers_torch" if framework.startswith("torch") else
                                    "benchmarks.peers_jax")
    if framework == "torch1":
        import torch

        torch.set_num_threads(1)
    calls: dict = {}
    gemm = None
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        if op == "quit":
            break
        if op == "setup":
            from benchmarks.grid import Config

            cfg = Config(**request["config"])
            calls.clear()
            built, skipped, info = [], {}, {}
            for impl in request["impls"]:
                try:
                    fwd, fwdbwd, details = peers.build(impl, cfg)
                    for fn in (fwd, fwdbwd, fwd, fwdbwd):  # compile and warm up
                        peers.block(fn())
                except NotImplementedError as e:
                    skipped[impl] = str(e)
                    continue
                calls[impl] = {"fwd": fwd, "fwdbwd": fwdbwd}
                built.append(impl)
                info[impl] = details
            answer = {"built": built, "skipped": skipped, "info": info}
        elif op == "time":
            fn = calls[request["impl"]][request["mode"]]
            start = time.perf_counter()
            peers.block(fn())
            answer = {"ms": (time.perf_counter() - start) * 1e3}
        elif op == "gemm":
            if gemm is None:
                gemm = peers.gemm()
                peers.block(gemm())
            start = time.perf_counter()
            peers.block(gemm())
            answer = {"ms": (time.perf_counter() - start) * 1e3}
        else:
            answer = {"error": f"unknown op {op!r}"}
        protocol.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
