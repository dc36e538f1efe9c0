"""A misspelled YAML key, suite name or --methods filter is answered with the closest valid name,
and numbers are echoed as the suite writes them."""

from __future__ import annotations

import pytest

from binarena.errors import SuiteError, UserError
from binarena.jobs import expand, select
from binarena.registry import METHODS
from binarena.suite import Resources, Suite, TrainingSpec, load_suite
from binarena.validation import keys_at
from binarena.words import as_written, counted


@pytest.mark.parametrize("changes, expected", [
    ({"trainin": {"epochs": 1}}, "trainin: unknown key; did you mean 'training'?"),
    ({"dataset": {"name": "digits", "trian_size": 300}},
     "dataset.trian_size: unknown key; did you mean 'train_size'?"),
    ({"training": {"epoch": 1}}, "training.epoch: unknown key; did you mean 'epochs'?"),
    ({"pretrain": {"epoch": 1}}, "pretrain: epoch: unknown key; did you mean 'epochs'?"),
    ({"methods": [{"name": "random", "resourcs": {"cpus": 1}}]},
     "methods[0].resourcs: unknown key; did you mean 'resources'?"),
    ({"methods": [{"name": "random", "resources": {"cpu": 1}}]},
     "methods[0].resources.cpu: unknown key; did you mean 'cpus'?"),
    ({"methods": [{"name": "random", "training": {"lrr": 0.1}}]},
     "methods[0].training: lrr: unknown key; did you mean 'lr'?"),
    ({"methods": [{"name": "mixbin-loss", "params": {"finetune_step": 5}}]},
     "methods[0]: params.finetune_step: unknown key; did you mean 'finetune_steps'?"),
])
def test_a_misspelled_key_names_the_closest_valid_one(write_suite, changes, expected):
    with pytest.raises(SuiteError) as err:
        load_suite(write_suite(**changes))
    assert str(err.value).endswith(expected)
    assert "Extra inputs" not in str(err.value)


def test_a_key_close_to_none_lists_the_valid_ones(write_suite):
    with pytest.raises(SuiteError) as err:
        load_suite(write_suite(methods=[{"name": "mixbin-loss", "params": {"zzz": 1}}]))
    valid = list(METHODS.get("mixbin-loss").Params.model_fields)
    assert str(err.value).endswith(f"params.zzz: unknown key (valid: {', '.join(valid)})")


def test_the_keys_are_found_along_lists_options_and_unions():
    assert keys_at(Suite, ["training"]) == list(TrainingSpec.model_fields)
    assert keys_at(Suite, ["methods", 3, "resources"]) == list(Resources.model_fields)
    assert keys_at(Suite, ["dataset", "name"]) is None  # a string holds no keys
    assert "budgets" in (keys_at(Suite, []) or [])


def test_a_misspelled_suite_name_names_the_closest_bundled_one():
    with pytest.raises(SuiteError, match="mixbin-fmist: not a file and not a bundled suite; "
                                         "did you mean 'mixbin-fmnist'[?]$"):
        load_suite("mixbin-fmist")


def test_filters_name_the_closest_method_and_echo_numbers_as_written(write_suite):
    jobs = expand(load_suite(write_suite(budgets=[60, 30, 12.5])))
    with pytest.raises(UserError) as err:
        select(jobs, methods=["randon"])
    assert str(err.value) == ("--methods: randon not in the suite (it has: full-binary, "
                              "full-precision, random); did you mean 'random'?")
    with pytest.raises(UserError) as err:
        select(jobs, budgets=[0.0, 45.0])
    assert str(err.value) == "--budgets: 0, 45 not in the suite (it has: 12.5, 30, 60)"


@pytest.mark.parametrize("value, text", [(60.0, "60"), (0.5, "0.5"), (12.3456789, "12.3456789"),
                                         (100, "100"), (1e-05, "1e-05"), ("random", "random")])
def test_numbers_as_written(value, text):
    assert as_written(value) == text
    if not isinstance(value, str):
        assert float(as_written(value)) == value  # reads back as the same number


def test_counted_nouns_agree_with_their_number():
    assert [counted(n, "job") for n in (0, 1, 2)] == ["0 jobs", "1 job", "2 jobs"]
    assert counted(1.0, "CPU") == "1 CPU" and counted(0.5, "CPU") == "0.5 CPUs"
    assert counted(1, "data set") == "1 data set" and counted(2, "try", "tries") == "2 tries"


def test_one_epoch_and_one_seed_read_in_the_singular(write_suite):
    from binarena import leaderboard
    from binarena.standings import protocol

    suite = load_suite(write_suite(seeds=[0], training={"epochs": 1, "batch_size": 64},
                                   pretrain={"epochs": 1}))
    assert "pre-training (1 epoch), then trains its choice for 1 epoch" in protocol(suite)
    rows = [{"key": k, "method": m, "method_label": m, "budget": None, "seed": 0, "status": "ok",
             "accuracy": a, "flops_pct": f} for k, m, a, f in
            (("a", "full-precision", 90.0, 100.0), ("b", "full-binary", 80.0, 5.0))]
    notes = leaderboard.notes(leaderboard.build(rows))
    assert "Full precision - fully binary: +10.00 points over 1 seed." in notes
