"""MLflow tracking, written by the driver only: an experiment per suite, a parent run per
invocation, a child run per stage (a job, or a shared pre-training). A child run begins RUNNING
when its job begins, takes each epoch's figures as steps as the job sends them to the driver, and
ends FINISHED or FAILED with the final metrics and the job's files (the trained weights among
them), or KILLED when the driver stops while its job runs. A key has at most one live child run:
starting a key again (a failed job re-run, a cancelled one, or a run interrupted between MLflow and
the results table) deletes the old one.

The default store (``<results>/mlflow.db``, artifacts in ``<results>/mlartifacts``) belongs to its
results folder, whose lock the driver holds: so whatever it finds RUNNING there was left by a dead
driver (closed as KILLED), and artifact locations that name another folder are from before the
folder was moved or copied (pointed back under the folder in use: ``binarena.mlflow_store``).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType

from .mlflow_store import (STORE_TAG, relocate_artifacts, repair_interrupted_migration,
                           seed_new_store, sqlite_path)
from .outcome import JobOutcome
from .version import binarena_version

if TYPE_CHECKING:
    from .jobs import Job

log = logging.getLogger(__name__)

KEY_TAG = "binarena.job_key"
PARENT_TAG = "mlflow.parentRunId"
RESULTS_TAG = "binarena.results"  # the results folder a parent run wrote to
DRIVER_TAG = "binarena.driver"  # host:pid of the driver of a parent run


@functools.cache
def git_commit() -> str | None:
    """The commit of the binarena checkout this code runs from, with ``-dirty`` if modified."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain"], capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def default_tracking_uri(results: Path) -> str:
    return f"sqlite:///{results.resolve() / 'mlflow.db'}"


def code_tags() -> dict[str, str]:
    tags = {"binarena.version": binarena_version()}
    commit = git_commit()
    if commit:
        tags["binarena.git_commit"] = commit
    return tags


class Tracker:
    """The MLflow side of one invocation of a suite."""

    def __init__(self, tracking_uri: str, suite: str, artifact_root: Path) -> None:
        db = sqlite_path(tracking_uri)
        self.results = artifact_root.parent.resolve()
        # The default store lives in the results folder: it moves with it and is ours alone.
        self.owns_store = db is not None and db.resolve().parent == self.results
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
            seed_new_store(db)
            repair_interrupted_migration(db)
            if self.owns_store:
                relocate_artifacts(db, artifact_root)
        self.client = MlflowClient(tracking_uri)
        experiment = self.client.get_experiment_by_name(suite)
        if experiment is None:
            artifact_root.mkdir(parents=True, exist_ok=True)
            self.experiment_id = self.client.create_experiment(
                suite, artifact_location=artifact_root.resolve().as_uri(),
                tags={STORE_TAG: str(self.results) if self.owns_store else ""},
            )
        else:
            self.experiment_id = experiment.experiment_id
        self.parent_id: str | None = None
        self._runs_by_key = self._existing_children()
        self._open: dict[str, str] = {}  # job key -> its RUNNING child run

    def _existing_children(self) -> dict[str, list[str]]:
        runs: dict[str, list[str]] = {}
        for run in self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{KEY_TAG}` != ''", max_results=50000
        ):
            runs.setdefault(run.data.tags[KEY_TAG], []).append(run.info.run_id)
        return runs

    def close_abandoned(self) -> int:
        """Mark KILLED the runs a dead driver left RUNNING: those that wrote to our results folder
        (we hold its lock, so their driver is gone; on a tracking server, from this host only),
        and in a store of our own also those whose results folder is gone or unnamed."""
        experiments = [e.experiment_id for e in self.client.search_experiments(ViewType.ALL)] \
            if self.owns_store else [self.experiment_id]
        closed = 0
        for run in self.client.search_runs(experiments, "attributes.status = 'RUNNING'",
                                           max_results=50000):
            if self._abandoned(run.data.tags):
                log.warning("run %s (%s) was left RUNNING by %s, which is gone: marked KILLED",
                            run.info.run_id, run.info.run_name,
                            run.data.tags.get(DRIVER_TAG, "an earlier driver"))
                self.client.set_terminated(run.info.run_id, "KILLED")
                closed += 1
        return closed

    def _abandoned(self, tags: dict[str, str]) -> bool:
        folder = tags.get(RESULTS_TAG)
        if folder == str(self.results):
            return self.owns_store or tags.get(DRIVER_TAG, "").rpartition(":")[0] == \
                socket.gethostname()
        return self.owns_store and (folder is None or not Path(folder).exists())

    def start(self, run_name: str, params: dict[str, str]) -> str:
        self.close_abandoned()
        tags = {**code_tags(), RESULTS_TAG: str(self.results),
                DRIVER_TAG: f"{socket.gethostname()}:{os.getpid()}"}
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        self.parent_id = run.info.run_id
        self.client.log_batch(self.parent_id, params=[Param(k, v) for k, v in params.items()])
        return self.parent_id

    def start_job(self, job: Job, start_time: float | None = None) -> str:
        """The job's child run, RUNNING from now (or ``start_time``) with its parameters, so it
        can be watched while the job runs; a retry goes on in the run its first attempt began."""
        if job.key in self._open:
            return self._open[job.key]
        for old in self._runs_by_key.pop(job.key, []):
            self.client.delete_run(old)
        tags = {**code_tags(), KEY_TAG: job.key, "binarena.suite": job.suite,
                "binarena.kind": job.kind, "binarena.method": job.method_label,
                RESULTS_TAG: str(self.results),  # a dead driver's open runs are closed KILLED
                DRIVER_TAG: f"{socket.gethostname()}:{os.getpid()}"}
        if self.parent_id:
            tags[PARENT_TAG] = self.parent_id
        run = self.client.create_run(
            self.experiment_id, tags=tags, run_name=job.label,
            start_time=None if start_time is None else int(start_time * 1000))
        params = job.flat_params()
        if job.budget is None:
            params["budget"] = "-"
        self.client.log_batch(run.info.run_id,
                              params=[Param(k, v[:6000]) for k, v in params.items()])
        self._open[job.key] = run.info.run_id
        return run.info.run_id

    def log_epoch(self, job: Job, epoch: int, figures: dict[str, float]) -> None:
        """An epoch's figures (``train_loss``, ``train_accuracy``) at step ``epoch`` of the job's
        run: its learning curves."""
        run_id = self._open.get(job.key) or self.start_job(job)
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, epoch)
                                               for k, v in figures.items()])

    def log_job(self, outcome: JobOutcome) -> str:
        """The end of the job's child run: its final metrics, status tags and artifacts (the
        trained ``weights.pt`` among them), FINISHED or FAILED. A stage that failed before it
        began (its pre-training failed) gets its run here."""
        job = outcome.job
        run_id = self._open.pop(job.key, None) or self.start_job(job, outcome.started_at)
        self._open.pop(job.key, None)
        tags = {"binarena.status": outcome.status, "binarena.attempts": str(outcome.attempts)}
        if outcome.error:
            tags["binarena.error"] = outcome.error[:4000]
        now = int(time.time() * 1000)
        metrics = {**outcome.metrics, "wall_seconds": outcome.wall_seconds}
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0)
                                               for k, v in metrics.items()],
                              tags=[RunTag(k, v) for k, v in tags.items()])
        files = dict(outcome.result.artifacts) if outcome.result else {}
        if outcome.config:
            files["config.json"] = json.dumps(outcome.config, indent=1).encode()
        if outcome.traceback:
            files["traceback.txt"] = outcome.traceback.encode()
        self.log_files(run_id, files)
        self.client.set_terminated(run_id, "FINISHED" if outcome.status == "ok" else "FAILED",
                                   end_time=int(outcome.finished_at * 1000))
        self._runs_by_key[job.key] = [run_id]
        return run_id

    def kill_open(self) -> None:
        """KILLED for the runs of jobs that were running when the driver stopped (cancelled)."""
        for key in list(self._open):
            log.info("the run of job %s ends KILLED: it was cancelled", key)
            self.client.set_terminated(self._open.pop(key), "KILLED")

    def log_files(self, run_id: str, files: dict[str, bytes]) -> None:
        if not files:
            return
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in files.items():
                (Path(tmp) / name).write_bytes(content)
            self.client.log_artifacts(run_id, tmp)

    def abandon(self, status: str) -> None:
        """End the parent run on the way out of a failure, never hiding that failure (a full disk
        fails MLflow's write too): if this fails, the next driver closes the run."""
        try:
            self.finish(status, {}, [])
        except Exception as exc:
            log.warning("could not mark the MLflow run %s %s: %s", self.parent_id, status, exc)

    def finish(self, status: str, metrics: dict[str, float], artifacts: list[Path]) -> None:
        """End the parent run; the children of jobs still running end KILLED."""
        self.kill_open()
        if self.parent_id is None:
            return
        now = int(time.time() * 1000)
        self.client.log_batch(self.parent_id,
                              metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
        for path in artifacts:
            if path.is_file():
                self.client.log_artifact(self.parent_id, str(path))
        self.client.set_terminated(self.parent_id, status)

    def child_runs(self) -> list:
        """Live child runs of this suite's experiment (for tests and reports)."""
        return self.client.search_runs([self.experiment_id], filter_string=f"tags.`{KEY_TAG}` != ''",
                                       max_results=50000)
