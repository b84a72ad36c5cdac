"""Checkpoint and exact resume with orbax-checkpoint: params, optimizer state, PRNG state and step.

Each checkpoint is a step directory written atomically by ``orbax.checkpoint.CheckpointManager`` (a save that is
interrupted leaves no step behind) with two items: ``state``, the arrays (``StandardSave``), and ``jrnn``, a JSON
manifest with every leaf's path, shape, dtype and SHA-256 digest. Restoring checks the manifest against the
target's structure and every restored array against its digest, so a corrupt checkpoint is an error, never a
silently different run; a missing one is a ``FileNotFoundError``, never a silent fresh start. Arrays round-trip
bit for bit, so a resumed run that replays the same steps ends with bit-identical parameters.

orbax is imported inside the functions (it is in the ``experiments`` extra, not a core dependency).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jrnn._src.extras import require

_FORMAT = "jrnn-checkpoint-1"


class TrainState(NamedTuple):
    """Everything a run needs to continue exactly: what :func:`save_checkpoint` writes.

    Attributes:
      params: the model's parameters.
      opt_state: the optimizer's state (from :class:`jrnn.TrainStep`'s ``init``; it holds the skipped-step count).
      key: the PRNG key that the next step splits (a typed ``jax.random.key`` or a raw ``uint32[2]`` key).
      step: the number of steps taken, an int32 scalar.
    """

    params: Any
    opt_state: Any
    key: jax.Array
    step: Any


class CheckpointError(ValueError):
    """A checkpoint that exists but cannot be trusted: unreadable, corrupt, or not shaped like the target."""


def _ocp():
    return require("orbax.checkpoint", "checkpoint", "jrnn's checkpoints (save_checkpoint, restore_checkpoint)")


def _is_key(leaf: Any) -> bool:
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_arrays(tree: Any) -> tuple[Any, dict]:
    """Typed PRNG keys become their ``uint32`` data (orbax stores plain arrays); returns the tree and key impls."""
    impls = {}

    def convert(path, leaf):
        if _is_key(leaf):
            impls[jax.tree_util.keystr(path)] = str(jax.random.key_impl(leaf))
            return jax.random.key_data(leaf)
        return jnp.asarray(leaf)

    return jax.tree_util.tree_map_with_path(convert, tree), impls


def _manifest(tree: Any) -> list[dict]:
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return [{"path": jax.tree_util.keystr(p), "shape": list(np.shape(x)), "dtype": str(np.asarray(x).dtype),
             "sha256": hashlib.sha256(np.ascontiguousarray(np.asarray(x)).tobytes()).hexdigest()}
            for p, x in leaves]


def _manager(directory: str, *, create: bool, max_to_keep: int | None = None):
    ocp = _ocp()
    options = ocp.CheckpointManagerOptions(create=create, max_to_keep=max_to_keep, enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save_checkpoint(directory: str | os.PathLike, state: Any, *, step: int | None = None,
                    max_to_keep: int | None = None) -> int:
    """Writes ``state`` (a :class:`TrainState`, or any pytree of arrays) as checkpoint ``step`` of ``directory``.

    Args:
      directory: the run's checkpoint directory, created if needed; one subdirectory per step.
      state: what to save; typed PRNG keys anywhere in it are saved as their key data and implementation.
      step: the step number; by default ``state.step``.
      max_to_keep: keep only this many most recent checkpoints (all by default).

    Returns:
      The step saved.

    Raises:
      ValueError: a checkpoint for ``step`` or a later one already exists (steps are never overwritten and only
        move forward).
    """
    where = "jrnn.save_checkpoint"
    if step is None:
        if not isinstance(state, TrainState):
            raise TypeError(f"{where}: expected step=... for a state that is not a jrnn.TrainState, "
                            f"got {type(state).__name__}")
        step = state.step
    step = int(step)
    if step < 0:
        raise ValueError(f"{where}: expected a non-negative step, got {step}")
    ocp = _ocp()
    arrays, impls = _to_arrays(state)
    meta = {"format": _FORMAT, "step": step, "leaves": _manifest(arrays), "key_impls": impls}
    manager = _manager(os.fspath(directory), create=True, max_to_keep=max_to_keep)
    try:
        steps = manager.all_steps()
        if step in steps:
            raise ValueError(f"{where}: a checkpoint for step {step} already exists in {os.fspath(directory)}")
        if steps and step < max(steps):  # orbax would silently skip it
            raise ValueError(f"{where}: expected a step after the latest checkpoint ({max(steps)}) in "
                             f"{os.fspath(directory)}, got {step}")
        saved = manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(arrays),
                                                           jrnn=ocp.args.JsonSave(meta)))
        manager.wait_until_finished()
        if not saved:
            raise RuntimeError(f"{where}: orbax declined to save step {step} in {os.fspath(directory)}")
    finally:
        manager.close()
    return step


def checkpoint_steps(directory: str | os.PathLike) -> list[int]:
    """The steps with a complete checkpoint in ``directory``, ascending; ``[]`` if there is none (or no directory).

    Use it to decide, explicitly, between resuming and starting fresh::

        steps = jrnn.checkpoint_steps(run_dir)
        state = jrnn.restore_checkpoint(run_dir, fresh_state) if steps else fresh_state
    """
    path = os.fspath(directory)
    if not os.path.isdir(path):
        return []
    manager = _manager(path, create=False)
    try:
        return sorted(manager.all_steps())
    finally:
        manager.close()


def restore_checkpoint(directory: str | os.PathLike, target: Any, *, step: int | None = None) -> Any:
    """Reads checkpoint ``step`` (the latest by default) of ``directory`` into the structure of ``target``.

    Args:
      directory: the run's checkpoint directory.
      target: a state of the same structure, shapes and dtypes (e.g. the freshly initialised
        :class:`TrainState`); its values are not used, its typed PRNG keys give the key implementation.
      step: which checkpoint; the latest by default.

    Returns:
      The saved state, bit for bit, with ``target``'s pytree structure.

    Raises:
      FileNotFoundError: no such directory, no checkpoint in it, or no checkpoint for ``step``.
      CheckpointError: the checkpoint is unreadable, corrupt (an array differs from its recorded digest), or
        holds a state of another structure than ``target``.
    """
    where = "jrnn.restore_checkpoint"
    path = os.fspath(directory)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{where}: no checkpoint directory {path!r}")
    steps = checkpoint_steps(path)
    if not steps:
        raise FileNotFoundError(f"{where}: no complete checkpoint in {path!r} (to start a fresh run, do not restore)")
    if step is None:
        step = steps[-1]
    elif int(step) not in steps:
        raise FileNotFoundError(f"{where}: no checkpoint for step {step} in {path!r}; it holds steps {steps}")
    step = int(step)
    ocp = _ocp()
    arrays, impls = _to_arrays(target)
    expected = [{k: leaf[k] for k in ("path", "shape", "dtype")} for leaf in _manifest(arrays)]
    manager = _manager(path, create=False)
    try:
        try:
            meta = manager.restore(step, args=ocp.args.Composite(jrnn=ocp.args.JsonRestore())).jrnn
        except Exception as err:  # orbax and tensorstore raise many types; all mean "unreadable"
            raise CheckpointError(f"{where}: checkpoint step {step} in {path!r} is unreadable "
                                  f"(its manifest): {type(err).__name__}: {err}") from err
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise CheckpointError(f"{where}: checkpoint step {step} in {path!r} has no valid jrnn manifest")
        saved = [{k: leaf[k] for k in ("path", "shape", "dtype")} for leaf in meta["leaves"]]
        if saved != expected or meta.get("key_impls") != impls:
            diff = next((f"saved {s}, target {e}" for s, e in zip(saved, expected) if s != e),
                        f"saved {len(saved)} leaves and keys {meta.get('key_impls')}, target {len(expected)} "
                        f"leaves and keys {impls}")
            raise CheckpointError(f"{where}: checkpoint step {step} in {path!r} does not match the target's "
                                  f"structure: {diff}")
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, arrays)
        try:
            restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))).state
        except Exception as err:
            raise CheckpointError(f"{where}: checkpoint step {step} in {path!r} is unreadable or corrupt: "
                                  f"{type(err).__name__}: {err}") from err
    finally:
        manager.close()
    for got, want in zip(_manifest(restored), meta["leaves"]):
        if got["sha256"] != want["sha256"]:
            raise CheckpointError(f"{where}: checkpoint step {step} in {path!r} is corrupt: {want['path']} differs "
                                  "from the digest recorded when it was saved")

    def back(t, r):
        return jax.random.wrap_key_data(r, impl=jax.random.key_impl(t)) if _is_key(t) else r

    return jax.tree_util.tree_map(back, target, restored)
