"""One invocation of a suite, end to end: plan, resume, run on Ray, track, rank.

Everything a user can get wrong (suite, filters, data) is checked before anything is written, so a
bad invocation leaves the results folder as it was; what can only be checked on the cluster (the
tracking store, where jobs fit) is checked before any result or MLflow run is written, with the
results folder's lock held (its lock file is all a refused run leaves).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import leaderboard
from .errors import DataNotFound, UserError
from .jobs import Job, expand, select, stages, with_fingerprint
from .pretraining import WEIGHTS, stage_folder, weights_file
from .registry import DATASETS, METHODS
from .lock import driving
from .outcome import JobOutcome
from .results import ResultsTable, atomic_write, recorded_in_folder
from .placement import connect_for
from .runtime import Progress, RunReport, run_jobs
from .signals import sigterm_as_interrupt
from .standings import protocol, ranking
from .suite import DatasetSpec, Suite
from .suite_values import check_model_builds
from .mlflow_store import check_tracking_uri
from .tracking import Tracker, default_tracking_uri

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
    wait_timeout: float | None = None  # seconds an existing cluster gets to add a node that fits

    @property
    def tracking_store(self) -> str:
        """The MLflow tracking URI: ``tracking_uri``, else the results folder's own store."""
        return self.tracking_uri or default_tracking_uri(self.results)


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


def make_plan(suite: Suite, options: RunOptions) -> Plan:
    """Expand, filter and check the suite; raises ``UserError`` before anything is written."""
    check_model(suite)
    if options.download:
        suite = suite.model_copy(update={"dataset": suite.dataset.model_copy(update={"download": True})})
    root = data_root(suite, options)
    folder = options.results / suite.name
    suite = fingerprinted(suite, root)
    jobs = expand(suite)
    selected = select(jobs, options.methods, options.budgets, options.seeds)
    checked = set()
    for job in selected:  # once per method and budget: seeds do not change what is checked
        if (job.method_label, job.budget) not in checked:
            checked.add((job.method_label, job.budget))
            try:
                METHODS.get(job.method).check(job, root)
            except UserError as exc:
                raise UserError(f"{suite.source}: {exc}") from None
    plan = Plan(suite, stages(jobs), stages(selected), [], folder, options.results, root)
    resume(plan)
    return plan


def check_model(suite: Suite) -> None:
    """The suite's model builds with its options, within the sizes a driver can build."""
    if suite.model is None:
        return
    try:
        check_model_builds(suite.model, suite.dataset.name)
    except ValueError as exc:
        raise UserError(f"{suite.source}: {exc}") from None


def data_root(suite: Suite, options: RunOptions) -> Path | None:
    """``--data-root`` (or ``$BINARENA_DATA``), else the suite's ``dataset.root``."""
    return options.data_root or (Path(suite.dataset.root).expanduser() if suite.dataset.root else None)


def fingerprinted(suite: Suite, root: Path | None) -> Suite:
    """The suite with the fingerprints of its data and of its pre-training's own data, if any."""
    source = suite.pretrain_dataset
    return with_fingerprint(suite, data_fingerprint(suite, root),
                            None if source is None else data_fingerprint(suite, root, source))


def data_fingerprint(suite: Suite, root: Path | None, spec: DatasetSpec | None = None) -> str:
    """Check the suite's data, or ``spec`` (``UserError`` naming the file if it could not be
    used) and digest its content, downloading it here first where the suite allows and it is
    missing."""
    spec = spec or suite.dataset
    source = DATASETS.get(spec.name)
    source.check(spec, root)
    try:
        return source.fingerprint(spec, root)
    except DataNotFound:
        if not spec.download:
            raise
        source.load(spec, root)  # fetches what is missing, once, before any job needs it
        return source.fingerprint(spec, root)


def resume(plan: Plan) -> None:
    """Set what is left to run: the selected stages not recorded in the results folder (by this
    suite, or by another that ran the same key)."""
    suite = plan.suite
    done = ResultsTable.open(plan.folder / "results.parquet").done_keys()
    reused = recorded_in_folder(plan.results, [j.key for j in plan.selected if j.key not in done],
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


def run_suite(plan: Plan, options: RunOptions, progress: Progress | None = None) -> SuiteRun:
    """Run what the plan has left to run, holding the results folder's lock: what was recorded
    is read again under the lock, so a driver that finished meanwhile is not repeated. SIGTERM
    stops it like Ctrl-C from start to end."""
    with sigterm_as_interrupt(), driving(plan.results):
        resume(plan)
        with cluster_for(plan.to_run, options, progress):
            return _record_and_run(plan, options, progress)


@contextmanager
def cluster_for(jobs: Sequence[Job], options: RunOptions, progress: Progress | None
                ) -> Iterator[None]:
    """The tracking store usable, Ray up and every job placeable on it, all before anything is
    written (a job no node can hold is refused with one line); Ray shut down again on the way out
    if we started it. Nothing to run: nothing checked, no Ray."""
    if jobs:
        check_tracking_uri(options.tracking_store)  # no Ray started for a store that cannot be used
    started_ray = bool(jobs) and connect_for(
        jobs, options.address, wait_timeout=options.wait_timeout, verbose=options.verbose,
        note=progress.note if progress is not None else None)
    try:
        yield
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def _record_and_run(plan: Plan, options: RunOptions, progress: Progress | None) -> SuiteRun:
    run = SuiteRun(plan)
    table = ResultsTable.open(plan.folder / "results.parquet")
    if plan.reused:
        table.record(*plan.reused)
        log.info("%d jobs reused from other suites' results: %s", len(plan.reused),
                 ", ".join(sorted({r["suite"] for r in plan.reused})))
    if progress is not None and not plan.to_run:
        progress.begin(0, plan.skipped)
    if plan.to_run:
        _run_tracked(run, options, table, progress)
    else:
        _write_leaderboard(run, table)
    return run


def _run_tracked(run: SuiteRun, options: RunOptions, table: ResultsTable,
                 progress: Progress | None) -> None:
    """The stages on Ray, each recorded as it ends, then the leaderboard; the MLflow parent run
    says how it ended (KILLED if the driver is stopped on the way)."""
    plan = run.plan
    tracker = Tracker(options.tracking_store, plan.suite.name, options.results / "mlartifacts")
    tracker.start(f"{plan.suite.name} {time.strftime('%Y-%m-%d %H:%M:%S')}", {
        "suite": plan.suite.name,
        "jobs_selected": str(len(plan.selected)),
        "jobs_to_run": str(len(plan.to_run)),
        "filters": f"methods={options.methods} budgets={options.budgets} seeds={options.seeds}",
        "address": options.address or "embedded",
    })
    try:
        record = recorder(plan.results, tracker, table)
        recorded = {j.pretrain.key for j in plan.to_run if j.pretrain is not None} - {
            j.key for j in plan.to_run}  # each read once, whatever the number of its jobs
        start_weights = {key: weights_file(plan.results, key).read_bytes() for key in recorded}
        if progress is not None:
            progress.begin(len(plan.to_run), plan.skipped)
        run.report = report = run_jobs(
            plan.to_run, workdir=plan.workdir, data_root=plan.data_root, on_outcome=record,
            start_weights=start_weights, max_parallel=options.max_parallel,
            retries=options.retries, progress=progress, on_start=tracker.start_job,
            on_epoch=tracker.log_epoch,
        )
        _write_leaderboard(run, table)
    except BaseException:
        tracker.abandon("KILLED")
        raise
    status = "KILLED" if report.interrupted else "FAILED" if report.failed else "FINISHED"
    tracker.finish(status, {
        "jobs_ok": sum(o.status == "ok" for o in report.outcomes),
        "jobs_failed": len(report.failed),
        "jobs_skipped": plan.skipped,
    }, run.files + [table.path])


def _write_leaderboard(run: SuiteRun, table: ResultsTable) -> None:
    run.entries = ranking(table, run.plan.jobs, run.plan.suite.name, run.plan.suite.baseline)
    run.files = leaderboard.write(run.entries, run.plan.folder,
                                  f"{run.plan.suite.name} leaderboard", protocol(run.plan.suite))


def recorder(results: Path, tracker: Tracker, table: ResultsTable) -> Callable[[JobOutcome], None]:
    """What the driver does with each finished stage: a pre-training's weights are stored once in
    the results folder (before its row, so a row always has them), then the MLflow run and the row."""
    def record(outcome: JobOutcome) -> None:
        if outcome.job.is_pretrain and outcome.status == "ok":
            assert outcome.result is not None  # an "ok" outcome holds its result
            atomic_write(weights_file(results, outcome.job.key), outcome.result.artifacts[WEIGHTS])
        table.record(outcome.row(tracker.log_job(outcome)))
    return record
