"""How long a run has left, from what its jobs took: measured job durations and epoch times.

A progress bar's own estimate (its speed over the last seconds) knows only when whole jobs end: it
reads "unknown" between them and a few seconds after one. Here the driver's display tells an
``Eta`` when each job starts, each training epoch it ends, and when it ends. A running job that has
trained an epoch has left its untrained epochs times its epoch time (between its own epoch
reports; after its first, the mean epoch time of the run so far, unknown before any job's second). A job's duration is the mean of
those that ended well, before any did the mean of the running jobs' (time so far plus time left
by their epochs): a running job without an epoch has that less its time so far, and the jobs not
started take it each, laid on the run's slots as the runtime lays them, each on the slot that
frees first. The clock is injectable (a test's).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import fmean

Clock = Callable[[], float]


@dataclass
class _Job:
    started: float
    epochs: list[tuple[int, float]] = field(default_factory=list)  # (epochs done, when)
    total: int = 0  # epochs its training has, once it has reported one


class Eta:
    """Seconds left of a run of ``total`` jobs (``remaining``), and how much of it is done."""

    def __init__(self, total: int, clock: Clock = time.monotonic) -> None:
        self.total, self.clock = total, clock
        self.jobs: dict[str, _Job] = {}  # running, by key
        self.durations: list[float] = []  # of the jobs that ended well
        self.epoch_times: list[float] = []  # seconds per epoch, one per pair of epoch reports
        self.slots = 1  # jobs at once: the most the runtime has had running

    def start(self, key: str) -> None:
        self.jobs[key] = _Job(self.clock())

    def epoch(self, key: str, done: int, total: int) -> None:
        """``key`` has trained ``done`` of ``total`` epochs (a new count starts a new phase)."""
        job, now = self.jobs.get(key), self.clock()
        if job is None:
            return
        if job.total != total or (job.epochs and done <= job.epochs[-1][0]):
            job.epochs, job.total = [], total
        if job.epochs:
            last, when = job.epochs[-1]
            self.epoch_times.append((now - when) / (done - last))
        job.epochs.append((done, now))

    def end(self, key: str, ok: bool) -> None:
        job = self.jobs.pop(key, None)
        if job is not None and ok:
            self.durations.append(self.clock() - job.started)

    def completed(self, ended: int) -> float:
        """Jobs' worth done: ``ended`` jobs and the trained share of the running ones."""
        return ended + sum(j.epochs[-1][0] / j.total for j in self.jobs.values()
                           if j.epochs and j.total)

    def remaining(self, ended: int, running: int) -> float | None:
        """Seconds until the last job ends, ``ended`` of them having ended (ok or failed) and
        ``running`` submitted; None while nothing has been measured to tell."""
        self.slots = max(self.slots, running, len(self.jobs))
        now = self.clock()
        measured = {key: left for key, job in self.jobs.items()
                    if (left := self._by_epochs(job, now)) is not None}
        duration = fmean(self.durations) if self.durations else fmean(
            [now - self.jobs[key].started + left for key, left in measured.items()] or [-1.0])
        waiting = self.total - ended - len(self.jobs)
        if duration < 0 and (waiting > 0 or len(measured) < len(self.jobs)):
            return None  # neither an ended job nor a trained epoch to go by
        free = [measured.get(key, max(0.0, duration - (now - job.started)))
                for key, job in self.jobs.items()]
        free += [0.0] * (self.slots - len(free))
        heapq.heapify(free)
        for _ in range(max(0, waiting)):  # each on the slot that frees first
            heapq.heappush(free, heapq.heappop(free) + duration)
        return max(free, default=0.0)

    def _by_epochs(self, job: _Job, now: float) -> float | None:
        """Seconds a running job has left by its epochs: None before its first."""
        if not job.epochs:
            return None
        (first, t_first), (done, when) = job.epochs[0], job.epochs[-1]
        if done > first:
            each = (when - t_first) / (done - first)
        elif self.epoch_times:
            each = fmean(self.epoch_times)
        else:  # one epoch in the whole run: timed from its job's start it would count the
            return None  # start-up too (a 22-minute first guess for a 3-minute run)
        return max(0.0, (job.total - done) * each - (now - when))


def clock_text(seconds: float | None) -> str:
    """``H:MM:SS``, or ``-:--:--`` when unknown."""
    if seconds is None:
        return "-:--:--"
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
