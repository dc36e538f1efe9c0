"""Tables as the CLI prints them: in a terminal, every line within its width and every cell whole
(a name folds, figures and the mark stay); piped, one whole line per row."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console

import binarena.cli as cli
from binarena import leaderboard
from binarena.outcome import ROW_SCHEMA
from binarena.terminal import Column, plain_lines

LONG = "mixbin-loss[candidate_cpus=0.5,finetune_steps=10]"


def _row(key: str, method: str, budget: float | None, seed: int, accuracy: float,
         flops: float, status: str = "ok") -> dict:
    return {**{name: None for name in ROW_SCHEMA.names}, "key": key, "suite": "s",
            "method": method.split("[")[0], "method_label": method, "budget": budget,
            "seed": seed, "status": status, "accuracy": accuracy, "flops_pct": flops,
            "metrics": json.dumps({"accuracy": accuracy}), "attempts": 1}


def _entries() -> list[leaderboard.Entry]:
    """Three seeds where full precision is well ahead of fully binary (so rows are marked), a
    long method name that is significantly ahead of random, and a failed seed (the Fail column)."""
    rows = []
    for s in range(3):
        rows += [_row(f"fp{s}", "full-precision", None, s, 92.0 + s, 100.0),
                 _row(f"fb{s}", "full-binary", None, s, 85.0 + s / 3, 4.66)]
        for b in (60.0, 20.0):
            rows += [_row(f"r{b}{s}", "random", b, s, 80.0 + 2.1 * s, b - 1.1),
                     _row(f"m{b}{s}", LONG, b, s, 90.1 + 0.31 * s, b - 0.2),
                     _row(f"o{b}{s}", "optuna-mask[trials=40]", b, s, 89.0 + s, b - 0.4,
                          status="failed" if s == 2 else "ok")]
    return leaderboard.build(rows)


def _board(monkeypatch, console: Console) -> list[str]:
    monkeypatch.setattr(cli, "console", console)
    cli._print_board(_entries(), "s: leaderboard", "a protocol")
    return console.file.getvalue().splitlines()  # type: ignore[attr-defined]


def _terminal(width: int) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)


@pytest.mark.parametrize("width", [60, 80, 120])
def test_a_terminal_board_keeps_every_name_figure_and_mark_within_its_width(monkeypatch, width):
    entries = _entries()
    lines = _board(monkeypatch, _terminal(width))
    assert max(map(len, lines)) <= width
    text = "\n".join(lines)
    assert "Mark" in text and "Fail" in text
    marks = [line.split()[-1] for line in lines if line.rstrip().endswith((" best", " tied"))
             and not line.startswith(("vs random", "of the next", "excludes", "not "))]
    assert marks and marks == [e.mark for e in entries if e.mark]
    for e in entries:  # every figure whole somewhere in the table
        for cell in leaderboard.to_rows([e])[1][1:6]:
            assert cell in text
    names = _first_column(lines)
    assert set(names) == {e.method for e in entries}


def _first_column(lines: list[str]) -> list[str]:
    """The first column's cells, spaces left out, a folded name joined again: a row's first line
    holds more cells (two spaces apart), a continuation line the name's rest alone."""
    rule = next(i for i, line in enumerate(lines) if set(line.strip()) == {"─"})
    names: list[str] = []
    for line in lines[rule + 1:]:
        if not line.strip() or line.startswith(("Protocol", "Full", "vs random")):
            break
        cells = re.split(r" {2,}", line.strip())
        if len(cells) > 1:
            names.append(cells[0].replace(" ", ""))
        else:
            names[-1] += cells[0].replace(" ", "")
    return names


def test_an_80_column_board_is_one_table_with_the_mark_column(monkeypatch):
    lines = _board(monkeypatch, _terminal(80))
    headers = [line for line in lines if line.startswith("Method")]
    assert len(headers) == 1 and headers[0].split()[-1] == "Mark"


def test_a_piped_board_is_one_whole_line_per_row(monkeypatch):
    entries = _entries()
    lines = _board(monkeypatch, Console(file=io.StringIO(), width=80, color_system=None))
    assert lines[0] == "s: leaderboard (%; vs random in points)"
    assert lines[1].split() == ["Method", "Budget", "Acc.", "FLOPs", "Error", "vs", "random",
                                "Seeds", "Fail", "Mark"]
    rows = lines[2:2 + len(entries)]
    for entry, line in zip(entries, rows):
        assert line.startswith(entry.method + " ")
        assert line.endswith(entry.mark or str(entry.failed))
    notes = leaderboard.notes(entries, "a protocol")
    assert lines[2 + len(entries):] == notes  # each note one line, however long


def test_plain_lines_align_columns_and_cut_nothing():
    columns = [Column("name"), Column("n", right=True), Column("text", flex="cut")]
    lines = plain_lines("title", columns, [["a", "1", "x" * 200], [LONG, "100", "y"]])
    assert lines == ["title",
                     "name" + " " * (len(LONG) - 2) + "  n  text",
                     "a" + " " * (len(LONG) - 1) + "    1  " + "x" * 200,
                     LONG + "  100  y"]


def test_the_dry_run_shows_every_job_name_whole_in_80_columns(write_suite, tmp_path,
                                                              monkeypatch):
    label = "a method label long enough to fold over two lines"
    suite = write_suite(methods=[{"name": "random", "label": label}], budgets=[60, 30])
    console = _terminal(80)
    monkeypatch.setattr(cli, "console", console)
    assert cli.main(["run", str(suite), "--dry-run", "--results", str(tmp_path / "r")]) == 0
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines[-1].startswith("no calibration: run `binarena calibrate ")  # whole, to copy
    assert max(map(len, lines[:-1])) <= 80
    names = _first_column(lines[:next(i for i, line in enumerate(lines) if "cost of" in line)])
    whole = label.replace(" ", "")
    assert {f"{whole}[budget=60,seed=0]", f"{whole}[budget=30,seed=1]"} <= set(names)


def test_a_board_without_budgets_flops_or_baseline_leaves_those_columns_out(monkeypatch):
    """BeMi's suites have neither budgets, FLOPs nor a random row: the columns would be all
    dashes. A variant run on one seed has no interval: unmarked, however high, and said so."""
    rows = [_row(f"b{s}{r}", f"bemi r={r}", None, s, 60.0 + r + s, None)
            for s in range(3) for r in (10, 40)]
    rows.append(_row("k", "bemi r=40 kmedoids", None, 0, 200.0, None))
    monkeypatch.setattr(cli, "console", Console(file=io.StringIO(), width=80, color_system=None))
    cli._print_board(leaderboard.build(rows), "s: leaderboard", "a protocol")
    lines = cli.console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines[0] == "s: leaderboard (%)"
    assert lines[1].split() == ["Method", "Acc.", "Error", "Seeds", "Mark"]
    # r=40 - r=10 is 30 on every seed: significantly ahead, best; the one-seed row is not marked
    assert [line.split() for line in lines[2:5]] == [
        ["bemi", "r=10", "71.00", "1.00", "3"], ["bemi", "r=40", "101.00", "1.00", "3", "best"],
        ["bemi", "r=40", "kmedoids", "200.00", "-", "1"]]
    # alone among the rows with seeds to compare, a row is not "best" of one beside a one-seed row
    alone = leaderboard.build([r for r in rows if r["method_label"] != "bemi r=10"])
    assert [(e.method, e.mark) for e in alone] == [("bemi r=40", ""), ("bemi r=40 kmedoids", "")]
    assert leaderboard.build(rows[1::2])[0].mark == "best"  # r=40 alone: best of one, as before
    text = " ".join(lines[5:])
    assert "No row is compared with random" in text and "vs random:" not in text
    assert "Not marked, one seed (no interval): bemi r=40 kmedoids." in text
