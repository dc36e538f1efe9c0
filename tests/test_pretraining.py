"""The shared pre-training stage: keyed by what determines it, run once per results folder before
the jobs that start from it (real Ray, real MLflow), resumed at its epoch when killed."""

from __future__ import annotations

import json

import pytest
import torch
from mlflow import MlflowClient
from mlflow.entities import ViewType

from binarena.cli import main
from binarena.jobs import expand
from binarena.pretraining import WEIGHTS, run_pretraining, stage_folder
from binarena.methods.base import RunContext, build_model
from binarena.selection import fingerprint, load_state
from binarena.suite import load_suite
from test_e2e import results_rows

METHODS = [{"name": "full-precision"}, {"name": "full-binary"}, {"name": "random"},
           {"name": "front-bn"}, {"name": "rear-bn"}]


def pretrain_runs(results) -> list:
    """Every MLflow run of a pre-training in the results folder, deleted ones too: a stage that
    ran twice leaves two, whichever suite ran it."""
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return client.search_runs(experiments, filter_string="tags.`binarena.kind` = 'pretrain'",
                              run_view_type=ViewType.ALL, max_results=1000)


def test_one_pretraining_per_seed_shared_by_every_job_and_suite(ray_cluster, tmp_path,
                                                                write_suite, capsys):
    results = tmp_path / "results"
    suite = write_suite(methods=METHODS, seeds=[0], pretrain={"epochs": 3})
    # two CPUs: once the pre-training is done, two of its five jobs are ready at the same moment
    assert main(["run", str(suite), "--results", str(results), "--max-parallel", "2"]) == 0
    rows = results_rows(results, "tiny")
    pre = [r for r in rows if r["kind"] == "pretrain"]
    jobs = [r for r in rows if r["kind"] == "job"]
    assert len(pre) == 1 and len(jobs) == 5 and len(pretrain_runs(results)) == 1
    assert json.loads(pre[0]["metrics"])["epochs"] == 3
    assert all(j["started_at"] >= pre[0]["finished_at"] for j in jobs)  # scheduled after it

    # every job started from the very weights stored once for the seed, in the results folder
    # and as the pre-training's own MLflow artifact
    stored = stage_folder(results, pre[0]["key"]) / WEIGHTS
    job = expand(load_suite(suite))[0]
    pretrained = load_state(build_model(job, (1, 8, 8), 10), stored.read_bytes())
    assert {json.loads(j["config"])["start_weights"] for j in jobs} == {fingerprint(pretrained)}
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    assert WEIGHTS in {a.path for a in client.list_artifacts(pre[0]["mlflow_run_id"])}
    board = (results / "tiny" / "leaderboard.csv").read_text()
    assert board.splitlines()[1].startswith("full-precision") and "\npre-trained," in board
    assert "pre-training (3 epochs), then trains its choice for 2 epochs" in capsys.readouterr().out

    # a second suite on the same data, model, schedule and seed: no second pre-training
    other = write_suite("other", methods=[{"name": "full-binary"}, {"name": "random"}],
                        budgets=[30], seeds=[0], pretrain={"epochs": 3})
    assert main(["run", str(other), "--results", str(results)]) == 0
    assert len(pretrain_runs(results)) == 1
    copied = next(r for r in results_rows(results, "other") if r["kind"] == "pretrain")
    assert copied["key"] == pre[0]["key"] and copied["suite"] == "tiny"
    starts = {json.loads(r["config"])["start_weights"] for r in results_rows(results, "other")
              if r["kind"] == "job"}
    assert starts == {fingerprint(pretrained)}

    # a job that starts from scratch needs no pre-training and starts elsewhere
    scratch = write_suite("scratch", methods=[{"name": "random", "start": "scratch"}],
                          seeds=[0], pretrain={"epochs": 3})
    assert main(["run", str(scratch), "--results", str(results)]) == 0
    (row,) = results_rows(results, "scratch")
    assert row["kind"] == "job" and json.loads(row["config"])["start_weights"] != fingerprint(pretrained)


def test_different_seeds_start_from_different_pretrainings(tmp_path, write_suite):
    from binarena.pretraining import pretrained_start

    jobs = expand(load_suite(write_suite(methods=METHODS[:2], seeds=[0, 1])))
    starts = {job.seed: pretrained_start(job, None, tmp_path) for job in jobs}
    assert starts[0] != starts[1]
    assert len(list((tmp_path / "pretrain").iterdir())) == 2  # one per seed, not per method


def test_the_key_names_what_determines_the_pretraining(write_suite):
    def keys(**changes):
        jobs = expand(load_suite(write_suite(**changes)))
        return {j.pretrain.key for j in jobs if j.pretrain}, {j.label: j.key for j in jobs}

    base, base_jobs = keys()
    assert len(base) == 2  # one per seed
    # the method, the budget, the suite's name and layer eligibility do not change it
    assert keys(methods=[{"name": "random"}], budgets=[30])[0] == base
    assert keys(name="renamed")[0] == base and keys(name="renamed")[1] == base_jobs
    assert keys(model={"name": "cnn", "options": {"channels": [4, 8], "blocks_per_stage": 1},
                       "eligible": ["blocks.0.conv"]})[0] == base
    # its schedule, the data and the model do, and every job's key changes with it
    for changes in ({"pretrain": {"epochs": 3}}, {"pretrain": {"lr": 0.01}},
                    {"training": {"epochs": 2, "batch_size": 32, "lr": 0.05}},
                    {"dataset": {"name": "digits", "train_size": 200, "val_size": 50,
                                 "test_size": 200}},
                    {"model": {"name": "cnn", "options": {"channels": [8, 8],
                                                          "blocks_per_stage": 1}}}):
        changed, changed_jobs = keys(**changes)
        assert changed.isdisjoint(base), changes
        assert set(changed_jobs.values()).isdisjoint(base_jobs.values()), changes
    # the schedule after the choice changes the jobs but not a pre-training given its own
    pinned, pinned_jobs = keys(pretrain={"epochs": 2})
    longer, longer_jobs = keys(pretrain={"epochs": 2},
                               training={"epochs": 5, "batch_size": 64, "lr": 0.05})
    assert pinned == longer and set(pinned_jobs.values()).isdisjoint(longer_jobs.values())
    # starting from scratch is a different job, with no pre-training
    scratch = expand(load_suite(write_suite(methods=[{"name": "random", "start": "scratch"}])))
    assert all(j.pretrain is None for j in scratch)
    assert {j.key for j in scratch}.isdisjoint(base_jobs.values())


def test_keys_of_recorded_results_stay_as_they_were(write_suite):
    """Keys computed by binarena before the schedule gained ``precision`` and ``channels_last``
    (commit 3890173): a suite that leaves them at their defaults finds what it recorded then;
    setting one is another job."""
    jobs = {j.label: j for j in expand(load_suite(write_suite()))}
    assert (jobs["full-precision[seed=0]"].key, jobs["full-precision[seed=0]"].pretrain.key) == (
        "46c36dd2d7c0cedd", "35bd530880e8407a")
    assert jobs["full-binary[seed=0]"].key == "30a4e5dff9a02ca1"
    for later in ({"precision": "bf16"}, {"channels_last": True}):
        training = {"epochs": 2, "batch_size": 64, "lr": 0.05, **later}
        changed = {j.label: j.key for j in expand(load_suite(write_suite(training=training)))}
        assert changed["full-precision[seed=0]"] != "46c36dd2d7c0cedd", later


def test_a_killed_pretraining_resumes_at_its_epoch(write_suite, tmp_path):
    job = expand(load_suite(write_suite(pretrain={"epochs": 4, "augment": ["horizontal-flip"]})))[0].pretrain
    whole = run_pretraining(RunContext(job=job, data_root=None, workdir=tmp_path / "whole"))

    def kill_after_epoch_2(done: int, total: int, unit: str) -> None:
        if unit == "epochs" and done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_pretraining(RunContext(job=job, data_root=None, workdir=tmp_path / "killed",
                                   report=kill_after_epoch_2))
    epochs: list[int] = []
    resumed = run_pretraining(RunContext(
        job=job, data_root=None, workdir=tmp_path / "killed",
        report=lambda done, total, unit: epochs.append(done)))
    assert resumed.metrics["resumed_at_epoch"] == 2 and epochs == [3, 4]
    # bit for bit the weights of the uninterrupted run: both random streams were restored
    a = torch.load(__import__("io").BytesIO(whole.artifacts[WEIGHTS]), weights_only=True)
    b = torch.load(__import__("io").BytesIO(resumed.artifacts[WEIGHTS]), weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics["accuracy"] == whole.metrics["accuracy"]


@pytest.mark.parametrize("change, field", [
    ({"pretrain": {"epochs": 0}}, "pretrain: epochs"),
    ({"pretrain": {"epocs": 3}}, "pretrain: epocs"),
    ({"methods": [{"name": "random", "start": "sometimes"}]}, "methods[0].start"),
])
def test_bad_pretraining_options_exit_2_naming_the_field(write_suite, tmp_path, capsys,
                                                         change, field):
    suite = write_suite(**change)
    assert main(["run", str(suite), "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(suite) in err and field in err, err
    assert not (tmp_path / "results").exists()
