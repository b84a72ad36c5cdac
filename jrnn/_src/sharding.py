"""Data-parallel training with ``jax.sharding``: the batch split over a device mesh, the parameters replicated
(or sharded FSDP-style), one jitted step from a loss function and an optax transformation.

Every device holds ``B / n`` sequences of the batch. The loss is a mean over the global batch, so the gradient
XLA computes is the all-reduced mean of the per-device gradients, exactly the single-device gradient up to the
order of the float additions; the optimizer update then runs on the replicated (or sharded) parameters.
Nothing here knows about Flax or about RNNs: ``params`` and ``batch`` are any pytrees.
See ``docs/concepts/sharding.md`` for the multi-host setup (``jax.distributed.initialize``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

BATCH = "batch"
FSDP_MIN_SIZE = 2 ** 14  # arrays with fewer elements stay replicated under fsdp: splitting them saves nothing


def data_mesh(devices: Sequence[jax.Device] | None = None, axis: str = BATCH) -> Mesh:
    """A one-dimensional mesh over ``devices`` (default: every device of every process, ``jax.devices()``).

    The axis type is ``Auto`` (XLA propagates shardings from the inputs), which jrnn's scans need: under an
    ``Explicit`` mesh set with ``jax.set_mesh`` the zero initial state of a scan is unsharded while the carry
    it produces is batch-sharded, and ``lax.scan`` rejects the mismatch.
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("jrnn.data_mesh: expected at least one device, got none")
    return Mesh(np.asarray(devices), (axis,), axis_types=(AxisType.Auto,))


def _axis_size(mesh: Mesh, axis: str, where: str) -> int:
    if axis not in mesh.shape:
        raise ValueError(f"{where}: expected a mesh with an axis named {axis!r}, got axes {tuple(mesh.shape)}")
    return mesh.shape[axis]


def batch_sharding(mesh: Mesh, axis: str = BATCH) -> NamedSharding:
    """``NamedSharding(mesh, P(axis))``: every leaf's leading (batch) axis split over the mesh axis."""
    _axis_size(mesh, axis, "jrnn.batch_sharding")
    return NamedSharding(mesh, PartitionSpec(axis))


def shard_batch(batch: Any, mesh: Mesh, axis: str = BATCH) -> Any:
    """Places every leaf of ``batch`` (arrays with a leading batch axis; None leaves stay None) split over ``axis``.

    With one process, the leaves are the global batch and their leading size must be divisible by the number of
    devices on ``axis``. With several processes (after ``jax.distributed.initialize``), each process passes its
    own part of the batch and the result is the global array of their concatenation, in process order
    (``jax.make_array_from_process_local_data``). Leaves that already carry this sharding are returned as they are.
    """
    where = "jrnn.shard_batch"
    n = _axis_size(mesh, axis, where)
    sharding = NamedSharding(mesh, PartitionSpec(axis))
    multi_process = jax.process_count() > 1

    def place(leaf):
        if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
            return leaf
        shape = np.shape(leaf)
        if not shape:
            raise ValueError(f"{where}: expected every batch leaf to have a leading batch axis, got a scalar")
        if multi_process:
            return jax.make_array_from_process_local_data(sharding, np.asarray(leaf))
        if shape[0] % n:
            raise ValueError(f"{where}: expected a batch size divisible by the {n} devices on mesh axis {axis!r}, "
                             f"got a leaf of shape {shape}")
        return jax.device_put(leaf, sharding)

    return jax.tree_util.tree_map(place, batch)


def param_shardings(tree: Any, mesh: Mesh, *, fsdp: bool = False, axis: str = BATCH,
                    min_size: int = FSDP_MIN_SIZE) -> Any:
    """The ``NamedSharding`` of every leaf of ``tree`` (parameters, or an optimizer state).

    Replicated (``P()``) by default. With ``fsdp=True`` (fully sharded data parallel, ZeRO-3 style) a leaf with
    at least ``min_size`` elements is split along its largest dimension divisible by the size of ``axis``; the
    rest stay replicated. The rule reads only a leaf's shape, so an optimizer's moments get the shardings of
    the parameters they track.
    """
    n = _axis_size(mesh, axis, "jrnn.param_shardings")

    def sharding(leaf):
        shape = np.shape(leaf)
        if fsdp and int(np.prod(shape)) >= min_size:
            divisible = [d for d, size in enumerate(shape) if size % n == 0]
            if divisible:
                d = max(divisible, key=lambda d: shape[d])
                return NamedSharding(mesh, PartitionSpec(*(None,) * d, axis))
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree_util.tree_map(sharding, tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a full copy of every leaf of ``tree`` on every device of ``mesh``. With several processes every
    process must pass the same values (e.g. parameters initialised from the same seed)."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_params(tree: Any, mesh: Mesh, *, fsdp: bool = False, axis: str = BATCH,
                 min_size: int = FSDP_MIN_SIZE) -> Any:
    """Places ``tree`` with :func:`param_shardings`: replicated, or split FSDP-style with ``fsdp=True``."""
    return jax.device_put(tree, param_shardings(tree, mesh, fsdp=fsdp, axis=axis, min_size=min_size))


class DataParallel(NamedTuple):
    """What :func:`data_parallel` returns, a pair of functions in the manner of ``optax.GradientTransformation``.

    Attributes:
      init: ``params -> (params, opt_state)``, both placed on the mesh.
      step: ``(params, opt_state, batch) -> (params, opt_state, loss)``, jitted; ``batch`` is sharded first
        (:func:`shard_batch`), the outputs keep the parameters' shardings.
    """

    init: Callable[[Any], tuple[Any, Any]]
    step: Callable[[Any, Any, Any], tuple[Any, Any, jax.Array]]


def data_parallel(loss_fn: Callable[[Any, Any], jax.Array], tx: optax.GradientTransformation, mesh: Mesh, *,
                  axis: str = BATCH, fsdp: bool = False, min_size: int = FSDP_MIN_SIZE,
                  donate: bool = False) -> DataParallel:
    """A data-parallel training step over ``mesh``: batch split over ``axis``, parameters replicated (or FSDP).

    The step is the single-device one, unchanged::

        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)

    jitted with the batch split over the devices and the parameters and optimizer state constrained to their
    shardings; XLA inserts the all-reduce of the gradient (or, under FSDP, the all-gathers of the parameters and
    the reduce-scatter of the gradient).

    Args:
      loss_fn: ``(params, batch) -> scalar``, a mean over the batch (a sum would scale with the global batch
        size just as on one device; any per-example normalisation must use global, not per-device, counts).
      tx: an optax transformation.
      mesh: a mesh with an axis named ``axis`` (:func:`data_mesh`).
      axis: the mesh axis the batch is split over (and, with ``fsdp``, the parameters).
      fsdp: shard large parameters and their optimizer state too (:func:`param_shardings`).
      min_size: the smallest array sharded under ``fsdp``.
      donate: donate the old parameters and optimizer state to the step (saves memory; the inputs then are
        invalid after the call).

    Example:
      >>> import jax, jax.numpy as jnp, optax, jrnn
      >>> from jrnn import sharding
      >>> net = jrnn.RNN(jrnn.gru(8))
      >>> def loss_fn(params, batch):
      ...     ys, _ = net.apply(params, batch["xs"], lengths=batch["lengths"])
      ...     return jnp.mean((ys[:, :, 0] - batch["ys"]) ** 2)
      >>> train = sharding.data_parallel(loss_fn, optax.adam(1e-2), sharding.data_mesh())
      >>> params, opt_state = train.init(net.init(jax.random.key(0), 3))
      >>> batch = {"xs": jnp.ones((4, 5, 3)), "ys": jnp.zeros((4, 5)), "lengths": jnp.array([5, 4, 3, 2])}
      >>> params, opt_state, loss = train.step(params, opt_state, batch)
    """
    _axis_size(mesh, axis, "jrnn.data_parallel")

    def shardings(tree):
        return param_shardings(tree, mesh, fsdp=fsdp, axis=axis, min_size=min_size)

    def init(params):
        params = jax.device_put(params, shardings(params))
        opt_state = jax.jit(tx.init, out_shardings=shardings(jax.eval_shape(tx.init, params)))(params)
        return params, opt_state

    def sharded_step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        params = jax.lax.with_sharding_constraint(params, shardings(params))
        opt_state = jax.lax.with_sharding_constraint(opt_state, shardings(opt_state))
        return params, opt_state, loss

    jitted = jax.jit(sharded_step, donate_argnums=(0, 1) if donate else ())

    def step(params, opt_state, batch):
        return jitted(params, opt_state, shard_batch(batch, mesh, axis))

    return DataParallel(init, step)
