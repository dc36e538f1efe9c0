"""SIGTERM as Ctrl-C: the handler Ray installs during ``ray.init`` never outlives a scope."""

import signal
import subprocess
import sys
import textwrap

import pytest

from binarena.signals import Terminated, reclaim_sigterm, sigterm_as_interrupt, terminated

from conftest import HANG_S


def foreign_handler(signum, frame):  # what ray.init installs: kill the node, exit 1
    raise SystemExit(1)


@pytest.fixture
def original_handler():
    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield signal.SIG_DFL
    signal.signal(signal.SIGTERM, before)


def test_sigterm_raises_terminated_after_a_foreign_handler_is_reclaimed(original_handler):
    with pytest.raises(Terminated), sigterm_as_interrupt():
        signal.signal(signal.SIGTERM, foreign_handler)
        reclaim_sigterm()
        signal.raise_signal(signal.SIGTERM)
    assert terminated()
    assert signal.getsignal(signal.SIGTERM) is original_handler


def test_a_sigterm_after_ray_init_is_an_interrupt_and_ray_s_handler_does_not_outlive_it():
    # the window that lost runs: Ray's handler, left in place after a scope opened once Ray was
    # up, made a SIGTERM during the leaderboard or the shutdown exit 1 with Ray's stack dump
    code = textwrap.dedent("""
        import signal, ray
        from binarena.connect import ensure_ray
        from binarena.signals import Terminated, sigterm_as_interrupt
        with sigterm_as_interrupt():
            ensure_ray(num_cpus=1)
            try:
                signal.raise_signal(signal.SIGTERM)
            except Terminated:
                print("terminated")
            ray.shutdown()
        print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=HANG_S)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["terminated", "True"]


def test_reclaim_outside_a_scope_leaves_the_handler_alone(original_handler):
    signal.signal(signal.SIGTERM, foreign_handler)
    reclaim_sigterm()
    assert signal.getsignal(signal.SIGTERM) is foreign_handler
