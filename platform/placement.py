"""Whether, and how much of, a run the connected cluster can hold: a job (or a sub-task it fans
out) that no node can ever hold is refused before anything is written, since Ray would keep it
pending forever, silently; an autoscaling cluster gets a bounded, announced wait for a node.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import ray

from .connect import ensure_ray
from .errors import UserError
from .jobs import Job
from .words import counted

log = logging.getLogger(__name__)

DEFAULT_WAIT_TIMEOUT_S = 600.0  # an existing cluster may be autoscaling: how long to wait for a node


def default_parallelism(jobs: Sequence[Job]) -> int:
    """As many jobs at once as the cluster's CPUs (and GPUs) hold, so 'running' means running."""
    return jobs_that_fit(jobs, ray.cluster_resources()) if jobs else 1


def jobs_that_fit(jobs: Sequence[Job], capacity: Mapping[str, float]) -> int:
    """How many of the largest of ``jobs`` ``capacity`` (Ray's resource names) holds at once."""
    if not jobs:
        return 1
    return shares_that_fit(max(j.resources.cpus for j in jobs),
                           max(j.resources.gpus for j in jobs), capacity)


def shares_that_fit(cpus: float, gpus: float, capacity: Mapping[str, float]) -> int:
    """How many tasks of ``cpus`` and ``gpus`` each ``capacity`` holds at once (at least one:
    an autoscaling cluster may have no node yet)."""
    fits = math.floor(capacity.get("CPU", 1) / cpus + 1e-9)
    if gpus:
        fits = min(fits, math.floor(capacity.get("GPU", 0) / gpus + 1e-9))
    return max(1, fits)


class Parallelism:
    """How many jobs at once: ``fixed`` when the user said so (``--max-parallel``), else what the
    cluster holds now, asked again every ``every`` seconds: an autoscaling cluster that adds
    nodes gets more jobs in flight (one that started empty would otherwise run one at a time)."""

    def __init__(self, jobs: Sequence[Job], fixed: int | None = None, every: float = 5.0,
                 capacity: Callable[[], Mapping[str, float]] = ray.cluster_resources) -> None:
        self.jobs, self.fixed, self.every, self.capacity = list(jobs), fixed, every, capacity
        self._value, self._asked = 0, -math.inf

    def __call__(self) -> int:
        if self.fixed:
            return self.fixed
        if time.monotonic() - self._asked >= self.every:
            self._value, self._asked = jobs_that_fit(self.jobs, self.capacity()), time.monotonic()
        return self._value


@dataclass(frozen=True)
class Demand:
    """What one task of a job asks of a single node: the job itself, or each of its sub-tasks."""

    job: Job
    cpus: float
    gpus: float
    subtask: bool = False

    def describe(self) -> str:
        asks = " and ".join(counted(n, unit) for n, unit in ((self.cpus, "CPU"), (self.gpus, "GPU"))
                            if n or unit == "CPU")
        if not self.subtask:
            return f"{self.job.label} asks for {asks}"
        return f"{self.job.label} fans out sub-tasks of {asks} each"


def subtask_shares(job: Job) -> tuple[float, float] | None:
    """(cpus, gpus) of each sub-task the job's method fans out; None when it fans out none (a
    pre-training stage never does)."""
    from .registry import METHODS

    return None if job.is_pretrain else METHODS.get(job.method).subtask_resources(job.params)


def holds_gpus(job: Job) -> bool:
    """Whether the job's own Ray task holds the GPUs it declares. Not when its sub-tasks take
    GPUs: Ray gives a waiting task's CPUs back, never its GPUs, so jobs holding GPU shares while
    they wait for sub-tasks needing more would wait forever (two mixbin-loss jobs of 0.5 GPU with
    candidates of 0.25 on one GPU did). Such a job trains on its own resources in a sub-task
    (``RunContext.on_own_resources``), or on its Ray Train workers (``resources.workers``):
    its workers are its only GPU holders."""
    if job.resources.workers > 1:  # its Ray Train workers hold them
        return False
    shares = subtask_shares(job)
    return shares is None or not shares[1]


def demands(jobs: Sequence[Job]) -> list[Demand]:
    """Each job's own resources, and those of the sub-tasks its method fans out."""
    found = []
    for job in jobs:
        found.append(Demand(job, job.resources.cpus, job.resources.gpus))
        sub = subtask_shares(job)
        if sub is not None:
            cpus, gpus = sub
            found.append(Demand(job, cpus, gpus, subtask=True))
    return found


def misfit(wanted: Sequence[Demand], nodes: Sequence[Mapping[str, float]]) -> Demand | None:
    """The first demand no node can ever hold (nodes as ``ray.nodes()`` gives their resources).
    A job's sub-tasks never wait on GPUs their job holds (``holds_gpus``), and its CPUs are lent
    while it waits: each demand has only to fit a node on its own."""
    for d in wanted:
        if not any(d.cpus <= n.get("CPU", 0) + 1e-9 and d.gpus <= n.get("GPU", 0) + 1e-9
                   for n in nodes):
            return d
    return None


def check_placement(jobs: Sequence[Job], *, wait_timeout: float | None = None,
                    poll_seconds: float = 2.0, note: Callable[[str], None] | None = None) -> None:
    """Refuse, before anything is written, a job (or one of its sub-tasks) that no node of the
    connected cluster can hold: Ray would keep it pending forever, silently. A cluster that may
    grow (autoscaling) gets ``wait_timeout`` seconds to add a node that fits; the wait is said."""
    note = note or log.warning
    wanted = demands(jobs)
    deadline = time.monotonic() + (wait_timeout or 0)
    waiting = False
    while True:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        refused = misfit(wanted, nodes)
        if refused is None:
            return
        if time.monotonic() >= deadline:
            waited = f" (waited {wait_timeout:g} s for a node that fits: --wait-timeout)" \
                if waiting else ""
            raise UserError(f"{refused.describe()}; {_largest(nodes)}{waited}")
        if not waiting:
            note(f"waiting up to {wait_timeout:g} s for the cluster to add a node that fits: "
                 f"{refused.describe()}; {_largest(nodes)}")
            waiting = True
        time.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))


def placement_wait(address: str | None, wait_timeout: float | None) -> float:
    """How long to wait for a node that fits: none on the embedded local Ray (no node will
    join it), ``wait_timeout`` (default 10 min) on an existing cluster, which may autoscale."""
    if not address or address == "local":
        return 0.0
    return DEFAULT_WAIT_TIMEOUT_S if wait_timeout is None else wait_timeout


def _largest(nodes: Sequence[Mapping[str, float]]) -> str:
    if not nodes:
        return "the cluster has no live node"
    cpus = max(n.get("CPU", 0) for n in nodes)
    gpus = max(n.get("GPU", 0) for n in nodes)
    if len(nodes) == 1:
        return f"the cluster's only node has {counted(cpus, 'CPU')} and {counted(gpus, 'GPU')}"
    return (f"the cluster's {len(nodes)} nodes have at most {counted(cpus, 'CPU')} and "
            f"{counted(gpus, 'GPU')} each")


def connect_for(jobs: Sequence[Job], address: str | None, *, wait_timeout: float | None = None,
                verbose: bool = False, note: Callable[[str], None] | None = None) -> bool:
    """Ray for a run of ``jobs`` (``ensure_ray``), and the jobs checked against its nodes
    (``check_placement``): all a run needs before it writes anything. Returns whether we called
    ``ray.init``; Ray is shut down again if the check refuses."""
    started = ensure_ray(address, verbose=verbose)
    try:
        check_placement(jobs, wait_timeout=placement_wait(address, wait_timeout), note=note)
    except BaseException:
        if started:
            ray.shutdown()
        raise
    return started
