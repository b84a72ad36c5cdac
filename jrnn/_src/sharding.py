"""Data-parallel training with ``jax.sharding``: the batch split over a device mesh, the parameters replicated
(or sharded FSDP-style), one jitted step from a loss function and an optax transformation.

Every device holds ``B / n`` sequences of the batch. The loss is a mean over the global batch, so the gradient
XLA computes is the all-reduced mean of the per-device gradients, exactly the single-device gradient up to the
order of the float additions; the optimizer update then runs on the replicated (or sharded) parameters.
Nothing here knows about Flax or about RNNs: ``params`` and ``batch`` are any pytrees.
See ``docs/concepts/sharding.md`` for the multi-host setup (``jax.distributed.initialize``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

BATCH = "batch"
FSDP_MIN_SIZE = 2 ** 14  # arrays with fewer elements stay replicated under fsdp: splitting them saves nothing


ONE_THREAD_PER_DEVICE = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def cpu_devices(n: int | None = None, *, one_thread_each: bool = True) -> int:
    """Splits this host's CPU into ``n`` XLA devices, by default one per core (``os.cpu_count()``), so that the
    data-parallel tools here (:func:`data_mesh`, :func:`data_parallel`, :func:`batch_parallel`) use every core.

    XLA:CPU runs the steps of a recurrence one after another, each on one core; a batch split over ``n`` devices
    runs ``n`` recurrences at once. The device count is fixed when JAX starts its backends, so call this right
    after ``import jax``, before anything computes; if JAX has started already it raises a ``RuntimeError``
    saying so (set ``jax.config.update("jax_num_cpu_devices", n)`` or this call earlier, e.g. at the top of the
    script). With ``one_thread_each`` (the default) it also gives each device one thread for its matmuls
    (``XLA_FLAGS`` gets ``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``), so that the
    devices do not compete for the cores; measured faster for the RNNs here (BENCHMARKS.md).

    Args:
      n: the number of devices; by default ``os.cpu_count()``.
      one_thread_each: one intra-op thread per device.

    Returns:
      ``n``.

    Example:
      >>> import subprocess, sys
      >>> code = ("import jax, jrnn; n = jrnn.sharding.cpu_devices(2); print(n, len(jax.devices()))")
      >>> subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split()
      ['2', '2']
    """
    if n is None:
        n = os.cpu_count() or 1
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"jrnn.sharding.cpu_devices: expected a positive number of devices, got {n!r}")
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError as error:
        raise RuntimeError(
            f"jrnn.sharding.cpu_devices({n}): JAX has already started its backends (with {jax.device_count()} "
            "device(s)), and the number of CPU devices is fixed from then on. Call cpu_devices right after "
            "`import jax`, before any JAX computation.") from error
    if one_thread_each:
        flags = os.environ.get("XLA_FLAGS", "")
        if ONE_THREAD_PER_DEVICE not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {ONE_THREAD_PER_DEVICE}".strip()
    return n


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


def batch_parallel(fn: Callable[..., Any], mesh: Mesh | None = None, *, axis: str = BATCH) -> Callable[..., Any]:
    """``fn(params, *batch)`` with the batch split over the devices: each device runs ``fn`` on its own slice of
    every batch argument, with a full copy of ``params`` (``jax.shard_map``), and the outputs are concatenated
    back along the batch. For inference over every core: ``cpu_devices()`` then ``batch_parallel(fn)``.

    Every leaf of every ``batch`` argument and of the output has the batch as its leading axis (``xs[B, T, F]``,
    ``lengths[B]``, ``ys[B, T, O]``, final states ``[B, ...]``; None stays None). A batch whose size is not a
    multiple of the device count is padded with zeros (zero lengths: empty sequences) and the outputs are cut
    back, so any ``B`` works. The result is jitted. One process: for several, see :func:`data_parallel`.

    Args:
      fn: ``(params, *batch) -> outputs``, e.g. ``lambda p, xs, lengths: net.apply(p, xs, lengths=lengths)``.
      mesh: a mesh with an axis named ``axis``; by default :func:`data_mesh` over every device.
      axis: the mesh axis the batch is split over.

    Returns:
      ``(params, *batch) -> outputs``, equal to ``fn`` on one device.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> from jrnn import sharding
      >>> net = jrnn.bidirectional(jrnn.lstm(8))
      >>> params = net.init(jax.random.key(0), input_size=3)
      >>> run = sharding.batch_parallel(lambda p, xs, lengths: net.apply(p, xs, lengths=lengths))
      >>> xs, lengths = jnp.ones((5, 7, 3)), jnp.array([7, 6, 5, 4, 3])
      >>> ys, state = run(params, xs, lengths)
      >>> bool(jnp.allclose(ys, net.apply(params, xs, lengths=lengths)[0], atol=1e-6)), ys.shape
      (True, (5, 7, 16))
    """
    mesh = data_mesh(axis=axis) if mesh is None else mesh
    n = _axis_size(mesh, axis, "jrnn.sharding.batch_parallel")

    def sizes(batch):
        return {int(np.shape(leaf)[0]) for leaf in jax.tree_util.tree_leaves(batch) if np.ndim(leaf)}

    @jax.jit
    def call(params, *batch):
        found = sizes(batch)
        if len(found) != 1 or any(np.ndim(leaf) == 0 for leaf in jax.tree_util.tree_leaves(batch)):
            raise ValueError("jrnn.sharding.batch_parallel: expected every batch argument to have the same leading "
                             f"batch size, got leading sizes {sorted(found)} (or a scalar)")
        (size,) = found
        pad = -size % n
        padded = jax.tree_util.tree_map(
            lambda leaf: jax.numpy.pad(leaf, ((0, pad),) + ((0, 0),) * (np.ndim(leaf) - 1)), batch)
        mapped = jax.shard_map(fn, mesh=mesh, in_specs=(PartitionSpec(),) + (PartitionSpec(axis),) * len(batch),
                               out_specs=PartitionSpec(axis))
        return jax.tree_util.tree_map(lambda leaf: leaf[:size], mapped(params, *padded))

    return call
