"""Checkpoint and resume: an interrupted run resumed from disk ends bit-identical to an uninterrupted one; a
missing or corrupt checkpoint is a clear error, never a silent fresh start."""

import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jrnn

B, T, I = 2, 5, 2
NET = jrnn.RNN(jrnn.elman(3))
NAN_STEP = 2


def _batch(step):
    rng = np.random.default_rng(step)
    xs = rng.normal(size=(B, T, I)).astype(np.float32)
    if step == NAN_STEP:
        xs[0, 0, 0] = np.nan  # a bad batch: skipped, and the count must survive the resume
    return jrnn.Batch(jnp.asarray(xs), jnp.asarray(rng.normal(size=(B, T, 3)), jnp.float32), jnp.array([5, 3]))


def _noisy_loss(params, batch, key):
    """Input noise drawn from the step's key, so that the PRNG state matters to the run."""
    noisy = batch._replace(xs=batch.xs + 0.1 * jax.random.normal(key, batch.xs.shape))
    return jrnn.supervised_loss(NET.apply)(params, noisy, key)


def _trainer():
    return jrnn.train_step(_noisy_loss, optax.adam(1e-2), max_norm=0.5)


def _fresh(trainer, seed=0):
    params = NET.init(jax.random.key(seed), I)
    return jrnn.TrainState(params, trainer.init(params), jax.random.key(seed + 100), jnp.int32(0))


def _run(trainer, state, until):
    while int(state.step) < until:
        key, step_key = jax.random.split(state.key)
        params, opt_state, _ = trainer.step(state.params, state.opt_state, _batch(int(state.step)), step_key)
        state = jrnn.TrainState(params, opt_state, key, state.step + 1)
    return state


def _bytes(tree):
    def raw(leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        return np.asarray(leaf).tobytes()
    return [raw(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


def test_resume_from_checkpoint_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    trainer = _trainer()
    uninterrupted = _run(trainer, _fresh(trainer), 6)

    interrupted = _run(trainer, _fresh(trainer), 3)
    jrnn.save_checkpoint(tmp_path, interrupted)
    del interrupted  # "the process dies": nothing but the directory survives

    target = _fresh(trainer, seed=7)  # the restore target may hold anything of the right structure
    assert jrnn.checkpoint_steps(tmp_path) == [3]
    resumed = jrnn.restore_checkpoint(tmp_path, target)
    assert int(resumed.step) == 3 and jax.dtypes.issubdtype(resumed.key.dtype, jax.dtypes.prng_key)
    resumed = _run(trainer, resumed, 6)

    assert _bytes(resumed) == _bytes(uninterrupted)  # params, Adam state, skip count, key, step
    assert int(resumed.opt_state.num_skipped) == 1  # the NaN batch at step 2, counted before the interruption


def test_checkpoint_round_trips_raw_keys_none_leaves_and_picks_the_latest_step(tmp_path):
    state = {"key": jax.random.PRNGKey(3), "params": jrnn.elman(3, bias=False).init(jax.random.key(0), 2),
             "flag": jnp.array(True), "count": jnp.int32(7)}
    for step in (1, 3, 5):
        shifted = {**state, "count": state["count"] + step}
        jrnn.save_checkpoint(tmp_path, shifted, step=step)
    assert jrnn.checkpoint_steps(tmp_path) == [1, 3, 5]
    restored = jrnn.restore_checkpoint(tmp_path, state)
    assert int(restored["count"]) == 12 and restored["params"].b_U is None
    assert _bytes(restored["params"]) == _bytes(state["params"]) and _bytes(restored["key"]) == _bytes(state["key"])
    assert int(jrnn.restore_checkpoint(tmp_path, state, step=1)["count"]) == 8
    with pytest.raises(ValueError, match="already exists"):
        jrnn.save_checkpoint(tmp_path, state, step=3)
    with pytest.raises(ValueError, match=r"after the latest checkpoint \(5\)"):
        jrnn.save_checkpoint(tmp_path, state, step=4)
    assert jrnn.checkpoint_steps(tmp_path) == [1, 3, 5]
    with pytest.raises(TypeError, match="step="):
        jrnn.save_checkpoint(tmp_path, state)


def test_checkpoint_missing_is_a_clear_error_not_a_fresh_start(tmp_path):
    target = {"w": jnp.zeros(3)}
    with pytest.raises(FileNotFoundError, match="no checkpoint directory"):
        jrnn.restore_checkpoint(tmp_path / "nope", target)
    assert jrnn.checkpoint_steps(tmp_path / "nope") == []
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        jrnn.restore_checkpoint(tmp_path, target)
    os.makedirs(tmp_path / "4.orbax-checkpoint-tmp-17" / "state")  # an interrupted save is not a checkpoint
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        jrnn.restore_checkpoint(tmp_path, target)
    jrnn.save_checkpoint(tmp_path, {"w": jnp.ones(3)}, step=2)
    with pytest.raises(FileNotFoundError, match=r"step 9 .* holds steps \[2\]"):
        jrnn.restore_checkpoint(tmp_path, target, step=9)


def _saved(tmp_path):
    state = {"w": jnp.arange(64, dtype=jnp.float32), "b": jnp.ones((2, 3))}
    jrnn.save_checkpoint(tmp_path, state, step=1)
    return state


def test_checkpoint_with_corrupt_array_bytes_is_an_error(tmp_path):
    state = _saved(tmp_path)
    data = [f for f in glob.glob(str(tmp_path / "1" / "state" / "**" / "d" / "*"), recursive=True)]
    assert data
    for path in data:
        raw = bytearray(open(path, "rb").read())
        for i in range(len(raw) // 3, len(raw) // 3 + 4):
            raw[i] ^= 0xFF
        open(path, "wb").write(bytes(raw))
    with pytest.raises(jrnn.CheckpointError, match="step 1 .* (unreadable|corrupt)"):
        jrnn.restore_checkpoint(tmp_path, state)


def test_checkpoint_whose_arrays_differ_from_their_digest_is_corrupt(tmp_path):
    state = _saved(tmp_path)
    manifest = tmp_path / "1" / "jrnn" / "metadata"
    meta = json.loads(manifest.read_text())
    meta["leaves"][1]["sha256"] = "0" * 64  # as if the array had silently changed since it was saved
    manifest.write_text(json.dumps(meta))
    with pytest.raises(jrnn.CheckpointError, match=r"corrupt: \['w'\] differs from the digest"):
        jrnn.restore_checkpoint(tmp_path, state)


def test_checkpoint_with_garbled_manifest_or_missing_arrays_is_an_error(tmp_path):
    state = _saved(tmp_path)
    (tmp_path / "1" / "jrnn" / "metadata").write_text("{not json")
    with pytest.raises(jrnn.CheckpointError, match="unreadable"):
        jrnn.restore_checkpoint(tmp_path, state)
    jrnn.save_checkpoint(tmp_path, state, step=2)
    for path in glob.glob(str(tmp_path / "2" / "state" / "**" / "d" / "*"), recursive=True):
        os.remove(path)
    with pytest.raises(jrnn.CheckpointError, match="step 2"):
        jrnn.restore_checkpoint(tmp_path, state, step=2)


def test_checkpoint_restored_into_a_different_structure_is_an_error(tmp_path):
    state = _saved(tmp_path)
    with pytest.raises(jrnn.CheckpointError, match="does not match the target"):
        jrnn.restore_checkpoint(tmp_path, {"w": jnp.zeros(65), "b": state["b"]})
    with pytest.raises(jrnn.CheckpointError, match="does not match the target"):
        jrnn.restore_checkpoint(tmp_path, {"w": state["w"]})
