"""What the list commands print: every name whole, in a terminal of any width and piped."""

from __future__ import annotations

import csv
import io
import json

import pytest
from rich.console import Console

import binarena.cli as cli
from binarena.suite import bundled_suites, load_suite
from binarena.version import binarena_version


def _descriptions() -> dict[str, str]:
    return {name: " ".join(load_suite(name).description.split("\n\n")[0].split())
            for name in bundled_suites()}


@pytest.mark.parametrize("width", [60, 80, 200])
def test_a_terminal_shows_every_suite_name_whole_within_its_width(monkeypatch, width):
    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=width, force_terminal=True,
                                                color_system=None))
    assert cli.main(["suites"]) == 0
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= width
    shown = {line.split("│")[1].strip() for line in lines if line.count("│") == 3}
    assert shown == set(bundled_suites())


def test_piped_suites_are_whole_lines(capsys):
    assert cli.main(["suites"]) == 0  # capsys: not a terminal
    lines = capsys.readouterr().out.splitlines()
    expected = _descriptions()
    assert {line.split()[0]: " ".join(line.split()[1:]) for line in lines} == expected


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_suites_as_data(capsys, fmt):
    assert cli.main(["suites", "--format", fmt]) == 0
    text = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(text))) if fmt == "csv" else json.loads(text)
    assert {r["name"]: r["description"] for r in rows} == _descriptions()


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"binarena {binarena_version()}"
