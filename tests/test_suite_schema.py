"""The suite schema refuses hostile or absurd input in one line (exit 2), quickly, writing nothing:
one test per finding of the input probe (issue 11), plus the rules that fixed them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from binarena.cli import main
from binarena.errors import SuiteError
from binarena.suite import SEED_MAX, load_suite

from conftest import TINY_SUITE


@pytest.fixture(scope="module", autouse=True)
def warm(tmp_path_factory):
    """One valid dry run first, so that the time bounds below do not count the imports."""
    folder = tmp_path_factory.mktemp("warm")
    (folder / "s.yaml").write_text(suite_text())
    assert main(["run", str(folder / "s.yaml"), "--dry-run", "--results", str(folder / "r")]) == 0


def suite_text(**changes) -> str:
    return yaml.safe_dump({**TINY_SUITE, **changes}, sort_keys=False)


def run_cli(capsys, tmp_path: Path, text: str | bytes, *extra: str) -> tuple[int, str]:
    """``binarena run`` (a dry run unless told otherwise) on ``text``: code and stderr."""
    suite = tmp_path / "s.yaml"
    suite.write_bytes(text.encode() if isinstance(text, str) else text)
    code = main(["run", str(suite), "--results", str(tmp_path / "results"), *extra])
    return code, capsys.readouterr().err.strip()


def refused(capsys, tmp_path: Path, text: str | bytes, expected: str) -> str:
    """Both the dry run and the real run answer exit 2 with one line holding ``expected``."""
    for extra in (("--dry-run",), ()):
        code, err = run_cli(capsys, tmp_path, text, *extra)
        assert code == 2, err
        assert err.count("\n") == 0, err
        assert err.startswith(f"binarena: error: {tmp_path / 's.yaml'}: "), err
        assert expected in err, err
        assert not (tmp_path / "results").exists()
    return err


def nested_options(text: str) -> str:
    """The tiny suite with ``text`` (indented YAML) as its model.options."""
    lines = suite_text(model={"name": "cnn", "options": {"PLACEHOLDER": 0}}).splitlines()
    at = next(i for i, line in enumerate(lines) if "PLACEHOLDER" in line)
    indent = " " * (len(lines[at]) - len(lines[at].lstrip()))
    body = [indent + line for line in text.splitlines()]
    return "\n".join(lines[:at] + body + lines[at + 1:]) + "\n"


def test_alias_bomb_is_refused_at_once(capsys, tmp_path):
    bomb = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n"
        for a, b in zip("abcdefgh", "bcdefghi"))
    refused(capsys, tmp_path, nested_options(bomb), "anchors (&a) are not allowed in a suite")


def test_a_plain_alias_is_refused(capsys, tmp_path):
    text = suite_text() + "pretrain: *nothing\n"
    refused(capsys, tmp_path, text, "aliases (*nothing) are not allowed")


def test_deep_nesting_is_refused_before_python_recursion_fails(capsys, tmp_path):
    text = nested_options("x: " + "[" * 20_000 + "]" * 20_000)
    refused(capsys, tmp_path, text, "nested deeper than 50 levels")
    block = nested_options("".join(f"{'  ' * i}k{i}:\n" for i in range(200)) + "  " * 200 + "v")
    refused(capsys, tmp_path, block, "nested deeper than 50 levels")


def test_duplicate_keys_are_refused(capsys, tmp_path):
    text = suite_text() + "seeds: [5]\n"
    first = text.splitlines().index("seeds:") + 1
    last = len(text.splitlines())
    refused(capsys, tmp_path, text, f"line {last}: duplicate key 'seeds' (first on line {first})")


def test_nested_duplicate_keys_are_refused(capsys, tmp_path):
    text = suite_text(training={"epochs": 2}).replace("  epochs: 2\n", "  epochs: 2\n  epochs: 3\n")
    refused(capsys, tmp_path, text, "duplicate key 'epochs'")


def test_non_utf8_file(capsys, tmp_path):
    text = suite_text().replace("a reduced quickstart", "caf\xe9").encode("latin-1")
    refused(capsys, tmp_path, text, "line 2: not UTF-8 text (byte 0xe9)")


def test_control_characters_and_garbage(capsys, tmp_path):
    refused(capsys, tmp_path, b"name: a\x00b\n", "malformed YAML")
    refused(capsys, tmp_path, b"{{{{: ]]]\n", "malformed YAML")
    refused(capsys, tmp_path, b"- just\n- a list\n", "a suite is a YAML mapping")
    refused(capsys, tmp_path, b"", "a suite is a YAML mapping")
    refused(capsys, tmp_path, suite_text() + "pretrain: !!python/object:os.system {}\n",
            "malformed YAML")


def test_huge_integer_literal(capsys, tmp_path):
    refused(capsys, tmp_path, suite_text() + f"pretrain: {{epochs: {'9' * 5000}}}\n", "cannot read")


def test_oversized_file(capsys, tmp_path):
    refused(capsys, tmp_path, suite_text() + "#" * (1 << 20) + "\n", "a suite is at most")


@pytest.mark.parametrize("seeds, expected", [
    ([2**70], f"seeds[0]: Input should be less than or equal to {SEED_MAX}"),
    ([-1], "seeds[0]: Input should be greater than or equal to 0"),
    (["0", "1"], "seeds[0]: Input should be a valid integer"),
    ([True], "seeds[0]: Input should be a valid integer"),
    ([1.0], "seeds[0]: Input should be a valid integer"),
])
def test_seeds_are_bounded_whole_numbers(capsys, tmp_path, seeds, expected):
    refused(capsys, tmp_path, suite_text(seeds=seeds), expected)


@pytest.mark.parametrize("changes, expected", [
    ({"training": {"epochs": 10**30}}, "training.epochs: Input should be less than or equal to 100000"),
    ({"training": {"epochs": "2"}}, "training.epochs: Input should be a valid integer"),
    ({"training": {"batch_size": 2**40}}, "training.batch_size"),
    ({"training": {"lr": float("nan")}}, "training.lr: Input should be a finite number"),
    ({"training": {"lr": float("inf")}}, "training.lr: Input should be a finite number"),
    ({"training": {"lr": 1e6}}, "training.lr: Input should be less than or equal to 100"),
    ({"training": {"lr": True}}, "training.lr: Input should be a valid number"),
    ({"training": {"momentum": 1.5}}, "training.momentum"),
    ({"training": {"weight_decay": 10.0}}, "training.weight_decay"),
    ({"pretrain": {"epochs": 10**30}}, "pretrain: epochs: Input should be less than or equal"),
    ({"methods": [{"name": "random", "training": {"epochs": 10**30}}]}, "methods[0].training: epochs"),
    ({"budgets": [float("nan")]}, "budgets[0]: Input should be a finite number"),
    ({"budgets": ["50"]}, "budgets[0]: Input should be a valid number"),
    ({"dataset": {"name": "digits", "seed": 2**70}}, "dataset.seed"),
    ({"dataset": {"name": "digits", "train_size": 10**30}}, "dataset.train_size"),
    ({"dataset": {"name": "digits", "val_size": float("inf")}}, "dataset.val_size"),
    ({"dataset": {"name": "digits", "val_size": 2.5}}, "neither a fraction"),
    ({"dataset": {"name": "digits", "download": "yes please"}}, "dataset.download"),
    ({"resources": {"gpus": 1.5}}, "resources.gpus: 1.5: a job takes a fraction of one GPU or whole"),
    ({"resources": {"cpus": 1e-9}}, "resources.cpus: 1e-09 is not a multiple of 0.0001"),
    ({"resources": {"cpus": 10**9}}, "resources.cpus: Input should be less than or equal to 10000"),
    ({"resources": {"cpus": float("nan")}}, "resources.cpus: Input should be a finite number"),
    ({"methods": [{"name": "random", "resources": {"gpus": 2.5}}]}, "methods[0].resources.gpus"),
    ({"name": "a" * 300}, "name: String should have at most 100 characters"),
    ({"methods": [{"name": "random", "label": "x" * 300}]}, "methods[0].label: String should have at most 100"),
    ({"methods": [{"name": "random", "label": "two\nlines"}]}, "methods[0].label: String should match"),
    ({"seeds": list(range(400)), "budgets": [float(b) for b in range(1, 101)],
      "methods": [{"name": "random", "label": f"r{i}"} for i in range(5)]},
     "make 200,000 jobs; a suite holds at most 10,000"),
])
def test_numbers_and_names_are_bounded(capsys, tmp_path, changes, expected):
    refused(capsys, tmp_path, suite_text(**changes), expected)


@pytest.mark.parametrize("options, expected", [
    ({"channels": "abc"}, "model.options.channels: Input should be a valid array"),
    ({"channels": []}, "model.options.channels: must not be empty"),
    ({"channels": [-1]}, "model.options.channels[0]: -1 is not a size"),
    ({"channels": [0, 4]}, "model.options.channels[0]: 0 is not a size"),
    ({"channels": [4, "8"]}, "model.options.channels[1]: Input should be a valid integer"),
    ({"channels": [4, True]}, "model.options.channels[1]: Input should be a valid integer"),
    ({"channels": [4, 2**40]}, "model.options.channels[1]: 1099511627776 is not a size"),
    ({"channels": [50_000, 50_000]}, "has more than 100,000,000 parameters"),
    ({"blocks_per_stage": 1.5}, "model.options.blocks_per_stage: Input should be a valid integer"),
    ({"blocks_per_stage": 100_000}, "has more than 2,000 layers"),
    ({"channels": [4, 8], "blocks_per_stage": {"a": float("nan")}}, "blocks_per_stage.a: nan is not a finite"),
])
def test_model_options_follow_the_factory(capsys, tmp_path, options, expected):
    refused(capsys, tmp_path, suite_text(model={"name": "cnn", "options": options}), expected)


def test_model_options_of_other_models(capsys, tmp_path):
    refused(capsys, tmp_path, suite_text(model={"name": "mlp", "options": {"width": 0}}),
            "model.options.width: 0 is not a size")
    refused(capsys, tmp_path, suite_text(model={"name": "mobilenetv1", "options": {"width": -0.5}}),
            "model.options: model 'mobilenetv1' cannot be built with these options (ValueError: width")
    refused(capsys, tmp_path, suite_text(model={"name": "resnet18", "options": {"stem": 3}}),
            "model.options.stem: Input should be a valid string")
    refused(capsys, tmp_path, suite_text(model={"name": "resnet18", "options": {"stem": "moon"}}),
            "cannot be built with these options (ValueError: stem: 'moon' is not one of")


@pytest.mark.parametrize("params, expected", [
    ({"finetune_lr": float("inf")}, "params.finetune_lr: inf is not a finite number"),
    ({"finetune_steps": 10**30}, "params.finetune_steps: 1e+30 is out of range"),
    ({"finetune_steps": "20"}, "params.finetune_steps: Input should be a valid integer"),
    ({"finetune_steps": True}, "params.finetune_steps: Input should be a valid integer"),
])
def test_method_params_are_strict_and_finite(capsys, tmp_path, params, expected):
    text = suite_text(methods=[{"name": "mixbin-loss", "params": params}])
    refused(capsys, tmp_path, text, f"methods[0]: {expected}")


@pytest.mark.parametrize("tune, expected", [
    ({"method": "random", "space": {"budget": {"low": 10, "high": float("inf")}}}, "tune.space.budget.high"),
    ({"method": "random", "space": {"budget": {"choices": [[1, 2]]}}}, "tune.space.budget.choices[0]"),
    ({"method": "random", "space": {"budget": {"low": 10, "high": 60}}, "trials": 10**12}, "tune.trials"),
    ({"method": "random", "space": {"budget": {"low": 10, "high": 60}}, "seed": -1}, "tune.seed"),
])
def test_tune_fields_are_bounded(capsys, tmp_path, tune, expected):
    refused(capsys, tmp_path, suite_text(tune=tune), expected)


def test_yaml_12_floats_and_whole_numbers_for_reals(tmp_path):
    """``1e-4`` is a number (PyYAML alone reads a string); ``60`` is fine where a real is meant."""
    path = tmp_path / "s.yaml"
    path.write_text(suite_text().replace("lr: 0.05", "lr: 5e-2\n  weight_decay: 1E-4"))
    suite = load_suite(path)
    assert suite.training.lr == 0.05 and suite.training.weight_decay == 1e-4
    assert suite.budgets == [50.0] and isinstance(suite.budgets[0], float)
    path.write_text(suite_text(resources={"cpus": 2, "gpus": 0.25}))
    assert load_suite(path).resources.gpus == 0.25


def test_valid_tiny_suite_still_plans(capsys, tmp_path):
    code, err = run_cli(capsys, tmp_path, suite_text(), "--dry-run")
    assert code == 0, err


def test_bad_run_options(capsys, tmp_path):
    text = suite_text()
    code, err = run_cli(capsys, tmp_path, text, "--retries", str(10**9))
    assert code == 2 and "--retries: must be from 0 to 100" in err and err.count("\n") == 0
    (tmp_path / "file").write_text("")
    suite = tmp_path / "s.yaml"
    assert main(["run", str(suite), "--results", str(tmp_path / "file")]) == 2
    assert "--results: " in capsys.readouterr().err


def test_errors_are_suite_errors(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(suite_text(seeds=[2**70]))
    with pytest.raises(SuiteError, match=r"s\.yaml: seeds\[0\]"):
        load_suite(path)
