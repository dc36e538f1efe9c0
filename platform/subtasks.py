"""A job's sub-tasks (MixBin candidates, BeMi networks, its own GPU work) on a pool of Ray actors.

An actor is a worker process that stays: it imports torch, reads the data and builds the model
once (the sub-task functions cache them per process), where a Ray task per candidate paid all of
it per candidate (a GPU task even gets a fresh process each time). What every sub-task of a map
shares (the current weights, the training images) is put in the object store once per map and
deserialized once per actor; each sub-task then carries only its own item (a mask, a pair).

No deadlock, by three rules. A job holds one pool at a time: asking for another shape first
closes the pool it has, so a job never waits for resources its own idle actors hold. Items go to
actors that are up, never queue behind one still waiting for resources (which another job's
actors may hold until that job ends). And a job whose sub-tasks take GPUs holds none itself
(``binarena.placement.holds_gpus``): its actors are its only GPU holders, and an actor never waits
for anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import ray
from ray.actor import ActorHandle
from ray.exceptions import RayActorError

from binarena.methods.base import OnDone
from .placement import shares_that_fit

log = logging.getLogger(__name__)

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

ATTEMPTS = 2  # a sub-task that raised, or whose actor died, is run once more


class SubtaskWorker:
    """One process of a pool: runs sub-task functions, keeping the last shared object it read."""

    def __init__(self) -> None:
        self._shared_id: str | None = None
        self._shared: Any = None

    def call(self, fn: Callable[[Any, Any], Any], shared: list[ray.ObjectRef], item: Any) -> Any:
        # ``shared`` is nested in a list, so Ray hands the reference, not a fresh copy per call
        ref = shared[0]
        if ref.hex() != self._shared_id:
            self._shared, self._shared_id = ray.get(ref), ref.hex()
        return fn(self._shared, item)


_Worker = ray.remote(SubtaskWorker)


@dataclass
class _Pool:
    cpus: float
    gpus: float
    actors: list[ActorHandle] = field(default_factory=list)
    up: set[int] = field(default_factory=set)  # indices of actors that have started
    starting: dict[ray.ObjectRef, int] = field(default_factory=dict)  # readiness -> actor

    def grow(self, size: int) -> None:
        while len(self.actors) < size:
            self.actors.append(self._start(len(self.actors)))

    def replace(self, i: int) -> None:
        """A dead actor's place, taken by a new one."""
        self.up.discard(i)
        self.actors[i] = self._start(i)

    def _start(self, i: int) -> ActorHandle:
        # Ray types a started actor as handle or class; it is the handle
        actor = cast(ActorHandle, _Worker.options(num_cpus=self.cpus, num_gpus=self.gpus).remote())
        self.starting[actor.__ray_ready__.remote()] = i
        return actor

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors, self.up, self.starting = [], set(), {}


class RayExecutor:
    """Sub-tasks of one job on a pool of Ray actors (see the module docstring); ``close`` it when
    the job ends (the runtime does)."""

    def __init__(self) -> None:
        self._pool: _Pool | None = None
        self._shared: tuple[Any, list[ray.ObjectRef]] | None = None  # the last one put, its ref

    def map(self, fn: Callable[[S, T], R], shared: S, items: Sequence[T], *, cpus: float = 1,
            gpus: float = 0, max_parallel: int | None = None,
            on_done: OnDone | None = None) -> list[R]:
        """``fn(shared, item)`` per item on the job's pool of this shape, in item order."""
        if not items:
            return []
        pool = self._pool_of(cpus, gpus)
        limit = min(len(items), max_parallel or len(items))
        pool.grow(min(limit, shares_that_fit(cpus, gpus, ray.cluster_resources())))
        if self._shared is None or self._shared[0] is not shared:  # the same object: put once
            self._shared = shared, [ray.put(shared)]
        shared_ref = self._shared[1]
        results: list[Any] = [None] * len(items)
        attempts = [0] * len(items)
        pending = list(range(len(items)))[::-1]
        running: dict[ray.ObjectRef, tuple[int, int]] = {}  # call -> (item, actor)
        idle = sorted(pool.up)
        while pending or running:
            while pending and idle and len(running) < limit:
                i, a = pending.pop(), idle.pop()
                attempts[i] += 1
                running[pool.actors[a].call.remote(fn, shared_ref, items[i])] = (i, a)
            ready, _ = ray.wait([*running, *pool.starting], num_returns=1)
            ref = ready[0]
            if ref in pool.starting:
                a = pool.starting.pop(ref)
                try:
                    ray.get(ref)
                except RayActorError as exc:
                    log.warning("a sub-task worker could not start (%s); starting another", exc)
                    pool.replace(a)
                    continue
                pool.up.add(a)
                idle.append(a)
                continue
            i, a = running.pop(ref)
            try:
                results[i] = ray.get(ref)
            except Exception as exc:
                if isinstance(exc, RayActorError):
                    pool.replace(a)
                else:
                    idle.append(a)
                if attempts[i] >= ATTEMPTS:
                    raise
                log.warning("sub-task %d failed (%s); running it again", i, type(exc).__name__)
                pending.append(i)
                continue
            idle.append(a)
            if on_done is not None:
                on_done(i, results[i])
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self._shared = None

    def _pool_of(self, cpus: float, gpus: float) -> _Pool:
        """The pool of this shape; a pool of another shape is closed first."""
        if self._pool is not None and (self._pool.cpus, self._pool.gpus) != (cpus, gpus):
            self.close()
        if self._pool is None:
            self._pool = _Pool(cpus, gpus)
        return self._pool

