"""``binarena tune``: an Optuna study whose trials are platform jobs, run by the same runtime as
``binarena run``.

The suite's ``tune`` section names a method and what to search (the budget, the method's
parameters, the schedule, or the per-layer binary mask). The driver asks Optuna for a trial whenever
the runtime (``run_jobs``) has a free slot, so at most ``parallel`` trials run at once; a trial is
one job, with the retries, progress, artifacts and recording (an MLflow child run and a results row
as it ends) of any job. Its accuracy and FLOPs % go back to the study: both as objectives
(``pareto``: the accuracy-FLOPs Pareto front), or accuracy with FLOPs % as an Optuna 5 constraint
(``constrained``: ``trial.set_constraint``, feasible when FLOPs % <= ``max_flops``). The shared
pre-training the trials start from is a stage of the same run, unless the results folder holds it.

The study lives in a persistent Optuna storage (SQLite in ``<results>/<suite>/tune/`` unless the
suite names a journal file or a database URL) under a name that holds the data's identity, so
running ``binarena tune`` again continues it (over other data, another study begins): finished
trials stay, trials a killed driver left RUNNING are marked FAIL, and only the missing number of
trials runs. Its MLflow experiment is ``<suite>-tune``, its results table ``tune/results.parquet``;
the trials, the Pareto front (or the best feasible trial) and a plot are written next to them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import optuna
import optuna.storages.journal
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from . import leaderboard
from .errors import UserError
from .jobs import Job, expand, with_fingerprint
from .lock import driving
from .orchestrator import (RunOptions, check_model, cluster_for, data_root, fingerprinted,
                           recorder)
from .outcome import JobOutcome
from .placement import default_parallelism
from .plots import png_figure
from .pretraining import stage_folder, weights_file
from .registry import DATASETS, METHODS
from .results import ResultsTable
from .runtime import Progress, RunReport, SilentProgress, run_jobs
from binarena.methods.base import build_model, eligible_layers
from .seeds import derive_seed
from .studies import fail_stale_trials, is_feasible, make_sampler
from .suite import Dimension, Suite, TuneSpec, first_error
from .tracking import Tracker

log = logging.getLogger(__name__)

MASK_PREFIX = "mask."
UID = "binarena.uid"  # a study's user attribute: what sets its trials' keys apart from another's


@dataclass
class TunePlan:
    suite: Suite
    spec: TuneSpec
    results: Path  # the results folder: the shared pre-training lives there
    data_root: Path | None
    space: dict[str, optuna.distributions.BaseDistribution]
    study_name: str
    probes: list[Job]  # the jobs of the space's corners: checked, placed before anything runs

    @property
    def folder(self) -> Path:
        """``<results>/<suite>/tune``: the study, its results table, trials and front."""
        return self.results / self.suite.name / "tune"

    @property
    def pretraining(self) -> Job | None:
        """The shared pre-training every trial starts from (the tune seed's), if the model has one."""
        return self.probes[0].pretrain

    def storage(self) -> optuna.storages.BaseStorage:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.spec.storage is None:
            return optuna.storages.RDBStorage(f"sqlite:///{self.folder / 'optuna.db'}")
        if self.spec.storage == "journal":
            return optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(str(self.folder / "optuna.journal")))
        return optuna.storages.RDBStorage(self.spec.storage)

    def workdir(self, job: Job) -> Path:
        """A stage's working folder: the shared pre-training's in the results folder, a trial's
        in the tune folder."""
        if job.is_pretrain:
            return stage_folder(self.results, job.key)
        return self.folder / "jobs" / job.key


@dataclass
class TuneRun:
    plan: TunePlan
    trials: list[dict[str, Any]] = field(default_factory=list)  # every trial of the study
    front: list[dict[str, Any]] = field(default_factory=list)  # Pareto front / best feasible
    ran: list[JobOutcome] = field(default_factory=list)  # trials of this invocation that finished
    failed: list[JobOutcome] = field(default_factory=list)  # stages of this invocation that failed
    wall_seconds: float = 0.0  # from the first trial's start (after the pre-training) to the end
    parallel: int = 1
    files: list[Path] = field(default_factory=list)

    @property
    def overhead(self) -> float | None:
        """Share of the worker time this invocation held that was not spent inside jobs."""
        if not self.ran or not self.wall_seconds:
            return None
        inside = sum(o.wall_seconds for o in self.ran)
        return max(0.0, 1.0 - inside / (self.wall_seconds * self.parallel))


def make_tune_plan(suite: Suite, options: RunOptions) -> TunePlan:
    """Check the tune section against the suite and the model; ``UserError`` before any work."""
    spec = suite.tune
    if spec is None:
        raise UserError(f"{suite.source}: tune: the suite has no tune section")
    check_model(suite)
    root = data_root(suite, options)
    suite = fingerprinted(suite, root)
    space: dict[str, optuna.distributions.BaseDistribution] = {}
    for key, dim in spec.space.items():
        if key == "mask":
            for layer in _eligible(suite):
                space[MASK_PREFIX + layer] = optuna.distributions.CategoricalDistribution([0, 1])
        else:
            space[key] = _distribution(key, dim)
    low = {k: _corner(d, 0) for k, d in space.items()}
    corners = [low, {k: _corner(d, -1) for k, d in space.items()}]
    corners += [{**low, k: choice} for k, d in space.items() if not k.startswith(MASK_PREFIX)
                and isinstance(d, optuna.distributions.CategoricalDistribution)
                for choice in d.choices]
    probes: dict[str, Job] = {}
    for corner in corners:  # both ends of every range and every choice must make a valid job
        try:
            job = trial_job(suite, corner)
            if job.key not in probes:
                probes[job.key] = job
                METHODS.get(job.method).check(job, root)
        except (ValueError, UserError) as exc:
            raise UserError(f"{suite.source}: tune.space: {exc}") from None
    return TunePlan(suite, spec, options.results, root, space, study_name(suite),
                    list(probes.values()))


def study_name(suite: Suite) -> str:
    """``<suite>-tune-<data>``: a study continues only over the data (content and splits) it
    began with."""
    data = json.dumps(suite.dataset.identity(), sort_keys=True, default=str)
    return f"{suite.name}-tune-{hashlib.sha256(data.encode()).hexdigest()[:12]}"


def _eligible(suite: Suite) -> list[str]:
    source = DATASETS.get(suite.dataset.name)
    job = expand(suite.model_copy(update={"tune": None}))[0]
    return eligible_layers(job, build_model(job, source.input_shape, source.num_classes))


def _distribution(key: str, dim: Dimension) -> optuna.distributions.BaseDistribution:
    if dim.choices is not None:
        return optuna.distributions.CategoricalDistribution(dim.choices)
    assert dim.low is not None and dim.high is not None  # a range (Dimension checks; mask is apart)
    if dim.integer:
        return optuna.distributions.IntDistribution(int(dim.low), int(dim.high), log=dim.log)
    return optuna.distributions.FloatDistribution(dim.low, dim.high, log=dim.log)


def _corner(dist: optuna.distributions.BaseDistribution, end: int) -> Any:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return dist.choices[end]
    # _distribution makes ranges of these two kinds only
    assert isinstance(dist, (optuna.distributions.IntDistribution,
                             optuna.distributions.FloatDistribution))
    return dist.low if end == 0 else dist.high


def trial_job(suite: Suite, config: dict[str, Any]) -> Job:
    """The job a trial's settings make: the suite's data, model and schedule, the tune method with
    the searched parameters, the searched budget, the tune seed. Validated like any suite."""
    spec = suite.tune
    assert spec is not None  # trials are made for suites with a tune section (make_tune_plan)
    params = {k.removeprefix("params."): v for k, v in config.items() if k.startswith("params.")}
    training = {k.removeprefix("training."): v for k, v in config.items()
                if k.startswith("training.")}
    mask = [k.removeprefix(MASK_PREFIX) for k, v in config.items()
            if k.startswith(MASK_PREFIX) and v]
    if any(k.startswith(MASK_PREFIX) for k in config):
        params["binary"] = mask
    base = next((m for m in suite.methods if m.name == spec.method), None)
    method = {"name": spec.method, "params": {**(base.params if base else {}), **params},
              "training": {**(base.training if base else {}), **training}}
    data = suite.model_dump(mode="json", exclude={"tune": True, "baseline": True,
                                                  "dataset": {"fingerprint"},
                                                  "pretrain_dataset": {"fingerprint"}})
    data.update(methods=[method], seeds=[spec.seed])
    data["budgets"] = [float(config["budget"])] if "budget" in config else suite.budgets[:1]
    try:
        derived = Suite.model_validate(data)
    except ValidationError as exc:
        raise ValueError(first_error(exc, Suite)) from None
    source = suite.pretrain_dataset
    return expand(with_fingerprint(derived, suite.dataset.fingerprint,
                                   source.fingerprint if source else None))[0]


def trial_identity(job: Job, trial_id: str) -> Job:
    """The job of one trial: a sampler may suggest the same settings twice, and two trials must
    not share a working folder, a results row or an MLflow run."""
    return dataclasses.replace(job, key=f"{job.key}-{trial_id}")


def _directions(spec: TuneSpec) -> list[optuna.study.StudyDirection]:
    if spec.objective == "pareto":
        return [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    return [optuna.study.StudyDirection.MAXIMIZE]


def open_study(plan: TunePlan, *, sweep: bool = True) -> optuna.Study:
    """The study, created if new. With ``sweep``, trials left RUNNING are marked FAIL: one driver
    works on a study at a time, so at its start a RUNNING trial is one a killed driver left."""
    study = optuna.create_study(storage=plan.storage(), study_name=plan.study_name,
                                directions=_directions(plan.spec), load_if_exists=True)
    if study.directions != _directions(plan.spec):
        raise UserError(f"{plan.suite.source}: tune.objective changed since study "
                        f"{plan.study_name!r} began; use another storage or results folder")
    recorded = study.user_attrs
    if "max_flops" not in recorded:
        study.set_user_attr("max_flops", plan.spec.max_flops)
    elif recorded["max_flops"] != plan.spec.max_flops:
        raise UserError(f"{plan.suite.source}: tune.max_flops was {recorded['max_flops']} when study "
                        f"{plan.study_name!r} began (its trials' constraints use it); use another "
                        "storage or results folder")
    if UID not in recorded:
        study.set_user_attr(UID, uuid.uuid4().hex[:8])
    if sweep:
        fail_stale_trials(study)
    return study


def run_tune(plan: TunePlan, options: RunOptions, progress: Progress | None = None) -> TuneRun:
    """Run or continue the study, holding the results folder (one driver writes it). An interrupt
    (Ctrl-C, SIGTERM) cancels the running trials, keeps what finished, and is raised again."""
    progress = progress or SilentProgress()
    run = TuneRun(plan)
    with driving(options.results):
        study = open_study(plan)
        done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        remaining = max(0, plan.spec.trials - done)
        table = ResultsTable.open(plan.folder / "results.parquet")
        placed = [*plan.probes, *filter(None, [plan.pretraining])] if remaining else []
        with cluster_for(placed, options, progress):
            if not remaining:
                _write_outputs(run)
                return run
            tracker = Tracker(options.tracking_store, f"{plan.suite.name}-tune",
                              options.results / "mlartifacts")
            tracker.start(f"{plan.study_name} {time.strftime('%Y-%m-%d %H:%M:%S')}", {
                "study": plan.study_name, "objective": plan.spec.objective,
                "sampler": plan.spec.sampler, "method": plan.spec.method,
                "trials_before": str(done), "trials_to_run": str(remaining),
            })
            try:
                report = _run_trials(run, study, done, remaining, options, tracker, table,
                                     progress)
                _write_outputs(run)
            except BaseException:
                tracker.abandon("KILLED")
                raise
            status = "KILLED" if report.interrupted else "FAILED" if report.failed else "FINISHED"
            tracker.finish(status, {
                "trials_complete": sum(t["state"] == "COMPLETE" for t in run.trials),
                "wall_seconds": run.wall_seconds,
                **({"platform_overhead": run.overhead} if run.overhead is not None else {}),
            }, run.files + [table.path])
    if report.interrupted:
        raise KeyboardInterrupt
    return run


def _run_trials(run: TuneRun, study: optuna.Study, done: int, remaining: int,
                options: RunOptions, tracker: Tracker, table: ResultsTable, progress: Progress,
                ) -> RunReport:
    """``remaining`` trials through ``run_jobs``, after the shared pre-training unless the results
    folder holds its weights."""
    plan = run.plan
    pretrain = plan.pretraining
    stages, start_weights = [], {}
    if pretrain is not None and weights_file(options.results, pretrain.key).is_file():
        start_weights[pretrain.key] = weights_file(options.results, pretrain.key).read_bytes()
    elif pretrain is not None:
        stages.append(pretrain)
    run.parallel = min(remaining, plan.spec.parallel or options.max_parallel
                       or default_parallelism(plan.probes))
    trials = _Trials(plan, study, remaining, recorder(options.results, tracker, table))
    progress.begin(len(stages) + remaining, done)
    try:
        report = run_jobs(stages, workdir=plan.workdir, data_root=plan.data_root,
                          on_outcome=trials.on_outcome, start_weights=start_weights,
                          max_parallel=run.parallel, retries=options.retries, progress=progress,
                          source=trials.next_job, on_start=tracker.start_job,
                          on_epoch=tracker.log_epoch)
    finally:
        trials.abandon()
    run.ran = [o for o in report.outcomes if o.status == "ok" and not o.job.is_pretrain]
    run.failed = report.failed
    run.wall_seconds = time.time() - trials.ready_at
    return report


class _Trials:
    """The study's side of a run: a trial asked from Optuna whenever the runtime has a free slot
    (``next_job``), each outcome recorded and told to Optuna as it ends (``on_outcome``)."""

    def __init__(self, plan: TunePlan, study: optuna.Study, remaining: int,
                 record: Callable[[JobOutcome], None]) -> None:
        self.plan, self.study, self.left, self.record = plan, study, remaining, record
        self.in_flight: dict[str, optuna.Trial] = {}  # job key -> its trial
        self.uid = study.user_attrs[UID]
        self.ready_at = time.time()  # when trials could start: after the shared pre-training

    def next_job(self) -> Job | None:
        """The next trial's job; None once ``remaining`` trials were asked. Settings no valid job
        can have (a corner of the space was checked, not every point) fail the trial at once."""
        spec = self.plan.spec
        while self.left > 0:
            self.left -= 1
            self.study.sampler = make_sampler(
                spec.sampler, derive_seed(spec.seed, "tune/sampler", len(self.study.trials)))
            trial = self.study.ask(self.plan.space)
            try:
                job = trial_job(self.plan.suite, trial.params)
            except ValueError as exc:
                log.warning("trial %d: %s; marked failed", trial.number, exc)
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            job = trial_identity(job, f"{self.uid}-{trial.number}")
            self.in_flight[job.key] = trial
            return job
        return None

    def on_outcome(self, outcome: JobOutcome) -> None:
        trial = self.in_flight.pop(outcome.job.key, None)
        if trial is None:  # the shared pre-training: without it no trial can run
            self.record(outcome)
            self.ready_at = time.time()
            if outcome.status != "ok":
                self.left = 0
            return
        outcome = _measured(outcome)
        self.record(outcome)
        if outcome.status != "ok":
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        accuracy, flops = outcome.metrics["accuracy"], outcome.metrics["flops_pct"]
        trial.set_user_attr("flops_pct", flops)
        if self.plan.spec.objective == "pareto":
            self.study.tell(trial, [accuracy, flops])
        else:
            assert self.plan.spec.max_flops is not None  # TuneSpec: constrained needs it
            trial.set_constraint("flops_pct", flops - self.plan.spec.max_flops)
            self.study.tell(trial, accuracy)

    def abandon(self) -> None:
        """Fail the trials whose jobs were cancelled (an interrupt), so the study holds no
        trial RUNNING that nothing runs."""
        for trial in self.in_flight.values():
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        self.in_flight.clear()


def _measured(outcome: JobOutcome) -> JobOutcome:
    """The outcome, failed if the job measured no finite accuracy or FLOPs % (Optuna would drop
    the trial while the results table kept it as fine)."""
    bad = {k: outcome.metrics.get(k) for k in ("accuracy", "flops_pct")
           if not isinstance(outcome.metrics.get(k), (int, float))
           or not math.isfinite(outcome.metrics[k])}
    if outcome.status != "ok" or not bad:
        return outcome
    return dataclasses.replace(outcome, status="failed",
                               error=f"{outcome.job.label}: the job measured no finite {bad}")


def trial_rows(study: optuna.Study, spec: TuneSpec) -> list[dict[str, Any]]:
    """One row per trial of the study, the front (Pareto, or the best feasible) marked."""
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    if spec.objective == "pareto":
        front = {t.number for t in study.best_trials}
    else:
        feasible = [t for t in complete if is_feasible(t)]
        front = {max(feasible, key=lambda t: t.values[0]).number} if feasible else set()
    rows = []
    for t in study.trials:
        values = t.values or []
        flops = values[1] if len(values) > 1 else t.user_attrs.get("flops_pct")
        rows.append({
            "number": t.number, "state": t.state.name,
            "accuracy": values[0] if values else None, "flops_pct": flops,
            "feasible": None if spec.objective == "pareto" or not t.constraints
            else is_feasible(t),
            "front": t.number in front, "params": json.dumps(t.params, sort_keys=True),
        })
    return rows


TRIAL_SCHEMA = pa.schema([("number", pa.int64()), ("state", pa.string()),
                          ("accuracy", pa.float64()), ("flops_pct", pa.float64()),
                          ("feasible", pa.bool_()), ("front", pa.bool_()), ("params", pa.string())])
FRONT_COLUMNS = ("number", "accuracy", "flops_pct", "params")


def _write_outputs(run: TuneRun) -> None:
    """The study as it is now: every trial, the front."""
    study = open_study(run.plan, sweep=False)
    run.trials = trial_rows(study, run.plan.spec)
    run.front = [t for t in run.trials if t["front"]]
    run.files = write_outputs(run)


def write_outputs(run: TuneRun) -> list[Path]:
    """trials.parquet, front.csv / front.md (the leaderboard's writers) and front.png in the tune
    folder."""
    folder = run.plan.folder
    folder.mkdir(parents=True, exist_ok=True)
    trials = folder / "trials.parquet"
    pq.write_table(pa.Table.from_pylist(run.trials, schema=TRIAL_SCHEMA), trials)
    front = sorted(run.front, key=lambda t: t["flops_pct"] or 0)
    csv_path = folder / "front.csv"
    csv_path.write_text(leaderboard.csv_text(FRONT_COLUMNS,
                                             ([t[c] for c in FRONT_COLUMNS] for t in front)))
    md_path = folder / "front.md"
    md_path.write_text(leaderboard.markdown_table(
        ("Trial", "Acc. (%)", "FLOPs (%)", "Settings"),
        ([str(t["number"]), f"{t['accuracy']:.2f}", f"{t['flops_pct']:.2f}", f"`{t['params']}`"]
         for t in front),
        title=f"{run.plan.study_name}: {front_title(run.plan.spec)}", left=(3,)))
    return [trials, csv_path, md_path, plot_front(run, folder / "front.png")]


def front_title(spec: TuneSpec) -> str:
    return ("Pareto front" if spec.objective == "pareto"
            else f"best trial with FLOPs <= {spec.max_flops:g}%")


def plot_front(run: TuneRun, path: Path) -> Path:
    done = [t for t in run.trials if t["state"] == "COMPLETE" and t["flops_pct"] is not None]
    with png_figure(path, figsize=(7, 4.5)) as (fig, ax):
        others = [t for t in done if not t["front"]]
        ax.scatter([t["flops_pct"] for t in others], [t["accuracy"] for t in others], s=18,
                   color="grey", label="trials")
        front = sorted((t for t in done if t["front"]), key=lambda t: t["flops_pct"])
        ax.plot([t["flops_pct"] for t in front], [t["accuracy"] for t in front], "o-", color="C3",
                label="Pareto front" if run.plan.spec.objective == "pareto" else "best feasible")
        if run.plan.spec.objective == "constrained":
            assert run.plan.spec.max_flops is not None  # TuneSpec: constrained needs it
            ax.axvline(run.plan.spec.max_flops, linestyle="--", color="grey", linewidth=1)
        ax.set_xlabel("FLOPs remaining (%)")
        ax.set_ylabel("Test accuracy (%)")
        ax.set_title(f"{run.plan.study_name}: {len(done)} trials")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return path
