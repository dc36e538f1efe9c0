"""The ``binarena`` command. The only module that prints; everything else logs."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from . import leaderboard
from .cli_lists import FORMATS
from .cli_lists import show as show_list
from .errors import UserError
from .preflight import refuse_early
from .eta import Eta, clock_text
from .signals import sigterm_as_interrupt, terminated
from .terminal import Column, print_table
from .words import counted
from .version import binarena_version

console = Console()
errors = Console(stderr=True, soft_wrap=True)

EXIT_FAILED_JOBS, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143
# the one line for Ctrl-C and SIGTERM alike, wherever they land: only the exit code tells them apart
INTERRUPTED = "interrupted: finished jobs are recorded; run the same command again to finish"


def _csv(kind: Callable[[str], object]) -> Callable[[str], list]:
    def parse(text: str) -> list:
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a comma-separated list of {kind.__name__}") from None

    parse.__name__ = f"list of {kind.__name__}"
    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="binarena", description="Search, train and benchmark binarized neural networks on Ray."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the platform does")
    parser.add_argument("--version", action="version", version=f"binarena {binarena_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a suite (skipping jobs already recorded)",
                              description="Run every job of a suite on Ray, record it in MLflow and "
                              "results.parquet, and write the leaderboard. Re-running skips what is recorded.")
    run.add_argument("suite", metavar="SUITE", help="a suite YAML file, or the name of a bundled suite")
    _execution_options(run)
    run.add_argument("--download", action="store_true", help="let torchvision download missing datasets")
    run.add_argument("--methods", type=_csv(str), help="only these methods (comma-separated names)")
    run.add_argument("--budgets", type=_csv(float),
                     help="only these budgets (references without a budget always run)")
    run.add_argument("--seeds", type=_csv(int), help="only these seeds")
    run.add_argument("--max-parallel", type=int, help="jobs at once (default: what the cluster holds)")
    run.add_argument("--retries", type=int, default=1, help="attempts after a failure (default: 1)")
    run.add_argument("--dry-run", action="store_true",
                     help="print the job plan and its cost per stage (training steps; the time, "
                     "once calibrated) and run nothing")
    run.set_defaults(handler=_run)

    calibrate = commands.add_parser(
        "calibrate", help="time a training step of the suite's model, for the dry run's estimate",
        description="Time training steps of the suite's model on this machine (synthetic data of "
        "its shape) and store them for the estimate of `binarena run SUITE --dry-run`.")
    calibrate.add_argument("suite", metavar="SUITE",
                           help="a suite YAML file, or the name of a bundled suite")
    calibrate.add_argument("--device", choices=["cpu", "cuda"],
                           help="time the stages that run there (default: cuda if the suite's "
                           "jobs reserve GPUs, else cpu)")
    calibrate.add_argument("--steps", type=int, default=20,
                           help="training steps timed per model and batch (default: 20, at "
                           f"most {MAX_CALIBRATION_STEPS})")
    calibrate.set_defaults(handler=_calibrate)

    tune = commands.add_parser(
        "tune", help="run or continue the suite's Optuna study (its tune section)",
        description="Search what the suite's tune section declares (a method's parameters, the "
        "budget, or the per-layer mask) with an Optuna study whose trials are jobs, run in "
        "parallel on Ray like those of `binarena run`. The study is stored in the results folder; "
        "running again continues it.")
    tune.add_argument("suite", metavar="SUITE", help="a suite YAML file, or the name of a bundled suite")
    _execution_options(tune)
    tune.add_argument("--trials", type=int, help="trials the study should hold in the end (default: the suite's)")
    tune.add_argument("--parallel", type=int, help="trials at once (default: the suite's, else what the cluster holds)")
    tune.add_argument("--storage", help="an Optuna storage URL, or 'journal' (default: the suite's, "
                      "else SQLite in <results>/<suite>/tune/)")
    tune.add_argument("--retries", type=int, default=1, help="attempts after a trial fails (default: 1)")
    tune.set_defaults(handler=_tune)

    board = commands.add_parser("leaderboard", help="print the leaderboard of what is recorded",
                                description="Print the leaderboard of the jobs recorded for a suite.")
    board.add_argument("suite", metavar="SUITE", help="a suite YAML file, or a bundled suite name")
    _results_option(board)
    board.add_argument("--format", choices=["table", "csv", "markdown", "json"], default="table")
    board.set_defaults(handler=_leaderboard)

    for kind, what in (("suites", "the bundled suites"),
                       ("methods", "the methods, with their parameters and defaults"),
                       ("models", "the models, with their options and defaults"),
                       ("datasets", "the data sets: input shape, classes, where they are read")):
        listed = commands.add_parser(kind, help=f"list {what}", description=f"List {what}, one "
                                     "line each (plain lines when piped).")
        listed.add_argument("--format", choices=FORMATS, default="table",
                            help="table (fitted to the terminal; plain lines when piped), csv "
                            "or json")
        listed.set_defaults(handler=_list)

    summary = commands.add_parser("summary", help="per-layer parameters, MACs and FLOPs of a model",
                                  description="Build a registered model for a dataset's input shape, "
                                  "make the chosen layers binary and count its parameters, MACs and "
                                  "FLOPs layer by layer (MixBin's convention). Loads no data.")
    summary.add_argument("--model", required=True, help="a registered model, e.g. cresnet20")
    summary.add_argument("--dataset", required=True, help="a registered dataset, e.g. cifar100")
    summary.add_argument("--binary", default="all", metavar="all|none|LAYER,...",
                         help="binary layers: all (the model's eligible layers, default), none, "
                         "or a comma-separated list of layer names")
    summary.add_argument("--format", choices=["table", "json"], default="table")
    summary.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                         help="a model option (repeatable), VALUE read as YAML, e.g. width=0.5")
    summary.add_argument("--activation", default="binrelu", help="activation name (default: binrelu)")
    summary.set_defaults(handler=_summary)
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def _execution_options(parser: argparse.ArgumentParser) -> None:
    """Where results, the cluster, MLflow and the data are: shared by run and tune."""
    _results_option(parser)
    parser.add_argument("--address", help="Ray cluster address, e.g. 'auto' (default: start a local Ray)")
    parser.add_argument("--wait-timeout", type=_seconds, metavar="SECONDS",
                        help="on an existing cluster (--address), how long to wait for it to add "
                        "a node that can hold a job before refusing it (default: 600); a local "
                        "Ray refuses such a job at once")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<results>/mlflow.db)")
    parser.add_argument("--data-root", type=Path, default=os.environ.get("BINARENA_DATA") or None,
                        help="folder holding the datasets (default: $BINARENA_DATA, else the suite's dataset.root)")


def _results_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path,
                        default=Path(os.environ.get("BINARENA_RESULTS") or "binarena-results"),
                        help="results folder (default: $BINARENA_RESULTS or ./binarena-results)")


class RichProgress:
    """Jobs done / running / failed, moving with the running jobs' epochs, and the ETA from
    measured job and epoch times (``binarena.eta``), on the terminal."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(), TextColumn("{task.fields[eta]}"), console=errors,
        )
        self.task: TaskID | None = None
        self.sub: dict[str, Any] = {}  # job key -> its sub-task bar
        self.eta = Eta(0)

    def begin(self, total: int, skipped: int) -> None:
        if skipped:
            errors.print(f"{counted(skipped, 'job')} already recorded: skipped")
        if total:
            self.bar.start()
            self.task = self.bar.add_task("jobs", total=total, status="", eta="")
            self.eta = Eta(total)

    def update(self, done: int, running: int, failed: int) -> None:
        if self.task is not None:
            status = (f"[green]{done} done[/] [cyan]{running} running[/] [red]{failed} failed[/]")
            eta = f"ETA {clock_text(self.eta.remaining(done + failed, running))}"
            self.bar.update(self.task, completed=self.eta.completed(done + failed), status=status,
                            eta=eta)

    def start_job(self, job) -> None:
        self.eta.start(job.key)

    def subtasks(self, job, done: int, total: int, unit: str) -> None:
        if job.key not in self.sub:
            label = job.label if len(job.label) <= 40 else job.label[:39] + "…"
            self.sub[job.key] = self.bar.add_task(f"  {escape(label)}: {unit}", total=total,
                                                  status="", eta="")
        self.bar.update(self.sub[job.key], completed=done, total=total)
        if unit == "epochs":
            self.eta.epoch(job.key, done, total)

    def end_job(self, job, ok: bool) -> None:
        self.eta.end(job.key, ok)
        if job.key in self.sub:
            self.bar.remove_task(self.sub.pop(job.key))

    def note(self, message: str) -> None:
        self.bar.console.print(message, markup=False, highlight=False)

    def close(self) -> None:
        self.bar.stop()


def _run(args: argparse.Namespace) -> int:
    from .suite import load_suite

    _check_run_args(args)
    suite = load_suite(args.suite)  # bad input is refused before Ray, MLflow and torch load
    refuse_early(suite, args.data_root, download=args.download, methods=args.methods,
                 budgets=args.budgets, seeds=args.seeds)

    from .orchestrator import RunOptions, make_plan, run_suite
    from .standings import protocol

    # MLflow sets its own logger to INFO when imported (above) and announces migrations there.
    logging.getLogger("mlflow").setLevel(logging.INFO if args.verbose else logging.WARNING)

    options = RunOptions(
        results=args.results, address=args.address, tracking_uri=args.tracking_uri,
        data_root=args.data_root, methods=args.methods, budgets=args.budgets, seeds=args.seeds,
        max_parallel=args.max_parallel, retries=args.retries, download=args.download,
        verbose=args.verbose, wait_timeout=args.wait_timeout,
    )
    plan = make_plan(suite, options)
    if args.dry_run:
        _print_plan(plan)
        _print_cost(plan, options, args.suite)
        return 0
    progress = RichProgress()
    try:
        run = run_suite(plan, options, progress)
    finally:
        progress.close()
    _print_board(run.entries, f"{plan.suite.name}: leaderboard", protocol(plan.suite))
    for outcome in run.report.failed:
        errors.print(f"[red]failed[/] {escape(outcome.job.label)}: {escape(outcome.error or '')}")
    errors.print(f"results: {plan.folder}", markup=False, highlight=False)
    if run.report.interrupted:
        errors.print(INTERRUPTED)
        return EXIT_TERMINATED if run.report.terminated else EXIT_INTERRUPTED
    return EXIT_FAILED_JOBS if run.report.failed else 0


MAX_RETRIES = 100  # attempts after a failure; more would retry a broken job until killed
MAX_CALIBRATION_STEPS = 10_000  # a step is timed to a few per cent in tens; more only waits


def _calibrate(args: argparse.Namespace) -> int:
    from .suite import load_suite

    if not 1 <= args.steps <= MAX_CALIBRATION_STEPS:
        raise UserError(f"--steps: must be from 1 to {MAX_CALIBRATION_STEPS}")
    suite = load_suite(args.suite)
    from .calibration import Calibrations, job_device, measure, step_key
    from .jobs import expand, stages
    from .orchestrator import check_model
    from .registry import METHODS

    check_model(suite)
    trained = [job for job in stages(expand(suite)) if job.model is not None
               and (job.is_pretrain or METHODS.get(job.method).needs_model)]
    if not trained:
        raise UserError(f"{suite.source}: no stage trains a model: nothing to time")
    device = args.device or ("cuda" if any(j.resources.gpus for j in trained) else "cpu")
    mine = [job for job in trained if job_device(job) == device]
    if not mine:
        why = "none reserves a GPU" if device == "cuda" else "every one reserves a GPU"
        raise UserError(f"--device {device}: no stage of {suite.name} runs there ({why}: "
                        "resources.gpus)")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: torch sees no CUDA device on this machine")
    steps = {repr(step_key(job)): job for job in mine}  # one stage per distinct step
    store = Calibrations.load()
    for job in steps.values():
        found = measure(job, args.steps)
        store.add(found)
        console.print(f"{found.describe()}: {found.seconds * 1e3:.1f} ms per step "
                      f"({counted(found.steps, 'step')})", markup=False, highlight=False)
    console.print(f"stored in {store.save()}", markup=False, highlight=False, soft_wrap=True)
    return 0


def _check_run_args(args: argparse.Namespace) -> None:
    """What argparse cannot see: ranges, and a results folder that is not a file."""
    if args.max_parallel is not None and args.max_parallel < 1:
        raise UserError("--max-parallel: must be at least 1")
    if not 0 <= args.retries <= MAX_RETRIES:
        raise UserError(f"--retries: must be from 0 to {MAX_RETRIES}")
    if args.results.exists() and not args.results.is_dir():
        raise UserError(f"--results: {args.results} is a file, not a folder")


def _print_plan(plan) -> None:
    pending = {job.key for job in plan.to_run}
    rows = [[job.label, job.key, f"{job.resources.cpus:g}", f"{job.resources.gpus:g}",
             "to run" if job.key in pending else "recorded"] for job in plan.selected]
    print_table(console, f"{plan.suite.name}: {counted(len(plan.to_run), 'stage')} to run, "
                f"{plan.skipped} recorded",
                [Column("job", flex="fold"), Column("key"), Column("cpus", right=True),
                 Column("gpus", right=True), Column("state")], rows)


def _print_cost(plan, options, suite_ref: str) -> None:
    """Per stage left to run: what it trains and, with a calibrated step, its share of the wall
    time on the cluster ``--address`` names (joined to read its resources; nothing runs there),
    else on this machine."""
    from .calibration import Calibrations
    from .cost import cluster_capacity, local_capacity, parallelism, stage_costs

    jobs = plan.to_run
    if not jobs:
        return
    remote = options.address and options.address != "local"
    capacity = cluster_capacity(options.address) if remote else local_capacity(jobs)
    parallel = parallelism(jobs, options.max_parallel, capacity)
    calibrations = Calibrations.load()
    rows = stage_costs(jobs, parallel, calibrations.seconds)
    columns = [Column("stage", flex="fold"), Column("jobs", right=True),
               Column("epochs x images"), Column("fine-tunes", right=True),
               Column("steps", right=True), Column("time", right=True)]
    table = []
    for row in rows:
        epochs = _span(row.epochs, str)
        images = "all" if row.images is None else f"{row.images:,}"
        table.append([row.name, str(row.jobs),
                      "-" if row.epochs == (0, 0) else f"{epochs} x {images}",
                      "-" if row.finetunes == (0, 0) else _span(row.finetunes, _count),
                      "-" if row.steps in (None, (0, 0)) else _span(row.steps, _count),
                      _stage_time(row)])
    print_table(console, f"{plan.suite.name}: cost of what is left to run", columns, table)
    for line in _cost_notes(rows, calibrations, jobs, parallel, capacity, options):
        _line(line)
    if any(r.seconds is None and r.steps not in (None, (0, 0)) for r in rows):
        console.print(f"no calibration: run `binarena calibrate {suite_ref}`", markup=False,
                      highlight=False, soft_wrap=True)  # one line, to copy whole


def _stage_time(row) -> str:
    if row.steps is None or row.steps == (0, 0):
        return "-"
    if row.seconds is None:
        return "uncalibrated"
    return _span(row.seconds, _duration) + ("+" if row.other else "")


def _cost_notes(rows, calibrations, jobs, parallel: int, capacity: dict[str, float], options
                ) -> list[str]:
    """What the cost table leaves out or assumes, in lines that fit 80 columns."""
    lines = []
    if any(r.finetunes[0] != r.finetunes[1] or r.steps and r.steps[0] != r.steps[1] for r in rows):
        lines.append("a-b, <=b: fewest to most, as a search's length depends on what it finds")
    lines += [f"+ {r.name}: {other}" for r in rows for other in r.other]
    if any(r.images is None for r in rows):
        lines.append("all: the data set's size is known only from its files: no steps counted")
    shares = [r.seconds for r in rows if r.steps != (0, 0)]  # the rows that train
    if shares and all(r.steps is not None for r in rows) and None not in shares:
        total = (sum(s[0] for s in shares if s), sum(s[1] for s in shares if s))
        gpus = capacity["GPU"]
        devices = counted(capacity["CPU"], "CPU") + (f", {counted(gpus, 'GPU')}" if gpus else "")
        more = "+" if any(r.other for r in rows) else ""
        where = (f"the cluster at {options.address}" if options.address
                 and options.address != "local" else "this machine")
        lines.append(f"wall time {_span(total, _duration)}{more}: {counted(parallel, 'job')} at "
                     f"once on {where} ({devices})")
        used = {c.describe() for c in map(calibrations.find, jobs) if c is not None}
        lines += [f"step timed alone: {text}" for text in sorted(used)]
    return lines


def _span(span, fmt: Callable[[Any], str]) -> str:
    """``lo-hi`` (``<=hi`` from nothing, ``4-6 min`` in one unit), or one figure when both read
    the same."""
    lo, hi = fmt(span[0]), fmt(span[1])
    if lo == hi:
        return lo
    if not span[0]:
        return f"<={hi}"
    figure, _, unit = lo.partition(" ")
    return f"{figure}-{hi}" if unit and hi.endswith(f" {unit}") else f"{lo}-{hi}"


def _count(n: int) -> str:
    if n < 10_000:
        return f"{n:,}"
    return f"{n / 1e3:.0f}k" if n < 999_500 else f"{n / 1e6:.1f}M"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 48 * 3600 else f"{seconds / 86400:.1f} d"


def _print_board(entries: list[leaderboard.Entry], title: str, protocol: str | None) -> None:
    rows = leaderboard.to_rows(entries)
    # Short headers, so the figures and the mark fit 80 columns beside a folding name.
    base, memory = leaderboard.baseline_of(entries), leaderboard.shows_memory(entries)
    budgets = leaderboard.has_budgets(entries)
    short = ["Method", "Budget", "Acc.", "FLOPs", "Error", f"vs {base}", "Seeds", "Fail", "Mark"]
    headers = {"budget": "Budget", "flops_pct": "FLOPs", "delta": f"vs {base}"}
    unused = leaderboard.unused(entries)
    hidden = ({headers[c] for c in unused} | ({"Budget"} if memory else set())
              | (set() if any(e.failed for e in entries) else {"Fail"}))
    short += ["Mem.", "Mem. %", "Peak"] if memory else []
    shown = [i for i in range(len(short)) if short[i] not in hidden]
    columns = [Column(short[i], right=i > 0, flex="fold" if i == 0 else "fixed") for i in shown]
    units = "; memory in MiB, % of the baseline's" if memory else ""
    compared = "" if "delta" in unused else f"; vs {base} in points"
    print_table(console, f"{title} (%{compared}{units})", columns,
                [[cells[i] for i in shown] for cells in rows[1:]],
                ["bold" if e.best else None if leaderboard.is_ranked(e, budgets) else "dim"
                 for e in entries])
    for line in leaderboard.notes(entries, protocol):
        _line(line)


def _line(text: str) -> None:
    """A line of text: wrapped at the terminal's width, whole when piped."""
    console.print(text, markup=False, highlight=False, soft_wrap=not console.is_terminal)


def _leaderboard(args: argparse.Namespace) -> int:
    from .standings import protocol, recorded_ranking
    from .suite import load_suite

    suite = load_suite(args.suite)
    folder = args.results / suite.name
    if not (folder / "results.parquet").is_file():
        raise UserError(f"no results for suite {suite.name!r} in {folder}; "
                        f"run `binarena run {args.suite}` first")
    entries = recorded_ranking(suite, folder)
    described = protocol(suite)
    if args.format == "table":
        _print_board(entries, f"{suite.name}: leaderboard", described)
    elif args.format == "csv":
        sys.stdout.write(leaderboard.to_csv(entries))
    elif args.format == "markdown":
        sys.stdout.write(leaderboard.to_markdown(entries, protocol=described))
    else:
        sys.stdout.write(leaderboard.to_json(entries, described))
    return 0


def _list(args: argparse.Namespace) -> int:
    show_list(args.command, args.format, console)
    return 0


def _summary(args: argparse.Namespace) -> int:
    import json

    from .registry import DATASETS, MODELS

    for registry, name in ((MODELS, args.model), (DATASETS, args.dataset)):
        if name not in registry:  # answered before torch loads
            raise UserError(registry.unknown_message(name))
    from .summary import parse_options, summary_data

    binary = args.binary if args.binary in ("all", "none") else _csv(str)(args.binary)
    data = summary_data(args.model, args.dataset, binary=binary, activation=args.activation,
                        options=parse_options(args.option))
    if args.format == "json":
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return 0
    shape = "x".join(map(str, data["input_shape"]))
    print_table(console, f"{data['model']} on {data['dataset']} ({shape})",
                [Column("layer", flex="fold"), Column("kind"), Column("params", right=True),
                 Column("MACs", right=True), Column("binary"), Column("FLOPs", right=True)],
                [[row["name"], row["kind"], f"{row['params']:,}", f"{row['macs']:,}",
                  "yes" if row["binary"] else "", f"{row['flops']:,.0f}"]
                 for row in data["layers"]],
                ["bold" if row["binary"] else None for row in data["layers"]])
    totals = data["totals"]
    console.print(
        f"parameters: {totals['params']:,}\n"
        f"MACs: {totals['macs']:,}\n"
        f"FLOPs: {totals['flops']:.4g} ({totals['flops_pct']:.2f} % of "
        f"{totals['full_precision_flops']:.4g} in full precision)\n"
        f"binary: {totals['binary_layers']} of {totals['switchable_layers']} switchable layers, "
        f"{totals['binary_macs_pct']:.2f} % of the MACs",
        markup=False, highlight=False,
    )
    if data["uncounted"]:
        console.print(f"not counted (unknown kinds): {', '.join(data['uncounted'])}",
                      markup=False, highlight=False)
    return 0


def _tune(args: argparse.Namespace) -> int:
    from .suite import load_suite

    for option, value in (("--trials", args.trials), ("--parallel", args.parallel)):
        if value is not None and value < 1:
            raise UserError(f"{option}: must be at least 1")
    if args.retries < 0:
        raise UserError("--retries: must be 0 or more")
    suite = load_suite(args.suite)  # bad input is refused before Optuna, Ray, MLflow and torch
    if suite.tune is None:
        raise UserError(f"{suite.source}: tune: the suite has no tune section")
    refuse_early(suite, args.data_root)
    changes = {k: v for k, v in (("trials", args.trials), ("parallel", args.parallel),
                                 ("storage", args.storage)) if v is not None}
    suite = suite.model_copy(update={"tune": suite.tune.model_copy(update=changes)})

    import optuna

    from .orchestrator import RunOptions
    from .tune import make_tune_plan, run_tune

    logging.getLogger("mlflow").setLevel(logging.INFO if args.verbose else logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)

    options = RunOptions(results=args.results, address=args.address, tracking_uri=args.tracking_uri,
                         data_root=args.data_root, retries=args.retries, verbose=args.verbose,
                         wait_timeout=args.wait_timeout)
    plan = make_tune_plan(suite, options)
    progress = RichProgress()
    try:
        run = run_tune(plan, options, progress)
    finally:
        progress.close()
    spec = plan.spec
    title = f"{plan.study_name}: " + ("Pareto front" if spec.objective == "pareto"
                                      else f"best trial with FLOPs <= {spec.max_flops:g} %")
    print_table(console, title, [Column("Trial", right=True), Column("Acc. (%)", right=True),
                                 Column("FLOPs (%)", right=True), Column("Settings", flex="fold")],
                [[str(t["number"]), f"{t['accuracy']:.2f}", f"{t['flops_pct']:.2f}", t["params"]]
                 for t in sorted(run.front, key=lambda t: t["flops_pct"] or 0)])
    complete = sum(t["state"] == "COMPLETE" for t in run.trials)
    line = f"{counted(complete, 'trial')} complete ({len(run.ran)} in this run)"
    if run.ran:
        line += f", {run.wall_seconds:.0f} s, {run.parallel} at once"
        if (overhead := run.overhead) is not None:
            line += f", platform overhead {100 * overhead:.1f} % of the worker time"
    errors.print(line, markup=False, highlight=False)
    for outcome in run.failed:
        errors.print(f"[red]failed[/] {escape(outcome.job.label)}: {escape(outcome.error or '')}")
    errors.print(f"study: {plan.folder}", markup=False, highlight=False)
    return EXIT_FAILED_JOBS if run.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        with sigterm_as_interrupt():
            return args.handler(args)
    except UserError as exc:  # one line, whatever the message holds
        line = " ".join(str(exc).splitlines())
        errors.print(f"binarena: error: {line}", markup=False, highlight=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        errors.print(INTERRUPTED)
        return EXIT_TERMINATED if terminated() else EXIT_INTERRUPTED


def entry() -> None:
    """The console script. A SIGTERM once ``main`` has returned (Python then takes a second or two
    to wind down torch and Ray) finds nothing left to cancel: everything is recorded and printed,
    so the process ends at once, with 143, instead of dying with the output still buffered."""
    code = main()
    signal.signal(signal.SIGTERM, _exit_terminated)
    sys.exit(code)


def _exit_terminated(signum: int, frame: FrameType | None) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_TERMINATED)


if __name__ == "__main__":
    entry()
