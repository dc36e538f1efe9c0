"""One invocation of a suite, end to end: plan, resume, run on Ray, track, rank.

Everything a user can get wrong (suite, filters, data) is checked before anything is written, so a
bad invocation leaves the results folder as it was.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path

from binarena import leaderboard
from binarena.errors import UserError
from binarena.jobs import Job, expand, select, stages
from binarena.pretraining import WEIGHTS, stage_folder, weights_file
from binarena.registry import DATASETS, METHODS
from binarena.results import ResultsTable, atomic_write, recorded_in_folder
from binarena.runtime import JobOutcome, Progress, RunReport, ensure_ray, run_jobs
from binarena.suite import Suite
from binarena.tracking import Tracker, binarena_version, default_tracking_uri

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    results: Path = Path("binarena-results")
    address: str | None = None  # Ray cluster; None starts an embedded local Ray
    tracking_uri: str | None = None  # default: sqlite:///<results>/mlflow.db
    data_root: Path | None = None  # wins over the suite's dataset.root
    methods: list[str] | None = None
    budgets: list[float] | None = None
    seeds: list[int] | None = None
    max_parallel: int | None = None
    retries: int = 1
    download: bool = False
    verbose: bool = False


@dataclass
class Plan:
    suite: Suite
    jobs: list[Job]  # the whole suite, each job after the pre-training it starts from
    selected: list[Job]  # after the command-line filters (with their pre-trainings)
    to_run: list[Job]  # selected and not yet recorded (pre-trainings only where a job needs them)
    folder: Path  # <results>/<suite>
    results: Path  # the results folder: pre-trainings live there, shared by its suites
    data_root: Path | None
    reused: list[dict] = field(default_factory=list)  # rows other suites recorded for our stages

    @property
    def skipped(self) -> int:
        return len(self.selected) - len(self.to_run)

    def workdir(self, job: Job) -> Path:
        """A stage's working folder (checkpoints), kept across retries and re-runs."""
        if job.is_pretrain:
            return stage_folder(self.results, job.key)
        return self.folder / "jobs" / job.key



@dataclass
class SuiteRun:
    plan: Plan
    report: RunReport = field(default_factory=RunReport)
    entries: list[leaderboard.Entry] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def make_plan(suite: Suite, options: RunOptions, check_data: bool = True) -> Plan:
    """Expand, filter and check the suite; raises ``UserError`` before anything is written."""
    if options.download:
        suite = suite.model_copy(update={"dataset": suite.dataset.model_copy(update={"download": True})})
    jobs = expand(suite)
    selected = select(jobs, options.methods, options.budgets, options.seeds)
    root = options.data_root or (Path(suite.dataset.root).expanduser() if suite.dataset.root else None)
    if check_data:
        DATASETS.get(suite.dataset.name).check(suite.dataset, root)
        checked = set()
        for job in selected:  # once per method and budget: seeds do not change what is checked
            if (job.method_label, job.budget) not in checked:
                checked.add((job.method_label, job.budget))
                try:
                    METHODS.get(job.method).check(job, root)
                except UserError as exc:
                    raise UserError(f"{suite.source}: {exc}") from None
    folder = options.results / suite.name
    plan = Plan(suite, stages(jobs), stages(selected), [], folder, options.results, root)
    done = ResultsTable.open(folder / "results.parquet").done_keys()
    reused = recorded_in_folder(options.results, [j.key for j in plan.selected if j.key not in done],
                                suite.name)
    labels = {j.key: j.method_label for j in plan.selected}
    for key, row in reused.items():  # ranked under this suite's name for the method
        reused[key] = {**row, "method_label": labels[key]}
    recorded = done | set(reused)
    # A pre-training counts as recorded only while its weights are there to start from.
    recorded -= {j.key for j in plan.selected
                 if j.is_pretrain and not weights_file(plan.results, j.key).is_file()}
    jobs_to_run = [j for j in plan.selected if not j.is_pretrain and j.key not in recorded]
    needed = {j.pretrain.key for j in jobs_to_run if j.pretrain is not None}
    plan.to_run = [j for j in plan.selected if j.key not in recorded
                   and (not j.is_pretrain or j.key in needed)]
    plan.reused = [row for key, row in reused.items() if key in recorded]
    return plan


def run_suite(plan: Plan, options: RunOptions, progress: Progress | None = None) -> SuiteRun:
    run = SuiteRun(plan)
    table = ResultsTable.open(plan.folder / "results.parquet")
    if plan.reused:
        table.record(*plan.reused)
        log.info("%d jobs reused from other suites' results: %s", len(plan.reused),
                 ", ".join(sorted({r["suite"] for r in plan.reused})))
    if progress is not None and not plan.to_run:
        progress.begin(0, plan.skipped)
    if plan.to_run:
        tracker = Tracker(options.tracking_uri or default_tracking_uri(options.results),
                          plan.suite.name, options.results / "mlartifacts")
        tracker.start(f"{plan.suite.name} {time.strftime('%Y-%m-%d %H:%M:%S')}", {
            "suite": plan.suite.name,
            "jobs_selected": str(len(plan.selected)),
            "jobs_to_run": str(len(plan.to_run)),
            "filters": f"methods={options.methods} budgets={options.budgets} seeds={options.seeds}",
            "address": options.address or "embedded",
        })

        record = recorder(plan.results, tracker, table)
        recorded = {j.pretrain.key for j in plan.to_run if j.pretrain is not None} - {
            j.key for j in plan.to_run}  # each read once, whatever the number of its jobs
        start_weights = {key: weights_file(plan.results, key).read_bytes() for key in recorded}

        started_ray = ensure_ray(options.address, verbose=options.verbose)
        if progress is not None:
            progress.begin(len(plan.to_run), plan.skipped)
        try:
            run.report = run_jobs(
                plan.to_run, workdir=plan.workdir, data_root=plan.data_root, on_outcome=record,
                start_weights=start_weights, max_parallel=options.max_parallel,
                retries=options.retries, progress=progress,
            )
        finally:
            if started_ray:
                import ray

                ray.shutdown()
    run.entries = ranking(plan, table)
    run.files = leaderboard.write(run.entries, plan.folder, f"{plan.suite.name} leaderboard",
                                  protocol(plan.suite))
    if plan.to_run:
        status = "KILLED" if run.report.interrupted else "FAILED" if run.report.failed else "FINISHED"
        tracker.finish(status, {
            "jobs_ok": sum(o.status == "ok" for o in run.report.outcomes),
            "jobs_failed": len(run.report.failed),
            "jobs_skipped": plan.skipped,
        }, run.files + [table.path])
    return run


def recorder(results: Path, tracker: Tracker, table: ResultsTable) -> Callable[[JobOutcome], None]:
    """What the driver does with each finished stage: a pre-training's weights are stored once in
    the results folder (before its row, so a row always has them), then the MLflow run and the row."""
    def record(outcome: JobOutcome) -> None:
        if outcome.job.is_pretrain and outcome.status == "ok":
            atomic_write(weights_file(results, outcome.job.key), outcome.result.artifacts[WEIGHTS])
        table.record(result_row(outcome, tracker.log_job(outcome)))
    return record


def pretrained_weights(stage: Job, options: RunOptions, data_root: Path | None,
                       record: Callable[[JobOutcome], None], progress: Progress | None = None,
                       ) -> bytes:
    """The weights of a pre-training stage, run now on the connected Ray unless the results
    folder holds them already (for drivers that run jobs outside ``run_jobs``: ``binarena tune``)."""
    path = weights_file(options.results, stage.key)
    if not path.is_file():
        report = run_jobs([stage], workdir=lambda job: stage_folder(options.results, job.key),
                          data_root=data_root, on_outcome=record, max_parallel=1,
                          retries=options.retries, progress=progress)
        if report.interrupted:
            raise KeyboardInterrupt
        if report.failed:
            raise RuntimeError(f"{stage.label} failed: {report.failed[0].error}")
    return path.read_bytes()


def ranking(plan: Plan, table: ResultsTable | None = None) -> list[leaderboard.Entry]:
    """The leaderboard of what is recorded for the suite as it is now defined."""
    table = table or ResultsTable.open(plan.folder / "results.parquet")
    keys = {job.key for job in plan.jobs}
    stale = len(set(table.rows) - keys)
    if stale:  # never mixed in: another definition of the suite, or an older protocol's keys
        log.warning("%d rows of %s were recorded under another definition of suite %s or an "
                    "older binarena protocol; they stay in the table but are not ranked",
                    stale, table.path, plan.suite.name)
    return leaderboard.build(table.to_pylist(), keys)


def protocol(suite: Suite) -> str:
    """One line on how the rows of the suite's leaderboard were made, for every output of it."""
    train = suite.training
    if not any(j.pretrain for j in expand(suite)):
        return f"every method trains from the seed's initialisation for {train.epochs} epochs"
    pre = suite.pretraining
    scratch = sorted({m.display_name for m in suite.methods if m.start == "scratch"})
    note = f"; from scratch: {', '.join(scratch)}" if scratch else ""
    return (f"every method of a seed starts from one shared full-precision pre-training "
            f"({pre.epochs} epochs), then trains its choice for {train.epochs} epochs{note}; "
            f"{len(suite.seeds)} seeds, differences paired by seed")


def result_row(outcome: JobOutcome, run_id: str) -> dict:
    """The results-table row of a job's outcome and its MLflow run."""
    job, result = outcome.job, outcome.result
    metrics = result.metrics if result else {}

    def at(t: float) -> datetime:
        return datetime.fromtimestamp(t, tz=timezone.utc)

    return {
        "key": job.key, "kind": job.kind, "suite": job.suite, "method": job.method,
        "method_label": job.method_label,
        "budget": job.budget, "seed": job.seed, "status": outcome.status,
        "accuracy": metrics.get("accuracy"), "flops": metrics.get("flops"),
        "flops_pct": metrics.get("flops_pct"), "wall_seconds": outcome.wall_seconds,
        "attempts": outcome.attempts, "metrics": json.dumps(metrics),
        "config": json.dumps(result.config if result else {}),
        "params": json.dumps(job.flat_params()), "error": outcome.error,
        "traceback": outcome.traceback, "mlflow_run_id": run_id,
        "started_at": at(outcome.started_at), "finished_at": at(outcome.finished_at),
        "binarena_version": binarena_version(),
    }
