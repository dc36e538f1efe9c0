"""The GPU-cluster suites: each constructs, passes the driver's checks, and runs one MixBin search
step (both scorers) on tiny generated data in the official layouts, on the CPU."""

from __future__ import annotations

import dataclasses

import pytest

from binarena.jobs import expand
from binarena.orchestrator import RunOptions, make_plan
from binarena.pretraining import pretrained_start
from binarena.methods.base import RunContext
from binarena.methods.mixbin import MixBinGrad, MixBinLoss
from binarena.selection import state_bytes
from binarena.suite import load_suite
from test_datasets import write_cifar, write_images

SUITES = ["mixbin-cifar100-cresnet20", "mixbin-tinyimagenet-resnet18",
          "mixbin-tinyimagenet-mobilenetv1", "mixbin-imagenet-resnet18"]


def tiny_data(root, dataset: str) -> None:
    if dataset == "cifar100":
        write_cifar(root / "cifar-100-python", ["train", "test"], "fine_labels", 12, 100)
    elif dataset == "tinyimagenet":
        base = root / "tiny-imagenet-200"
        for wnid in ("n01", "n02"):
            write_images(base / "train" / wnid / "images", 5, 64)
            write_images(base / "val" / wnid, 2, 64)
    else:
        for split, n in (("train", 5), ("val", 2)):
            for wnid in ("n01", "n02"):
                write_images(root / "imagenet" / split / wnid, n, 256)


@pytest.mark.parametrize("name", SUITES)
def test_suite_constructs_and_runs_one_search_step(name, tmp_path):
    suite = load_suite(name)
    tiny_data(tmp_path, suite.dataset.name)
    small = suite.dataset.model_copy(update={"val_size": 2})
    suite = suite.model_copy(update={"dataset": small})
    plan = make_plan(suite, RunOptions(results=tmp_path / "results", data_root=tmp_path,
                                       methods=["mixbin-grad", "mixbin-loss"], budgets=[80],
                                       seeds=[0]))
    assert {j.method for j in plan.to_run} >= {"mixbin-grad", "mixbin-loss"}
    assert len(expand(suite)) == 2 * 3 + 6 * 5 * 3  # references x seeds + methods x budgets x seeds
    for method_class in (MixBinGrad, MixBinLoss):
        job = next(j for j in plan.to_run if j.method == method_class.name)
        # One epoch of pre-training: the suite's 60-160 epochs of it are not what is tested here.
        short = {"epochs": 1, "batch_size": 2}
        pretrain = dataclasses.replace(job.pretrain,
                                       training=job.pretrain.training.model_copy(update=short))
        job = dataclasses.replace(job, params={**job.params, "finetune_steps": 1, "score_batches": 1},
                                  training=job.training.model_copy(update={"batch_size": 2}),
                                  pretrain=pretrain)
        ctx = RunContext(job=job, data_root=tmp_path, start_state=pretrained_start(job, tmp_path, tmp_path), workdir=tmp_path / job.key)
        method = method_class(method_class.Params.model_validate(job.params))
        model = ctx.build_model()
        eligible = ctx.eligible_layers(model)
        scores, _ = method.score(ctx, state_bytes(model), [], eligible, 1)
        assert set(scores) == set(eligible) and all(s == s for s in scores.values())  # no NaN


def test_paper_table3_suite_plans_every_method_at_every_budget(tmp_path):
    """The whole Table 3 grid passes the driver's checks (every budget reachable by every method,
    Network Slimming's network traceable) on tiny CIFAR-100 files."""
    suite = load_suite("paper-cifar100-cresnet20")
    tiny_data(tmp_path, suite.dataset.name)
    small = suite.dataset.model_copy(update={"val_size": 2})
    plan = make_plan(suite.model_copy(update={"dataset": small}),
                     RunOptions(results=tmp_path / "results", data_root=tmp_path))
    methods = {j.method for j in plan.to_run}
    assert {"network-slimming", "hawq-v2", "adaptive-mbq", "bnas", "mixbin-loss", "mixbin-grad",
            "random"} <= methods
    # references x seeds + methods x budgets x seeds, after one shared pre-training per seed
    assert len(plan.to_run) == 3 + 2 * 3 + 7 * 5 * 3
    assert sum(j.kind == "pretrain" for j in plan.to_run) == 3
    assert all(j.training.epochs == 160 for j in plan.to_run)
