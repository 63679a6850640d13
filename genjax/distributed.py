"""Multi-process runs on JAX's own distributed runtime (``jax.distributed``).

One genjax run may span several processes: the hosts of a TPU pod slice, the GPUs of a
cluster node driven one process each, or (for tests) several processes on one machine.
Every process runs the same command; ``initialize`` connects them before any device is
used, after which ``jax.devices()`` lists the devices of all of them and the jit step
(``genjax.train.build_train_step``) runs one program over all of them. Each process
reads only its own rows of every batch (``genjax.data.Batcher``), and only process 0
writes the workdir (metrics, config, evaluation, images, the checkpoint manifest).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60
"""How long ``initialize`` waits for every process to reach the coordinator."""

_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class DistributedError(RuntimeError):
    """The processes of a run could not be connected or disagree."""


def check_process_args(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Checks the three ``jax.distributed`` arguments before anything connects.

    Args:
      coordinator: ``HOST:PORT`` of process 0's coordinator service.
      num_processes: how many processes the run has.
      process_id: this process's index, in ``[0, num_processes)``.

    Raises:
      ValueError: naming the command-line flag at fault (``--coordinator``,
        ``--num-processes`` or ``--process-id``).
    """
    given = {"--coordinator": coordinator, "--num-processes": num_processes, "--process-id": process_id}
    missing = [flag for flag, value in given.items() if value is None]
    if len(missing) not in (0, 3):
        raise ValueError(f"{missing[0]}: a multi-process run needs --coordinator, --num-processes and --process-id together")
    if missing:
        return
    assert coordinator is not None and num_processes is not None and process_id is not None
    match = _ADDRESS.match(coordinator)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"--coordinator: expected HOST:PORT with a port in 1..65535, got {coordinator!r}")
    if num_processes < 1:
        raise ValueError(f"--num-processes: expected a positive int, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"--process-id: expected an int in [0, {num_processes}), got {process_id}")


def detected_cluster(environ: Mapping[str, str] | None = None) -> str | None:
    """The multi-process launcher this process was started by, from its environment.

    ``"slurm"`` inside an ``srun`` step of more than one task (``SLURM_STEP_NUM_TASKS``),
    ``"tpu"`` on a Cloud TPU VM of a multi-host slice (``TPU_WORKER_HOSTNAMES`` names
    several hosts); None otherwise. In those two cases ``initialize`` connects the
    processes without flags, as ``jax.distributed.initialize()`` detects them.
    """
    env = os.environ if environ is None else environ
    try:
        if int(env.get("SLURM_STEP_NUM_TASKS", "1")) > 1:
            return "slurm"
    except ValueError:
        pass
    if len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]) > 1:
        return "tpu"
    return None


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    auto: bool = False,
    timeout_s: int = DEFAULT_TIMEOUT_S,
) -> bool:
    """Connects this process to the others of its run; call it before any device use.

    With the three arguments given, they are passed to ``jax.distributed.initialize``.
    With ``auto``, or when ``detected_cluster`` finds an ``srun`` step or a multi-host TPU
    slice, JAX detects them itself (as it does on Cloud TPU pod slices, under SLURM and
    under Open MPI). Otherwise the run is one process and nothing happens.

    Args:
      coordinator: ``HOST:PORT`` of the coordinator, which process 0 starts.
      num_processes: how many processes the run has.
      process_id: this process's index.
      auto: let JAX detect the cluster.
      timeout_s: seconds to wait for every process to connect.

    Returns:
      Whether ``jax.distributed`` was initialised.

    Raises:
      ValueError: an argument is malformed (see ``check_process_args``).
      DistributedError: the processes did not all connect within ``timeout_s``.
    """
    check_process_args(coordinator, num_processes, process_id)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or timeout_s <= 0:
        raise ValueError(f"--distributed-timeout: expected a positive number of seconds, got {timeout_s!r}")
    if coordinator is None and not auto and detected_cluster() is None:
        return False
    if num_processes == 1:
        return False
    if coordinator is not None:
        assert num_processes is not None and process_id is not None
        rendezvous(coordinator, num_processes, process_id, timeout_s)
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=timeout_s,
        )
    except Exception as err:  # the runtime reports timeouts as RuntimeError or XlaRuntimeError
        where = f"the coordinator {coordinator}" if coordinator else "an auto-detected cluster"
        first = " ".join(str(err).split())[:300]
        raise DistributedError(
            f"--coordinator: could not connect to {where} within {timeout_s} s; are all processes started, "
            f"with the same --coordinator and --num-processes? ({type(err).__name__}: {first})"
        ) from None
    log.info(
        "process %d of %d on %s: %d local devices of %d (%s)",
        jax.process_index(),
        jax.process_count(),
        socket.gethostname(),
        jax.local_device_count(),
        jax.device_count(),
        jax.devices()[0].platform,
    )
    return True


def _split_address(coordinator: str) -> tuple[str, int]:
    host, port = coordinator.rsplit(":", 1)
    return host.strip("[]"), int(port)


def rendezvous(coordinator: str, num_processes: int, process_id: int, timeout_s: float) -> None:
    """Meets every process at the coordinator's address before ``jax.distributed`` does.

    JAX's coordination client ends the process with a fatal error (no exception) when
    the other processes do not arrive in time; this plain TCP meeting first gives a clear
    error on every process instead, and checks that the processes agree on
    ``--num-processes`` and that no ``--process-id`` is used twice. Process 0 listens on
    the coordinator's port until ``num_processes - 1`` others have connected, answers
    each, and closes it again for JAX's coordinator service.

    Raises:
      DistributedError: naming ``--coordinator``, ``--num-processes`` or ``--process-id``.
    """
    host, port = _split_address(coordinator)
    deadline = time.monotonic() + timeout_s
    if process_id == 0:
        _host_rendezvous(port, num_processes, deadline, coordinator, timeout_s)
        return
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(deadline - time.monotonic(), 0.1)) as conn:
                conn.sendall((json.dumps({"id": process_id, "n": num_processes}) + "\n").encode())
                conn.settimeout(max(deadline - time.monotonic(), 0.1))
                answer = conn.makefile().readline().strip()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise DistributedError(
                    f"--coordinator: nothing answered at {coordinator} within {timeout_s:g} s; start process 0 there (or fix the address)"
                ) from None
            time.sleep(0.25)
    if answer != "ok":
        raise DistributedError(answer or f"--coordinator: process 0 at {coordinator} closed the connection without an answer")


def _host_rendezvous(port: int, num_processes: int, deadline: float, coordinator: str, timeout_s: float) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(("", port))
        except OSError as err:
            raise DistributedError(f"--coordinator: process 0 cannot listen on port {port} ({err.strerror}); choose a free port") from None
        server.listen(num_processes)
        peers: dict[int, socket.socket] = {}
        problems: list[str] = []
        try:
            while len(peers) + len(problems) < num_processes - 1:
                server.settimeout(max(deadline - time.monotonic(), 0.01))
                try:
                    conn, _ = server.accept()
                    conn.settimeout(max(deadline - time.monotonic(), 0.1))
                    hello = json.loads(conn.makefile().readline())
                except (OSError, ValueError):
                    missing = sorted(set(range(1, num_processes)) - set(peers))
                    message = f"--num-processes: processes {missing} of {num_processes} did not reach --coordinator {coordinator} within {timeout_s:g} s"
                    for peer in peers.values():
                        peer.sendall((message + "\n").encode())
                    raise DistributedError(message) from None
                pid, n = hello.get("id"), hello.get("n")
                if n != num_processes:
                    problems.append(f"--num-processes: process {pid} was started with {n}, process 0 with {num_processes}")
                elif pid in peers or pid == 0:
                    problems.append(f"--process-id: {pid} was given to more than one process")
                else:
                    peers[pid] = conn
                    continue
                conn.sendall((problems[-1] + "\n").encode())
                conn.close()
            answer = problems[0] if problems else "ok"
            for peer in peers.values():
                peer.sendall((answer + "\n").encode())
            if problems:
                raise DistributedError(problems[0])
        finally:
            for peer in peers.values():
                peer.close()


def is_writer() -> bool:
    """Whether this process writes the run's outputs: process 0 only."""
    return jax.process_index() == 0


def fingerprint(record: Any) -> str:
    """SHA-256 of a JSON-serialisable record, keys sorted: equal records, equal prints."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def check_same_everywhere(record: Any, what: str, remedy: str = "start every process with the same one") -> None:
    """Refuses, on every process, a run whose processes were given different ``record``s.

    A no-op in a one-process run. Otherwise every process must call it at the same point.

    Args:
      record: JSON-serialisable, e.g. the resolved config.
      what: its name in the error, e.g. ``"--config"``.
      remedy: what the error tells the user to do.

    Raises:
      DistributedError: naming ``what`` and the processes that differ from process 0.
    """
    if jax.process_count() == 1:
        return
    mine = np.frombuffer(bytes.fromhex(fingerprint(record)), dtype=np.uint8)
    every = np.asarray(multihost_utils.process_allgather(mine)).reshape(jax.process_count(), -1)
    differ = [i for i in range(1, len(every)) if not np.array_equal(every[i], every[0])]
    if differ:
        raise DistributedError(f"{what}: processes {differ} differ from process 0; {remedy}")


def broadcast_int(value: int) -> int:
    """Process 0's ``value`` on every process (the identity in a one-process run)."""
    if jax.process_count() == 1:
        return int(value)
    return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def fetch_global(tree: Any) -> Any:
    """A host (numpy) copy of every leaf of ``tree``; arrays that span several processes
    are gathered, so each process gets the whole value. Every process must call it."""

    def one(x: Any) -> np.ndarray:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(jax.device_get(x))

    return jax.tree.map(one, tree)


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier ``name`` (a no-op for one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DistributedError",
    "barrier",
    "broadcast_int",
    "check_process_args",
    "check_same_everywhere",
    "detected_cluster",
    "fetch_global",
    "fingerprint",
    "initialize",
    "is_writer",
    "rendezvous",
]
