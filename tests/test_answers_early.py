"""Read-only commands and refusals of bad input answer without importing torch, Ray, MLflow,
Optuna, pandas or matplotlib (up to seconds each on a busy machine): what they import is checked here, in a fresh
interpreter; how long they take is measured by benchmarks/cli_latency.py, not asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from binarena.jobs import expand, stages
from binarena.methods.base import Result
from binarena.outcome import JobOutcome
from binarena.results import ResultsTable, python_rows
from binarena.suite import load_suite

from conftest import HANG_S

HEAVY = ("torch", "ray", "mlflow", "optuna", "pandas", "matplotlib", "scipy.stats")

CHILD = f"""
import contextlib, io, json, sys
from binarena.cli import main
answers = []
for args in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as done:  # --version
            code = done.code
    answers.append([code, out.getvalue(), err.getvalue()])
print(json.dumps({{"answers": answers, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def _record(results, suite_file) -> None:
    """A results table holding every stage of the suite, as a run records it."""
    suite = load_suite(suite_file)
    table = ResultsTable.open(results / suite.name / "results.parquet")
    for n, job in enumerate(stages(expand(suite))):
        result = Result(metrics={"accuracy": 90.0 + n % 3, "flops_pct": job.budget or 100.0})
        table.record(JobOutcome(job, "ok", result, 0.0, 1.0, 1.0, 1).row(f"run-{n}"))


def test_refusals_and_read_only_commands_import_nothing_heavy(tmp_path, write_suite):
    tiny = str(write_suite())
    mnist = str(write_suite("needs-mnist", dataset={"name": "mnist"}))
    results = tmp_path / "results"
    _record(results, tiny)
    (tmp_path / "empty").mkdir()
    cases = [  # (arguments, exit code, what its one line says)
        (["run", tiny, "--methods", "randon"], 2, "did you mean 'random'?"),
        (["run", tiny, "--budgets", "45"], 2, "--budgets: 45 not in the suite"),
        (["run", tiny, "--seeds", "7"], 2, "--seeds: 7 not in the suite"),
        (["run", mnist, "--data-root", str(tmp_path / "empty")], 2, "not found in"),
        (["run", "quikstart"], 2, "did you mean 'quickstart'?"),
        (["tune", tiny], 2, "tune: the suite has no tune section"),
        (["summary", "--model", "cnn", "--dataset", "digitz"], 2, "unknown dataset 'digitz'"),
        (["leaderboard", tiny, "--results", str(results)], 0, ""),
        (["leaderboard", tiny, "--results", str(results), "--format", "json"], 0, ""),
        (["suites"], 0, ""), (["methods"], 0, ""), (["models"], 0, ""), (["datasets"], 0, ""),
        (["--version"], 0, ""),
    ]
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps([c[0] for c in cases])],
                          capture_output=True, text=True, timeout=HANG_S)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    for (args, code, says), (got, _, err) in zip(cases, report["answers"]):
        assert got == code, (args, err)
        assert says in err and err.count("\n") == (1 if code else 0), (args, err)
    board = json.loads(report["answers"][8][1])  # the leaderboard ranked what was recorded
    assert len(board["entries"]) == len({(j.method_label, j.budget) for j in
                                         stages(expand(load_suite(tiny)))})
    assert report["heavy"] == []


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("zone", [None, "UTC", "Europe/Paris"])
def test_rows_read_as_pyarrow_converts_them(unit, zone):
    """python_rows converts timestamps itself (pyarrow would import pandas): the same values,
    offsets included, as pyarrow's own to_pylist, across a daylight-saving change and 1969."""
    moments = [datetime(2026, 3, 29, 0, 59, 59, 123456, tzinfo=timezone.utc), None,
               datetime(1969, 7, 20, 20, 17, 40, 5, tzinfo=timezone.utc)]
    if zone is None:
        moments = [m and m.replace(tzinfo=None) for m in moments]
    table = pa.table({"t": pa.array(moments, type=pa.timestamp(unit, tz=zone)),
                      "n": pa.array([1, 2, 3])})
    mine, theirs = python_rows(table), table.to_pylist()
    assert mine == theirs
    assert [r["t"] and r["t"].utcoffset() for r in mine] == [
        r["t"] and r["t"].utcoffset() for r in theirs]
