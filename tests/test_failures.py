"""Surviving failures on a real local multi-process Ray: a worker killed under a job, a driver
killed half-way, a MixBin search and a BeMi ensemble killed half-way. (An Optuna study killed
half-way: test_tune.py.)"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from binarena.cli import main
from test_e2e import mlflow_runs, results_rows

from conftest import HANG_S

pytestmark = pytest.mark.skipif(not Path("/proc/self/cmdline").is_file(),
                                reason="finding a Ray worker by its process title needs /proc")


def ancestors(pid: int) -> list[int]:
    """The parent chain of ``pid`` (parent first), read from /proc; empty once it has exited."""
    chain = []
    while pid > 1:
        try:
            stat = (Path("/proc") / str(pid) / "stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the (command name)
        chain.append(pid)
    return chain


def worker_running(title: str) -> int | None:
    """The pid of a worker of this test session's Ray cluster whose process title is
    ``ray::<title>`` (it runs that task). The session's raylet is a child of this process and
    the workers are its children, so only descendants qualify: another user's or another test
    session's workers, with the same title, are never picked."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith(f"ray::{title}") and me in ancestors(int(entry.name)):
                return int(entry.name)
    return None


def test_only_this_sessions_processes_are_picked():
    """A process titled like the task's worker but outside this process tree (an orphan, as
    another session's worker is) is never picked; the same title in a child of ours is."""
    title = f"ray::decoy-{os.getpid()}[budget=50]"
    launcher = subprocess.run(["bash", "-c", f'(exec -a "{title}" sleep 30) >/dev/null 2>&1 & echo $!'],
                              capture_output=True, text=True, check=True)
    stranger = int(launcher.stdout)  # its parent, bash, has exited: not our descendant
    child = subprocess.Popen(["bash", "-c", f'exec -a "{title}" sleep 30'])
    try:
        deadline = time.monotonic() + HANG_S
        while worker_running(f"decoy-{os.getpid()}[") != child.pid and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker_running(f"decoy-{os.getpid()}[") == child.pid
        assert os.getpid() not in ancestors(stranger) and ancestors(stranger)  # alive, not ours
    finally:
        child.kill()
        child.wait()
        os.kill(stranger, signal.SIGKILL)


class WorkerKiller(threading.Thread):
    """Kills the worker running the task titled ``title`` once ``ready()`` holds, one time."""

    def __init__(self, title: str, ready=lambda: True, delay: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.title, self.ready, self.delay = title, ready, delay
        self.killed: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and not self.killed:
            pid = worker_running(self.title)
            if pid is not None and self.ready():
                time.sleep(self.delay)
                os.kill(pid, signal.SIGKILL)
                self.killed.append(pid)
            time.sleep(0.05)


def run_with_kill(suite: Path, results: Path, killer: WorkerKiller) -> None:
    killer.start()
    try:
        assert main(["run", str(suite), "--results", str(results)]) == 0
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed, f"the worker of {killer.title} was never seen at the right moment"


def leaderboard(results: Path, suite: str) -> list[dict]:
    with open(results / suite / "leaderboard.csv") as handle:
        return list(csv.DictReader(handle))


SLOW = {"seeds": [1], "training": {"epochs": 25, "batch_size": 32, "lr": 0.05},
        "pretrain": {"epochs": 2}}  # seconds a job


def test_a_killed_worker_is_retried_and_changes_nothing(ray_cluster, tmp_path, write_suite):
    suite = write_suite(**SLOW)
    undisturbed = tmp_path / "undisturbed"
    assert main(["run", str(suite), "--results", str(undisturbed)]) == 0

    results = tmp_path / "disturbed"
    run_with_kill(suite, results, WorkerKiller("random[budget=50,seed=1]", delay=0.2))
    rows = {r["method_label"] + str(r["seed"]): r for r in results_rows(results, "tiny")}
    assert rows["random1"]["attempts"] == 2 and rows["random1"]["status"] == "ok"
    assert leaderboard(results, "tiny") == leaderboard(undisturbed, "tiny")
    children, _ = mlflow_runs(results, "tiny")
    assert len(children) == len(rows) == 4  # 3 jobs, 1 pre-training


def test_a_killed_driver_is_finished_by_running_again(ray_address, tmp_path, write_suite):
    """SIGKILL (no chance to clean up) half-way: the recorded jobs stay, the second run does only
    the missing ones, and every job ends with exactly one MLflow child run."""
    results = tmp_path / "results"
    suite = write_suite(training={"epochs": 6, "batch_size": 32, "lr": 0.05})
    table = results / "tiny" / "results.parquet"
    command = [sys.executable, "-m", "binarena.cli", "run", str(suite), "--results", str(results),
               "--max-parallel", "1", "--address", ray_address]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.time() + HANG_S
        while not (table.is_file() and pq.read_metadata(table).num_rows >= 2):
            assert driver.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "no job finished in time"
            time.sleep(0.2)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    first = {r["key"]: r for r in results_rows(results, "tiny")}
    assert 2 <= len(first) < 8  # 6 jobs, 2 pre-trainings

    again = subprocess.run(command, capture_output=True, text=True, timeout=HANG_S)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{len(first)} jobs already recorded: skipped" in again.stderr
    rows = {r["key"]: r for r in results_rows(results, "tiny")}
    assert len(rows) == 8 and {r["status"] for r in rows.values()} == {"ok"}
    assert all(rows[k]["finished_at"] == first[k]["finished_at"] for k in first)  # not redone
    children, _ = mlflow_runs(results, "tiny")
    assert len(children) == 8 and len({c.data.tags["binarena.job_key"] for c in children}) == 8


def test_a_mixbin_search_killed_after_a_step_resumes_at_the_next(ray_cluster, tmp_path, write_suite):
    suite = write_suite(methods=[{"name": "mixbin-grad"}], pretrain={"epochs": 4},
                        budgets=[30], seeds=[0], training={"epochs": 6, "batch_size": 32, "lr": 0.05})
    undisturbed = tmp_path / "undisturbed"
    assert main(["run", str(suite), "--results", str(undisturbed)]) == 0
    results = tmp_path / "disturbed"
    jobs = results / "tiny" / "jobs"
    step_one = lambda: next(jobs.glob("*/mixbin/state-1.pt"), None)  # noqa: E731
    stamps: dict[str, int] = {}

    def after_step_one() -> bool:
        if step_one() is None:
            return False
        folder = step_one().parent
        stamps.update({f.name: f.stat().st_mtime_ns for f in folder.iterdir()
                       if f.name.startswith("state-1")})
        return True

    run_with_kill(suite, results, WorkerKiller("mixbin-grad[", after_step_one,
                                               delay=0))
    folder = step_one().parent
    assert {n: (folder / n).stat().st_mtime_ns for n in stamps} == stamps  # not redone
    row = next(r for r in results_rows(results, "tiny") if r["kind"] == "job")
    assert row["attempts"] == 2 and row["status"] == "ok"
    assert row["config"] == next(r for r in results_rows(undisturbed, "tiny")
                                 if r["kind"] == "job")["config"]  # the same choice


def test_a_bemi_ensemble_killed_half_way_keeps_its_trained_pairs(ray_cluster, tmp_path, write_suite):
    from test_bemi import TINY

    suite = write_suite(**TINY)
    results = tmp_path / "results"
    networks = results / "tiny" / "jobs"
    stamps: dict[str, int] = {}

    def one_pair_saved() -> bool:
        saved = list(networks.glob("*/networks/*.npz"))
        stamps.update({f.name: f.stat().st_mtime_ns for f in saved})
        return bool(saved) and len(saved) < 3

    run_with_kill(suite, results, WorkerKiller("bemi[", one_pair_saved, delay=0))
    saved = {f.name: f.stat().st_mtime_ns for f in networks.glob("*/networks/*.npz")}
    assert len(saved) == 3
    assert {n: saved[n] for n in stamps} == stamps  # the pairs trained before the kill stayed
    row = results_rows(results, "tiny")[0]
    assert row["attempts"] == 2 and row["status"] == "ok"
