"""Surviving failures on a real local multi-process Ray: a worker killed under a job, a driver
killed half-way. (A MixBin search and a BeMi ensemble killed half-way: test_mixbin.py and
test_bemi.py; an Optuna study killed half-way: test_tune.py.)"""

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

pytestmark = pytest.mark.skipif(not Path("/proc/self/cmdline").is_file(),
                                reason="finding a Ray worker by its process title needs /proc")


def worker_running(title: str) -> int | None:
    """The pid of the Ray worker whose process title is ``ray::<title>`` (it runs that task)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith(f"ray::{title}"):
                return int(entry.name)
    return None


def leaderboard(results: Path, suite: str) -> list[dict]:
    with open(results / suite / "leaderboard.csv") as handle:
        return list(csv.DictReader(handle))


SLOW = {"seeds": [0, 1], "training": {"epochs": 6, "batch_size": 32, "lr": 0.05}}


def test_a_killed_worker_is_retried_and_changes_nothing(ray_cluster, tmp_path, write_suite):
    suite = write_suite(**SLOW)
    undisturbed = tmp_path / "undisturbed"
    assert main(["run", str(suite), "--results", str(undisturbed)]) == 0

    killed: list[int] = []

    def kill_one_worker() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            pid = worker_running("random[budget=50,seed=1]")
            if pid is not None:
                time.sleep(0.5)  # let it get into training
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    results = tmp_path / "disturbed"
    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    try:
        assert main(["run", str(suite), "--results", str(results)]) == 0
    finally:
        killer.join()
    assert killed, "the job's worker was never seen running"
    rows = {r["method_label"] + str(r["seed"]): r for r in results_rows(results, "tiny")}
    assert rows["random1"]["attempts"] == 2 and rows["random1"]["status"] == "ok"
    assert leaderboard(results, "tiny") == leaderboard(undisturbed, "tiny")
    children, _ = mlflow_runs(results, "tiny")
    assert len(children) == len(rows) == 6


def test_a_killed_driver_is_finished_by_running_again(tmp_path, write_suite):
    """SIGKILL (no chance to clean up) half-way: the recorded jobs stay, the second run does only
    the missing ones, and every job ends with exactly one MLflow child run."""
    results = tmp_path / "results"
    suite = write_suite(seeds=[0, 1, 2], training={"epochs": 6, "batch_size": 32, "lr": 0.05})
    table = results / "tiny" / "results.parquet"
    command = [sys.executable, "-m", "binarena.cli", "run", str(suite), "--results", str(results),
               "--max-parallel", "1"]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.time() + 240
        while not (table.is_file() and pq.read_metadata(table).num_rows >= 2):
            assert driver.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "no job finished in time"
            time.sleep(0.2)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    first = {r["key"]: r for r in results_rows(results, "tiny")}
    assert 2 <= len(first) < 9

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{len(first)} jobs already recorded: skipped" in again.stderr
    rows = {r["key"]: r for r in results_rows(results, "tiny")}
    assert len(rows) == 9 and {r["status"] for r in rows.values()} == {"ok"}
    assert all(rows[k]["finished_at"] == first[k]["finished_at"] for k in first)  # not redone
    children, _ = mlflow_runs(results, "tiny")
    assert len(children) == 9 and len({c.data.tags["binarena.job_key"] for c in children}) == 9
