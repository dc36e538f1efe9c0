"""Suites: validation, expansion into jobs, keys and filters."""

from __future__ import annotations

import pytest

from binarena.errors import SuiteError, UserError
from binarena.jobs import expand, select
from binarena.suite import bundled_suites, load_suite


def test_expansion_is_method_x_budget_x_seed_and_references_once_per_seed(write_suite):
    suite = load_suite(write_suite(budgets=[60, 30], seeds=[0, 1, 2]))
    jobs = expand(suite)
    by_method = {m: [j for j in jobs if j.method == m] for m in ("full-precision", "full-binary", "random")}
    assert len(by_method["full-precision"]) == 3 and {j.budget for j in by_method["full-precision"]} == {None}
    assert len(by_method["full-binary"]) == 3
    assert sorted((j.budget, j.seed) for j in by_method["random"]) == [
        (30, 0), (30, 1), (30, 2), (60, 0), (60, 1), (60, 2)]
    assert len({j.key for j in jobs}) == len(jobs) == 12


def test_keys_follow_what_determines_a_result(write_suite):
    base = {j.label: j.key for j in expand(load_suite(write_suite()))}
    assert base == {j.label: j.key for j in expand(load_suite(write_suite()))}  # stable
    moved = {j.label: j.key for j in expand(load_suite(write_suite(
        dataset={"name": "digits", "train_size": 300, "val_size": 50, "test_size": 200, "root": "/x"},
        resources={"cpus": 2, "gpus": 0.5})))}
    assert moved == base  # where data lives and what a job reserves do not change its result
    longer = {j.label: j.key for j in expand(load_suite(write_suite(training={"epochs": 3})))}
    assert set(longer.values()).isdisjoint(base.values())


def test_method_params_names_and_training_overrides(write_suite):
    suite = load_suite(write_suite(methods=[
        {"name": "random"},
        {"name": "random", "label": "random-long", "training": {"epochs": 5},
         "resources": {"cpus": 0.5, "gpus": 0.25}},
    ]))
    plain, long = suite.methods
    assert plain.display_name == "random" and long.display_name == "random-long"
    assert suite.training_for(long).epochs == 5 and suite.training_for(long).lr == 0.05
    assert suite.resources_for(long).gpus == 0.25


def test_two_methods_with_one_name_are_refused(write_suite):
    with pytest.raises(SuiteError, match="share a name"):
        load_suite(write_suite(methods=[{"name": "random"}, {"name": "random"}]))


@pytest.mark.parametrize("changes, field", [
    ({"training": {"epochs": 0}}, "training.epochs"),
    ({"training": {"milestones": [0.8, 0.2]}}, "training.milestones"),
    ({"resources": {"cpus": 0}}, "resources.cpus"),
    ({"model": {"name": "cnn", "options": {"depth": 3}}}, "'depth' is not an option of model 'cnn'"),
    ({"model": {"name": "cnn", "activation": "swish"}}, "unknown activation 'swish'"),
    ({"methods": [{"name": "random", "params": {"x": 1}}]},
     "methods[0]: params.x: unknown key (none is valid here)"),
    ({"methods": [{"name": "full-binary"}], "budgets": [200]}, "budgets"),
    ({"budgets": []}, "method 'random' needs at least one budget"),
    ({"seeds": [1, 1]}, "seeds"),
    ({"colour": "blue"}, "colour"),
])
def test_invalid_fields_are_named(write_suite, changes, field):
    with pytest.raises(SuiteError) as err:
        load_suite(write_suite(**changes))
    assert field in str(err.value) and "tiny.yaml" in str(err.value)


def test_filters_select_and_reject(write_suite):
    jobs = expand(load_suite(write_suite(budgets=[60, 30])))
    picked = select(jobs, methods=["random"], budgets=[30], seeds=[1])
    assert [j.label for j in picked] == ["random[budget=30,seed=1]"]
    with_refs = select(jobs, budgets=[60])
    assert {j.method for j in with_refs} == {"full-precision", "full-binary", "random"}
    with pytest.raises(UserError, match="--seeds: 7 not in the suite"):
        select(jobs, seeds=[7])
    with pytest.raises(UserError, match="--methods: bnas not in the suite"):
        select(jobs, methods=["bnas"])


def test_bundled_suites_all_validate():
    suites = bundled_suites()
    assert "quickstart" in suites
    for name in suites:
        assert load_suite(name).name == name


def test_mixbin_fmnist_is_a_part_of_baselines_fmnist():
    """In one results folder the two Fashion-MNIST suites run their common stages once: keys name
    no suite, so every stage of mixbin-fmnist (its pre-trainings too) is one of baselines-fmnist."""
    from binarena.jobs import expand, stages

    mixbin = stages(expand(load_suite("mixbin-fmnist")))
    baselines = stages(expand(load_suite("baselines-fmnist")))
    assert len(mixbin) == 3 + 2 * 3 + 6 * 3 * 3
    assert {j.key for j in mixbin} <= {j.key for j in baselines}
    shared_methods = {j.method for j in mixbin}
    assert {j.method for j in baselines} - shared_methods == {
        "network-slimming", "hawq-v2", "bnas", "adaptive-mbq", "optuna-mask"}


def test_seeds_default_to_three_as_in_the_papers(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ndataset: {name: digits}\nmodel: {name: cnn}\n"
                    "methods: [{name: random}]\nbudgets: [50]\n")
    assert load_suite(path).seeds == [0, 1, 2]


def test_recorded_params_read_as_the_suite_wrote_them(write_suite):
    """MLflow params and the results table: a budget of 60 is "60", 12.5 stays "12.5"."""
    jobs = expand(load_suite(write_suite(budgets=[60, 12.5])))
    flat = {j.budget: j.flat_params() for j in jobs if j.method == "random"}
    assert flat[60]["budget"] == "60" and flat[12.5]["budget"] == "12.5"
    assert flat[60]["training.lr"] == "0.05"
