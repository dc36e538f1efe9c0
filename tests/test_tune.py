"""`binarena tune`: Optuna studies whose trials are jobs of the runtime, on a real local Ray and MLflow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow import MlflowClient

from binarena.cli import main
from binarena.orchestrator import RunOptions
from binarena.suite import load_suite
from binarena.tracking import KEY_TAG
from binarena.tune import make_tune_plan, run_tune

from conftest import HANG_S

TUNE_SUITE = {
    "dataset": {"name": "digits", "train_size": 300, "val_size": 50, "test_size": 200},
    "model": {"name": "cnn", "options": {"channels": [4, 8], "blocks_per_stage": 1}},
    "methods": [{"name": "random"}],
    "budgets": [50],
    "seeds": [0],
    "training": {"epochs": 2, "batch_size": 64, "lr": 0.05},
}


def tune_suite(tmp_path: Path, name: str, **tune) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**TUNE_SUITE, "name": name, "tune": tune}))
    return path


def study_of(results: Path, name: str) -> optuna.Study:
    """The suite's only study (its name holds the data's identity)."""
    storage = f"sqlite:///{results / name / 'tune' / 'optuna.db'}"
    [study] = optuna.get_all_study_names(storage)
    assert study.startswith(f"{name}-tune-")
    return optuna.load_study(study_name=study, storage=storage)


def complete_trials(storage: Path) -> int:
    """Complete trials in an Optuna SQLite file, read-only: opening it through Optuna would
    create its tables, racing the driver that is creating them."""
    import sqlite3

    if not storage.is_file():
        return 0
    try:
        with sqlite3.connect(f"{storage.resolve().as_uri()}?mode=ro", uri=True) as con:
            return con.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:  # the driver has not created the table yet
        return 0


def tune_children(results: Path, name: str) -> list:
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"{name}-tune")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return [r for r in runs if KEY_TAG in r.data.tags  # the trials' runs, not the pre-training's
            and r.data.tags.get("binarena.kind") != "pretrain"]


class RecordingProgress:
    """What the driver told its user interface: how many jobs it had running, each time."""

    def __init__(self) -> None:
        self.running: list[int] = []

    def begin(self, total: int, skipped: int) -> None:
        pass

    def update(self, done: int, running: int, failed: int) -> None:
        self.running.append(running)

    def start_job(self, job) -> None:
        pass

    def subtasks(self, job, done: int, total: int, unit: str) -> None:
        pass

    def end_job(self, job, ok: bool) -> None:
        pass

    def note(self, message: str) -> None:
        pass


def test_pareto_study_runs_trials_in_parallel_and_continues(ray_cluster, tmp_path):
    results = tmp_path / "results"
    suite = tune_suite(tmp_path, "pareto", method="random", trials=4, parallel=2,
                       space={"budget": {"low": 30, "high": 90},
                              "training.lr": {"low": 0.01, "high": 0.2, "log": True}})
    options = RunOptions(results=results)
    progress = RecordingProgress()
    run_tune(make_tune_plan(load_suite(str(suite)), options), options, progress)
    assert max(progress.running) == 2  # as many trials in flight as the tune section allows
    study = study_of(results, "pareto")
    first = {t.number: (t.params, t.values) for t in study.trials}
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    rows = pq.read_table(results / "pareto" / "tune" / "results.parquet").to_pylist()
    pre = [r for r in rows if r["kind"] == "pretrain"]  # run once, before the study
    rows = [r for r in rows if r["kind"] == "job"]
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows) and len(pre) == 1
    assert all(r["started_at"] >= pre[0]["finished_at"] for r in rows)
    for t in study.trials:  # the objectives are the job's measured accuracy and FLOPs %
        assert t.values[1] <= t.params["budget"] + 1e-9 and 0 <= t.values[0] <= 100
    children = tune_children(results, "pareto")
    assert len(children) == 4
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    for child in children:  # a trial keeps its job's files, as any job does
        assert {"layers.json", "config.json"} <= {a.path for a in
                                                  client.list_artifacts(child.info.run_id)}
    front = pq.read_table(results / "pareto" / "tune" / "trials.parquet").to_pylist()
    assert {t["number"] for t in front if t["front"]} == {t.number for t in study.best_trials}
    assert (results / "pareto" / "tune" / "front.png").read_bytes()[:4] == b"\x89PNG"

    # Again with a larger target: the finished trials stay as they were, two more run.
    assert main(["tune", str(suite), "--results", str(results), "--trials", "6"]) == 0
    study = study_of(results, "pareto")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 6
    assert {n: (study.trials[n].params, study.trials[n].values) for n in first} == first
    assert len(tune_children(results, "pareto")) == 6


def test_constrained_study_picks_the_most_accurate_feasible_trial(ray_cluster, tmp_path):
    """Budgets on both sides of max_flops and a searched learning rate: some trials are feasible,
    with different accuracies; the best is the most accurate of them, found here from the trials'
    own FLOPs % and accuracy, not with the code's notion of feasibility."""
    results = tmp_path / "results"
    suite = tune_suite(tmp_path, "constrained", method="random", trials=5, parallel=2,
                       objective="constrained", max_flops=50, sampler="random",
                       space={"budget": {"choices": [30, 45, 95]},
                              "training.lr": {"low": 0.001, "high": 0.3, "log": True}})
    assert main(["tune", str(suite), "--results", str(results)]) == 0
    study = study_of(results, "constrained")
    trials = pq.read_table(results / "constrained" / "tune" / "trials.parquet").to_pylist()
    for t, frozen in zip(trials, study.trials):
        assert frozen.constraints == {"flops_pct": pytest.approx(t["flops_pct"] - 50)}
        assert t["feasible"] == (t["flops_pct"] <= 50)
    feasible = [t for t in study.trials if t.state.name == "COMPLETE"
                and t.user_attrs["flops_pct"] <= 50]
    assert len({t.value for t in feasible}) >= 2, "the test needs feasible trials that differ"
    assert len(feasible) < len(study.trials), "the test needs infeasible trials too"
    best = max(feasible, key=lambda t: t.value)
    assert [t["number"] for t in trials if t["front"]] == [best.number]
    front = (results / "constrained" / "tune" / "front.csv").read_text().splitlines()
    assert len(front) == 2 and front[1].startswith(f"{best.number},{best.value},")


def test_mask_study_trains_exactly_the_sampled_layers(ray_cluster, tmp_path):
    results = tmp_path / "results"
    suite = tune_suite(tmp_path, "mask", method="given-layers", trials=2, parallel=2,
                       space={"mask": {}})
    assert main(["tune", str(suite), "--results", str(results)]) == 0
    study = study_of(results, "mask")
    rows = {json.loads(r["params"])["params.binary"]: r for r in
            pq.read_table(results / "mask" / "tune" / "results.parquet").to_pylist()
            if r["kind"] == "job"}
    for t in study.trials:
        chosen = sorted(k.removeprefix("mask.") for k, v in t.params.items() if v)
        assert set(t.params) == {"mask.blocks.0.conv", "mask.blocks.1.conv"}
        assert json.loads(rows[json.dumps(chosen)]["config"])["binary_layers"] == chosen


def test_a_killed_study_continues_with_its_finished_trials(ray_address, tmp_path):
    """The driver killed while trials run: the finished trials stay, the ones it left running
    are marked failed, and running again completes the study."""
    results = tmp_path / "results"
    suite = tune_suite(tmp_path, "killed", method="random", trials=5, parallel=1,
                       space={"budget": {"low": 30, "high": 90}})
    command = [sys.executable, "-m", "binarena.cli", "tune", str(suite), "--results", str(results),
               "--address", ray_address]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    storage = results / "killed" / "tune" / "optuna.db"
    deadline = time.time() + HANG_S
    try:
        while time.time() < deadline:
            if complete_trials(storage) >= 2:
                break
            assert driver.poll() is None, "the study ended before it could be killed"
            time.sleep(0.5)
        else:
            pytest.fail("no two trials finished in time")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    before = {t.number: (t.params, t.values) for t in study_of(results, "killed").trials
              if t.state.name == "COMPLETE"}
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=HANG_S)
    assert again.returncode == 0, again.stderr[-2000:]
    study = study_of(results, "killed")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 5
    assert {n: (study.trials[n].params, study.trials[n].values) for n in before} == before
    assert all(t.state.name in ("COMPLETE", "FAIL") for t in study.trials)


@pytest.mark.parametrize("tune,message", [
    (None, "the suite has no tune section"),
    ({"method": "random", "space": {"lr": {"low": 0.1, "high": 0.2}}}, "space.lr"),
    ({"method": "random", "space": {"budget": {"low": 30, "high": 150}}}, "budget"),
    ({"method": "random", "space": {"budget": {"low": 30, "high": 60}}, "objective": "constrained"},
     "max_flops"),
    ({"method": "random", "space": {"mask": {}}}, "given-layers"),
])
def test_bad_tune_sections_are_one_line_and_exit_2(tmp_path, capsys, tune, message):
    data = {**TUNE_SUITE, "name": "bad"}
    if tune is not None:
        data["tune"] = tune
    suite = tmp_path / "bad.yaml"
    suite.write_text(yaml.safe_dump(data))
    assert main(["tune", str(suite), "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "bad.yaml" in err


def test_an_unreachable_end_of_the_budget_range_is_refused_before_anything_runs(tmp_path, capsys):
    suite = tune_suite(tmp_path, "far", method="random", space={"budget": {"low": 5, "high": 60}})
    assert main(["tune", str(suite), "--results", str(tmp_path / "results")]) == 2
    assert "budget 5% is unreachable" in capsys.readouterr().err
    assert not (tmp_path / "results" / "far" / "tune" / "optuna.db").exists()
