"""A job's sub-tasks on its pool of Ray actors (``binarena.subtasks``), on the session's 2-CPU Ray:
results in item order, the shared object read once per worker, a dead worker replaced, an error
raised after its retry, and no job waiting on its own idle workers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from ray import cloudpickle

from binarena.subtasks import RayExecutor

from conftest import HANG_S

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/


def count_calls(shared: dict, x: int) -> tuple[int, int, int]:
    """x squared, this worker's process id, and how many items this worker's copy of ``shared``
    has seen (a copy read per item would always say 1)."""
    shared["calls"] = shared.get("calls", 0) + 1
    return x * x + shared["offset"], os.getpid(), shared["calls"]


def in_a_job(ray, fn, *args):
    """``fn(executor, *args)`` inside a job's Ray task of 1 CPU, as the runtime runs methods; a
    deadlock fails within a minute."""
    @ray.remote(num_cpus=1)
    def job():
        executor = RayExecutor()
        try:
            return fn(executor, *args)
        finally:
            executor.close()

    return ray.get(job.remote(), timeout=HANG_S)


def squares(executor: RayExecutor, items: list[int]):
    return executor.map(count_calls, {"offset": 1}, items, cpus=1)


def test_results_come_in_item_order_and_shared_is_read_once_per_worker(ray_cluster) -> None:
    items = list(range(12))
    results = in_a_job(ray_cluster, squares, items)
    assert [r[0] for r in results] == [x * x + 1 for x in items]
    workers = {pid for _, pid, _ in results}
    assert 1 <= len(workers) <= 2  # the cluster holds two 1-CPU workers
    for pid in workers:
        seen = sorted(calls for _, p, calls in results if p == pid)
        assert seen == list(range(1, len(seen) + 1)), "a worker read the shared object again"


def die_once(marker: str, x: int) -> tuple[int, int]:
    """Kills its worker the first time it sees item 2 (a lost node, an OOM kill)."""
    path = Path(marker)
    if x == 2 and not path.exists():
        path.write_text("died")
        os._exit(1)
    return x, os.getpid()


def test_a_dead_worker_is_replaced_and_its_item_run_again(ray_cluster, tmp_path: Path) -> None:
    marker = str(tmp_path / "died")
    results = in_a_job(ray_cluster, lambda ex: ex.map(die_once, marker, [0, 1, 2, 3], cpus=1))
    assert [x for x, _ in results] == [0, 1, 2, 3]
    assert Path(marker).read_text() == "died"


def always_fails(_shared: None, x: int) -> int:
    raise ValueError(f"item {x} is bad")


def test_an_item_failing_twice_fails_the_map(ray_cluster) -> None:
    with pytest.raises(Exception, match="item 0 is bad"):
        in_a_job(ray_cluster, lambda ex: ex.map(always_fails, None, [0], cpus=1))


def two_shapes(executor: RayExecutor) -> list[int]:
    """A pool taking both CPUs of the cluster, then sub-tasks of another shape: they can only run
    once the first pool is gone."""
    first = executor.map(count_calls, {"offset": 0}, [1, 2], cpus=2)
    second = executor.map(count_calls, {"offset": 0}, [3, 4], cpus=1)
    return [r[0] for r in first + second]


def test_a_job_never_waits_on_its_own_idle_workers(ray_cluster) -> None:
    assert in_a_job(ray_cluster, two_shapes) == [1, 4, 9, 16]


def timed(folder: str, x: int) -> int:
    """Notes when it ran, in a file of its own (one clock for every process of this machine)."""
    import time

    start = time.monotonic()
    time.sleep(0.3)
    Path(folder, f"{x}.txt").write_text(f"{start} {time.monotonic()}")
    return x


def one_at_a_time(executor: RayExecutor, folder: str) -> list[int]:
    executor.map(timed, folder, [100, 101], cpus=1)  # the pool grows to two workers
    return executor.map(timed, folder, [0, 1, 2, 3], cpus=1, max_parallel=1)


def test_max_parallel_holds_on_a_pool_that_has_more_workers(ray_cluster, tmp_path: Path) -> None:
    assert in_a_job(ray_cluster, one_at_a_time, str(tmp_path)) == [0, 1, 2, 3]
    spans = sorted(tuple(map(float, (tmp_path / f"{x}.txt").read_text().split())) for x in range(4))
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans
