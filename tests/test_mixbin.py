"""MixBin and the trivial baselines, in-process (serial context) on tiny models."""

from __future__ import annotations

import io

import pyarrow.parquet as pq
import pytest

from binarena.jobs import expand
from binarena.pretraining import pretrained_start
from binarena.methods.base import RunContext, run_job
from binarena.methods.finetune import validation_loss
from binarena.methods.mixbin_search import first_order_scores
from binarena.suite import load_suite


from harmless_net import HarmlessLayerNet  # noqa: F401  (registers harmless-test)

SUITE = {
    "dataset": {"name": "digits", "train_size": 400, "val_size": 100, "test_size": 100},
    "model": {"name": "harmless-test"},
    "budgets": [80],
    "seeds": [0],
    "training": {"epochs": 3, "batch_size": 64, "lr": 0.05},
}


def job_for(write_suite, method: str, **params):
    suite = load_suite(write_suite(**SUITE, methods=[{"name": method, "params": params}]))
    return expand(suite)[0]


def test_mixbin_loss_picks_the_harmless_layer_first(write_suite, tmp_path):
    job = job_for(write_suite, "mixbin-loss", finetune_steps=2, finetune_lr=1e-4)
    result = run_job(RunContext(job=job, data_root=None, start_state=pretrained_start(job, None, tmp_path), workdir=tmp_path))
    assert result.config["binary_layers"] and result.metrics["flops_pct"] <= 80
    trace = pq.read_table(io.BytesIO(result.artifacts["search_trace.parquet"])).to_pylist()
    first = [r for r in trace if r["step"] == 1]
    assert next(r["candidate"] for r in first if r["chosen"]) == "units.1"
    assert result.artifacts["search_trace.png"][:4] == b"\x89PNG"


def test_mixbin_grad_estimates_no_change_for_the_harmless_layer(write_suite, tmp_path):
    """A first-order estimate may favour a harmful layer (it is only first order), but it must
    see that binarizing the gated-off layer changes nothing: its score is the current loss."""
    job = job_for(write_suite, "mixbin-grad")
    ctx = RunContext(job=job, data_root=None, workdir=tmp_path,
                     start_state=pretrained_start(job, None, tmp_path))
    names = ["units.0", "units.1", "units.2"]
    base, scores = first_order_scores(ctx.start_network(), names, ctx.data.val, ctx.device, 4, 64)
    assert base == pytest.approx(validation_loss(ctx.start_network(), ctx.data.val, ctx.device, 4, 64))
    assert scores["units.1"] == base and scores["units.0"] != base and scores["units.2"] != base


@pytest.mark.parametrize("method", ["front-bn", "rear-bn"])
def test_positional_baselines(write_suite, tmp_path, method):
    job = job_for(write_suite, method)
    result = run_job(RunContext(job=job, data_root=None, start_state=pretrained_start(job, None, tmp_path), workdir=tmp_path))
    # each unit is about 17 % of the FLOPs: two units meet the 80 % budget
    expected = {"units.0", "units.1"} if method == "front-bn" else {"units.1", "units.2"}
    assert set(result.config["binary_layers"]) == expected and result.metrics["flops_pct"] <= 80


def test_pseudo_random_swaps_and_keeps_the_budget(write_suite, tmp_path):
    suite = {**SUITE, "budgets": [70]}  # two of the three units: one left to swap in
    job = expand(load_suite(write_suite(**suite, methods=[
        {"name": "pseudo-random", "params": {"base": "grad", "swap": 0.5}}])))[0]
    result = run_job(RunContext(job=job, data_root=None, start_state=pretrained_start(job, None, tmp_path), workdir=tmp_path))
    assert result.metrics["flops_pct"] <= 70 and result.metrics["swapped_layers"] == 1
