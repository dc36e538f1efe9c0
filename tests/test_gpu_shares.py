"""GPU shares on a cluster: a job that fans out GPU work never holds the GPUs its sub-work needs.

Ray gives a blocked task's CPUs back while it waits, not its GPUs. Two ``mixbin-loss`` jobs that
each held ``gpus: 0.5`` of the only GPU while waiting for candidates of ``candidate_gpus: 0.25``
waited forever (measured before the fix: none of 2 finished in 300 s). Here every bundled GPU
suite's shape (its job and sub-task shares, as declared) runs to completion, twice at once, on a
Ray started with one logical GPU (Ray schedules logical GPUs like real ones; torch sees none, so
the work itself runs on the CPU). The run is a subprocess with a deadline: a deadlock fails the
test instead of hanging the session.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from binarena.jobs import expand
from binarena.placement import demands
from binarena.suite import bundled_suites, load_suite

from conftest import HANG_S

DRIVER = """
import json, sys
from pathlib import Path
import ray
from binarena.orchestrator import RunOptions, make_plan, run_suite
from binarena.suite import bundled_suites, load_suite

ray.init(address="local", num_cpus=8, num_gpus=1, include_dashboard=False, log_to_driver=False)
options = RunOptions(results=Path(sys.argv[2]), address="auto")
run = run_suite(make_plan(load_suite(sys.argv[1]), options), options)
print(json.dumps(sorted(o.status for o in run.report.outcomes)))
"""


def bundled_gpu_shapes() -> list[tuple[float, float, float, float]]:
    """(job cpus, job gpus, sub-task cpus, sub-task gpus) of every bundled suite's jobs that fan
    out GPU sub-tasks."""
    shapes = set()
    for path in bundled_suites().values():
        for d in demands(expand(load_suite(str(path)))):
            if d.subtask and d.gpus:
                r = d.job.resources
                shapes.add((r.cpus, r.gpus, d.cpus, d.gpus))
    return sorted(shapes)


def test_the_bundled_suites_declare_gpu_fan_out() -> None:
    """What the next test replays: if no suite fanned out GPU work, it would test nothing."""
    assert (4, 0.5, 2, 0.25) in bundled_gpu_shapes()


@pytest.mark.parametrize("shape", bundled_gpu_shapes())
def test_two_gpu_jobs_that_fan_out_finish_on_one_gpu(shape, tmp_path: Path) -> None:
    job_cpus, job_gpus, sub_cpus, sub_gpus = shape
    suite = {
        "name": "gpu-shares",
        "dataset": {"name": "digits", "train_size": 120, "val_size": 20, "test_size": 40},
        "model": {"name": "cnn", "options": {"channels": [2, 4], "blocks_per_stage": 1}},
        "methods": [{"name": "mixbin-loss", "params": {
            "finetune_steps": 1, "score_batches": 1,
            "candidate_cpus": sub_cpus, "candidate_gpus": sub_gpus},
            "start": "scratch"}],  # the pre-training fans out nothing: not what is tested here
        "budgets": [60, 80],  # two jobs in flight at once, each waiting for its candidates
        "seeds": [0],
        "training": {"epochs": 1, "batch_size": 32},
        "resources": {"cpus": job_cpus, "gpus": job_gpus},
    }
    path = tmp_path / "gpu-shares.yaml"
    path.write_text(yaml.safe_dump(suite))
    try:
        done = subprocess.run([sys.executable, "-c", DRIVER, str(path), str(tmp_path / "results")],
                              capture_output=True, text=True, timeout=HANG_S)
    except subprocess.TimeoutExpired:  # a deadlock never ends; the run takes ~40-100 s here
        pytest.fail(f"jobs of {job_gpus} GPU fanning out sub-tasks of {sub_gpus} GPU did not "
                    f"finish in {HANG_S} s on one GPU: a deadlock")
    assert done.returncode == 0, done.stderr[-3000:]
    statuses = json.loads(done.stdout.strip().splitlines()[-1])
    assert statuses == ["ok", "ok"], statuses
