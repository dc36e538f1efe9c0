"""``binarena tune``: an Optuna study whose trials are platform jobs, run concurrently by Ray Tune.

The suite's ``tune`` section names a method and what to search (the budget, the method's
parameters, the schedule, or the per-layer binary mask). Ray Tune's ``OptunaSearch`` asks Optuna
for a trial's settings, the trial runs as one job (``run_job``, the same code path as
``binarena run``), and its accuracy and FLOPs % go back to the study: both as objectives
(``pareto``: the accuracy-FLOPs Pareto front), or accuracy with FLOPs % as an Optuna 5 constraint
(``constrained``: ``trial.set_constraint``, feasible when FLOPs % <= ``max_flops``).

The study lives in a persistent Optuna storage (SQLite in ``<results>/<suite>/tune/`` unless the
suite names a journal file or a database URL), so running ``binarena tune`` again continues it:
finished trials stay, trials a killed driver left RUNNING are marked FAIL, and only the missing
number of trials runs. Every finished trial is an MLflow child run (experiment ``<suite>-tune``)
and a row of ``tune/results.parquet``; the trials, the Pareto front (or the best feasible trial)
and a plot are written next to them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from .errors import UserError
from .jobs import Job, expand
from .lock import ResultsLock
from .orchestrator import (RunOptions, data_fingerprint, data_root, pretrained_weights,
                                   result_row, with_fingerprint)
from .orchestrator import recorder as recorder_of_stages
from .registry import DATASETS, METHODS
from .results import ResultsTable, remove_partial_files
from .placement import connect_for
from .runtime import JobOutcome, Progress, RayExecutor, SilentProgress
from binarena.methods.base import Result, RunContext, build_model, eligible_layers, run_job
from .suite import Dimension, Suite, TuneSpec, first_error
from .tracking import Tracker, check_tracking_uri, default_tracking_uri

log = logging.getLogger(__name__)

MASK_PREFIX = "mask."


@dataclass
class TunePlan:
    suite: Suite
    spec: TuneSpec
    folder: Path  # <results>/<suite>/tune
    data_root: Path | None
    space: dict[str, optuna.distributions.BaseDistribution]
    study_name: str

    def storage(self) -> optuna.storages.BaseStorage:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.spec.storage is None:
            return optuna.storages.RDBStorage(f"sqlite:///{self.folder / 'optuna.db'}")
        if self.spec.storage == "journal":
            return optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(str(self.folder / "optuna.journal")))
        return optuna.storages.RDBStorage(self.spec.storage)


@dataclass
class TuneRun:
    plan: TunePlan
    trials: list[dict[str, Any]] = field(default_factory=list)  # every trial of the study
    front: list[dict[str, Any]] = field(default_factory=list)  # Pareto front / best feasible
    ran: list[JobOutcome] = field(default_factory=list)  # trials of this invocation
    wall_seconds: float = 0.0
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
    if suite.tune is None:
        raise UserError(f"{suite.source}: tune: the suite has no tune section")
    root = data_root(suite, options)
    suite = with_fingerprint(suite, data_fingerprint(suite, root))
    spec = suite.tune
    space: dict[str, optuna.distributions.BaseDistribution] = {}
    for key, dim in spec.space.items():
        if key == "mask":
            for layer in _eligible(suite):
                space[MASK_PREFIX + layer] = optuna.distributions.CategoricalDistribution([0, 1])
        else:
            space[key] = _distribution(key, dim)
    low = {k: _corner(d, 0) for k, d in space.items()}
    probes = [low, {k: _corner(d, -1) for k, d in space.items()}]
    probes += [{**low, k: choice} for k, d in space.items() if not k.startswith(MASK_PREFIX)
               and isinstance(d, optuna.distributions.CategoricalDistribution) for choice in d.choices]
    checked = set()
    for probe in probes:  # both ends of every range and every choice must make a valid job
        try:
            job = trial_job(suite, probe)
            if job.key not in checked:
                checked.add(job.key)
                METHODS.get(job.method).check(job, root)
        except (ValueError, UserError) as exc:
            raise UserError(f"{suite.source}: tune.space: {exc}") from None
    return TunePlan(suite, spec, options.results / suite.name / "tune", root, space,
                    f"{suite.name}-tune")


def _eligible(suite: Suite) -> list[str]:
    source = DATASETS.get(suite.dataset.name)
    job = expand(suite.model_copy(update={"tune": None}))[0]
    return eligible_layers(job, build_model(job, source.input_shape, source.num_classes))


def _distribution(key: str, dim: Dimension) -> optuna.distributions.BaseDistribution:
    if dim.choices is not None:
        return optuna.distributions.CategoricalDistribution(dim.choices)
    if dim.integer:
        return optuna.distributions.IntDistribution(int(dim.low), int(dim.high), log=dim.log)
    return optuna.distributions.FloatDistribution(dim.low, dim.high, log=dim.log)


def _corner(dist: optuna.distributions.BaseDistribution, end: int) -> Any:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return dist.choices[end]
    return dist.low if end == 0 else dist.high


def trial_job(suite: Suite, config: dict[str, Any]) -> Job:
    """The job a trial's settings make: the suite's data, model and schedule, the tune method with
    the searched parameters, the searched budget, the tune seed. Validated like any suite."""
    spec = suite.tune
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
    data = suite.model_dump(mode="json", exclude={"tune": True, "dataset": {"fingerprint"}})
    data.update(methods=[method], seeds=[spec.seed])
    data["budgets"] = [float(config["budget"])] if "budget" in config else suite.budgets[:1]
    try:
        derived = Suite.model_validate(data)
    except ValidationError as exc:
        raise ValueError(first_error(exc)) from None
    return expand(with_fingerprint(derived, suite.dataset.fingerprint))[0]


def trial_identity(job: Job, trial_id: str) -> Job:
    """The job of one trial: a sampler may suggest the same settings twice, and two trials must
    not share a working folder, a results row or an MLflow run."""
    return dataclasses.replace(job, key=f"{job.key}-{trial_id}")


def _execute_trial(config: dict[str, Any], suite: Suite, data_root: str | None,
                   jobs_dir: str, start_state: bytes | None) -> None:
    """A Ray Tune function trainable: one trial is one job, reported once when it ends; it starts
    from the shared pre-training's weights (``start_state``) like every job of the suite."""
    job = trial_identity(trial_job(suite, config), tune.get_context().get_trial_id())
    ctx = RunContext(job=job, data_root=Path(data_root) if data_root else None,
                     workdir=Path(jobs_dir) / job.key, executor=RayExecutor(),
                     start_state=start_state)
    started = time.time()
    result = run_job(ctx)
    finished = time.time()
    bad = {k: result.metrics.get(k) for k in ("accuracy", "flops_pct")
           if not isinstance(result.metrics.get(k), (int, float))
           or not math.isfinite(result.metrics[k])}
    if bad:  # Optuna would drop the trial while we recorded it as fine
        raise ValueError(f"{job.label}: the job measured no finite {bad}")
    tune.report({
        "accuracy": result.metrics["accuracy"],
        "flops_pct": result.metrics["flops_pct"],
        "job_seconds": finished - started,
        "job_started_at": started,
        "job_finished_at": finished,
        "job_metrics": json.dumps(result.metrics),
        "job_config": json.dumps(result.config),
    })


class _StudySearch(OptunaSearch):
    """OptunaSearch that also hands Optuna each trial's FLOPs % (a user attribute, and for the
    constrained objective an Optuna 5 constraint, feasible when <= 0) before its result."""

    def __init__(self, *args: Any, max_flops: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_flops = max_flops

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        trial = self._ot_trials.get(trial_id)
        if trial is not None and result and "flops_pct" in result:
            trial.set_user_attr("flops_pct", result["flops_pct"])
            if self._max_flops is not None:
                trial.set_constraint("flops_pct", result["flops_pct"] - self._max_flops)
        super().on_trial_complete(trial_id, result, error)


def _search(plan: TunePlan, trials_so_far: int) -> OptunaSearch:
    """The sampler is seeded by the tune seed and the study's length: a continued study is
    reproducible and does not replay the random start of the invocation before it."""
    spec = plan.spec
    samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
                "nsga2": optuna.samplers.NSGAIISampler}
    common = dict(sampler=samplers[spec.sampler](seed=spec.seed * 100_003 + trials_so_far),
                  study_name=plan.study_name, storage=plan.storage())
    if spec.objective == "pareto":
        return _StudySearch(plan.space, metric=["accuracy", "flops_pct"], mode=["max", "min"],
                            **common)
    return _StudySearch(plan.space, metric="accuracy", mode="max", max_flops=spec.max_flops,
                        **common)


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
    if not sweep:
        return study
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        log.warning("trial %d was left running by an earlier driver: marked failed", trial.number)
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    return study


def run_tune(plan: TunePlan, options: RunOptions, progress: Progress | None = None) -> TuneRun:
    """Run or continue the study, holding the results folder's lock (one driver writes it)."""
    with ResultsLock(options.results):
        remove_partial_files(options.results)
        return _run_tune_locked(plan, options, progress or SilentProgress())


def _run_tune_locked(plan: TunePlan, options: RunOptions, progress: Progress) -> TuneRun:
    spec = plan.spec
    study = open_study(plan)
    finished = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    remaining = max(0, spec.trials - finished)
    run = TuneRun(plan)
    table = ResultsTable.open(plan.folder / "results.parquet")
    if remaining:
        check_tracking_uri(options.tracking_uri or default_tracking_uri(options.results))
        tracker = Tracker(options.tracking_uri or default_tracking_uri(options.results),
                          f"{plan.suite.name}-tune", options.results / "mlartifacts")
        tracker.start(f"{plan.study_name} {time.strftime('%Y-%m-%d %H:%M:%S')}", {
            "study": plan.study_name, "objective": spec.objective, "sampler": spec.sampler,
            "method": spec.method, "trials_before": str(finished), "trials_to_run": str(remaining),
        })
        try:
            status = _fit(plan, options, study, remaining, run, tracker, table, progress)
        except BaseException as exc:
            tracker.abandon("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
            raise
    study = open_study(plan, sweep=False)
    run.trials = trial_rows(study, spec)
    run.front = [t for t in run.trials if t["front"]]
    run.files = write_outputs(run)
    if remaining:
        tracker.finish(status, {
            "trials_complete": sum(t["state"] == "COMPLETE" for t in run.trials),
            "wall_seconds": run.wall_seconds,
            **({"platform_overhead": run.overhead} if run.overhead is not None else {}),
        }, run.files + [table.path])
    return run


def _fit(plan: TunePlan, options: RunOptions, study: optuna.Study, remaining: int, run: TuneRun,
         tracker: Tracker, table: ResultsTable, progress: Progress) -> str:
    """Run ``remaining`` trials on Ray Tune; the MLflow status of the invocation."""
    spec = plan.spec
    job = trial_job(plan.suite, {k: _corner(d, 0) for k, d in plan.space.items()})
    started_ray = connect_for([job] + ([job.pretrain] if job.pretrain else []), options.address,
                              wait_timeout=options.wait_timeout, verbose=options.verbose,
                              note=progress.note)
    try:
        run.parallel = min(remaining, spec.parallel or options.max_parallel or _capacity(job))
        progress.begin(remaining, study_length := len(study.trials))
        recorder = _Recorder(plan, tracker, table, run, progress)
        # Every trial of a seed starts from the suite's shared pre-training: run once, up front.
        start_state = None if job.pretrain is None else pretrained_weights(
            job.pretrain, options, plan.data_root, recorder_of_stages(options.results, tracker, table))
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 below then means quiet
        trainable = tune.with_resources(
            tune.with_parameters(_execute_trial, suite=plan.suite,
                                 data_root=str(plan.data_root) if plan.data_root else None,
                                 jobs_dir=str(plan.folder / "jobs"), start_state=start_state),
            {"cpu": job.resources.cpus, "gpu": job.resources.gpus})
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=_search(plan, study_length),
                                        num_samples=remaining,
                                        max_concurrent_trials=run.parallel),
            run_config=tune.RunConfig(
                name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}",
                storage_path=str((plan.folder / "ray").resolve()), verbose=0,
                callbacks=[recorder],
                failure_config=tune.FailureConfig(max_failures=options.retries)),
        )
        start = time.perf_counter()
        try:
            grid = tuner.fit()
        finally:
            run.wall_seconds = time.perf_counter() - start
        return "FAILED" if grid.errors else "FINISHED"
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def _capacity(job: Job) -> int:
    import ray

    resources = ray.cluster_resources()
    fits = math.floor(resources.get("CPU", 1) / job.resources.cpus)
    if job.resources.gpus:
        fits = min(fits, math.floor(resources.get("GPU", 0) / job.resources.gpus))
    return max(1, fits)


class _Recorder(tune.Callback):
    """On the driver: each finished trial becomes an MLflow child run and a results row as it
    ends, so a killed driver loses nothing that finished."""

    def __init__(self, plan: TunePlan, tracker: Tracker, table: ResultsTable, run: TuneRun,
                 progress: Progress) -> None:
        self.plan, self.tracker, self.table = plan, tracker, table
        self.run, self.progress = run, progress
        self.failed = 0

    def __getstate__(self) -> dict:
        """Tune pickles its callbacks into an experiment snapshot; this one works only live, on
        the driver, so the snapshot keeps none of its clients, tables and terminal."""
        return {}

    def _record(self, outcome: JobOutcome) -> None:
        self.table.record(result_row(outcome, self.tracker.log_job(outcome)))
        if outcome.status == "ok":
            self.run.ran.append(outcome)
        self.progress.update(len(self.run.ran), 0, self.failed)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        r = trial.last_result
        if not r or "accuracy" not in r:
            return
        result = Result(metrics=json.loads(r["job_metrics"]), config=json.loads(r["job_config"]))
        self._record(JobOutcome(
            job=trial_identity(trial_job(self.plan.suite, trial.config), trial.trial_id),
            status="ok", result=result,
            started_at=r["job_started_at"], finished_at=r["job_finished_at"],
            wall_seconds=r["job_seconds"], attempts=trial.num_failures + 1))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.failed += 1
        try:
            job = trial_identity(trial_job(self.plan.suite, trial.config), trial.trial_id)
        except ValueError as exc:  # settings no job can have: the trial failed before it ran
            log.error("trial %s failed: %s", trial.trial_id, exc)
            return
        now = time.time()
        self._record(JobOutcome(
            job=job, status="failed", result=None, started_at=now, finished_at=now,
            wall_seconds=0.0, attempts=trial.num_failures,
            error=f"trial failed; Ray Tune's error file: {trial.error_file}"))


def trial_rows(study: optuna.Study, spec: TuneSpec) -> list[dict[str, Any]]:
    """One row per trial of the study, the front (Pareto, or the best feasible) marked."""
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    if spec.objective == "pareto":
        front = {t.number for t in study.best_trials}
    else:
        feasible = [t for t in complete if _feasible(t)]
        front = {max(feasible, key=lambda t: t.values[0]).number} if feasible else set()
    rows = []
    for t in study.trials:
        values = t.values or []
        flops = values[1] if len(values) > 1 else t.user_attrs.get("flops_pct")
        rows.append({
            "number": t.number, "state": t.state.name,
            "accuracy": values[0] if values else None, "flops_pct": flops,
            "feasible": None if spec.objective == "pareto" or not t.constraints
            else _feasible(t),
            "front": t.number in front, "params": json.dumps(t.params, sort_keys=True),
        })
    return rows


def _feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """Optuna 5 keeps constraints by name; a trial is feasible when every one is <= 0."""
    return all(v <= 0 for v in (trial.constraints or {}).values())


TRIAL_SCHEMA = pa.schema([("number", pa.int64()), ("state", pa.string()),
                          ("accuracy", pa.float64()), ("flops_pct", pa.float64()),
                          ("feasible", pa.bool_()), ("front", pa.bool_()), ("params", pa.string())])


def write_outputs(run: TuneRun) -> list[Path]:
    """trials.parquet, front.csv / front.md and front.png in the tune folder."""
    folder = run.plan.folder
    folder.mkdir(parents=True, exist_ok=True)
    trials = folder / "trials.parquet"
    pq.write_table(pa.Table.from_pylist(run.trials, schema=TRIAL_SCHEMA), trials)
    front = sorted(run.front, key=lambda t: t["flops_pct"] or 0)
    header = "number,accuracy,flops_pct,params"
    csv_path = folder / "front.csv"
    csv_path.write_text("\n".join([header] + [
        f"{t['number']},{t['accuracy']},{t['flops_pct']},\"{t['params'].replace(chr(34), chr(39))}\""
        for t in front]) + "\n")
    title = ("Pareto front" if run.plan.spec.objective == "pareto"
             else f"best trial with FLOPs <= {run.plan.spec.max_flops:g}%")
    md = [f"## {run.plan.study_name}: {title}", "", "| Trial | Acc. (%) | FLOPs (%) | Settings |",
          "|---:|---:|---:|---|"]
    md += [f"| {t['number']} | {t['accuracy']:.2f} | {t['flops_pct']:.2f} | `{t['params']}` |"
           for t in front]
    md_path = folder / "front.md"
    md_path.write_text("\n".join(md) + "\n")
    return [trials, csv_path, md_path, plot_front(run, folder / "front.png")]


def plot_front(run: TuneRun, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in run.trials if t["state"] == "COMPLETE" and t["flops_pct"] is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    others = [t for t in done if not t["front"]]
    ax.scatter([t["flops_pct"] for t in others], [t["accuracy"] for t in others], s=18,
               color="grey", label="trials")
    front = sorted((t for t in done if t["front"]), key=lambda t: t["flops_pct"])
    ax.plot([t["flops_pct"] for t in front], [t["accuracy"] for t in front], "o-", color="C3",
            label="Pareto front" if run.plan.spec.objective == "pareto" else "best feasible")
    if run.plan.spec.objective == "constrained":
        ax.axvline(run.plan.spec.max_flops, linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("FLOPs remaining (%)")
    ax.set_ylabel("Test accuracy (%)")
    ax.set_title(f"{run.plan.study_name}: {len(done)} trials")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
