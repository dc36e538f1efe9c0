"""ImageNet end to end, small: the bundled ``mixbin-imagenet-resnet18`` suite, every method of it,
through ``binarena run`` on the session cluster, on an image-folder ImageNet generated here.

What a smoke run must change is changed, nothing else (``smoke``): one epoch on a few images,
one budget, one seed, one fine-tune step and score batch, and the 2-CPU session cluster's
resources instead of GPU shares (tests/test_gpu_shares.py runs those shapes on logical GPUs).
The model, its ImageNet stem at 224x224, the data pipeline (JPEG files decoded per image in the
job, in its candidate actors and in its trainings) and the methods are the suite's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow import MlflowClient

from binarena.cli import main
from binarena.jobs import expand
from binarena.methods.base import build_model
from binarena.pretraining import WEIGHTS, stage_folder
from binarena.selection import fingerprint, load_state
from binarena.suite import Suite, bundled_suites, load_suite
from binarena.tracking import KEY_TAG
from test_e2e import mlflow_runs, results_rows
from test_pretraining import pretrain_runs

SUITE = "mixbin-imagenet-resnet18"
CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS = 4, 64, 16  # 320 JPEGs of 224x224
SMOKE = {"train_size": 4, "val_size": 2, "test_size": 4, "batch_size": 2}  # 2: batch norm's least
BUDGET = 93  # FLOPs %, the largest that takes MixBin two steps (one layer saves at most 6.25 %)

# Bi-Real ResNet-18, ImageNet stem, 3x224x224, 4 classes, counted by hand (binarena.flops'
# convention): the 16 block convs (4 of 64ch at 56x56; per later stage a stride-2 conv of
# 57,802,752 MACs and 3 of 115,605,504), 1,676,279,808 MACs; stem conv 7x7 118,013,952; the
# 3 shortcuts 1x1 stride 2, 6,422,528 each; fc 512*4 + 4; batch norm 2 x 2,483,712 outputs;
# activations 2,308,096 (stem and the 16 unit outputs); max pool 802,816 and global pool 25,088
# inputs. The conv MACs sum to the published 1.814 GMACs of ResNet-18.
BLOCK_CONV_MACS = 4 * 115_605_504 + 3 * (57_802_752 + 3 * 115_605_504)
FULL_FLOPS = (BLOCK_CONV_MACS + 118_013_952 + 3 * 6_422_528 + 512 * 4 + 4 + 2 * 2_483_712
              + 2_308_096 + 802_816 + 25_088)


def write_imagenet(root: Path, seed: int = 0) -> None:
    """``root/imagenet/{train,val}/<class>/*.JPEG``: per class a colour of its own under noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, per_class in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
        for c in range(CLASSES):
            folder = root / "imagenet" / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            colour = np.array([60 + 60 * ((c >> bit) & 1) for bit in range(3)], np.int16)
            for i in range(per_class):
                noise = rng.integers(-40, 41, (224, 224, 3), dtype=np.int16)
                image = np.clip(colour + noise, 0, 255).astype(np.uint8)
                Image.fromarray(image).save(folder / f"{split}_{c}_{i}.JPEG")


def smoke(suite: dict[str, Any]) -> dict[str, Any]:
    """The suite with only what a smoke run must change changed."""
    short = {"finetune_steps": 1, "score_batches": 1, "candidate_cpus": 1, "candidate_gpus": 0}
    methods = [{**m, "params": {k: short.get(k, v) for k, v in m.get("params", {}).items()}}
               for m in suite["methods"]]
    return {
        **suite, "name": f"{suite['name']}-smoke", "methods": methods,
        "dataset": {**suite["dataset"], **{k: SMOKE[k] for k in ("train_size", "val_size",
                                                                  "test_size")}},
        "budgets": [BUDGET],
        "seeds": suite["seeds"][:1],
        "training": {**suite["training"], "epochs": 1, "batch_size": SMOKE["batch_size"]},
        "resources": {"cpus": 1, "gpus": 0},
    }


def test_every_method_of_the_imagenet_suite_runs_end_to_end(ray_address, tmp_path):
    write_imagenet(tmp_path / "data")
    bundled = yaml.safe_load(Path(bundled_suites()[SUITE]).read_text())
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(smoke(bundled)))
    suite, results = load_suite(str(path)), tmp_path / "results"
    assert [m.name for m in suite.methods] == [m["name"] for m in bundled["methods"]]

    assert main(["run", str(path), "--data-root", str(tmp_path / "data"), "--results",
                 str(results), "--address", ray_address]) == 0
    check_run(suite, results, tmp_path / "downloads")


def check_run(suite: Suite, results: Path, downloads: Path) -> None:
    """What the run recorded, in results.parquet and MLflow."""
    rows = results_rows(results, suite.name)
    (pre,) = [r for r in rows if r["kind"] == "pretrain"]
    jobs = {r["method"]: r for r in rows if r["kind"] == "job"}
    assert {r["status"] for r in rows} == {"ok"} and len(rows) == 1 + len(suite.methods)
    assert set(jobs) == {m.name for m in suite.methods}
    assert len(pretrain_runs(results)) == 1  # the shared stage ran once, for every method
    assert all(j["started_at"] >= pre["finished_at"] for j in jobs.values())
    children, parents = mlflow_runs(results, suite.name)
    assert len(parents) == 1 and {c.data.tags[KEY_TAG] for c in children} == {
        r["key"] for r in rows}

    # every job started from the very weights the pre-training stored
    job = expand(suite)[0]
    stored = (stage_folder(results, pre["key"]) / WEIGHTS).read_bytes()
    pretrained = fingerprint(load_state(build_model(job, (3, 224, 224), CLASSES), stored))
    assert {json.loads(j["config"])["start_weights"] for j in jobs.values()} == {pretrained}

    metrics = {name: json.loads(j["metrics"]) for name, j in jobs.items()}
    budget = suite.budgets[0]
    floor = 100 * (FULL_FLOPS - BLOCK_CONV_MACS * 63 / 64) / FULL_FLOPS  # every block conv binary
    assert metrics["full-binary"]["flops_pct"] == pytest.approx(floor, rel=1e-9)
    for name, m in {"pre-trained": json.loads(pre["metrics"]), **metrics}.items():
        assert m["accuracy"] * SMOKE["test_size"] / 100 in range(SMOKE["test_size"] + 1), name
        assert m["epochs"] == 1 and m["final_train_loss"] > 0, name  # it trained: label smoothing
        if name in ("pre-trained", "full-precision"):
            assert m["flops"] == pytest.approx(FULL_FLOPS, rel=1e-9), name
            assert m["flops_pct"] == pytest.approx(100), name
        elif name != "full-binary":
            assert floor <= m["flops_pct"] <= budget, name

    # the searches ran: every remaining block conv scored at every step (mixbin-loss: fine-tuned
    # on the job's actors), the best kept, until the budget held
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    traces = {}
    for name in ("mixbin-loss", "mixbin-grad", "pseudo-random"):
        run = next(c for c in children if c.data.tags[KEY_TAG] == jobs[name]["key"])
        (downloads / name).mkdir(parents=True)
        local = client.download_artifacts(run.info.run_id, "search_trace.parquet",
                                          str(downloads / name))
        traces[name] = trace = pq.read_table(local).to_pylist()
        steps = int(metrics[name]["search_steps"])
        assert steps >= 2, name  # one binary layer saves at most 6.25 % of the FLOPs
        assert len(trace) == sum(16 - j for j in range(steps)), name  # 16 + 15 + ...
        chosen = []
        for step in range(1, steps + 1):
            scored = [t for t in trace if t["step"] == step]
            assert all(np.isfinite(t["score"]) for t in scored), name
            (best,) = [t for t in scored if t["chosen"]]
            assert best["score"] == min(t["score"] for t in scored), name
            assert (best["flops_pct"] <= budget) == (step == steps), name
            chosen.append(best["candidate"])
        if name != "pseudo-random":  # its choice is MixBin's with layers swapped at random
            assert json.loads(jobs[name]["config"])["binary_layers"] == sorted(chosen), name
    # pseudo-random (base: loss) repeats mixbin-loss's search: the same start, data and seeds
    # give the same scores, though scored by other actors in another job
    assert traces["pseudo-random"] == traces["mixbin-loss"]
