"""Running stages on Ray: resources per job, bounded parallelism, ordering, retries, a clean Ctrl-C.

The driver submits at most ``max_parallel`` stages at a time as Ray tasks (by default as many as
the cluster holds, asked again as it grows), collects each outcome as it finishes and hands it to
``on_outcome`` (where tracking records it). A stage that raises (or
whose worker dies) is submitted again up to ``retries`` times, then recorded as failed; the run
goes on. Pre-training stages come first; a job that starts from one is submitted only once its
weights exist, and receives them from the object store (put there once, whatever the number of
jobs). A job whose pre-training failed is recorded as failed without running.
"""

from __future__ import annotations

import logging
import math
import re
import time
import traceback as tb
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import ray
from ray.actor import ActorHandle
from ray.util.queue import Queue

from .errors import first_line
from .jobs import Job
from .outcome import JobOutcome
from .placement import Parallelism, holds_gpus
from .pretraining import WEIGHTS
from binarena.methods.base import Result, RunContext, run_job
from .signals import sigterm_as_interrupt, terminated
from .subtasks import RayExecutor
from .words import counted

log = logging.getLogger(__name__)


class JobError(Exception):
    """A job's failure on its way to the driver: a one-line summary and the worker's traceback
    (Ray's own rendering of nested task failures is neither)."""

    def __init__(self, summary: str, traceback: str) -> None:
        super().__init__(summary, traceback)
        self.summary, self.traceback = summary, traceback

    def __str__(self) -> str:
        return self.summary


class Progress(Protocol):
    """What the driver tells its user interface; the CLI draws it, tests may record it.
    ``start_job`` when a job's process begins it (each attempt), ``end_job`` when an attempt
    ended, well or not; ``subtasks`` counts within the job (its ``unit`` "epochs" for training)."""

    def begin(self, total: int, skipped: int) -> None: ...
    def update(self, done: int, running: int, failed: int) -> None: ...
    def start_job(self, job: Job) -> None: ...
    def subtasks(self, job: Job, done: int, total: int, unit: str) -> None: ...
    def end_job(self, job: Job, ok: bool) -> None: ...
    def note(self, message: str) -> None: ...


class SilentProgress:
    def begin(self, total: int, skipped: int) -> None:
        log.info("%d jobs to run, %d already recorded", total, skipped)

    def update(self, done: int, running: int, failed: int) -> None:
        pass

    def start_job(self, job: Job) -> None:
        log.info("%s: started", job.label)

    def subtasks(self, job: Job, done: int, total: int, unit: str) -> None:
        log.info("%s: %d/%d %s", job.label, done, total, unit)

    def end_job(self, job: Job, ok: bool) -> None:
        pass

    def note(self, message: str) -> None:
        log.info(message)


def _execute(job: Job, data_root: str | None, workdir: str, channel: Any = None,
             start: list[ray.ObjectRef] | None = None) -> tuple[Result, float, float]:
    """The body of one stage's Ray task: its own thread budget, a run context, the method, its
    pool of sub-task workers (closed when it ends). ``start`` holds the reference to the starting
    weights, fetched here (a reference nested in a list is not a task dependency: cancelling a
    job never races Ray's argument resolution). ``channel`` carries (job key, what, details) to
    the driver: "start", then "progress" (done, total, unit) and "epoch" (epoch, figures)."""
    import torch

    start_state = ray.get(start[0]) if start else None

    torch.set_num_threads(max(1, math.floor(job.resources.cpus)))
    Path(workdir).mkdir(parents=True, exist_ok=True)

    def report(done: int, total: int, unit: str) -> None:
        channel.put_nowait((job.key, "progress", (done, total, unit)))

    def record_epoch(epoch: int, figures: dict[str, float]) -> None:
        channel.put_nowait((job.key, "epoch", (epoch, figures)))

    if channel is not None:
        channel.put_nowait((job.key, "start", ()))
    executor = RayExecutor()
    ctx = RunContext(job=job, data_root=Path(data_root) if data_root else None,
                     workdir=Path(workdir), executor=executor,
                     report=report if channel is not None else None,
                     record_epoch=record_epoch if channel is not None else None,
                     start_state=start_state, holds_gpus=holds_gpus(job))
    started = time.time()
    t0 = time.perf_counter()
    try:
        result = run_job(ctx)
        if "accuracy" not in result.metrics:
            raise ValueError(f"method {job.method!r} returned no 'accuracy' metric")
    except Exception as exc:
        raise JobError(_one_line(exc), tb.format_exc()) from None
    finally:
        executor.close()
    return result, started, time.perf_counter() - t0


_execute_remote = ray.remote(_execute)


@dataclass
class RunReport:
    outcomes: list[JobOutcome] = field(default_factory=list)
    interrupted: bool = False  # by Ctrl-C or SIGTERM
    terminated: bool = False  # by SIGTERM

    @property
    def failed(self) -> list[JobOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def run_jobs(
    jobs: Sequence[Job],
    *,
    workdir: Callable[[Job], Path],
    data_root: Path | None,
    on_outcome: Callable[[JobOutcome], None],
    start_weights: Mapping[str, bytes] | None = None,
    max_parallel: int | None = None,
    retries: int = 1,
    progress: Progress | None = None,
    source: Callable[[], Job | None] | None = None,
    on_start: Callable[[Job], object] | None = None,
    on_epoch: Callable[[Job, int, dict[str, float]], None] | None = None,
) -> RunReport:
    """Run ``jobs`` (pre-training stages among them), then what ``source`` hands out, on the
    connected Ray cluster; ``on_outcome`` sees each one as it ends. ``start_weights`` holds the
    weights of pre-trainings recorded before, by key; the others must be among ``jobs``.
    ``on_start`` sees each job as its process begins it (each attempt), ``on_epoch`` each epoch
    it trains with its figures (``train_loss``, ``train_accuracy``), all on the driver.

    Ctrl-C (KeyboardInterrupt) or SIGTERM stops scheduling and cancels the running jobs; what
    finished has already been handed to ``on_outcome``, so it is kept.
    """
    progress = progress or SilentProgress()
    parallelism = Parallelism(jobs, max_parallel)
    limit = parallelism()
    pending = [j for j in jobs if j.is_pretrain] + [j for j in jobs if not j.is_pretrain]
    running: dict[ray.ObjectRef, tuple[Job, int, float]] = {}
    weights = {key: ray.put(blob) for key, blob in (start_weights or {}).items()}
    lost: dict[str, str] = {}  # pre-training key -> why its jobs cannot run
    report = RunReport()
    done = failed = 0
    root = str(data_root) if data_root else None

    channel = Queue(actor_options={"num_cpus": 0})  # jobs' starts, progress, epochs, to the driver
    by_key = {job.key: job for job in jobs}

    def submit(job: Job, attempt: int) -> None:
        start = [weights[job.pretrain.key]] if job.pretrain is not None else None
        ref = _execute_remote.options(
            num_cpus=job.resources.cpus, num_gpus=job.resources.gpus if holds_gpus(job) else 0,
            max_retries=0, name=job.label,
        ).remote(job, root, str(workdir(job)), channel, start)
        running[ref] = (job, attempt, time.time())

    def startable(job: Job) -> bool:
        return job.pretrain is None or job.pretrain.key in weights

    def next_ready() -> Job | None:
        """A pending job whose weights are there; else, when none waits, one from the source."""
        nonlocal source
        for i, job in enumerate(pending):
            if startable(job):
                return pending.pop(i)
        if pending or source is None:
            return None
        fresh = source()
        if fresh is None:
            source = None  # it has handed out all it had
            return None
        by_key[fresh.key] = fresh
        if startable(fresh):
            return fresh
        pending.append(fresh)
        return None

    def finish(outcome: JobOutcome) -> None:
        on_outcome(outcome)
        report.outcomes.append(outcome)

    def drop_orphans() -> None:
        """Jobs whose pre-training failed, or that nothing will ever give weights to."""
        scheduled = {j.key for j in pending} | {j.key for j, _, _ in running.values()}
        for job in [j for j in pending if not startable(j)]:
            assert job.pretrain is not None  # not startable: it waits for its pre-training
            why = lost.get(job.pretrain.key)
            if why is None and job.pretrain.key in scheduled:
                continue
            pending.remove(job)
            finish(JobOutcome.failure(job, why or f"its pre-training {job.pretrain.key} is "
                                      "neither recorded nor scheduled"))

    def drain() -> None:
        while not channel.empty():
            key, what, details = channel.get_nowait()
            if (job := by_key.get(key)) is None:
                continue
            if what == "start":
                progress.start_job(job)
                if on_start is not None:
                    on_start(job)
            elif what == "epoch":
                if on_epoch is not None:
                    on_epoch(job, *details)
            else:
                progress.subtasks(job, *details)

    with sigterm_as_interrupt():
        try:
            while pending or running or source is not None:
                drop_orphans()
                failed = len(report.failed)
                if (now := parallelism()) != limit:
                    progress.note(f"the cluster holds {counted(now, 'job')} at once now (it held "
                                  f"{limit})")
                    limit = now
                while len(running) < limit and (job := next_ready()) is not None:
                    submit(job, 1)
                if not running:
                    continue
                progress.update(done, len(running), failed)
                ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                drain()
                for ref in ready:
                    job, attempt, submitted = running.pop(ref)
                    try:
                        result, started, seconds = ray.get(ref)
                    except Exception as exc:  # the job raised, or its worker died
                        progress.end_job(job, ok=False)
                        error = _one_line(exc)
                        if attempt <= retries:
                            progress.note(f"{job.label} failed ({error}); retrying ({attempt}/{retries})")
                            submit(job, attempt + 1)
                            continue
                        outcome = JobOutcome.failure(job, error, started_at=submitted,
                                                     attempts=attempt, traceback=_traceback(exc))
                        progress.note(f"{job.label} failed after {counted(attempt, 'attempt')}: "
                                      f"{error}")
                        if job.is_pretrain:
                            lost[job.key] = f"its pre-training {job.label} failed: {error}"
                    else:
                        progress.end_job(job, ok=True)
                        outcome = JobOutcome(job, "ok", result, started, started + seconds, seconds,
                                             attempt)
                        done += 1
                    finish(outcome)
                    if job.is_pretrain and outcome.status == "ok":
                        weights[job.key] = ray.put(result.artifacts[WEIGHTS])
            progress.update(done, 0, len(report.failed))
        except KeyboardInterrupt:
            report.interrupted, report.terminated = True, terminated()
            progress.note(f"interrupted: leaving {len(running)} running jobs to stop with the "
                          "driver; finished ones are kept")
            # No ray.cancel: in Ray 2.60 a cancel racing with a task's completion trips an internal
            # check and the driver dies with exit 1 (ray-project/ray#54846). A driver's tasks end
            # when it disconnects (ray.shutdown, or the process exit), and their checkpoints are
            # written atomically, so a rerun resumes them.
        finally:
            # Ray types a Queue's actor as handle or class; it is the handle Queue() started
            ray.kill(cast(ActorHandle, channel.actor))
    return report


def _one_line(exc: BaseException) -> str:
    """The root cause of a (possibly Ray-wrapped, possibly nested) exception, as 'Type: first line'."""
    while isinstance(cause := getattr(exc, "cause", None), BaseException):
        exc = cause
    if isinstance(exc, JobError):
        return exc.summary
    news = first_line(exc)
    return type(exc).__name__ if news == type(exc).__name__ else f"{type(exc).__name__}: {news}"


def _traceback(exc: BaseException) -> str:
    """The worker's own traceback when the job sent one, else what Ray says (e.g. a dead worker)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, JobError):
        return cause.traceback
    return re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
