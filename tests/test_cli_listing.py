"""What the list commands print: every name whole, in a terminal of any width and piped; what
``methods`` and ``models`` list is what a suite accepts; no torch is imported to list."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rich.console import Console

import binarena.cli as cli
from binarena.registry import DATASETS, METHODS, MODELS
from binarena.suite import bundled_suites, load_suite
from binarena.version import binarena_version

from conftest import HANG_S, TINY_SUITE

KINDS = {"suites": lambda: list(bundled_suites()), "methods": METHODS.names,
         "models": MODELS.names, "datasets": DATASETS.names}


def _descriptions() -> dict[str, str]:
    return {name: " ".join(load_suite(name).description.split("\n\n")[0].split())
            for name in bundled_suites()}


def _terminal(monkeypatch, width: int) -> io.StringIO:
    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=width, force_terminal=True,
                                                color_system=None))
    return out


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("width", [60, 80, 200])
def test_a_terminal_shows_every_name_whole_within_its_width(monkeypatch, kind, width):
    out = _terminal(monkeypatch, width)
    assert cli.main([kind]) == 0
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= width
    rule = next(i for i, line in enumerate(lines) if set(line.strip()) == {"─"})
    first = {line.split()[0] for line in lines[rule + 1:] if line and not line.startswith(" ")}
    assert set(KINDS[kind]()) <= first  # the rest: notes under the table


def test_piped_suites_are_whole_lines(capsys):
    assert cli.main(["suites"]) == 0  # capsys: not a terminal
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split() == ["name", "description"]
    assert {line.split()[0]: " ".join(line.split()[1:]) for line in lines} == _descriptions()


@pytest.mark.parametrize("kind", ["methods", "models", "datasets"])
def test_piped_lists_are_one_whole_line_each(capsys, kind):
    assert cli.main([kind]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = KINDS[kind]()
    rows = lines[1:1 + len(names)]
    assert [line.split()[0] for line in rows] == names
    assert not any(line.startswith(" ") for line in lines)  # nothing wrapped


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_suites_as_data(capsys, fmt):
    assert cli.main(["suites", "--format", fmt]) == 0
    text = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(text))) if fmt == "csv" else json.loads(text)
    assert {r["name"]: r["description"] for r in rows} == _descriptions()


def _json(capsys, kind: str) -> list[dict]:
    assert cli.main([kind, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_listed_method_parameters_are_what_a_suite_accepts_and_fills_in(capsys, tmp_path):
    """A suite that gives every listed method its listed defaults validates, and its normalised
    parameters (what the job key sees) are exactly those defaults."""
    listed = _json(capsys, "methods")
    assert [m["name"] for m in listed] == METHODS.names()
    checked = 0
    for method in listed:
        if method["required"] or not method["network"].startswith("suite"):
            continue  # a required parameter has no default to list; own networks need no model
        spec = {"name": method["name"], "params": method["params"]}
        suite = load_suite(_suite_file(tmp_path, method["name"], methods=[spec], budgets=[50]))
        assert suite.methods[0].params == method["params"], method["name"]
        assert METHODS.get(method["name"]).uses_budget == method["budget"]
        checked += 1
    assert checked >= 10


def test_listed_model_options_are_what_a_suite_accepts(capsys, tmp_path):
    listed = _json(capsys, "models")
    assert [m["name"] for m in listed] == MODELS.names()
    for model in listed:
        options = {k: v for k, v in model["params"].items() if v is not None}
        load_suite(_suite_file(tmp_path, model["name"],
                               model={"name": model["name"], "options": options}))
    cnn = next(m for m in listed if m["name"] == "cnn")
    assert cnn["params"] == {"channels": [16, 32, 64], "blocks_per_stage": 2}


def test_listed_digits_match_scikit_learn(capsys):
    from sklearn.datasets import load_digits

    digits = load_digits()
    listed = {d["name"]: d for d in _json(capsys, "datasets")}
    assert list(listed) == DATASETS.names()
    row = listed["digits"]
    assert row["input_shape"] == [1, *digits.images.shape[1:]]
    assert row["classes"] == len(set(digits.target))
    assert row["train_images"] == int(0.8 * len(digits.target)) and row["embedded"]
    assert not listed["mnist"]["embedded"] and row["params"]["val_size"] == 0.1


def _suite_file(folder: Path, name: str, **changes) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**TINY_SUITE, **changes}))
    return path


def test_listing_imports_no_torch():
    code = ("import sys, io, contextlib\nfrom binarena.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    for kind in ('suites', 'methods', 'models', 'datasets'):\n"
            "        assert main([kind]) == 0\n"
            "heavy = [m for m in ('torch', 'ray', 'mlflow', 'optuna') if m in sys.modules]\n"
            "print(heavy)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=HANG_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"binarena {binarena_version()}"
