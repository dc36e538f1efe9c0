"""One driver per results folder at a time.

Two drivers writing one results folder would each rewrite the results table from their own copy
(losing the other's rows), run the same jobs twice and race to create the MLflow store. So a driver
holds an exclusive lock on ``<results>/.binarena.lock`` for as long as it may write there, and a
second driver refuses with one line naming the holder.

The lock is an ``flock`` on the file, not the file's existence: the kernel (or the NFS server's
lease) releases it when its holder dies, however it dies, so a lock can never outlive its driver.
The holder writes who it is into the file and clears it on a clean exit; finding that text when
the lock is free means the previous driver died holding it (a stale lock): logged and taken over.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from .errors import UserError
from .results import remove_partial_files

log = logging.getLogger(__name__)

LOCK_FILE = ".binarena.lock"
UNSUPPORTED = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL}  # no flock there
# A results disk that refuses writes: read-only, full, over quota, not ours.
UNWRITABLE = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM}


def describe_holder(text: str) -> str:
    """'`binarena run quickstart` (pid 12, host h, since 2026-12-02 06:00:00)' from the lock's text."""
    try:
        holder = json.loads(text)
        return (f"`{holder['command']}` (pid {holder['pid']} on host {holder['host']}, "
                f"since {holder['since']})")
    except (ValueError, KeyError, TypeError):
        return "another binarena driver"


class ResultsLock:
    """``with ResultsLock(folder, "binarena run x"):`` — the folder is ours until the block ends."""

    def __init__(self, results: Path, command: str | None = None) -> None:
        self.path = Path(results) / LOCK_FILE
        self.command = command or " ".join(["binarena", *sys.argv[1:]])[:300]
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"results folder {self.path.parent}: cannot write there: "
                            f"{exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in UNSUPPORTED:  # e.g. Lustre without -o flock, NFSv3 without lockd
                log.warning("results folder %s cannot be locked on this file system (%s): run one "
                            "driver at a time there", self.path.parent, exc.strerror)
                os.close(fd)
                return
            holder = os.pread(fd, 4096, 0).decode(errors="replace")
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                raise UserError(f"{self.path}: cannot lock the results folder: {exc.strerror}") from None
            raise UserError(f"results folder {self.path.parent} is in use by "
                            f"{describe_holder(holder)}; wait for it to finish, or use another "
                            "--results") from None
        stale = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        if stale:
            log.warning("results folder %s: %s ended without releasing its lock; taken over",
                        self.path.parent, describe_holder(stale))
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                         "since": time.strftime("%Y-%m-%d %H:%M:%S")})
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, me.encode(), 0)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            raise UserError(f"results folder {self.path.parent}: cannot write there: "
                            f"{exc.strerror}") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # a clean exit: nothing stale is left for the next driver
        except OSError:
            pass
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None

    def __enter__(self) -> ResultsLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


@contextmanager
def driving(results: Path) -> Iterator[None]:
    """The results folder as one driver needs it, for ``binarena run`` and ``tune`` alike: its
    lock held, the files killed writers left half-written removed, and a disk that stops taking
    writes on the way reported as one line (what finished before is recorded)."""
    with ResultsLock(results):
        remove_partial_files(results)
        try:
            yield
        except OSError as exc:
            if exc.errno not in UNWRITABLE:
                raise
            raise UserError(f"cannot write {exc.filename or results}: {exc.strerror}; what "
                            "finished before is recorded: make room and run again") from None
