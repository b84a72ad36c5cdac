"""``python -m benchmarks.compare_hlo > hlo.txt``: a fingerprint of the compiled programs of jrnn's fused solver.

For a refactor that must not change speed, run it in the checkout before and after and ``diff`` the two files:
equal fingerprints mean XLA compiled the very same optimised HLO (metadata and instruction numbering removed), so
the speed is the same by construction and timing noise cannot hide a regression. Each line: the cell, the scan's
options, the mode (forward, or the gradient of a loss of the outputs and the final state), the HLO's SHA-1 prefix
and its length. The last cases are ``jrnn.from_torch`` networks, what ``python -m benchmarks`` times as ``jrnn``.
"""

from __future__ import annotations

import hashlib
import re
import warnings

import jax
import jax.numpy as jnp
import torch

import jrnn


def fingerprint(fn, *args) -> tuple[str, int]:
    text = jax.jit(fn).lower(*args).compile().as_text()
    text = text[text.index("\n\n"):]  # the module's header and its tables of source files, functions and frames
    text = text[re.search(r"^(%|ENTRY)", text, flags=re.M).start():]
    text = re.sub(r", metadata=\{[^}]*\}", "", text)
    text = re.sub(r"(%?[A-Za-z_.\-]+)\.(\d+)", r"\1", text)  # instruction numbering
    return hashlib.sha1(text.encode()).hexdigest()[:12], len(text)


def loss_of(run):
    def loss(p, x):
        ys, state = run(p, x)
        return jnp.sum(ys ** 2) + sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(state))

    return jax.grad(loss, argnums=(0, 1))


def main() -> None:
    warnings.simplefilter("ignore")
    xs = jax.random.normal(jax.random.key(1), (8, 50, 32))
    lengths = jnp.arange(8) * 7
    cells = {"elman": jrnn.elman(64), "lstm": jrnn.lstm(64), "gru": jrnn.gru(64),
             "lstm_proj": jrnn.lstm(64, proj_size=32)}
    for name, cell in cells.items():
        params = cell.init(jax.random.key(0), 32)
        for opts in ({}, {"lengths": lengths}, {"lengths": lengths, "reverse": True}):
            def run(p, x, cell=cell, opts=opts):
                return jrnn.scan(cell, p, x, **opts)

            print(name, sorted(opts), "fwd", *fingerprint(lambda p, x, run=run: run(p, x)[0], params, xs))
            print(name, sorted(opts), "fwdbwd", *fingerprint(loss_of(run), params, xs))
    torch.manual_seed(0)
    for module in (torch.nn.LSTM(32, 64, num_layers=2, bidirectional=True, batch_first=True),
                   torch.nn.GRU(32, 64, batch_first=True)):
        fn, params = jrnn.from_torch(module)
        name = f"from_torch {type(module).__name__}"
        print(name, "fwd", *fingerprint(lambda p, x, fn=fn: fn(p, x)[0], params, xs))
        print(name, "fwdbwd", *fingerprint(loss_of(lambda p, x, fn=fn: fn(p, x)), params, xs))


if __name__ == "__main__":
    main()
