"""A real multi-process run: two processes on this machine joined by ``jax.distributed.initialize`` (coordinator on
127.0.0.1, CPU collectives over gloo, 2 devices each) train ``jrnn.sharding.data_parallel`` over the 4 devices, and
end with the parameters of a single process training on 4 devices (to 1e-5).

This file is also the worker (``python tests/test_multiprocess.py OUT MODE [PROCESS_ID PORT]``):

- ``single``: one process, ``jrnn.sharding.cpu_devices(4)``, the whole batch of 8 sequences;
- ``multi``: process ``PROCESS_ID`` of 2, ``cpu_devices(2)``; each process holds only its half of the batch
  (sequences 4·i .. 4·i + 3), which ``shard_batch`` assembles into the global batch.

Each run writes its losses and final parameters to ``OUT/MODE[-ID].npz``.
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import numpy as np

B, T, F, H, STEPS = 8, 7, 3, 8, 3
TOL = 1e-5
TIMEOUT = 300


def _worker(out: pathlib.Path, mode: str, process_id: int = 0, port: int = 0) -> None:
    import jax

    import jrnn

    if mode == "multi":
        jrnn.sharding.cpu_devices(2)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id,
                                   initialization_timeout=TIMEOUT)
    else:
        jrnn.sharding.cpu_devices(4)
    import jax.numpy as jnp
    import optax

    assert jax.device_count() == 4, jax.devices()
    net = jrnn.RNN(jrnn.lstm(H))

    def loss_fn(params, batch):
        ys, _ = net.apply(params, batch["xs"], lengths=batch["lengths"])
        mask = jrnn.valid_mask(batch["lengths"], B, T)[:, :, None]
        return jnp.sum(jnp.where(mask, (ys - batch["targets"]) ** 2, 0.0)) / (H * jnp.sum(batch["lengths"]))

    rng = np.random.default_rng(0)
    batch = {"xs": rng.standard_normal((B, T, F)).astype(np.float32),
             "targets": rng.standard_normal((B, T, H)).astype(np.float32),
             "lengths": np.array([7, 6, 5, 1, 7, 3, 2, 4], np.int32)}
    if mode == "multi":  # this process's own part of the global batch
        batch = jax.tree_util.tree_map(lambda a: a[4 * process_id:4 * process_id + 4], batch)
    mesh = jrnn.sharding.data_mesh()
    train = jrnn.sharding.data_parallel(loss_fn, optax.adam(1e-2), mesh)
    params, opt_state = train.init(net.init(jax.random.key(0), F))
    losses = []
    for _ in range(STEPS):
        params, opt_state, loss = train.step(params, opt_state, batch)
        losses.append(float(loss))
    leaves = {f"param/{i}": np.asarray(leaf) for i, leaf in enumerate(jax.tree_util.tree_leaves(params))}
    name = mode if mode == "single" else f"{mode}-{process_id}"
    np.savez(out / f"{name}.npz", loss=np.array(losses), processes=jax.process_count(),
             local_devices=jax.local_device_count(), **leaves)
    if mode == "multi":
        jax.distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(out, *args) -> subprocess.Popen:
    repo = str(pathlib.Path(__file__).resolve().parent.parent)
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    env.pop("XLA_FLAGS", None)  # the workers set their own device counts
    return subprocess.Popen([sys.executable, __file__, str(out), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(procs) -> None:
    """Waits for every process (bounded); on a failure or a timeout kills the rest and reports what they printed."""
    try:
        for proc in procs:
            proc.wait(timeout=TIMEOUT)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    outputs = [proc.stdout.read()[-3000:] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), "\n---\n".join(outputs)


def test_two_processes_train_like_one_process_on_four_devices(tmp_path):
    port = _free_port()
    procs = [_start(tmp_path, "single")] + [_start(tmp_path, "multi", i, port) for i in range(2)]
    _finish(procs)
    single = np.load(tmp_path / "single.npz")
    multi = [np.load(tmp_path / f"multi-{i}.npz") for i in range(2)]
    assert int(single["processes"]) == 1 and int(single["local_devices"]) == 4
    assert [int(m["processes"]) for m in multi] == [2, 2] and [int(m["local_devices"]) for m in multi] == [2, 2]
    params = sorted(k for k in single.files if k.startswith("param/"))
    assert len(params) == 4  # the LSTM's U, W, b_U, b_W
    for m in multi:
        np.testing.assert_allclose(m["loss"], single["loss"], rtol=TOL, atol=TOL)
        for k in params:
            np.testing.assert_allclose(m[k], single[k], rtol=TOL, atol=TOL)
    assert single["loss"][-1] < single["loss"][0]  # it trained: the equality is not that of untouched values


if __name__ == "__main__":
    _worker(pathlib.Path(sys.argv[1]), sys.argv[2], *map(int, sys.argv[3:]))
