"""The run's ETA on a fake clock: jobs and epochs at known times give known seconds left, worked
out by hand from the schedule they imply (each number below says how)."""

from __future__ import annotations

import pytest

from binarena.eta import Eta, clock_text


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def epochs_at(eta: Eta, clock: FakeClock, key: str, times: list[float], first: int = 1,
              total: int = 10) -> None:
    """``key`` reports epochs ``first``, ``first + 1``, ... at ``times``."""
    for done, t in enumerate(times, first):
        clock.now = t
        eta.epoch(key, done, total)


def test_three_jobs_of_ten_epochs_on_two_slots():
    clock = FakeClock()
    eta = Eta(3, clock)
    eta.start("a")
    eta.start("b")
    assert eta.remaining(0, 2) is None  # nothing measured yet
    epochs_at(eta, clock, "a", [2, 4, 6])  # 2 s an epoch
    epochs_at(eta, clock, "b", [3, 6])  # 3 s an epoch; now t = 6
    # a: 7 epochs x 2 s = 14 s left (ends at 20), b: 8 x 3 = 24 (ends at 30); a job takes
    # the mean of their projected durations, (20 + 30) / 2 = 25 s, so c runs 20..45: 39 s left
    assert eta.remaining(0, 2) == pytest.approx(39)
    assert eta.completed(0) == pytest.approx(0.5)  # 3/10 + 2/10
    clock.now = 7  # no epoch since: the same end, one second nearer
    assert eta.remaining(0, 2) == pytest.approx(38)

    epochs_at(eta, clock, "a", [8, 10, 12, 14, 16, 18, 20], first=4)
    epochs_at(eta, clock, "b", [9, 12, 15, 18], first=3)
    clock.now = 20
    eta.end("a", ok=True)  # 20 s: the measured duration of a job from now on
    eta.start("c")
    # b: 4 epochs x 3 s - the 2 s since its last = 10 s; c: no epoch yet: 20 s - 0 s
    assert eta.remaining(1, 2) == pytest.approx(20)
    assert eta.completed(1) == pytest.approx(1.6)
    clock.now = 22
    eta.epoch("c", 1, 10)  # c's first epoch, timed by the run's mean epoch time: 9 gaps
    # of 2 s (a), 5 of 3 s (b): 33/14 s; c: 9 x 33/14 s left; b: 10 - 2 = 8 s
    assert eta.remaining(1, 2) == pytest.approx(9 * 33 / 14)


def test_one_slot_lays_the_waiting_jobs_end_to_end():
    clock = FakeClock()
    eta = Eta(3, clock)
    eta.start("a")
    epochs_at(eta, clock, "a", [1, 2, 3, 4, 5])  # 1 s an epoch: 5 s left, a job takes 10 s
    assert eta.remaining(0, 1) == pytest.approx(5 + 10 + 10)
    clock.now = 10
    eta.end("a", ok=True)
    clock.now = 11
    eta.start("b")
    clock.now = 14  # b has no epoch yet: 10 - 3 s left, then c's 10 s
    assert eta.remaining(1, 1) == pytest.approx(17)
    clock.now = 30  # b overran the mean duration: it ends now, by what is known
    assert eta.remaining(1, 1) == pytest.approx(10)


def test_a_failed_job_is_no_duration_and_a_retry_starts_afresh():
    clock = FakeClock()
    eta = Eta(2, clock)
    eta.start("a")
    clock.now = 1
    eta.end("a", ok=False)  # a failure after 1 s says nothing of how long a job takes
    eta.start("a")  # its retry
    assert eta.remaining(0, 1) is None
    epochs_at(eta, clock, "a", [3, 5])  # 2 s an epoch from its second report
    # a: 8 x 2 = 16 s left, projected (5 - 1) + 16 = 20 s from its retry's start: b after it
    assert eta.remaining(0, 1) == pytest.approx(16 + 20)


def test_the_last_jobs_end_with_the_slowest():
    clock = FakeClock()
    eta = Eta(2, clock)
    eta.start("a")
    eta.start("b")
    epochs_at(eta, clock, "a", [1, 2])  # 8 s left
    epochs_at(eta, clock, "b", [2, 4])  # 2 s an epoch: 16 s left at t = 4; a's: 6 s
    assert eta.remaining(0, 2) == pytest.approx(16)


def test_clock_text():
    assert clock_text(None) == "-:--:--"
    assert clock_text(113.4) == "0:01:53"
    assert clock_text(3 * 3600 + 7) == "3:00:07"


def test_epoch_time_is_measured_between_epochs_not_from_the_start():
    clock = FakeClock()
    eta = Eta(1, clock)
    eta.start("a")  # searches 10 s, then trains 2 s an epoch
    epochs_at(eta, clock, "a", [12, 14, 16])
    assert eta.remaining(0, 1) == pytest.approx(7 * 2)


def test_a_free_slot_takes_a_waiting_job_at_once():
    clock = FakeClock()
    eta = Eta(4, clock)
    eta.start("a")
    eta.start("b")
    eta.remaining(0, 2)  # the run has held two jobs at once
    epochs_at(eta, clock, "a", [1, 2])
    epochs_at(eta, clock, "b", [1, 2])
    clock.now = 10
    eta.end("a", ok=True)
    eta.end("b", ok=True)  # 10 s a job
    eta.start("c")  # d waits (say, for a pre-training): it gets the other slot, not c's
    assert eta.remaining(2, 1) == pytest.approx(10)


def test_a_single_epoch_in_the_run_tells_nothing_yet():
    clock = FakeClock()
    eta = Eta(2, clock)
    eta.start("a")
    epochs_at(eta, clock, "a", [30])  # 30 s of start-up and one epoch: no epoch time yet
    assert eta.remaining(0, 1) is None
    epochs_at(eta, clock, "a", [32], first=2)  # 2 s an epoch: 16 s left, b 32 + 16 s
    assert eta.remaining(0, 1) == pytest.approx(16 + 48)
