"""Data-parallel training over a device mesh with ``jax.sharding`` (see ``docs/concepts/sharding.md``).

``data_mesh()`` builds a one-axis mesh; ``shard_batch`` splits a batch's leading axis over it; ``replicate`` and
``shard_params`` place parameters (replicated, or FSDP-style with ``fsdp=True``); ``data_parallel(loss_fn, tx,
mesh)`` returns ``init`` and a jitted ``step`` that equals the single-device step; ``batch_parallel(fn)`` runs a
function with the batch split over the devices (inference); ``cpu_devices()`` splits the host CPU into one device
per core, so that all of them run.
"""

from jrnn._src.sharding import (
    BATCH,
    DataParallel,
    batch_parallel,
    batch_sharding,
    cpu_devices,
    data_mesh,
    data_parallel,
    param_shardings,
    replicate,
    shard_batch,
    shard_params,
)

__all__ = ["BATCH", "DataParallel", "batch_parallel", "batch_sharding", "cpu_devices", "data_mesh", "data_parallel",
           "param_shardings", "replicate", "shard_batch", "shard_params"]
