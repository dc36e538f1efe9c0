"""The leaderboard's aggregation equals a hand computation on a recorded table."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest

from binarena import leaderboard
from binarena.outcome import ROW_SCHEMA
from binarena.results import ResultsTable


def row(key, method, budget, seed, status="ok", accuracy=None, flops_pct=None):
    base = {name: None for name in ROW_SCHEMA.names}
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
    # two seeds of front against three of random pair on seeds 0 and 1 only: differences 5 and 4
    front = by[("front", 60.0)]
    assert front.delta == pytest.approx(4.5)
    assert not front.significant  # t(0.975, 1) = 12.71: the interval is [-1.85, 10.85]
    assert front.delta_low == pytest.approx(4.5 - 12.7062 * 0.5, abs=1e-3)
    assert rnd.delta is None  # the baseline is not compared with itself
    # full precision and fully binary share one seed: no interval, so nothing can be ranked
    assert not leaderboard.ranks_anything(entries) and not any(e.mark for e in entries)


def test_only_the_current_suite_keys_are_ranked():
    entries = leaderboard.build(ROWS, {"d": "random", "e": "random"})
    assert [(e.method, e.seeds) for e in entries] == [("random", 2)]


def test_a_row_renamed_in_the_suite_keeps_its_results_under_its_new_label():
    # the suite now calls stages a and b (recorded as full-precision) "fp", and h, i "front"
    entries = leaderboard.build(ROWS, {"a": "fp", "b": "fp", "h": "front", "i": "front"})
    assert sorted((e.method, e.seeds, e.accuracy) for e in entries) == [
        ("fp", 2, pytest.approx(98.5)), ("front", 2, pytest.approx(95.5))]


def test_renderings(tmp_path):
    entries = leaderboard.build(ROWS)
    files = leaderboard.write(entries, tmp_path, "s leaderboard", "p")
    assert [f.name for f in files] == ["leaderboard.csv", "leaderboard.md", "leaderboard.json",
                                       "leaderboard.parquet", "leaderboard.png", "leaderboard.svg"]
    parsed = list(csv.DictReader(io.StringIO(files[0].read_text())))
    assert parsed[3]["method"] == "random" and float(parsed[3]["accuracy"]) == pytest.approx(93.0)
    assert parsed[1]["error"] == ""  # one seed
    md = files[1].read_text()
    assert md.splitlines()[2].startswith("| Method | Budget (%) | Acc. (%) | FLOPs (%) | Error |")
    assert "| front | 60 | 95.50 | 58.00 | 0.71 | +4.50 ± 6.35 | 2 | 0 |  |" in md
    assert "Protocol: p." in md and "Full precision - fully binary: +9.00 points over 1 seed." in md
    table = pq.read_table(files[3]).to_pylist()
    assert table[3]["method"] == "random" and table[3]["error"] == pytest.approx(13 ** 0.5)
    assert table[2]["mark"] == "" and table[1]["error"] is None
    assert table[2]["delta"] == pytest.approx(4.5) and table[2]["significant"] is False
    assert files[4].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shown = json.loads(files[2].read_text())
    assert shown["protocol"] == "p" and shown["entries"][0]["method"] == "full-precision"
    assert shown["entries"][0]["per_seed"] == {"0": 99.0, "1": 98.0}


def test_a_method_without_flops_still_gets_its_plot(tmp_path):
    # The Result contract asks only for accuracy: points without FLOPs stay off the FLOPs axis.
    rows = ROWS + [row("j", "plugin", 60.0, 0, accuracy=91.0), row("k", "plugin", 30.0, 0,
                                                                   accuracy=88.0)]
    path = leaderboard.plot(leaderboard.build(rows), tmp_path / "leaderboard.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def seeds_of(key: str, method: str, budget, accuracies) -> list[dict]:
    return [row(f"{key}{s}", method, budget, s, accuracy=a, flops_pct=budget or 100.0)
            for s, a in enumerate(accuracies)]


PAIRED = [
    *seeds_of("fp", "full-precision", None, [99.0, 98.0, 99.5]),
    *seeds_of("fb", "full-binary", None, [90.0, 91.0, 89.5]),
    *seeds_of("r6", "random", 60.0, [90.0, 92.0, 97.0]),
    *seeds_of("f6", "front", 60.0, [95.0, 96.5, 99.0]),
    *seeds_of("b6", "rear", 60.0, [96.0, 97.0, 100.0]),
    *seeds_of("r3", "random", 30.0, [80.0, 82.0, 84.0]),
    *seeds_of("f3", "front", 30.0, [85.0, 81.0, 86.0]),
    *seeds_of("b3", "rear", 30.0, [84.0, 83.0, 84.5]),
]


def test_paired_differences_intervals_and_marks_by_hand():
    by = {(e.method, e.budget): e for e in leaderboard.build(PAIRED)}
    # rear - random at 60: 6, 5, 3 -> mean 4.667, sd 1.5275, se 0.8819, t(0.975, 2) = 4.3027
    rear = by[("rear", 60.0)]
    assert rear.delta == pytest.approx(14 / 3)
    assert (rear.delta_low, rear.delta_high) == pytest.approx((0.8720, 8.4613), abs=1e-3)
    assert rear.significant
    # front - random at 60: 5, 4.5, 2 -> the interval [-0.67, 8.34] holds zero
    assert not by[("front", 60.0)].significant
    # rear - front at 60: 1, 0.5, 1 -> [0.116, 1.55]: rear is significantly ahead, so best
    assert by[("rear", 60.0)].mark == "best"
    assert by[("front", 60.0)].mark == "" and by[("random", 60.0)].mark == ""
    # at 30 the top (front, 84.0) is not significantly ahead of anyone: all three tied
    assert {by[(m, 30.0)].mark for m in ("front", "rear", "random")} == {"tied"}
    gap = leaderboard.separation(list(by.values()))
    assert gap.mean == pytest.approx(26 / 3) and gap.significant


def test_a_suite_without_budgets_ranks_every_row():
    # BeMi / BDNN suites: no budget, no reference pair; the same rule over all rows
    rows = [*seeds_of("m", "mlp", None, [96.0, 97.0, 98.0]),
            *seeds_of("s", "ste", None, [94.0, 95.5, 96.0]),
            *seeds_of("e", "exact", None, [60.0, 50.0, 70.0])]
    by = {e.method: e for e in leaderboard.build(rows)}
    # mlp - ste: 2, 1.5, 2 -> [1.12, 2.55]: significantly ahead, so best; nobody tied
    assert by["mlp"].mark == "best" and by["ste"].mark == "" and by["exact"].mark == ""
    rows = [*seeds_of("m", "mlp", None, [96.0, 97.0, 98.0]),
            *seeds_of("s", "ste", None, [97.0, 95.5, 98.0]),
            *seeds_of("e", "exact", None, [60.0, 50.0, 70.0])]
    by = {e.method: e for e in leaderboard.build(rows)}
    # mlp - ste: -1, 1.5, 0: not significant -> both tied; exact far behind
    assert (by["mlp"].mark, by["ste"].mark, by["exact"].mark) == ("tied", "tied", "")
    # no random row: the Markdown a person reads has no "vs random" column (nor budget)
    md = leaderboard.to_markdown(list(by.values())).splitlines()
    assert md[0] == "| Method | Acc. (%) | FLOPs (%) | Error | Seeds | Failed | Mark |"
    assert "No row is compared with random" in md[-2]


def test_paired_intervals_agree_with_scipy():
    from scipy.stats import ttest_rel

    rng = __import__("random").Random(7)
    for _ in range(50):
        n = rng.randint(2, 6)
        a = {s: rng.uniform(70, 90) for s in range(n)}
        b = {s: a[s] - rng.gauss(1, 2) for s in range(n)}
        ours = leaderboard.paired(a, b)
        ci = ttest_rel(list(a.values()), list(b.values())).confidence_interval(0.95)
        assert (ours.low, ours.high) == pytest.approx((ci.low, ci.high))
        assert ours.significant == (ttest_rel(list(a.values()), list(b.values())).pvalue < 0.05)


def test_a_protocol_that_cannot_separate_the_references_marks_nothing():
    tied = [*seeds_of("fp", "full-precision", None, [90.0, 91.0, 89.0]),
            *seeds_of("fb", "full-binary", None, [90.5, 90.0, 89.5]),
            *[r for r in PAIRED if r["budget"] is not None]]
    entries = leaderboard.build(tied)
    assert not any(e.mark for e in entries)
    assert not leaderboard.ranks_anything(entries)
    assert any("cannot rank the methods" in line for line in leaderboard.notes(entries))
    # the paired columns are still there: they describe, they do not rank
    assert next(e for e in entries if e.method == "rear" and e.budget == 60.0).significant


def finetuned(key: str, label: str, accuracies, memory_mib: float, name="bnn-finetune"):
    """Rows of a fine-tuning suite: no budget, the memory of a training step among the metrics."""
    rows = []
    for seed, accuracy in enumerate(accuracies):
        r = row(f"{key}{seed}", label, None, seed, accuracy=accuracy, flops_pct=5.0)
        r["method"] = name
        r["metrics"] = json.dumps({"accuracy": accuracy, "memory_total": memory_mib * 2**20,
                                   "memory_peak": 3 * memory_mib * 2**20})
        rows.append(r)
    return rows


FINETUNED = [
    *finetuned("p", "pre-trained BNN (fashion-mnist)", [99.0, 99.5, 99.9], 0, name="pretrain"),
    *finetuned("r", "ReSTE", [90.0, 91.0, 92.0], 4.0),
    *finetuned("b", "BinSFO", [90.5, 91.0, 93.0], 1.0),
    *finetuned("s", "STE", [88.0, 89.0, 90.0], 3.0),
]


def test_a_suite_without_budgets_is_compared_with_its_baseline_and_shows_memory(tmp_path):
    by = {e.method: e for e in leaderboard.build(FINETUNED, baseline="ReSTE")}
    # BinSFO - ReSTE: .5, 0, 1 -> mean .5, [-0.74, 1.74]; STE - ReSTE: -2 each, no spread
    binsfo, ste, reste = by["BinSFO"], by["STE"], by["ReSTE"]
    assert binsfo.delta == pytest.approx(0.5) and not binsfo.significant
    assert (binsfo.delta_low, binsfo.delta_high) == pytest.approx((-0.7421, 1.7421), abs=1e-3)
    assert ste.delta == pytest.approx(-2.0) and reste.delta is None
    assert (binsfo.memory_mib, binsfo.memory_pct, binsfo.peak_mib) == (1.0, 25.0, 3.0)
    assert (ste.memory_pct, reste.memory_pct) == (75.0, 100.0)
    # the pre-training (its accuracy is the source's) is neither compared nor marked
    pre = by["pre-trained BNN (fashion-mnist)"]
    assert (pre.delta, pre.mark, pre.memory_pct) == (None, "", None)
    # top BinSFO is not significantly ahead of ReSTE: tied; STE is behind both
    assert (binsfo.mark, reste.mark, ste.mark) == ("tied", "tied", "")
    files = leaderboard.write(list(by.values()), tmp_path, "ft", "p")
    header = files[0].read_text().splitlines()[0].split(",")
    assert header[-3:] == ["memory_mib", "memory_pct", "peak_mib"] and header[1] == "budget"
    md = files[1].read_text()
    assert "| vs ReSTE (95 % CI) |" in md and "| Memory (MiB) | Memory (%) | Peak (MiB) |" in md
    # no row has a budget: the Markdown leaves the column out, the CSV keeps it (empty)
    assert "| BinSFO | 91.50 | 5.00 | 1.32 | +0.50 ± 1.24 | 3 | 0 | tied | 1.00 | 25.0 | 3.00 |" in md
    assert "| Method | Acc. (%) | FLOPs (%) |" in md
    assert "vs ReSTE: mean paired difference to ReSTE +- the 95% Student-t" in md
    table = {r["method"]: r["memory_pct"] for r in pq.read_table(files[3]).to_pylist()}
    assert table == {"BinSFO": 25.0, "ReSTE": 100.0, "STE": 75.0,
                     "pre-trained BNN (fashion-mnist)": None}


def test_memory_columns_only_where_rows_report_memory(tmp_path):
    files = leaderboard.write(leaderboard.build(ROWS), tmp_path, "s", "p")
    assert files[0].read_text().splitlines()[0].split(",") == list(leaderboard.COLUMNS)
    assert "Memory" not in files[1].read_text()
