"""Multi-host training with `jax.distributed`: the same command on every process, one mesh
over all processes' devices, the learner data-parallel over all of them.

Every process runs the same program on its own devices (JAX's multi-controller model), so
the loops and agents need no change: a global array's shards live on the processes that
own the devices. What differs per process is kept here: who writes the run directory (only
process 0), how a process reads its copy of a global array, and how the processes agree on
a host-side decision (save a checkpoint now, stop now) so their collectives stay in step.

On a CPU the processes talk through gloo, so several processes on one machine make a
multi-host run too; that is how the tests run it.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from typing import Any

import numpy as np

ADDRESS_VAR = "JAX_COORDINATOR_ADDRESS"  # Read by jax.distributed.initialize itself.
PROCESSES_VAR = "JAX_NUM_PROCESSES"
PROCESS_ID_VAR = "JAX_PROCESS_ID"


def settings(run: Any) -> tuple[str, int, int] | None:
    """`(coordinator, num_processes, process_id)` from `run`'s flags or, where a flag is not
    given, the environment variables `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES` and
    `JAX_PROCESS_ID`; None for a single-process run."""
    address = run.coordinator or os.environ.get(ADDRESS_VAR)
    count = run.num_processes
    index = run.process_id
    if count is None and os.environ.get(PROCESSES_VAR):
        count = _int_var(PROCESSES_VAR)
    if index is None and os.environ.get(PROCESS_ID_VAR):
        index = _int_var(PROCESS_ID_VAR)
    if address is None and count is None and index is None:
        return None
    missing = [
        name
        for name, value in (
            (f"--coordinator HOST:PORT (or {ADDRESS_VAR})", address),
            (f"--num-processes N (or {PROCESSES_VAR})", count),
            (f"--process-id I (or {PROCESS_ID_VAR})", index),
        )
        if value is None
    ]
    if missing:
        raise ValueError(
            "A multi-host run needs the coordinator's address, the number of processes and "
            f"this process's index; missing: {', '.join(missing)}. Give the same --coordinator "
            "and --num-processes to every process, and each its own --process-id from 0."
        )
    host, _, port = str(address).rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--coordinator must be HOST:PORT (e.g. 10.0.0.1:1234); got {address!r}.")
    if count < 1 or not 0 <= index < count:
        raise ValueError(
            f"--process-id must be in [0, --num-processes); got --process-id {index} with "
            f"--num-processes {count}."
        )
    return str(address), int(count), int(index)


def _int_var(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"The environment variable {name} must be an integer; got {value!r}."
        ) from None


def initialize(run: Any) -> bool:
    """Joins this process to the run's processes (once; later calls do nothing); returns
    whether the run is multi-process. A process that cannot reach the coordinator, or a
    coordinator the others do not join, within `run.coordinator_timeout` seconds stops with
    a message saying which and what to check."""
    import jax

    wanted = settings(run)
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    if wanted is None:  # One process; JAX's backend is not started here (flags can still be set).
        return False
    address, count, index = wanted
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        raise ValueError(
            "--coordinator joins the processes of a multi-host run before JAX starts its "
            "devices, but this process has started them already; run the command in a fresh "
            "process (python -m purerl.experiments.AGENT ...)."
        )
    if count == 1:
        return False
    timeout = float(run.coordinator_timeout)
    if index != 0:
        _wait_for_coordinator(address, timeout, index)
    # JAX ends the process from C++ when the others do not register in time; say why first.
    message = (
        f"error: process {index} of {count} waited {timeout:g} s at the coordinator {address} "
        + (
            f"for the other {count - 1} process(es) to join"
            if index == 0
            else "for every process to join"
        )
        + f". Start all {count} with the same --coordinator {address} and --num-processes "
        f"{count}, each with its own --process-id (0 to {count - 1}), or raise "
        "--coordinator-timeout."
    )
    watchdog = threading.Timer(timeout, _give_up, (message,))
    watchdog.daemon = True
    watchdog.start()
    try:
        # CPU devices talk through gloo (GPUs keep NCCL); set before the backends start.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(address, count, index, initialization_timeout=int(timeout) + 30)
        jax.devices()  # Registers with the others (JAX waits for all here).
    finally:
        watchdog.cancel()
    return True


def _give_up(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    os._exit(2)


def _wait_for_coordinator(address: str, timeout: float, index: int) -> None:
    """Waits until `address` accepts a TCP connection, or raises a clear error."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=2.0):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ValueError(
                    f"Process {index} could not reach the coordinator at {address} within "
                    f"{timeout:g} s ({e}). Start process 0 (--process-id 0) with the same "
                    "--coordinator, check that HOST:PORT is its address and that the port is "
                    "open between the hosts, or raise --coordinator-timeout."
                ) from None
            time.sleep(0.2)


def process_count() -> int:
    import jax

    return jax.process_count()


def is_primary() -> bool:
    """Whether this process writes the run directory and the logs (process 0)."""
    import jax

    return jax.process_index() == 0


def first_block(x: Any) -> np.ndarray:
    """The first device's block (`x[0]`) of a global array laid out `[devices, ...]`, from a
    device this process holds (the loops keep it equal on every device)."""
    return np.asarray(x.addressable_shards[0].data)[0]


def gather(x: Any) -> np.ndarray:
    """The whole of a global array on this process (from every process if needed)."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def agree(value: Any) -> Any:
    """Process 0's `value` (a bool or numbers), on every process, so host-side decisions
    that lead to collectives (saving a checkpoint, stopping) are the same everywhere."""
    import jax

    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return multihost_utils.broadcast_one_to_all(np.asarray(value)).tolist()


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier `name` (no-op on one process)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
