"""A run's folder: checked before use, and locked so that one process writes it at a time.

``genjax train``, ``eval`` and ``sample`` each hold the workdir's lock while they run:
a second command on the same workdir stops at once with an error naming the holder's
pid, instead of two writers interleaving checkpoints and ``metrics.jsonl``. The lock is
an advisory ``flock`` on ``WORKDIR/.genjax.lock``, which the operating system releases
when its holder exits for any reason (SIGKILL included), so a crash never leaves a
stale lock behind. In a multi-process run only process 0 writes the workdir, and only
it takes the lock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pathlib
import socket
import sys
import time
from types import TracebackType

LOCK_FILE = ".genjax.lock"


class WorkdirBusyError(RuntimeError):
    """Another process holds the workdir's lock."""


def prepare_workdir(workdir: str | os.PathLike[str], *, create: bool) -> pathlib.Path:
    """Checks that ``workdir`` is (or can become) a writable folder.

    Args:
      workdir: the run's folder.
      create: create it (and its parents) if missing; otherwise it must exist.

    Raises:
      ValueError: it is a file, or an existing parent is.
      FileNotFoundError: it does not exist and ``create`` is False.
      PermissionError: it cannot be written (read-only file system or permissions).
    """
    path = pathlib.Path(workdir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"workdir: '{path}' is a file; expected a folder for the run")
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"workdir: no folder '{path}'; run 'genjax train' with it first")
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise ValueError(f"workdir: '{parent}' (a parent of '{path}') is a file; expected a folder")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise PermissionError(err.errno, f"workdir: cannot create '{path}': {err.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"workdir: '{path}' is not writable")
    return path


class WorkdirLock:
    """The exclusive lock of a workdir, held as a context manager.

    Args:
      workdir: an existing folder (see ``prepare_workdir``).
      command: what the holder is doing, shown to whoever is refused (e.g. ``"train"``).

    Raises (on entering):
      WorkdirBusyError: another process holds the lock; the message names its pid,
        host, command and start time.
      PermissionError: the lock file cannot be created (read-only folder).
    """

    def __init__(self, workdir: str | os.PathLike[str], command: str) -> None:
        self.path = pathlib.Path(workdir) / LOCK_FILE
        self.command = command
        self._fd: int | None = None

    def __enter__(self) -> WorkdirLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise PermissionError(err.errno, f"workdir: cannot create the lock file '{self.path}': {err.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WorkdirBusyError(f"workdir: '{self.path.parent}' is in use by {holder}; wait for it to finish or use another --workdir") from None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command, "argv": sys.argv, "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    """Who holds the lock, from the record the holder wrote into the lock file."""
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"genjax {record['command']} (pid {record['pid']} on {record['host']}, since {record['since']})"
    except (ValueError, KeyError, TypeError):
        return "another genjax process (its pid is not recorded yet)"
