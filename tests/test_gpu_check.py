"""The GPU check (``binarena.benchmarks.gpu_check``) at its smoke scale on the CPU: every field of
its report, the precision and memory format the model really trained in, the MixBin step's
candidates; and its one-line refusal on a machine without CUDA."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import datetime

import pytest
import torch

from binarena.benchmarks import gpu_check

from conftest import HANG_S

# ResNet-18's binarizable convolutions, from its architecture: 4 stages of 2 blocks of 2 units
UNIT_CONVS = [f"layer{s}.{b}.unit{u}.conv" for s in (1, 2, 3, 4) for b in (0, 1) for u in (1, 2)]
DTYPE = {"fp32": "float32", "bf16": "bfloat16"}  # what autocast on the CPU computes in
ENVIRONMENT = {"device", "gpu_memory_gib", "cpus", "cpu", "torch", "cuda_build", "cudnn", "python",
               "ray", "binarena", "date"}
THROUGHPUT = {"data", "precision", "channels_last", "batch_size", "loader_workers", "steps",
              "seconds", "images_per_s", "model_output_dtype", "model_input_channels_last",
              "peak_memory_gib"}
STEP = {"data", "train_images", "val_images", "batch_size", "finetune_steps",
        "suite_finetune_steps", "score_batches", "precision", "candidates", "pools", "speedup"}
POOL = {"actors", "cpus", "gpus", "first_map_candidates", "first_map_s", "step_s",
        "wall_per_candidate_s", "per_candidate_s", "scores"}


def positive(x: float) -> bool:
    return math.isfinite(x) and x > 0


def test_smoke_run_reports_every_figure(tmp_path, ray_cluster, capsys):
    gpu_check.main(["--out", str(tmp_path), "--smoke"])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(report) == {"smoke", "suite", "environment", "scale", "throughput", "mixbin_step"}
    assert report["smoke"] is True

    env = report["environment"]
    assert set(env) == ENVIRONMENT
    assert env["torch"] == torch.__version__ and env["cpus"] == len(os.sched_getaffinity(0))
    assert datetime.fromisoformat(env["date"]).tzinfo is not None

    rows = report["throughput"]
    assert all(set(row) == THROUGHPUT for row in rows)
    assert sorted((r["data"], r["precision"], r["channels_last"]) for r in rows) == [
        ("jpeg-folder", "bf16", True), ("jpeg-folder", "fp32", False),
        ("synthetic", "bf16", True), ("synthetic", "fp32", False)]
    for row in rows:
        assert positive(row["images_per_s"]) and row["steps"] == 2, row
        assert row["model_output_dtype"] == DTYPE[row["precision"]], row
        assert row["model_input_channels_last"] == row["channels_last"], row
        workers = 0 if row["data"] == "synthetic" else len(os.sched_getaffinity(0)) - 1
        assert row["loader_workers"] == workers

    step = report["mixbin_step"]
    assert set(step) == STEP and step["candidates"] == UNIT_CONVS
    assert step["finetune_steps"] == 1 and step["train_images"] + step["val_images"] == 8
    assert [(p["actors"], p["first_map_candidates"]) for p in step["pools"]] == [(2, 16), (1, 1)]
    for pool in step["pools"]:
        assert set(pool) == POOL and len(pool["scores"]) == len(UNIT_CONVS)
        assert all(positive(score) for score in pool["scores"])  # cross-entropies
        assert all(positive(pool[k]) for k in ("first_map_s", "step_s", "per_candidate_s"))
    assert positive(step["speedup"])

    table = (tmp_path / "gpu_check.md").read_text()
    assert table.startswith("smoke check on the CPU") and env["device"] in table
    rows_shown = [line for line in table.splitlines() if line.startswith(("| synth", "| jpeg"))]
    assert len(rows_shown) == 4
    assert capsys.readouterr().out.endswith(table)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_without_cuda_it_exits_2_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "binarena.benchmarks.gpu_check", "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=HANG_S)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "no CUDA device" in done.stderr
    assert not (tmp_path / "out").exists()


def test_the_step_clock_times_the_steps_after_the_warm_up():
    """Steps 0-1 warm up, steps 2-4 are timed; the clock stops the training before step 5, or as
    soon as a step is timed once its seconds are spent."""
    clock = gpu_check.StepClock(torch.device("cpu"), warmup=2, steps=3, seconds=3600)
    for _ in range(5):
        clock()
    with pytest.raises(gpu_check._Enough):
        clock()
    assert clock.timed_steps == 3 and clock.elapsed == clock.starts[5] - clock.starts[2]
    out_of_time = gpu_check.StepClock(torch.device("cpu"), warmup=1, steps=3, seconds=0)
    out_of_time(), out_of_time()
    with pytest.raises(gpu_check._Enough):
        out_of_time()
    assert out_of_time.timed_steps == 1
