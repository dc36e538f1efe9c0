"""The leaderboard's aggregation equals a hand computation on a recorded table."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest

from binarena import leaderboard
from binarena.results import SCHEMA, ResultsTable


def row(key, method, budget, seed, status="ok", accuracy=None, flops_pct=None):
    base = {name: None for name in SCHEMA.names}
    return {**base, "key": key, "suite": "s", "method": method, "method_label": method,
            "budget": budget, "seed": seed, "status": status, "accuracy": accuracy,
            "flops_pct": flops_pct, "metrics": json.dumps({"accuracy": accuracy}), "attempts": 1}


ROWS = [
    row("a", "full-precision", None, 0, accuracy=99.0, flops_pct=100.0),
    row("b", "full-precision", None, 1, accuracy=98.0, flops_pct=100.0),
    row("c", "full-binary", None, 0, accuracy=90.0, flops_pct=5.0),
    row("d", "random", 60.0, 0, accuracy=90.0, flops_pct=50.0),
    row("e", "random", 60.0, 1, accuracy=92.0, flops_pct=56.0),
    row("f", "random", 60.0, 2, accuracy=97.0, flops_pct=59.0),
    row("g", "random", 30.0, 0, status="failed"),
    row("h", "front", 60.0, 0, accuracy=95.0, flops_pct=58.0),
    row("i", "front", 60.0, 1, accuracy=96.0, flops_pct=58.0),
]


def test_mean_error_flops_seeds_failed_by_hand(tmp_path):
    table = ResultsTable(tmp_path / "results.parquet")
    for r in ROWS:
        table.record(r)
    entries = leaderboard.build(ResultsTable.open(table.path).to_pylist())
    by = {(e.method, e.budget): e for e in entries}
    rnd = by[("random", 60.0)]
    # mean (90 + 92 + 97) / 3 = 93; sample variance ((-3)^2 + (-1)^2 + 4^2) / 2 = 13
    assert rnd.accuracy == pytest.approx(93.0) and rnd.error == pytest.approx(13 ** 0.5)
    assert rnd.flops_pct == pytest.approx((50 + 56 + 59) / 3) and rnd.seeds == 3 and rnd.failed == 0
    fp = by[("full-precision", None)]
    assert fp.accuracy == pytest.approx(98.5) and fp.error == pytest.approx(0.5 ** 0.5)
    assert by[("full-binary", None)].error is None  # one seed: no spread to report
    failed = by[("random", 30.0)]
    assert failed.failed == 1 and failed.seeds == 0 and failed.accuracy is None
    # references first, then budgets from large to small; best per budget marked
    assert [(e.method, e.budget) for e in entries] == [
        ("full-precision", None), ("full-binary", None), ("front", 60.0), ("random", 60.0),
        ("random", 30.0)]
    assert [e.method for e in entries if e.best] == ["front"]


def test_only_the_current_suite_keys_are_ranked():
    entries = leaderboard.build(ROWS, keys={"d", "e"})
    assert [(e.method, e.seeds) for e in entries] == [("random", 2)]


def test_renderings(tmp_path):
    entries = leaderboard.build(ROWS)
    files = leaderboard.write(entries, tmp_path, "s leaderboard")
    assert [f.name for f in files] == ["leaderboard.csv", "leaderboard.md", "leaderboard.parquet",
                                       "leaderboard.png"]
    parsed = list(csv.DictReader(io.StringIO(files[0].read_text())))
    assert parsed[3]["method"] == "random" and float(parsed[3]["accuracy"]) == pytest.approx(93.0)
    assert parsed[1]["error"] == ""  # one seed
    md = files[1].read_text()
    assert md.splitlines()[2].startswith("| Method | Budget (%) | Acc. (%) | FLOPs (%) | Error |")
    assert "| front | 60 | **95.50** | 58.00 | 0.71 | 2 | 0 | * |" in md
    table = pq.read_table(files[2]).to_pylist()
    assert table[3]["method"] == "random" and table[3]["error"] == pytest.approx(13 ** 0.5)
    assert table[2]["best"] and table[1]["error"] is None
    assert files[3].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(leaderboard.to_json(entries))[0]["method"] == "full-precision"
