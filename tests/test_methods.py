"""The first methods, run in-process through a serial run context (no Ray needed)."""

from __future__ import annotations

import json

import pytest

from binarena.jobs import expand
from binarena.pretraining import pretrained_start
from binarena.methods.base import RunContext, run_job
from binarena.selection import BudgetUnreachable
from binarena.suite import load_suite


def jobs_of(write_suite, **changes):
    return {j.label: j for j in expand(load_suite(write_suite(**changes)))}


def run(job, tmp_path):
    return run_job(RunContext(job=job, data_root=None, start_state=pretrained_start(job, None, tmp_path), workdir=tmp_path))


def test_references_and_random_respect_their_definitions(write_suite, tmp_path):
    jobs = jobs_of(write_suite, budgets=[80, 50, 30], seeds=[0])
    fp = run(jobs["full-precision[seed=0]"], tmp_path)
    fb = run(jobs["full-binary[seed=0]"], tmp_path)
    assert fp.metrics["flops_pct"] == pytest.approx(100.0) and fp.config["binary_layers"] == []
    assert fb.config["binary_layers"] == ["blocks.0.conv", "blocks.1.conv"]  # stem, shortcut, classifier stay
    assert fb.metrics["flops_pct"] < 30  # batch norms, activations and pooling stay real
    layers = {row["name"]: row for row in json.loads(fb.artifacts["layers.json"])}
    assert layers["blocks.0.conv"]["binary"] and not layers["stem.0"]["binary"]
    for budget in (80, 50, 30):
        result = run(jobs[f"random[budget={budget},seed=0]"], tmp_path)
        assert result.metrics["flops_pct"] <= budget
        assert 0 <= result.metrics["accuracy"] <= 100 and "val_accuracy" in result.metrics


def test_random_is_drawn_by_the_seed(write_suite, tmp_path):
    suite = dict(model={"name": "cnn", "options": {"channels": [4, 8, 8], "blocks_per_stage": 2}},
                 budgets=[60], seeds=[0, 1, 2, 3], training={"epochs": 1})
    jobs = jobs_of(write_suite, **suite)
    picks = [tuple(run(jobs[f"random[budget=60,seed={s}]"], tmp_path).config["binary_layers"]) for s in range(4)]
    again = run(jobs["random[budget=60,seed=0]"], tmp_path).config["binary_layers"]
    assert list(picks[0]) == again
    assert len(set(picks)) > 1


def test_an_unreachable_budget_is_an_error(write_suite, tmp_path):
    job = jobs_of(write_suite, budgets=[1])["random[budget=1,seed=0]"]
    with pytest.raises(BudgetUnreachable, match="budget 1% is unreachable"):
        run(job, tmp_path)


def test_training_learns_digits(write_suite, tmp_path):
    job = jobs_of(write_suite, training={"epochs": 8, "batch_size": 32, "lr": 0.05},
                  dataset={"name": "digits", "val_size": 0.1})["full-precision[seed=0]"]
    assert run(job, tmp_path).metrics["accuracy"] > 80  # chance is 10 %
