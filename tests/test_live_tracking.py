"""MLflow child runs as the jobs run, on a real local Ray and a real MLflow store (SQLite in a temp
folder): a job's run is RUNNING while it trains (seen from the driver at each epoch), holds one
step per epoch of its learning curves, ends FINISHED with its trained weights (loaded back with
``weights_only=True``, they give the recorded accuracy again), and a job cancelled with the
driver ends KILLED, keeping the epochs it trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from binarena.b2nn import set_binary
from binarena.jobs import Job
from binarena.methods.base import RunContext
from binarena.orchestrator import RunOptions, make_plan, run_suite
from binarena.runtime import SilentProgress
from binarena.selection import WEIGHTS
from binarena.suite import load_suite
from binarena.tracking import KEY_TAG
from binarena.training import evaluate

EPOCHS, PRE_EPOCHS = 3, 2


class Watcher(SilentProgress):
    """At each epoch a job reports, what the MLflow store shows of its run (read through a client
    of its own): (status, steps of train_loss so far); raises KeyboardInterrupt, as Ctrl-C does,
    at epoch ``stop_at`` of the method ``stop_method``."""

    def __init__(self, store: str, stop_method: str | None = None, stop_at: int = 0) -> None:
        self.client = MlflowClient(store)
        self.seen: dict[str, list[tuple[str, int]]] = {}
        self.stop_method, self.stop_at = stop_method, stop_at

    def subtasks(self, job: Job, done: int, total: int, unit: str) -> None:
        if unit != "epochs":
            return
        (run,) = [r for r in self.client.search_runs(
            [e.experiment_id for e in self.client.search_experiments()],
            filter_string=f"tags.`{KEY_TAG}` = '{job.key}'")]
        steps = len(self.client.get_metric_history(run.info.run_id, "train_loss"))
        self.seen.setdefault(job.method_label, []).append((run.info.status, steps))
        if job.method_label == self.stop_method and done == self.stop_at:
            raise KeyboardInterrupt


def run_tiny(write_suite, results, progress: Watcher):
    suite = write_suite(methods=[{"name": "random"}], seeds=[0],
                        training={"epochs": EPOCHS, "batch_size": 64, "lr": 0.05},
                        pretrain={"epochs": PRE_EPOCHS})
    options = RunOptions(results=results)
    return run_suite(make_plan(load_suite(str(suite)), options), options, progress)


def children(store: str) -> dict[str, object]:
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    return {r.data.tags["binarena.method"]: r for r in runs if KEY_TAG in r.data.tags}


def test_a_jobs_run_is_live_with_curves_and_ends_with_its_weights(ray_cluster, tmp_path,
                                                                  write_suite):
    results = tmp_path / "results"
    store = f"sqlite:///{results / 'mlflow.db'}"
    watcher = Watcher(store)
    run = run_tiny(write_suite, results, watcher)
    assert [o.status for o in run.report.outcomes] == ["ok", "ok"]
    # RUNNING at each epoch, the earlier epochs already there as steps
    assert watcher.seen["random"] == [("RUNNING", k) for k in range(EPOCHS)]
    assert watcher.seen["pre-trained"] == [("RUNNING", k) for k in range(PRE_EPOCHS)]

    client = MlflowClient(store)
    runs = children(store)
    job = next(j for j in run.plan.to_run if j.method_label == "random")
    for label, epochs in (("random", EPOCHS), ("pre-trained", PRE_EPOCHS)):
        record = runs[label]
        assert record.info.status == "FINISHED"
        for metric in ("train_loss", "train_accuracy"):
            history = client.get_metric_history(record.info.run_id, metric)
            assert sorted(m.step for m in history) == list(range(1, epochs + 1))
        assert {WEIGHTS, "layers.json"} <= {a.path for a in
                                            client.list_artifacts(record.info.run_id)}

    record = runs["random"]  # its weights, into the job's model with its binary layers
    weights = client.download_artifacts(record.info.run_id, WEIGHTS, str(tmp_path / "weights"))
    config = client.download_artifacts(record.info.run_id, "config.json", str(tmp_path / "config"))
    ctx = RunContext(job=job, data_root=None, workdir=tmp_path / "scratch")
    model = ctx.build_model()
    model.load_state_dict(torch.load(weights, weights_only=True))
    set_binary(model, json.loads(Path(config).read_text())["binary_layers"])
    accuracy = evaluate(model, ctx.data.test).accuracy
    assert accuracy == pytest.approx(record.data.metrics["accuracy"], abs=1e-9)
    (entry,) = [e for e in run.entries if e.method == "random"]
    assert entry.per_seed == {0: pytest.approx(accuracy, abs=1e-9)}
    assert (results / "tiny" / "jobs" / job.key / "checkpoints" / "training.pt").is_file()


def test_a_job_cancelled_with_the_driver_ends_killed_with_its_epochs(ray_cluster, tmp_path,
                                                                      write_suite):
    results = tmp_path / "results"
    store = f"sqlite:///{results / 'mlflow.db'}"
    run = run_tiny(write_suite, results, Watcher(store, stop_method="random", stop_at=2))
    assert run.report.interrupted
    runs = children(store)
    assert runs["pre-trained"].info.status == "FINISHED"
    killed = runs["random"]
    assert killed.info.status == "KILLED"
    history = MlflowClient(store).get_metric_history(killed.info.run_id, "train_loss")
    assert [m.step for m in history] == [1]  # epoch 2's figures came after the interrupt
