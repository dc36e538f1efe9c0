"""SIGTERM handled like Ctrl-C.

``timeout``, Slurm and Kubernetes stop a driver with SIGTERM. Python's default (and Ray's own
handler, which ``ray.init`` installs) would end it on the spot: running jobs not cancelled, no
leaderboard, the MLflow parent run left RUNNING. Raising ``Terminated`` (a ``KeyboardInterrupt``)
instead sends it down the path a Ctrl-C takes: running jobs cancelled, finished ones kept.
Ray turns an interrupt raised inside its calls into a plain ``KeyboardInterrupt``, so whether a
SIGTERM came is also kept aside: ``terminated()``.
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


def terminated() -> bool:
    """Whether this process received SIGTERM inside ``sigterm_as_interrupt``."""
    return _received.is_set()


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    _received.set()
    raise Terminated()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated`` in the main thread. Enter it after
    ``ray.init`` (which replaces the SIGTERM handler); the previous handler comes back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
