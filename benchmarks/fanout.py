"""What fanning a job's sub-tasks out on Ray costs, before and after the actor pool, in one run.

``tasks`` is the path before binarena 0.4: one Ray task per item, the shared object (the step's
weights, the ensemble's images) serialized into every task's arguments. ``actors`` is
``binarena.subtasks.RayExecutor``: a pool of workers that receive the shared object once. The
overhead of an item is what Ray adds to its compute: (wall time with one worker - the items'
compute time in one process) / items. ``cold`` is a pool's first map (its workers start: a job's
first search step); ``warm`` a map on a pool that is up (every later step).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import ray

from binarena.subtasks import RayExecutor


def _call(fn: Callable[[Any, Any], Any], shared: Any, item: Any) -> Any:
    return fn(shared, item)


class TaskExecutor:
    """The path before: a Ray task per item, at most ``max_parallel`` at a time."""

    def map(self, fn, shared, items, *, cpus=1, gpus=0, max_parallel=None, on_done=None):
        task = ray.remote(_call).options(num_cpus=cpus, num_gpus=gpus)
        limit = max_parallel or len(items)
        results: list[Any] = [None] * len(items)
        pending, running = list(range(len(items)))[::-1], {}
        while pending or running:
            while pending and len(running) < limit:
                i = pending.pop()
                running[task.remote(fn, shared, items[i])] = i
            ready, _ = ray.wait(list(running), num_returns=1)
            results[running.pop(ready[0])] = ray.get(ready[0])
        return results

    def close(self) -> None:
        pass


def fanout_timings(fn: Callable[[Any, Any], Any], shared: Any, items: Sequence[Any], *,
                   cpus: float = 1, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Wall times of ``items`` on one and two workers, each way; the compute they hold."""
    import torch

    torch.set_num_threads(max(1, int(cpus)))  # as a worker of ``cpus`` CPUs has
    fn(shared, items[0])  # warm this process up (imports, data, model) before it is timed
    start = time.perf_counter()
    for item in items:
        fn(shared, item)
    compute = time.perf_counter() - start
    log(f"in one process: {len(items)} items in {compute:.2f} s")
    seconds: dict[str, float] = {}
    for kind in ("tasks", "actors"):
        for workers in (1, 2):
            executor = TaskExecutor() if kind == "tasks" else RayExecutor()
            try:
                for phase in ("cold", "warm") if kind == "actors" else ("cold",):
                    start = time.perf_counter()
                    executor.map(fn, shared, items, cpus=cpus, max_parallel=workers)
                    name = f"{kind}/{workers}" + ("/warm" if phase == "warm" else "")
                    seconds[name] = time.perf_counter() - start
                    log(f"{name}: {seconds[name]:.2f} s")
            finally:
                executor.close()
    n = len(items)
    summary: dict[str, Any] = {
        "items": n, "compute_seconds": compute, "seconds": seconds,
        "overhead_per_item": {k: (v - compute) / n for k, v in seconds.items() if "/1" in k},
        "speedup_2_workers": {
            "tasks": seconds["tasks/1"] / seconds["tasks/2"],
            "actors": seconds["actors/1"] / seconds["actors/2"],
            "actors/warm": seconds["actors/1/warm"] / seconds["actors/2/warm"],
        },
    }
    for k, v in summary["overhead_per_item"].items():
        log(f"overhead per item, {k}: {v:.3f} s")
    for k, v in summary["speedup_2_workers"].items():
        log(f"speedup at 2 workers, {k}: {v:.2f}x")
    return summary
