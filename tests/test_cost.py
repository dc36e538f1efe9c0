"""The dry run's cost: the work of each stage counted by hand, the calibration stored and found,
and the wall time as steps x seconds per step / jobs at once, as printed in 80 columns."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import pytest
import yaml
from rich.console import Console

import binarena.cli as cli
from binarena.calibration import Calibrations
from binarena.cost import layer_search, parallelism, stage_costs, train_images
from binarena.jobs import expand, stages
from binarena.registry import DATASETS
from binarena.suite import DatasetSpec, load_suite

# digits: 1,437 official training images, 100 held out, 1,000 kept; 1000 = 15 x 64 + 40, so an
# epoch is 16 steps. The four eligible layers of this cnn save, binarized, 63/64 of their MACs:
# blocks.0.conv 9,216 (47 % of the 19,290 FLOPs), blocks.1.conv 4,608 (23.5 %), stem.0 2,304
# (11.8 %), blocks.1.shortcut.1 512 (2.6 %). At a 60 % budget (40 % to save) MixBin needs one step
# at fewest (blocks.0.conv) and four at most (the three others save 37.9 %): 4 fine-tunes at
# fewest, 4 + 3 + 2 + 1 = 10 at most.
SUITE = {
    "name": "cost",
    "dataset": {"name": "digits", "train_size": 1000, "val_size": 100, "test_size": 200},
    "model": {"name": "cnn", "options": {"channels": [4, 8], "blocks_per_stage": 1},
              "eligible": ["stem.0", "blocks.0.conv", "blocks.1.conv", "blocks.1.shortcut.1"]},
    "methods": [{"name": "full-precision"},
                {"name": "mixbin-loss", "params": {"finetune_steps": 5}},
                {"name": "optuna-mask", "params": {"trials": 4, "finetune_steps": 5}}],
    "budgets": [60],
    "seeds": [0, 1],
    "training": {"epochs": 2, "batch_size": 64},
    "pretrain": {"epochs": 3},
}
STEP_KEY = {  # what the store holds for this suite's steps, written out as a user would find it
    "model": {"name": "cnn", "activation": "binrelu",
              "options": {"channels": [4, 8], "blocks_per_stage": 1}},
    "input_shape": [1, 8, 8], "classes": 10, "batch_size": 64, "optimizer": "sgd", "augment": [],
    "precision": "fp32", "channels_last": False, "device": "cpu", "threads": 1,
}


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "cost.yaml"
    path.write_text(yaml.safe_dump(SUITE))
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    """binarena's cache folder, in the test's own folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "binarena"


def test_work_of_each_stage_matches_the_hand_count(suite_file):
    jobs = stages(expand(load_suite(suite_file)))
    rows = {row.name: row for row in stage_costs(jobs, 2, lambda job: 0.5)}
    assert list(rows) == ["pre-training", "full-precision", "mixbin-loss[finetune_steps=5]",
                          "optuna-mask[finetune_steps=5,trials=4]"]
    pre, full, mixbin, optuna = rows.values()
    assert (pre.jobs, pre.epochs, pre.images, pre.steps) == (2, (3, 3), 1000, (96, 96))
    assert (full.jobs, full.epochs, full.images, full.steps) == (2, (2, 2), 1000, (64, 64))
    assert mixbin.finetunes == (8, 20)  # two jobs of 4 to 10
    assert mixbin.steps == (2 * (32 + 4 * 5), 2 * (32 + 10 * 5))
    assert optuna.finetunes == (0, 8)  # at most 4 trials each: an infeasible mask costs none
    assert optuna.steps == (2 * 32, 2 * (32 + 4 * 5))
    # each phase's steps x 0.5 s over the stages at once: 2 pre-trainings, then 6 jobs 2 by 2
    assert pre.seconds == (96 * 0.5 / 2, 96 * 0.5 / 2)
    assert full.seconds == (64 * 0.5 / 2, 64 * 0.5 / 2)
    assert mixbin.seconds == (104 * 0.5 / 2, 164 * 0.5 / 2)


def test_mixbin_steps_span_what_any_order_of_binarizing_could_take(suite_file):
    """Brute force: whichever order the search binarizes the layers in, it stops at the first
    prefix that meets the budget; the span is the fewest and most steps over every order."""
    job = next(j for j in expand(load_suite(suite_file)) if j.method == "mixbin-loss")
    search = layer_search(job)
    stops = [next(k for k in range(len(order) + 1)
                  if search.profile.flops_pct_with(order[:k]) <= 60)
             for order in itertools.permutations(search.eligible)]
    assert search.rounds(60) == (min(stops), max(stops)) == (1, 4)


def test_known_training_sizes_are_the_data_sets_own():
    source = DATASETS.get("digits")
    assert source.train_images == len(source.raw(DatasetSpec(name="digits"), None, "train")[1])


def test_an_epoch_is_the_training_images_less_the_validation_ones():
    assert train_images(DatasetSpec(name="digits")) == 1437 - 144  # 10 % of 1,437, rounded
    assert train_images(DatasetSpec(name="digits", val_size=100, train_size=1300)) == 1300
    assert train_images(DatasetSpec(name="digits", val_size=100, train_size=1400)) == 1337
    assert train_images(DatasetSpec(name="tinyimagenet")) is None  # only its files can say


def test_mnist_training_size_is_the_files_own(data_root):
    source = DATASETS.get("mnist")
    assert source.train_images == len(source.raw(DatasetSpec(name="mnist"), data_root, "train")[1])


def test_jobs_at_once_are_what_the_largest_job_leaves_room_for(write_suite):
    jobs = stages(expand(load_suite(write_suite(resources={"cpus": 4, "gpus": 0.5}))))
    assert parallelism(jobs, None, {"CPU": 16, "GPU": 1}) == 2  # 16 / 4 CPUs, 1 / 0.5 GPU
    assert parallelism(jobs, None, {"CPU": 6, "GPU": 4}) == 1
    assert parallelism(jobs, 3, {"CPU": 16, "GPU": 1}) == 3  # --max-parallel decides


def test_calibration_is_stored_once_per_step_and_found(suite_file, cache, capsys):
    for _ in range(2):  # timed again: replaced, not added
        assert cli.main(["calibrate", str(suite_file), "--steps", "2"]) == 0
    assert f"stored in {cache / 'calibration.json'}" in capsys.readouterr().out
    stored = json.loads((cache / "calibration.json").read_text())
    assert [entry["key"] for entry in stored] == [STEP_KEY]
    assert stored[0]["seconds"] > 0 and stored[0]["steps"] == 2
    found = Calibrations.load()
    assert all(found.seconds(job) == stored[0]["seconds"]
               for job in stages(expand(load_suite(suite_file))))


def test_calibrating_a_device_no_stage_uses_is_refused(suite_file, cache, capsys):
    assert cli.main(["calibrate", str(suite_file), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "no stage of cost runs there" in err and err.count("\n") == 1
    assert not cache.exists()


def _dry_run(suite_file: Path, tmp_path: Path, monkeypatch, *extra: str) -> list[str]:
    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=80, force_terminal=True,
                                                color_system=None))  # an 80-column terminal
    assert cli.main(["run", str(suite_file), "--dry-run", "--results", str(tmp_path / "r"),
                     *extra]) == 0
    lines = out.getvalue().splitlines()
    return lines[next(i for i, line in enumerate(lines) if "cost of what is left" in line):]


def _row(lines: list[str], stage: str) -> list[str]:
    return next(line for line in lines if line.startswith(stage)).split()


def test_dry_run_estimates_steps_times_seconds_over_jobs_at_once(suite_file, tmp_path, cache,
                                                                 monkeypatch):
    cache.mkdir(parents=True)
    (cache / "calibration.json").write_text(json.dumps([{
        "key": STEP_KEY, "seconds": 9.0, "steps": 20, "device_name": "a CPU",
        "measured_at": "2026-01-01T00:00:00+00:00", "torch": "2"}]))
    lines = _dry_run(suite_file, tmp_path, monkeypatch, "--max-parallel", "4")
    assert max(map(len, lines)) <= 80
    # pre-trainings: 2 x 48 steps x 9 s / 2 at once; jobs: their steps x 9 s / 4 at once
    assert _row(lines, "pre-training") == ["pre-training", "2", "3", "x", "1,000", "-", "96",
                                           "7", "min"]  # 432 s
    assert _row(lines, "full-precision")[-3:] == ["64", "2", "min"]  # 144 s
    assert _row(lines, "mixbin-loss")[-3:] == ["104-164", "4-6", "min"]  # 234 to 369 s
    assert _row(lines, "optuna-mask")[-4:] == ["<=8", "64-104", "2-4", "min"]  # 144 to 234 s
    assert "wall time 16-20 min: 4 jobs at once on this machine (" in "\n".join(lines)
    assert "step timed alone: cnn batch 64 on a CPU, 1 thread" in lines


def test_dry_run_without_calibration_says_how_to_get_one(suite_file, tmp_path, cache,
                                                         monkeypatch):
    lines = _dry_run(suite_file, tmp_path, monkeypatch)
    assert max(map(len, lines[:-1])) <= 80  # the last: a command, whole on one line
    assert _row(lines, "full-precision")[-1] == "uncalibrated"
    assert lines[-1] == f"no calibration: run `binarena calibrate {suite_file}`"
    assert not any("wall time" in line for line in lines)


def test_dry_run_with_an_address_estimates_on_that_clusters_resources(
        suite_file, tmp_path, cache, monkeypatch, ray_address):
    """``--address``: the estimate divides by the jobs that cluster holds (the session's Ray: 2
    CPUs), read from the cluster, not from this machine."""
    cache.mkdir(parents=True)
    (cache / "calibration.json").write_text(json.dumps([{
        "key": STEP_KEY, "seconds": 9.0, "steps": 20, "device_name": "a CPU",
        "measured_at": "2026-01-01T00:00:00+00:00", "torch": "2"}]))
    monkeypatch.setattr("binarena.cost.local_capacity", lambda jobs: {"CPU": 64.0, "GPU": 0.0})
    lines = "\n".join(_dry_run(suite_file, tmp_path, monkeypatch, "--address", ray_address))
    assert f"jobs at once on the cluster at {ray_address} (2 CPUs)" in lines, lines
