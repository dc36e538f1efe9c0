"""SIGTERM handled like Ctrl-C.

``timeout``, Slurm and Kubernetes stop a driver with SIGTERM. Python's default would end it on the
spot, and the handler ``ray.init`` installs kills the local Ray node and exits with status 1: either
way running jobs are not stopped cleanly, no leaderboard is written and the MLflow parent run stays
RUNNING. Raising ``Terminated`` (a ``KeyboardInterrupt``) instead sends it down the path a Ctrl-C
takes: scheduling stops, finished jobs are kept, Ray is shut down by its owner.

``sigterm_as_interrupt`` scopes this (the CLI wraps a whole command in it); ``ray.init`` replaces
the handler, so whoever calls it calls ``reclaim_sigterm`` right after. Ray turns an interrupt
raised inside its calls into a plain ``KeyboardInterrupt``, so whether a SIGTERM came is also kept
aside: ``terminated()``.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(KeyboardInterrupt):
    """The driver received SIGTERM."""


_received = threading.Event()
_depth = 0  # how many sigterm_as_interrupt scopes are open (main thread only)


def terminated() -> bool:
    """Whether this process received SIGTERM inside the outermost open (or last) scope."""
    return _received.is_set()


def sigterm_received() -> Terminated:
    """Note a SIGTERM that arrived another way (through Ray's handler during ``ray.init``)."""
    _received.set()
    return Terminated()


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise sigterm_received()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated`` in the main thread; the handler from before
    the outermost block comes back after it (never one Ray installed in between)."""
    global _depth
    if not _in_main_thread():
        yield
        return
    if _depth == 0:
        _received.clear()
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        signal.signal(signal.SIGTERM, _raise_terminated if _depth else previous)


def reclaim_sigterm() -> None:
    """Put ``Terminated`` back after ``ray.init`` replaced it, when a scope is open."""
    if _depth and _in_main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
