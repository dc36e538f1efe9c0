"""Data-parallel training on Ray Train workers (``binarena.distributed``), on the session's 2-CPU
Ray with 2 gloo workers, against single-process ``binarena.training.train`` as the reference.

One run serves the module (a Ray Train start costs seconds): two workers train a small CNN with
batch norm for three epochs, and rank 0's process is killed once, after its first epoch's
checkpoint is committed. It must end with the weights one process reaches on the same global
batches: equal up to float32 rounding, which the two ways of summing a batch (one process, or two
halves and an all-reduce) order differently. 1e-5 bounds that after these 9 steps (measured:
2.4e-7), while each error tried in the split, its weighting, the averaging or the batch statistics
moved the weights by 7e-4 or more.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from ray import cloudpickle
from torch import nn
from torch.utils.data import TensorDataset

from binarena.b2nn import make_switchable, set_binary, switchable_layers
from binarena.distributed import SyncedBatchNorm, synchronize_batch_norm, train_on_workers
from binarena.errors import SuiteError
from binarena.models.catalog import cnn
from binarena.suite import TrainingSpec, load_suite
from binarena.training import TrainLog, train

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/

SEED = 3
EPOCHS, KILLED_AT = 3, 1
TOLERANCE = 1e-5  # float32 rounding of two summation orders; see the module docstring
# 91 samples in batches of 32: the last batch of 27 splits 14 / 13, so the weighting of unequal
# shares counts; the decay after epoch 2 and momentum make a resume restore the whole state.
SCHEDULE = TrainingSpec(epochs=EPOCHS, batch_size=32, lr=0.05, milestones=[0.5],
                        augment=["random-crop", "horizontal-flip"])


def network() -> nn.Module:
    torch.manual_seed(SEED)
    model = make_switchable(cnn((1, 8, 8), 4, channels=(4, 8), blocks_per_stage=1))
    set_binary(model, list(switchable_layers(model))[1:2])  # one binary layer, as a B2NN has
    return model


def dataset() -> TensorDataset:
    generator = torch.Generator().manual_seed(SEED)
    return TensorDataset(torch.randn(91, 1, 8, 8, generator=generator),
                         torch.randint(0, 4, (91,), generator=generator))


def killed_once(folder: Path) -> Callable[[int, float], None]:
    """An ``on_epoch`` that notes every call, and the first time it sees epoch ``KILLED_AT``
    waits for that epoch's checkpoint to be committed and kills its own worker process."""

    def on_epoch(epoch: int, loss: float) -> None:
        import ray.train

        with (folder / "calls.jsonl").open("a") as calls:
            calls.write(json.dumps([epoch, loss]) + "\n")
        if epoch == KILLED_AT and not (folder / "killed").exists():
            (folder / "killed").touch()
            ray.train.get_all_reported_checkpoints(
                consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)
            os.kill(os.getpid(), signal.SIGKILL)

    return on_epoch


@pytest.fixture(scope="module")
def runs(ray_cluster, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("distributed")
    single, workers = network(), network()
    single_log = train(single, dataset(), SCHEDULE, seed=SEED)
    with pytest.MonkeyPatch.context() as env:  # Ray Train polls its workers every 2 s; epochs
        env.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")  # here take 0.1 s
        workers_log = train_on_workers(workers, dataset(), SCHEDULE, seed=SEED, workers=2,
                                       cpus_per_worker=0.5, storage=folder / "run",
                                       on_epoch=killed_once(folder))
    calls = [json.loads(line) for line in (folder / "calls.jsonl").read_text().splitlines()]
    return {"single": single, "workers": workers, "single_log": single_log,
            "workers_log": workers_log, "calls": calls, "storage": folder / "run"}


def test_two_workers_end_with_the_weights_of_one_process(runs):
    single, workers = runs["single"].state_dict(), runs["workers"].state_dict()
    assert single.keys() == workers.keys()
    gaps = {name: (single[name].double() - workers[name].double()).abs().max().item()
            for name in single}
    assert max(gaps.values()) < TOLERANCE, sorted(gaps.items(), key=lambda kv: -kv[1])[:3]
    moved = max((single[n].double() - network().state_dict()[n].double()).abs().max().item()
                for n in single)
    assert moved > 1e-2  # the comparison is of trained weights, not of two untouched copies


def test_the_logged_loss_is_the_global_batches(runs):
    single, workers = runs["single_log"], runs["workers_log"]
    assert workers.train_loss == pytest.approx(single.train_loss, rel=1e-5)
    assert [epoch for epoch, _ in runs["calls"]] == [1, 2, 3]  # epoch 1 was not trained twice
    assert [loss for _, loss in runs["calls"]] == workers.train_loss


def test_a_killed_worker_resumes_at_its_epoch(runs):
    log_ = runs["workers_log"]
    assert isinstance(log_, TrainLog)
    assert (log_.resumed_at, log_.epochs) == (KILLED_AT, EPOCHS)
    assert log_.steps == 3 * (EPOCHS - KILLED_AT)  # 3 batches an epoch, after the resume only
    kept = sorted(p.name for p in runs["storage"].iterdir() if p.name.startswith("epoch-"))
    assert kept == [f"epoch-{EPOCHS:06d}"]  # one checkpoint kept: the last epoch's


@pytest.mark.parametrize("norm, shape", [
    (nn.BatchNorm2d(3), (6, 3, 4, 4)),
    (nn.BatchNorm1d(3, momentum=None), (6, 3)),  # a cumulative average
    (nn.BatchNorm1d(3, affine=False), (6, 3, 5)),
])
def test_synced_batch_norm_is_batch_norm_on_one_worker(norm, shape):
    """In a process group of one, the synchronised layer's own arithmetic against torch's."""
    import torch.distributed as dist

    synced = synchronize_batch_norm(copy.deepcopy(norm))
    assert isinstance(synced, SyncedBatchNorm)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        for step in range(2):
            x = torch.randn(shape, generator=torch.Generator().manual_seed(step)) * 3 + 1
            xs = [x.clone().requires_grad_() for _ in range(2)]
            outs = [norm(xs[0]), synced(xs[1])]
            for out in outs:
                (out * torch.arange(out.numel()).view_as(out)).sum().backward()
            torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(xs[1].grad, xs[0].grad, rtol=1e-4, atol=1e-4)
    finally:
        dist.destroy_process_group()
    for name, value in norm.state_dict().items():
        torch.testing.assert_close(synced.state_dict()[name], value, rtol=1e-5, atol=1e-6)
    if norm.affine:
        torch.testing.assert_close(synced.weight.grad, norm.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(synced.eval()(x), norm.eval()(x))


@pytest.mark.parametrize("resources, expected", [
    ({"workers": 0}, "resources.workers: Input should be greater than or equal to 1"),
    ({"workers": 1.5}, "resources.workers: Input should be a valid integer"),
    ({"workers": 2, "gpus": 0.5}, "resources.gpus: 0.5: with workers > 1, each worker takes whole"),
])
def test_workers_are_declared_in_the_suite(write_suite, resources, expected):
    with pytest.raises(SuiteError, match=re.escape(expected)):
        load_suite(write_suite(resources=resources))
    declared = load_suite(write_suite(resources={"cpus": 2, "gpus": 1, "workers": 4})).resources
    assert (declared.cpus, declared.gpus, declared.workers) == (2, 1, 4)


def test_a_suites_workers_train_the_pretraining_on_ray_train(ray_cluster, write_suite, tmp_path):
    """``resources.workers: 2`` in a suite: the pre-training stage (through ``train_b2nn``)
    trains on two Ray Train workers, whose job holds no GPU itself, and ends with the weights of
    the same stage trained by one process, within the tolerance above."""
    from binarena.jobs import expand
    from binarena.methods.base import RunContext
    from binarena.placement import holds_gpus
    from binarena.pretraining import WEIGHTS, run_pretraining

    weights = {}
    for workers in (1, 2):
        suite = write_suite(name=f"w{workers}", methods=[{"name": "random"}], seeds=[0],
                            training={"epochs": 1, "batch_size": 32, "lr": 0.05},
                            resources={"cpus": 0.5, "workers": workers})
        stage = expand(load_suite(str(suite)))[0].pretrain
        assert holds_gpus(stage) == (workers == 1)
        ctx = RunContext(job=stage, data_root=None, workdir=tmp_path / f"w{workers}")
        result = run_pretraining(ctx)
        weights[workers] = torch.load(__import__("io").BytesIO(result.artifacts[WEIGHTS]))
    assert (tmp_path / "w2" / "checkpoint-workers").is_dir()  # Ray Train's run, not train()'s
    assert not (tmp_path / "w1" / "checkpoint-workers").exists()
    for name, tensor in weights[1].items():
        assert torch.allclose(tensor.float(), weights[2][name].float(), atol=TOLERANCE), name
