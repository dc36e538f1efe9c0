"""End to end on a real local Ray and a real MLflow (SQLite in a temp dir)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from binarena.cli import main
from binarena.tracking import KEY_TAG, PARENT_TAG

from conftest import HANG_S


def mlflow_runs(results: Path, suite: str) -> tuple[list, list]:
    """(live child runs, parent runs) of the suite's experiment."""
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(suite)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    children = [r for r in runs if KEY_TAG in r.data.tags]
    return children, [r for r in runs if KEY_TAG not in r.data.tags]


def results_rows(results: Path, suite: str) -> list[dict]:
    return pq.read_table(results / suite / "results.parquet").to_pylist()


def test_quickstart_full_precision_beats_full_binary(ray_cluster, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", "quickstart", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "quickstart: leaderboard" in out and "Protocol: every method of a seed starts" in out
    board = {(r["method"], r["budget"]): r for r in _csv(results / "quickstart" / "leaderboard.csv")}
    assert set(board) == {("pre-trained", ""), ("full-precision", ""), ("full-binary", ""),
                          ("random", "60"), ("random", "30")}
    assert float(board[("full-precision", "")]["accuracy"]) > float(board[("full-binary", "")]["accuracy"])
    for budget in ("60", "30"):
        assert float(board[("random", budget)]["flops_pct"]) <= float(budget)
        assert board[("random", budget)]["seeds"] == "2"
    assert (results / "quickstart" / "leaderboard.png").stat().st_size > 5000


def _csv(path: Path) -> list[dict]:
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))


def test_run_tracks_every_job_and_a_rerun_executes_nothing(ray_cluster, tmp_path, write_suite, capsys):
    results, suite = tmp_path / "results", write_suite()
    assert main(["run", str(suite), "--results", str(results)]) == 0
    rows = results_rows(results, "tiny")  # 6 jobs and the pre-training of each of 2 seeds
    assert len(rows) == 8 and {r["status"] for r in rows} == {"ok"}
    assert sorted(r["kind"] for r in rows) == ["job"] * 6 + ["pretrain"] * 2
    children, parents = mlflow_runs(results, "tiny")
    assert len(parents) == 1 and len(children) == 8
    assert {c.data.tags[KEY_TAG] for c in children} == {r["key"] for r in rows}
    child = next(c for c in children if c.data.tags["binarena.method"] == "random")
    assert child.data.tags[PARENT_TAG] == parents[0].info.run_id
    assert child.data.params["budget"] == "50" and child.data.params["training.epochs"] == "2"
    assert {"accuracy", "flops", "flops_pct", "wall_seconds"} <= set(child.data.metrics)
    assert child.data.metrics["flops_pct"] <= 50
    assert "binarena.version" in child.data.tags
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    assert {"layers.json", "config.json"} <= {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"leaderboard.csv", "leaderboard.md", "leaderboard.parquet", "leaderboard.png",
            "results.parquet"} <= {
        a.path for a in client.list_artifacts(parents[0].info.run_id)}
    mtime = (results / "tiny" / "results.parquet").stat().st_mtime_ns

    capsys.readouterr()
    assert main(["run", str(suite), "--results", str(results)]) == 0
    assert "8 jobs already recorded: skipped" in capsys.readouterr().err
    children_after, parents_after = mlflow_runs(results, "tiny")
    assert len(children_after) == 8 and len(parents_after) == 1
    assert (results / "tiny" / "results.parquet").stat().st_mtime_ns == mtime

    assert main(["leaderboard", str(suite), "--results", str(results), "--format", "csv"]) == 0
    board = capsys.readouterr().out.splitlines()
    assert board[0] == (
        "method,budget,accuracy,flops_pct,error,delta,delta_low,delta_high,significant,seeds,"
        "failed,mark")
    ranked = {tuple(line.split(",")[:2]): line.split(",")[9] for line in board[1:]}
    assert ranked == {("pre-trained", ""): "2", ("full-precision", ""): "2",
                      ("full-binary", ""): "2", ("random", "50"): "2"}  # every row, 2 seeds

    # A second suite sharing its pre-trainings and six of its jobs with the first runs only its
    # own: the key, not the suite's name, decides what is already done.
    other = write_suite("other", budgets=[50, 30])
    assert main(["run", str(other), "--results", str(results)]) == 0
    rows = {r["key"]: r for r in results_rows(results, "other")}
    assert len(rows) == 10 and {r["status"] for r in rows.values()} == {"ok"}
    assert sorted(r["suite"] for r in rows.values()) == ["other"] * 2 + ["tiny"] * 8
    children, _ = mlflow_runs(results, "other")
    assert len(children) == 2 and {c.data.params["budget"] for c in children} == {"30"}


def test_failing_job_is_retried_once_then_recorded_and_the_run_goes_on(
        ray_cluster, tmp_path, write_suite, capsys):
    from binarena.mip import BACKENDS

    if not BACKENDS["gurobi"].size_limited():
        pytest.skip("needs gurobipy's size-limited licence to make a job fail at run time")
    results = tmp_path / "results"
    too_big = {"layers": [64, 4, 4, 1], "classes": [0, 1], "images_per_class": 40,
               "test_per_class": 10, "solver": "gurobi"}  # about 2,500 variables > 2,000
    suite = write_suite(methods=[{"name": "full-binary"}, {"name": "bemi", "params": too_big}],
                        budgets=[], seeds=[0])
    assert main(["run", str(suite), "--results", str(results)]) == 1
    err = capsys.readouterr().err
    assert "retrying (1/1)" in err and "failed bemi[" in err and "LicenceTooSmall" in err
    rows = {r["method"]: r for r in results_rows(results, "tiny")}
    bad = rows["bemi"]
    assert bad["status"] == "failed" and bad["attempts"] == 2
    assert "size-limited licence allows at most 2000 variables" in bad["error"]
    assert "\n" not in bad["error"] and "Traceback" in bad["traceback"]
    assert rows["full-binary"]["status"] == "ok"
    children, _ = mlflow_runs(results, "tiny")
    failed_run = next(c for c in children if c.info.status == "FAILED")
    assert failed_run.data.tags[KEY_TAG] == bad["key"]
    board = {r["method"]: r for r in _csv(results / "tiny" / "leaderboard.csv")}
    assert board[bad["method_label"]]["failed"] == "1" and board[bad["method_label"]]["seeds"] == "0"

    # the failed job is attempted again on the next run, replacing (not duplicating) its child run
    assert main(["run", str(suite), "--results", str(results)]) == 1
    children, _ = mlflow_runs(results, "tiny")
    assert len(children) == 3 and len({c.data.tags[KEY_TAG] for c in children}) == 3  # + pre-training


def test_interrupted_run_resumes_with_only_the_missing_jobs(ray_address, tmp_path, write_suite):
    results = tmp_path / "results"
    suite = write_suite(training={"epochs": 6, "batch_size": 32, "lr": 0.05})
    table = results / "tiny" / "results.parquet"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen(
        [sys.executable, "-m", "binarena.cli", "run", str(suite), "--results", str(results),
         "--max-parallel", "1", "--address", ray_address], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + HANG_S
        while not (table.is_file() and pq.read_metadata(table).num_rows >= 2):
            assert driver.poll() is None, driver.communicate()
            assert time.time() < deadline, "no job finished in time"
            time.sleep(0.2)
        driver.send_signal(signal.SIGINT)
        _, err = driver.communicate(timeout=HANG_S)
    finally:
        driver.kill()
    assert driver.returncode == 130, err
    assert "interrupted" in err
    done_first = {r["key"] for r in results_rows(results, "tiny")}
    assert 2 <= len(done_first) < 8  # 6 jobs, 2 pre-trainings
    children, parents = mlflow_runs(results, "tiny")
    assert len(children) == len(done_first) and parents[0].info.status == "KILLED"

    assert main(["run", str(suite), "--results", str(results)]) == 0
    rows = results_rows(results, "tiny")
    assert len(rows) == 8 and {r["status"] for r in rows} == {"ok"}
    children, parents = mlflow_runs(results, "tiny")
    assert len(children) == 8 and len({c.data.tags[KEY_TAG] for c in children}) == 8
    newest = max(parents, key=lambda p: p.info.start_time)
    assert newest.data.params["jobs_to_run"] == str(8 - len(done_first))

