"""jrnn's speed benchmark against PyTorch, Flax and Equinox on the CPU: ``python -m benchmarks``.

Layout:

- ``grid.py``: the benchmark grid (cells x (B, T, H)), the FLOP model and the shared inputs;
- ``peers_jax.py``: the JAX implementations (jrnn's fused and plain scans, Flax Linen ``nn.RNN``, Equinox cells
  under ``lax.scan``) and their compiled peak memory;
- ``peers_torch.py``: ``torch.nn.RNN/LSTM/GRU`` and their peak memory from the profiler's allocation events
  (``peers_jax.py`` imports its module builder, so that jrnn runs PyTorch's weights; nothing imports back);
- ``worker.py``: one process per framework, timing one call per request;
- ``__main__.py``: the coordinator, which interleaves the requests and writes ``BENCHMARKS.md`` and
  ``benchmarks/results.json``;
- ``report.py``: the Markdown and JSON writers.
"""
