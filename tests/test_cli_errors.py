"""Bad input: exit code 2, one clear line naming file and field, nothing written to the results."""

from __future__ import annotations

import pytest

from binarena.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("changes, expected", [
    ({"methods": [{"name": "mixbin-los"}]}, "methods[0].name: unknown method 'mixbin-los'"),
    ({"dataset": {"name": "mnits"}}, "dataset.name: unknown dataset 'mnits'"),
    ({"model": {"name": "resnet-1000"}}, "model.name: unknown model 'resnet-1000'"),
    ({"budgets": [0]}, "budgets: Value error, budget #1 is 0: "),  # as written, not 0.0
    ({"budgets": [60, 100.5]}, "budget #2 is 100.5: a budget is a FLOPs % in (0, 100]"),
    ({"seeds": []}, "seeds: List should have at least 1 item"),
    ({"budgets": [50, 5]}, "budgets: random: budget 5% is unreachable: binarizing all 2 eligible layers of cnn"),
    ({"model": {"name": "cnn", "options": {"channels": [4, 8], "blocks_per_stage": 1},
                "eligible": ["blocks.0.conv", "blocks.9.conv"]}},
     "model.eligible: blocks.9.conv is not a layer of model 'cnn'"),
    ({"model": {"name": "cnn", "activation": "gelu"}}, "unknown activation 'gelu'"),
])
def test_invalid_suite_fields(capsys, tmp_path, write_suite, changes, expected):
    suite = write_suite(**changes)
    code, err = run_cli(capsys, "run", str(suite), "--results", str(tmp_path / "results"))
    assert code == 2
    assert err.count("\n") == 0, err
    assert str(suite) in err and expected.replace("Value error, ", "") in err
    assert not (tmp_path / "results").exists()


def test_malformed_yaml(capsys, tmp_path):
    suite = tmp_path / "broken.yaml"
    suite.write_text("name: broken\nmethods: [\n  - name: random\nseeds: [0\n")
    code, err = run_cli(capsys, "run", str(suite), "--results", str(tmp_path / "results"))
    assert code == 2 and err.count("\n") == 0
    assert f"{suite}: line" in err and "malformed YAML" in err
    assert not (tmp_path / "results").exists()


def test_unknown_suite_name(capsys, tmp_path):
    code, err = run_cli(capsys, "run", "quikstart", "--results", str(tmp_path / "results"))
    assert code == 2 and err.count("\n") == 0
    assert err.endswith("quikstart: not a file and not a bundled suite; did you mean 'quickstart'?")
    code, err = run_cli(capsys, "run", "xyzzy", "--results", str(tmp_path / "results"))
    assert code == 2 and "xyzzy: not a file and not a bundled suite (bundled: " in err
    assert "quickstart" in err
    code, err = run_cli(capsys, "leaderboard", "missing.yaml")
    assert code == 2 and "missing.yaml: no such suite file" in err


def test_missing_data_root(capsys, tmp_path, write_suite, monkeypatch):
    monkeypatch.delenv("BINARENA_DATA", raising=False)
    suite = write_suite(dataset={"name": "mnist"})
    results = tmp_path / "results"
    code, err = run_cli(capsys, "run", str(suite), "--results", str(results))
    assert code == 2 and err.count("\n") == 0
    assert "dataset 'mnist' needs a data root: pass --data-root DIR" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run_cli(capsys, "run", str(suite), "--results", str(results), "--data-root", str(empty))
    assert code == 2 and err.count("\n") == 0
    assert f"not found in {empty}/mnist or {empty}/MNIST/raw" in err and "download" in err
    assert not results.exists()


def test_bad_options(capsys, tmp_path, write_suite):
    suite = str(write_suite())
    results = str(tmp_path / "results")
    assert run_cli(capsys, "run", suite, "--results", results, "--seeds", "3")[1].endswith(
        "--seeds: 3 not in the suite (it has: 0, 1)")
    code, err = run_cli(capsys, "run", suite, "--results", results, "--max-parallel", "0")
    assert code == 2 and "--max-parallel" in err
    with pytest.raises(SystemExit) as exit_:
        main(["run", suite, "--seeds", "one"])
    assert exit_.value.code == 2
    assert not (tmp_path / "results").exists()


def test_leaderboard_before_any_run(capsys, tmp_path, write_suite):
    code, err = run_cli(capsys, "leaderboard", str(write_suite()), "--results", str(tmp_path))
    assert code == 2 and "no results for suite 'tiny'" in err


def test_dry_run_writes_nothing(capsys, tmp_path, write_suite):
    results = tmp_path / "results"
    assert main(["run", str(write_suite()), "--results", str(results), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "8 stages to run, 0 recorded" in out and "random[budget=50,seed=1]" in out
    assert "pre-trained[seed=1]" in out  # the shared pre-training of each seed is planned too
    assert not results.exists()


def test_a_multi_line_user_error_is_printed_on_one_line(capsys, tmp_path, write_suite, monkeypatch):
    import binarena.suite
    from binarena.errors import UserError

    def broken(ref):
        raise UserError("first line\nsecond line")

    monkeypatch.setattr(binarena.suite, "load_suite", broken)
    code, err = run_cli(capsys, "run", str(write_suite()), "--results", str(tmp_path / "results"))
    assert code == 2 and err == "binarena: error: first line second line"


@pytest.mark.parametrize("args, expected", [
    (["--retries", "1000"], "--retries: must be from 0 to 100"),
    (["--retries", "-1"], "--retries: must be from 0 to 100"),
])
def test_run_option_ranges(capsys, tmp_path, write_suite, args, expected):
    code, err = run_cli(capsys, "run", str(write_suite()), "--results", str(tmp_path / "results"),
                        *args)
    assert code == 2 and err.count("\n") == 0 and expected in err
    assert not (tmp_path / "results").exists()


def test_results_folder_that_is_a_file(capsys, tmp_path, write_suite):
    target = tmp_path / "results"
    target.write_text("not a folder")
    code, err = run_cli(capsys, "run", str(write_suite()), "--results", str(target))
    assert code == 2 and f"--results: {target} is a file, not a folder" in err
    assert target.read_text() == "not a folder"
