"""The contract every registered method keeps, run over every one of them (as Optuna's storage
tests run over every storage), in-process on digits with tiny parameters:

- the same job twice gives the same result (deterministic per seed);
- a method that takes a FLOPs budget meets it;
- a job killed after some finished work, run again in the same working folder, does not redo
  that work and ends with the result of an uninterrupted run.

A method registered without an entry in ``TINY`` fails ``test_every_method_has_tiny_parameters``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from binarena.jobs import Job, expand
from binarena.methods.base import Result, RunContext, run_job
from binarena.mip import SolverUnavailable, get_backend
from binarena.pretraining import pretrained_start
from binarena.registry import METHODS
from binarena.suite import load_suite

from conftest import HANG_S

SUITE: dict[str, Any] = {
    "dataset": {"name": "digits", "train_size": 300, "val_size": 60, "test_size": 100},
    "model": {"name": "cnn", "options": {"channels": [4, 8], "blocks_per_stage": 1}},
    "budgets": [50],
    "seeds": [0],
    "pretrain": {"epochs": 1},
    "training": {"epochs": 2, "batch_size": 64, "lr": 0.05},
}
EPOCH_1 = (1, "epochs")  # the first epoch of the training of the method's choice


@dataclass(frozen=True)
class Tiny:
    """A method's tiny job, and where to kill it: after the progress message holding ``kill``
    (a string), or after the report of ``kill = (done, unit)``, once that work is checkpointed."""

    kill: str | tuple[int, str] = EPOCH_1
    params: dict[str, Any] = field(default_factory=dict)
    suite: dict[str, Any] = field(default_factory=dict)
    solver: str | None = None  # the MIP back end it needs, if any


SCORING = {"finetune_steps": 2, "score_batches": 1}
BEMI_SUITE = {"model": None, "budgets": [], "training": {}, "pretrain": {}}
TINY: dict[str, Tiny] = {
    "full-precision": Tiny(),
    "full-binary": Tiny(),
    "given-layers": Tiny(params={"binary": ["blocks.0.conv"]}),
    "random": Tiny(),
    "front-bn": Tiny(),
    "rear-bn": Tiny(),
    "mixbin-loss": Tiny("step 1 binarizes", SCORING),
    "mixbin-grad": Tiny("step 1 binarizes", {"score_batches": 1}),
    "pseudo-random": Tiny("step 1 binarizes", {"base": "grad", "score_batches": 1}),
    "optuna-mask": Tiny((1, "trials"), {"trials": 3, "startup_trials": 2, **SCORING}),
    "adaptive-mbq": Tiny("round 1 binarizes", {"round_steps": 2}),
    "bnas": Tiny(EPOCH_1, {"search_epochs": 1}),  # killed in training: the search is not redone
    "hawq-v2": Tiny(EPOCH_1, {"hessian_batches": 1, "hutchinson_samples": 2}, solver="highs"),
    "network-slimming": Tiny(EPOCH_1, {"sparsity_epochs": 1}),  # killed in the fine-tune
    "bemi": Tiny((1, "networks"), {"layers": [64, 2, 1], "classes": [0, 1, 7],
                                   "images_per_class": 2, "test_per_class": 5,
                                   "time_limits": [5, 5, 2], "solver": "highs"},
                 BEMI_SUITE, solver="highs"),
    "bdnn-milp": Tiny((1, "solves"), {"layers": [64, 2, 10], "restarts": 2, "train_size": 30,
                                      "max_rounds": 1, "time_limit": 3, "perturbations": [0],
                                      "solver": "highs"}, BEMI_SUITE, solver="highs"),
    "bdnn-ste": Tiny(EPOCH_1, {"layers": [64, 4, 10], "epochs": 3}, BEMI_SUITE),
    "bdnn-mlp": Tiny(EPOCH_1, {"layers": [64, 4, 10], "epochs": 3}, BEMI_SUITE),
    # BinSFO draws its hypermask from torch's generator: a resumed run must draw alike
    "bnn-finetune": Tiny(EPOCH_1, {"optimizer": "binsfo", "freeze_first": 1},
                         {"pretrain_binary": True}),
}
METHOD_NAMES = sorted(TINY)


def test_every_method_has_tiny_parameters():
    """The guard: every method binarena registers is run by this contract."""
    registered = {name for name in METHODS.names()
                  if METHODS.get(name).__module__.startswith("binarena.")}
    assert registered - set(TINY) == set(), "give these methods tiny parameters in TINY"
    assert set(TINY) - registered == set(), "TINY names methods that are not registered"


class Recorder:
    """A run's progress messages and reports; raises KeyboardInterrupt (a kill) at ``kill``."""

    def __init__(self, kill: str | tuple[int, str] | None = None) -> None:
        self.kill, self.messages, self.reports = kill, [], []

    def progress(self, message: str) -> None:
        self.messages.append(message)
        if isinstance(self.kill, str) and self.kill in message:
            raise KeyboardInterrupt(message)

    def report(self, done: int, total: int, unit: str) -> None:
        self.reports.append((done, total, unit))
        if self.kill == (done, unit):
            raise KeyboardInterrupt(f"{done}/{total} {unit}")


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """One folder for every method's pre-training (they share it, as in a results folder)."""
    return tmp_path_factory.mktemp("pretrain")


def job_of(name: str, write_suite) -> Job:
    tiny = TINY[name]
    if tiny.solver is not None:
        try:
            get_backend(tiny.solver)
        except SolverUnavailable as exc:
            pytest.skip(f"{name} needs the {tiny.solver} solver: {exc}")
    suite = {**SUITE, **tiny.suite, "methods": [{"name": name, "params": tiny.params}]}
    (job,) = expand(load_suite(write_suite(**suite)))
    return job


def run(job: Job, workdir: Path, shared: Path, recorder: Recorder | None = None) -> Result:
    recorder = recorder or Recorder()
    return run_job(RunContext(job=job, data_root=None, workdir=workdir,
                              start_state=pretrained_start(job, None, shared),
                              progress=recorder.progress, report=recorder.report))


def outcome(result: Result) -> tuple[dict, dict]:
    """What a result says, less how long it took and whether it was resumed (NaN as None, so
    that a NaN metric equals itself)."""
    metrics = {k: None if math.isnan(v) else v for k, v in result.metrics.items()
               if "seconds" not in k and k != "resumed_at_epoch"}
    return result.config, metrics


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_the_same_seed_gives_the_same_result_within_budget(name, write_suite, tmp_path, shared):
    job = job_of(name, write_suite)
    first, second = run(job, tmp_path / "a", shared), run(job, tmp_path / "b", shared)
    assert outcome(first) == outcome(second)
    assert 0 <= first.metrics["accuracy"] <= 100
    if METHODS.get(name).uses_budget:
        assert first.metrics["flops_pct"] <= job.budget
    else:
        assert job.budget is None


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_a_killed_job_resumes_without_redoing_finished_work(name, write_suite, tmp_path, shared):
    job = job_of(name, write_suite)
    whole = run(job, tmp_path / "whole", shared)
    killed = Recorder(TINY[name].kill)
    with pytest.raises(KeyboardInterrupt):
        run(job, tmp_path / "killed", shared, killed)
    again = Recorder()
    resumed = run(job, tmp_path / "killed", shared, again)
    finished = {r for r in killed.reports if r[0] >= 1}  # work reported done before the kill
    assert not finished & set(again.reports), "finished work was done again"
    if isinstance(killed.kill, str):
        assert not any(killed.kill in m for m in again.messages), "finished work was done again"
    assert outcome(resumed) == outcome(whole)


def test_a_job_that_raises_is_retried_then_recorded_failed_and_the_run_exits_1(write_suite,
                                                                              tmp_path):
    """End to end through the CLI and real Ray workers, no solver needed: the method is a
    plug-in (``raising_method.py``) that the driver and its workers find by its entry point."""
    import os
    import subprocess
    import sys

    import pyarrow.parquet as pq

    plugin = tmp_path / "plugin" / "binarena_test_plugin-0.dist-info"
    plugin.mkdir(parents=True)
    (plugin / "METADATA").write_text("Metadata-Version: 2.1\nName: binarena-test-plugin\n"
                                     "Version: 0\n")
    (plugin / "entry_points.txt").write_text("[binarena.methods]\n"
                                             "always-raises = raising_method:AlwaysRaises\n")
    path = [str(Path(__file__).parent), str(plugin.parent), os.environ.get("PYTHONPATH", "")]
    suite = write_suite(**{**BEMI_SUITE, "seeds": [0], "methods": [{"name": "always-raises"}]})
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "binarena.cli", "run", str(suite), "--results", str(results),
         "--retries", "1"], capture_output=True, text=True, timeout=HANG_S,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))})
    assert done.returncode == 1, done.stderr
    (row,) = pq.read_table(results / "tiny" / "results.parquet").to_pylist()
    assert row["method"] == "always-raises" and row["status"] == "failed"
    assert row["attempts"] == 2 and "raised on purpose by a test" in row["error"]
    assert "retrying (1/1)" in done.stdout + done.stderr
