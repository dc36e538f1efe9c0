"""optuna-mask: an Optuna study over per-layer binary masks, in-process on digits (no mocks)."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from optuna.trial import TrialState

from binarena.jobs import expand
from binarena.pretraining import pretrained_start
from binarena.methods.base import RunContext, run_job
from binarena.methods.optuna_mask_search import opened_study
from binarena.suite import load_suite

from harmless_net import HarmlessLayerNet  # noqa: F401  (registers harmless-test)

DIGITS = {"name": "digits", "train_size": 400, "val_size": 100, "test_size": 100}
CNN = {
    "dataset": DIGITS,
    "model": {"name": "cnn", "options": {"channels": [4, 8, 8], "blocks_per_stage": 2}},
    "budgets": [50],
    "seeds": [0],
    "training": {"epochs": 1, "batch_size": 64, "lr": 0.05},
}
HARMLESS = {**CNN, "model": {"name": "harmless-test"}, "training": {**CNN["training"], "epochs": 3}}
FAST = {"finetune_steps": 5, "startup_trials": 4}


def job_for(write_suite, suite: dict, start: str = "pretrained", **params):
    return expand(load_suite(write_suite(**suite, methods=[
        {"name": "optuna-mask", "params": params, "start": start}])))[0]


def trials_of(result) -> list[dict]:
    return pq.read_table(io.BytesIO(result.artifacts["optuna_trials.parquet"])).to_pylist()


def test_the_choice_is_the_best_feasible_trial_within_budget(write_suite, tmp_path):
    job = job_for(write_suite, CNN, trials=8, **FAST)
    result = run_job(RunContext(job=job, data_root=None, start_state=pretrained_start(job, None, tmp_path), workdir=tmp_path))
    rows = trials_of(result)
    assert len(rows) == result.metrics["optuna_trials"] == 8
    feasible = [r for r in rows if r["feasible"]]
    assert result.metrics["feasible_trials"] == len(feasible) > 0
    assert all(r["flops_pct"] <= 50 for r in feasible) and all(r["flops_pct"] > 50 for r in rows
                                                               if not r["feasible"])
    best = min(feasible, key=lambda r: (r["value"], r["flops_pct"], r["number"]))
    assert result.metrics["best_value"] == best["value"]
    assert result.config["binary_layers"] == sorted(best["mask"])
    assert result.metrics["flops_pct"] <= 50 and result.metrics["repaired"] == 0
    assert result.artifacts["optuna_trials.png"][:4] == b"\x89PNG"
    assert (tmp_path / "optuna-mask" / "study.db").is_file()


def test_the_same_job_gives_the_same_trials_and_choice(write_suite, tmp_path):
    job = job_for(write_suite, {**HARMLESS, "budgets": [85]}, trials=6, startup_trials=2,
                  finetune_steps=2)
    first = run_job(RunContext(job=job, data_root=None, start_state=pretrained_start(job, None, tmp_path), workdir=tmp_path / "a"))
    second = run_job(RunContext(job=job, data_root=None, start_state=pretrained_start(job, None, tmp_path), workdir=tmp_path / "b"))
    assert first.config == second.config
    assert trials_of(first) == trials_of(second)


def test_a_killed_study_resumes_with_its_finished_trials(write_suite, tmp_path):
    killed, fresh = tmp_path / "killed", tmp_path / "fresh"
    job = job_for(write_suite, CNN, trials=3, **FAST)
    run_job(RunContext(job=job, data_root=None, workdir=killed,
                       start_state=pretrained_start(job, None, tmp_path)))
    with opened_study(killed / "optuna-mask" / "study.db") as study:
        before = [(t.number, t.params, t.value) for t in study.get_trials()]
        study.ask()  # the trial a killed process leaves RUNNING

    job = job_for(write_suite, CNN, trials=6, **FAST)
    seen: list[str] = []
    resumed = run_job(RunContext(job=job, data_root=None, start_state=pretrained_start(job, None, tmp_path), workdir=killed, progress=seen.append))
    assert not any("pre-training" in m for m in seen)
    assert sum(": trial " in m for m in seen) == 3  # only the missing trials ran
    with opened_study(killed / "optuna-mask" / "study.db") as study:
        trials = study.get_trials()
    assert [(t.number, t.params, t.value) for t in trials[:3]] == before
    assert trials[3].state == TrialState.FAIL
    assert sum(t.state == TrialState.COMPLETE for t in trials) == resumed.metrics["optuna_trials"] == 6

    # seeded per completed trial: the resumed study drew what an uninterrupted one draws
    uninterrupted = run_job(RunContext(job=job, data_root=None, start_state=pretrained_start(job, None, tmp_path), workdir=fresh))
    assert [(r["mask"], r["value"]) for r in trials_of(uninterrupted)] == [
        (r["mask"], r["value"]) for r in trials_of(resumed) if r["state"] == "COMPLETE"]
    assert resumed.config == uninterrupted.config


def test_tpe_finds_the_harmless_layer(write_suite, tmp_path):
    # each unit is about 17.7 % of the FLOPs: a budget of 85 % needs exactly one binary unit.
    # 8 masks; with 10 trials TPE found units.1 for seeds 0-3 (with 8 it missed it for seed 0).
    job = job_for(write_suite, {**HARMLESS, "budgets": [85]}, trials=10, startup_trials=4,
                  finetune_steps=2, finetune_lr=1e-4)
    result = run_job(RunContext(job=job, data_root=None, start_state=pretrained_start(job, None, tmp_path), workdir=tmp_path))
    assert result.config["binary_layers"] == ["units.1"]


@pytest.mark.parametrize("sampler", ["random", "nsga2", "gp"])
def test_every_sampler_runs(write_suite, tmp_path, sampler):
    job = job_for(write_suite, {**HARMLESS, "budgets": [85]}, trials=5, sampler=sampler,
                  startup_trials=2, finetune_steps=2)
    result = run_job(RunContext(job=job, data_root=None, start_state=pretrained_start(job, None, tmp_path), workdir=tmp_path))
    assert result.metrics["optuna_trials"] == 5 and result.metrics["flops_pct"] <= 85


def test_no_feasible_trial_is_repaired_or_fails(write_suite, tmp_path: Path):
    # 50 % needs all three units binary; seed 0's two trials draw neither that mask
    suite = {**HARMLESS, "budgets": [50], "training": {**HARMLESS["training"], "epochs": 1}}
    result = run_job(RunContext(job=job_for(write_suite, suite, start="scratch", trials=2),
                                data_root=None, workdir=tmp_path / "repair"))
    assert result.metrics["feasible_trials"] == 0 and result.metrics["repaired"] == 1
    assert result.config["binary_layers"] == ["units.0", "units.1", "units.2"]
    with pytest.raises(RuntimeError, match="none of the 2 trials"):
        run_job(RunContext(job=job_for(write_suite, suite, start="scratch", trials=2,
                                       repair=False), data_root=None, workdir=tmp_path / "no"))
