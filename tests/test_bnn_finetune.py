"""BinSFO's fine-tuning protocol (issue 15, item 2): a BNN pre-trained by the shared stage, then
fine-tuned whole by each binary optimizer, its first layers optionally frozen; in-process on
digits with a tiny CNN (two binary layers)."""

from __future__ import annotations

import io

import pytest
import torch

from binarena.b2nn import set_binary, switchable_layers
from binarena.binary import scaled_sign
from binarena.bits import PackedSigns
from binarena.cli import main
from binarena.errors import SuiteError
from binarena.jobs import expand
from binarena.methods.base import RunContext, build_model, run_job
from binarena.methods.bnn_finetune_run import freeze_first
from binarena.pretraining import pretrained_start, run_pretraining
from binarena.selection import load_state
from binarena.suite import TrainingSpec, load_suite
from binarena.training import binary_storage, evaluate, make_optimizer

OPTIMIZERS = ("ste", "reste", "bop", "binsfo")
CNN = {"name": "cnn", "activation": "rprelu", "options": {"channels": [4, 8],
                                                          "blocks_per_stage": 1}}
BINARY = ["blocks.0.conv", "blocks.1.conv"]  # the tiny CNN's eligible layers, in forward order
FINETUNE = {"model": CNN, "budgets": [], "seeds": [0], "pretrain_binary": True,
            "pretrain": {"epochs": 1}, "training": {"epochs": 1, "batch_size": 64, "lr": 0.05}}


pytestmark = pytest.mark.usefixtures("one_thread")  # tensors this small: fastest so


def finetune_suite(write_suite, *rows: dict, **changes):
    methods = [{"name": "bnn-finetune", "params": row} for row in rows]
    return load_suite(write_suite(**{**FINETUNE, "methods": methods, **changes}))


def test_the_bnn_pretraining_trains_every_eligible_layer_binary(write_suite, tmp_path):
    """The stage's measured accuracy is the pre-trained weights' as a BNN (every eligible layer
    binary), not as the full-precision network they also make; without the option it is the
    full-precision network's."""
    for binary in (True, False):
        suite = finetune_suite(write_suite, {"optimizer": "ste"}, pretrain_binary=binary)
        stage = expand(suite)[0].pretrain
        assert stage.binary is binary
        ctx = RunContext(job=stage, data_root=None, workdir=tmp_path / str(binary))
        result = run_pretraining(ctx)
        assert result.config["binary_layers"] == (BINARY if binary else [])
        weights = pretrained_start(expand(suite)[0], None, tmp_path / f"stored-{binary}")
        model = load_state(build_model(stage, (1, 8, 8), 10), weights)
        as_bnn, as_float = model, load_state(build_model(stage, (1, 8, 8), 10), weights)
        set_binary(as_bnn, BINARY)
        measured = {evaluate(as_bnn, ctx.data.test).accuracy: "binary",
                    evaluate(as_float, ctx.data.test).accuracy: "float"}
        assert len(measured) == 2  # the two readings of the weights differ
        assert measured[result.metrics["accuracy"]] == ("binary" if binary else "float")


def test_the_protocol_line_says_a_pretrained_bnn_is_fine_tuned(write_suite):
    from binarena.standings import protocol

    line = protocol(finetune_suite(write_suite, {"optimizer": "ste"}))
    assert ("starts from one shared BNN (every eligible layer binary, ste) pre-training (1 epoch), "
            "then fine-tunes it for 1 epoch") in line
    assert "trains its choice" in protocol(finetune_suite(write_suite, {"optimizer": "ste"},
                                                          pretrain_binary=False))


def test_pretraining_keys_change_only_with_the_options(write_suite):
    """Pinned keys (commit 3890173, as in test_pretraining) stay without the options; a BNN
    pre-training, or one on other data, is another stage, and so are the jobs that start from
    it; a BNN's key holds which layers are binary."""
    def keys(**changes):
        jobs = {j.label: j for j in expand(load_suite(write_suite(**changes)))}
        job = jobs["full-precision[seed=0]"]
        return job.pretrain.key, job.key

    assert keys() == ("35bd530880e8407a", "46c36dd2d7c0cedd")
    assert keys(pretrain_binary=False) == keys()
    binary = keys(pretrain_binary=True)
    assert binary[0] != keys()[0] and binary[1] != keys()[1]
    fewer = {**CNN, "eligible": BINARY[:1]}
    assert keys(pretrain_binary=True, model=fewer)[0] != keys(pretrain_binary=True, model=CNN)[0]
    assert keys(model=fewer)[0] == keys(model=CNN)[0]  # full precision: eligibility plays no part
    other = keys(pretrain_dataset={"name": "digits", "train_size": 200, "val_size": 50})
    assert other[0] != keys()[0] and other[1] != keys()[1]


def test_a_source_data_set_pretrains_and_the_target_finetunes(write_suite, tmp_path):
    suite = finetune_suite(write_suite, {"optimizer": "ste"},
                           pretrain_dataset={"name": "digits", "train_size": 120, "val_size": 30})
    (job,) = expand(suite)
    assert job.pretrain.dataset.train_size == 120 and job.dataset.train_size == 300
    assert job.pretrain.method_label == "pre-trained BNN (digits)"
    ctx = RunContext(job=job.pretrain, data_root=None, workdir=tmp_path)
    assert len(ctx.data.train) == 120


@pytest.mark.parametrize("changes, expected", [
    ({"methods": [{"name": "bnn-finetune", "params": {"optimizer": "adam"}}]},
     "methods[0]: params.optimizer: Input should be 'ste', 'bop', 'reste' or 'binsfo'"),
    ({"methods": [{"name": "bnn-finetune", "params": {"optimizer": "bop", "freeze_first": 3}}]},
     "bnn-finetune[freeze_first=3,optimizer=bop]: freeze_first 3 is more than the 2 binary "
     "layers (eligible layers) of model cnn"),
    ({"methods": [{"name": "bnn-finetune", "params": {"optimizer": "bop"},
                   "training": {"binary_optimizer": "binsfo"}}]},
     "methods[0].training.binary_optimizer: bnn-finetune's params set it to 'bop'"),
    ({"pretrain_dataset": {"name": "mnist"}},
     "pretrain_dataset: mnist (1x28x28 inputs, 10 classes) cannot pre-train a network for "
     "digits (1x8x8 inputs, 10 classes)"),
    ({"baseline": "ReSTE"}, "baseline: 'ReSTE' is not a method of the suite"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, write_suite, changes, expected):
    suite = write_suite(**{**FINETUNE, "methods": [{"name": "bnn-finetune",
                                                    "params": {"optimizer": "ste"}}], **changes})
    assert main(["run", str(suite), "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and expected in err, err
    assert not (tmp_path / "results").exists()


def test_the_optimizer_parameter_is_the_rows_schedule(write_suite):
    suite = finetune_suite(write_suite, *({"optimizer": o} for o in OPTIMIZERS),
                           training={"epochs": 1, "binary_optimizer": "reste", "binsfo_eta": 5.0})
    jobs = {j.params["optimizer"]: j for j in expand(suite)}
    assert {o: j.training.binary_optimizer for o, j in jobs.items()} == dict(zip(OPTIMIZERS,
                                                                                OPTIMIZERS))
    assert jobs["binsfo"].training.binsfo_eta == 5.0  # its hyper-parameters: the schedule's
    assert len({j.pretrain.key for j in jobs.values()}) == 1  # one start for every row
    with pytest.raises(SuiteError, match="params set it"):
        finetune_suite(write_suite, {"optimizer": "bop"}, methods=[{
            "name": "bnn-finetune", "params": {"optimizer": "bop"},
            "training": {"binary_optimizer": "ste"}}])


def tiny_network(write_suite) -> torch.nn.Module:
    (job,) = expand(finetune_suite(write_suite, {"optimizer": "ste"}))
    model = build_model(job, (1, 8, 8), 10)
    set_binary(model, BINARY)
    return model


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_frozen_layers_hold_no_gradient_no_optimizer_state_and_are_stored_as_bits(
        write_suite, optimizer):
    model = tiny_network(write_suite)
    assert freeze_first(model, BINARY, 1, (1, 8, 8)) == ["blocks.0.conv"]
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    # the stem and the first block up to its binary conv: in forward order
    assert frozen == {"stem.0.weight", "stem.1.weight", "stem.1.bias", "stem.2.gamma",
                      "stem.2.zeta", "stem.2.prelu.weight", "blocks.0.conv.weight"}
    schedule = TrainingSpec(binary_optimizer=optimizer, lr=0.05)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    layers = switchable_layers(model)
    with binary_storage(model, schedule):
        assert isinstance(layers["blocks.0.conv"].packed, PackedSigns)  # bits, whatever trains
        assert (layers["blocks.1.conv"].packed is None) == (optimizer in ("ste", "reste"))
        optimizer_ = make_optimizer(model, schedule, total_steps=2)
        for _ in range(2):
            optimizer_.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer_.step()
        held = {id(p) for p in optimizer_.state}
        named = dict(model.named_parameters())
        assert all((id(p) in held) == p.requires_grad for p in named.values())
        assert all(named[n].grad is None for n in named if not named[n].requires_grad)
        rule = optimizer_.state_dict().get("binary_optimizer", {})
        if optimizer == "bop":
            assert [tuple(m.shape) for m in rule["momenta"]] == [(8, 4, 3, 3)]  # the second only
        if optimizer == "binsfo":
            assert len(rule["variances"]) == 1
    assert not layers["blocks.0.conv"].weight.requires_grad  # handed back frozen


@pytest.mark.parametrize("optimizer", ["reste", "binsfo"])
def test_finetuning_leaves_frozen_layers_as_they_were_and_measures_less_memory(
        write_suite, tmp_path, optimizer):
    suite = finetune_suite(write_suite, {"optimizer": optimizer},
                           {"optimizer": optimizer, "freeze_first": 1},
                           training={"epochs": 1, "batch_size": 64, "lr": 0.05,
                                     "binsfo_eta": 100.0})
    start = None
    results = {}
    for job in expand(suite):
        start = pretrained_start(job, None, tmp_path / "pretrain")
        result = run_job(RunContext(job=job, data_root=None, workdir=tmp_path / job.key,
                                    start_state=start))
        results[job.params["freeze_first"]] = result
    before = load_state(build_model(job, (1, 8, 8), 10), start).state_dict()
    after = torch.load(io.BytesIO(results[1].artifacts["weights.pt"]), weights_only=True)
    for name in ("stem.0.weight", "stem.1.weight", "stem.1.bias", "stem.2.zeta"):
        assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["blocks.0.bn.weight"], after["blocks.0.bn.weight"])  # trained
    frozen = "blocks.0.conv.weight"  # its binary weight, scale * sign, is what it computes
    assert torch.equal(before[frozen] >= 0, after[frozen] >= 0)  # the bits
    assert torch.allclose(scaled_sign(before[frozen]), scaled_sign(after[frozen]), rtol=1e-6)
    trained = "blocks.1.conv.weight"
    assert not torch.equal(before[trained] >= 0, after[trained] >= 0)
    whole, part = results[0].metrics, results[1].metrics
    assert part["frozen_layers"] == 1 and whole["frozen_layers"] == 0
    assert results[1].config["frozen_layers"] == ["blocks.0.conv"]
    for component in ("optimizer", "gradients", "activations", "total", "peak"):
        assert part[f"memory_{component}"] < whole[f"memory_{component}"], component
    assert part["trained_params"] < whole["trained_params"]


def test_batch_norm_statistics_are_recomputed_with_the_final_weights(write_suite):
    """The first batch norm's recomputed statistics are the mean over the pass's batches of its
    input's batch mean and unbiased variance, worked out here from the stem's convolution."""
    from binarena.methods.bnn_finetune_run import recompute_bn_statistics
    from binarena.registry import DATASETS
    from binarena.suite import DatasetSpec

    model = tiny_network(write_suite)
    data = DATASETS.get("digits").load(DatasetSpec(name="digits", train_size=200), None).train
    norm = model.stem[1]
    norm.running_mean.fill_(5.0)  # stale: whatever training left must not count
    norm.num_batches_tracked.fill_(100)
    norm.momentum = 0.3
    recompute_bn_statistics(model, data, 64, torch.device("cpu"))
    x = data.tensors[0]
    with torch.no_grad():
        outputs = [model.stem[0](x[i:i + 64]) for i in range(0, 200, 64) if len(x[i:i + 64]) > 1]
    means = torch.stack([o.mean((0, 2, 3)) for o in outputs]).mean(0)
    variances = torch.stack([o.transpose(0, 1).flatten(1).var(1) for o in outputs]).mean(0)
    assert torch.allclose(norm.running_mean, means, atol=1e-5)
    assert torch.allclose(norm.running_var, variances, rtol=1e-4)
    assert norm.momentum == 0.3 and model.training  # as they were
