"""jrnn's recurrences on a batch split over 4 simulated CPU devices, three ways, against one device:

- inside ``jax.shard_map`` with its default checks (``check_vma``), parameters replicated, the batch split;
- under ``jit`` on a mesh with ``Explicit`` axes (``jax.set_mesh``) and a batch-sharded input;
- under a plain ``jit`` with a batch-sharded input (``Auto`` axes): the output keeps the batch sharding and the
  forward pass has no collective, so each device runs only its own sequences.

Every layer kind: the fused and the plain scan, bidirectional, deep, truncated and checkpointed BPTT, the Flax NNX
and Linen modules. Outputs and gradients (with respect to every parameter, through the scan) equal the single-device
ones to 1e-5.

The device count is fixed when jax starts, and pytest's process has started it, so one subprocess runs this file
as a script (``_worker``) and the tests read what it wrote.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import numpy as np
import once
import pytest

DEVICES, B, T, F, H = 4, 8, 5, 3, 4
TOL = 1e-5
MODES = ("shard_map", "explicit", "auto")


def _cases():
    """``name -> (fn(params, xs, lengths) -> ys, params)``."""
    import flax.linen as nn
    import jax
    from flax import nnx

    import jrnn
    import jrnn.flax

    key = jax.random.key(0)
    lstm = jrnn.lstm(H)
    nets = {
        "rnn_lstm_fused": jrnn.RNN(lstm),
        "rnn_gru_plain": jrnn.RNN(jrnn.gru(H), solver=jrnn.sequential()),
        "bidirectional_elman": jrnn.bidirectional(jrnn.elman(H)),
        "deep": jrnn.deep([jrnn.bidirectional(lstm, merge="sum"), jrnn.gru(H)]),
        "truncated_bptt": jrnn.truncated_bptt(jrnn.RNN(lstm), 2),
    }
    cases = {name: ((lambda p, xs, lengths, net=net: net.apply(p, xs, lengths=lengths)[0]), net.init(key, F))
             for name, net in nets.items()}
    cases["checkpointed_scan"] = (
        lambda p, xs, lengths: jrnn.checkpointed_scan(lstm, p, xs, lengths=lengths, segment_length=2)[0],
        lstm.init(key, F))
    graphdef, state = nnx.split(jrnn.flax.nnx.Bidirectional(jrnn.gru(H), F, rngs=nnx.Rngs(0)))
    cases["flax_nnx"] = (lambda p, xs, lengths: nnx.merge(graphdef, p)(xs, lengths=lengths), state)
    linen = jrnn.flax.linen.RNN(lstm)
    variables = linen.init(key, np.zeros((B, T, F), np.float32))
    cases["flax_linen"] = (lambda p, xs, lengths: linen.apply(p, xs, lengths=lengths), variables)
    del nn
    return cases


def _worker(out: pathlib.Path) -> None:
    import jax

    import jrnn

    jrnn.sharding.cpu_devices(DEVICES, one_thread_each=False)
    import jax.numpy as jnp
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    rng = np.random.default_rng(0)
    xs = rng.standard_normal((B, T, F)).astype(np.float32)
    lengths = np.array([5, 4, 3, 1, 5, 2, 0, 5], np.int32)
    arrays, facts = {}, {"devices": jax.device_count()}
    auto = jrnn.sharding.data_mesh()
    explicit = jax.make_mesh((DEVICES,), ("batch",), axis_types=(AxisType.Explicit,))
    collectives = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")

    for name, (fn, params) in _cases().items():
        cot = jnp.asarray(rng.standard_normal(jax.eval_shape(fn, params, xs, lengths).shape).astype(np.float32))

        def run(f, p, x, n, cot=cot):
            ys = f(p, x, n)
            grads = jax.grad(lambda p: jnp.vdot(f(p, x, n), cot))(p)
            return ys, grads

        def save(mode, ys, grads, name=name):
            arrays[f"{name}/{mode}/ys"] = np.asarray(ys)
            for i, g in enumerate(jax.tree_util.tree_leaves(grads)):
                arrays[f"{name}/{mode}/grad/{i}"] = np.asarray(g)

        save("single", *jax.jit(run, static_argnums=(0,))(fn, params, xs, lengths))

        mapped = jax.shard_map(fn, mesh=auto, in_specs=(P(), P("batch"), P("batch")), out_specs=P("batch"))
        save("shard_map", *jax.jit(run, static_argnums=(0,))(mapped, params, xs, lengths))

        with jax.set_mesh(explicit):
            batch = NamedSharding(explicit, P("batch"))
            x_e, n_e = jax.device_put(xs, batch), jax.device_put(lengths, batch)
            p_e = jax.device_put(params, NamedSharding(explicit, P()))
            ys, grads = jax.jit(run, static_argnums=(0,))(fn, p_e, x_e, n_e)
            facts[f"{name}/explicit/spec"] = list(ys.sharding.spec)[:1]
            save("explicit", ys, grads)

        batch = jrnn.sharding.batch_sharding(auto)
        x_a, n_a = jax.device_put(xs, batch), jax.device_put(lengths, batch)
        forward = jax.jit(fn).lower(params, x_a, n_a).compile()
        facts[f"{name}/auto/spec"] = list(forward.output_shardings.spec)[:1]
        facts[f"{name}/auto/collectives"] = [c for c in collectives if f" {c}" in forward.as_text()]
        save("auto", forward(params, x_a, n_a), jax.jit(run, static_argnums=(0,))(fn, params, x_a, n_a)[1])

    np.savez(out / "runs.npz", **arrays)
    (out / "facts.json").write_text(json.dumps(facts))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The worker's runs, once per pytest session even under pytest-xdist (:func:`once.run_once`)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    out = once.run_once(tmp_path_factory, "sharded_scan", __file__, env, timeout=900)
    return dict(np.load(out / "runs.npz")), json.loads((out / "facts.json").read_text())


CASES = ("rnn_lstm_fused", "rnn_gru_plain", "bidirectional_elman", "deep", "truncated_bptt", "checkpointed_scan",
         "flax_nnx", "flax_linen")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES)
def test_sharded_run_equals_one_device(runs, case, mode):
    arrays, facts = runs
    assert facts["devices"] == DEVICES
    single = {k.split("/", 2)[2]: v for k, v in arrays.items() if k.startswith(f"{case}/single/")}
    got = {k.split("/", 2)[2]: v for k, v in arrays.items() if k.startswith(f"{case}/{mode}/")}
    assert set(got) == set(single) and len(single) > 2  # the outputs and at least two gradient leaves
    for k, want in single.items():
        np.testing.assert_allclose(got[k], want, rtol=TOL, atol=TOL, err_msg=f"{case} {mode} {k}")
    assert np.abs(single["ys"]).max() > 1e-3


@pytest.mark.parametrize("case", CASES)
def test_batch_sharding_is_kept_and_the_forward_needs_no_communication(runs, case):
    _, facts = runs
    assert facts[f"{case}/explicit/spec"] == ["batch"]
    assert facts[f"{case}/auto/spec"] == ["batch"]
    assert facts[f"{case}/auto/collectives"] == []


if __name__ == "__main__":
    _worker(pathlib.Path(sys.argv[1]))
