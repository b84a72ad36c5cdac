"""Data-parallel training on 4 simulated CPU devices equals single-device training (``jrnn.sharding``).

The device count of the XLA CPU backend is fixed when jax is first imported, and pytest's process has imported
it already (the root conftest.py), so the sharded runs happen in one subprocess started with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``: this file run as a script (``_worker`` below). It trains
a Flax Linen and a Flax NNX classifier (embedding → bidirectional LSTM → mean over the valid steps → dense, on
sequences of variable length) for three Adam steps with a plain ``jax.jit`` step on one device, and again with
``jrnn.sharding.data_parallel`` on the 4-device mesh (parameters replicated; for Linen also FSDP), and writes
every loss and parameter to an ``.npz``; the tests here compare them (1e-5).
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import numpy as np
import once
import pytest

DEVICES = 4
STEPS = 3
TOL = 1e-5


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs the worker once per pytest session, even under pytest-xdist (:func:`once.run_once`); returns
    ``(arrays, facts)``."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES}", JAX_PLATFORMS="cpu")
    out = once.run_once(tmp_path_factory, "sharded", __file__, env, timeout=600)
    return dict(np.load(out / "runs.npz")), json.loads((out / "facts.json").read_text())


def _run(arrays, model, mode):
    loss = arrays[f"{model}/{mode}/loss"]
    n = len([k for k in arrays if k.startswith(f"{model}/{mode}/param/")])
    return loss, [arrays[f"{model}/{mode}/param/{i}"] for i in range(n)]


def _assert_same_run(arrays, model, mode):
    ref_loss, ref_params = _run(arrays, model, "single")
    loss, params = _run(arrays, model, mode)
    assert loss.shape == (STEPS,)
    np.testing.assert_allclose(loss, ref_loss, rtol=TOL, atol=TOL)
    assert len(params) == len(ref_params) > 0
    for p, r in zip(params, ref_params):
        np.testing.assert_allclose(p, r, rtol=TOL, atol=TOL)
    # The three steps moved the parameters, so equality above is not that of untouched initial values.
    initial = [arrays[f"{model}/initial/param/{i}"] for i in range(len(params))]
    assert max(float(np.abs(p - q).max()) for p, q in zip(params, initial)) > 1e-3


def test_flax_worker_saw_four_devices_and_one_for_the_reference(runs):
    _, facts = runs
    assert facts["device_count"] == DEVICES
    assert facts["mesh_shape"] == {"batch": DEVICES}
    assert facts["single_devices"] == 1


def test_flax_linen_sharded_step_equals_single_device_step(runs):
    arrays, facts = runs
    _assert_same_run(arrays, "linen", "replicated")
    assert facts["linen/replicated/batch_spec"] == ["batch"]
    assert facts["linen/replicated/batch_devices"] == DEVICES
    assert facts["linen/replicated/params_replicated"] is True


def test_flax_linen_fsdp_sharded_step_equals_single_device_step(runs):
    arrays, facts = runs
    _assert_same_run(arrays, "linen", "fsdp")
    # Under FSDP the big matrices are split over the 4 devices, and the Adam moments follow them.
    assert facts["linen/fsdp/sharded_params"] > 0
    assert facts["linen/fsdp/sharded_opt_leaves"] >= 2 * facts["linen/fsdp/sharded_params"]


def test_flax_nnx_sharded_step_equals_single_device_step(runs):
    arrays, facts = runs
    _assert_same_run(arrays, "nnx", "replicated")
    assert facts["nnx/replicated/params_replicated"] is True


def test_sharded_batch_of_indivisible_size_is_rejected(runs):
    _, facts = runs
    message = facts["indivisible_error"]
    assert "divisible by the 4 devices" in message and "(6, 7)" in message


# ----------------------------------------------------------------------------------------------------------------
# The worker: run as ``python tests/test_sharded.py OUT`` with XLA_FLAGS set.

def _worker(out: pathlib.Path) -> None:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    import jrnn
    import jrnn.flax
    from jrnn import sharding

    vocab, embed, hidden, classes, B, T = 11, 6, 8, 3, 8, 7
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, vocab, (B, T)).astype(np.int32)
    lengths = np.array([7, 3, 5, 1, 7, 6, 2, 4], np.int32)
    tokens[np.arange(T)[None, :] >= lengths[:, None]] = 0
    batch = {"tokens": tokens, "lengths": lengths, "labels": rng.integers(0, classes, (B,)).astype(np.int32)}
    tx = optax.adam(3e-2)

    def pool(ys, lengths):
        mask = (jnp.arange(ys.shape[1])[None, :] < lengths[:, None])[:, :, None]
        return jnp.sum(ys * mask, axis=1) / jnp.maximum(lengths, 1)[:, None]

    class LinenClassifier(nn.Module):
        @nn.compact
        def __call__(self, tokens, lengths):
            h = nn.Embed(vocab, embed)(tokens)
            h = jrnn.flax.linen.Bidirectional(jrnn.lstm(hidden))(h, lengths=lengths)
            return nn.Dense(classes)(pool(h, lengths))

    class NNXClassifier(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(vocab, embed, rngs=rngs)
            self.rnn = jrnn.flax.nnx.Bidirectional(jrnn.lstm(hidden), embed, rngs=rngs)
            self.head = nnx.Linear(2 * hidden, classes, rngs=rngs)

        def __call__(self, tokens, lengths):
            return self.head(pool(self.rnn(self.embed(tokens), lengths=lengths), lengths))

    def cross_entropy(logits, labels):
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    def fill(shapes):  # random parameters without compiling any initialiser (the worker's time is compilation)
        leaves, treedef = jax.tree_util.tree_flatten(shapes)
        values = [0.3 * rng.standard_normal(leaf.shape).astype(np.float32) for leaf in leaves]
        return jax.tree_util.tree_unflatten(treedef, values)

    linen_model = LinenClassifier()
    linen_params = fill(jax.eval_shape(linen_model.init, jax.random.key(0), tokens, lengths)["params"])

    def linen_loss(params, batch):
        return cross_entropy(linen_model.apply({"params": params}, batch["tokens"], batch["lengths"]),
                             batch["labels"])

    graphdef, nnx_params = nnx.split(nnx.eval_shape(lambda: NNXClassifier(nnx.Rngs(0))), nnx.Param)
    nnx_params = fill(nnx_params)

    def nnx_loss(params, batch):
        return cross_entropy(nnx.merge(graphdef, params)(batch["tokens"], batch["lengths"]), batch["labels"])

    arrays, facts = {}, {"device_count": jax.device_count()}

    def record(model, mode, losses, params):
        arrays[f"{model}/{mode}/loss"] = np.asarray(losses)
        for i, leaf in enumerate(jax.tree_util.tree_leaves(params)):
            arrays[f"{model}/{mode}/param/{i}"] = np.asarray(leaf)

    def single_device(loss_fn, params):
        device = jax.devices()[0]

        @jax.jit
        def step(params, opt_state, batch):
            loss, grads = jax.value_and_grad(loss_fn)(params, batch)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        params, opt_state, local = jax.device_put((params, tx.init(params), batch), device)
        losses = []
        for _ in range(STEPS):
            params, opt_state, loss = step(params, opt_state, local)
            losses.append(float(loss))
        facts["single_devices"] = len(jax.tree_util.tree_leaves(params)[0].sharding.device_set)
        return losses, params

    def sharded(loss_fn, params, model, mode, **options):
        mesh = sharding.data_mesh()
        facts["mesh_shape"] = dict(mesh.shape)
        train = sharding.data_parallel(loss_fn, tx, mesh, **options)
        params, opt_state = train.init(params)
        losses = []
        for _ in range(STEPS):
            params, opt_state, loss = train.step(params, opt_state, batch)
            losses.append(float(loss))
        placed = sharding.shard_batch(batch, mesh)["tokens"]
        facts[f"{model}/{mode}/batch_spec"] = list(placed.sharding.spec)
        facts[f"{model}/{mode}/batch_devices"] = len({s.device for s in placed.addressable_shards})
        leaves = jax.tree_util.tree_leaves(params)
        facts[f"{model}/{mode}/params_replicated"] = all(x.sharding.is_fully_replicated for x in leaves)
        facts[f"{model}/{mode}/sharded_params"] = sum(not x.sharding.is_fully_replicated for x in leaves)
        facts[f"{model}/{mode}/sharded_opt_leaves"] = sum(
            not x.sharding.is_fully_replicated for x in jax.tree_util.tree_leaves(opt_state))
        return losses, params

    for model, loss_fn, params in (("linen", linen_loss, linen_params), ("nnx", nnx_loss, nnx_params)):
        record(model, "initial", [], params)
        record(model, "single", *single_device(loss_fn, params))
        record(model, "replicated", *sharded(loss_fn, params, model, "replicated"))
    record("linen", "fsdp", *sharded(linen_loss, linen_params, "linen", "fsdp", fsdp=True, min_size=64))

    try:
        sharding.shard_batch({"tokens": tokens[:6]}, sharding.data_mesh())
        facts["indivisible_error"] = ""
    except ValueError as error:
        facts["indivisible_error"] = str(error)

    np.savez(out / "runs.npz", **arrays)
    (out / "facts.json").write_text(json.dumps(facts))


if __name__ == "__main__":
    _worker(pathlib.Path(sys.argv[1]))
