"""The memory of a training step (binarena.train_memory): the counts against bytes worked out by
hand from the shapes and from what each operation needs for its backward, and the measured peak
against those hand counts (bounded by them, and growing with the batch by the hand count of what
a sample adds)."""

from __future__ import annotations

import math

import pytest
import torch

from binarena.b2nn import make_switchable, set_binary, switchable_layers
from binarena.models.catalog import mlp
from binarena.suite import TrainingSpec
from binarena.train_memory import (TrainingMemory, cpu_peak, peak_memory, training_memory,
                                   training_setup)

OPTIMIZERS = ("ste", "reste", "bop", "binsfo")
D, C = 64, 10  # digits' 8 x 8 inputs, 10 classes
F32, I64 = 4, 8  # bytes

pytestmark = pytest.mark.usefixtures("one_thread")


def all_binary_mlp(width: int, depth: int) -> torch.nn.Module:
    """The catalog's MLP (a stem, ``depth`` residual blocks, a classifier; batch norm and BinReLU),
    every linear layer binary."""
    torch.manual_seed(0)
    model = make_switchable(mlp((1, 8, 8), C, width=width, depth=depth))
    set_binary(model, list(switchable_layers(model)))
    return model


def batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(size)
    return (torch.randn(size, 1, 8, 8, generator=generator),
            torch.randint(0, C, (size,), generator=generator))


def counted(rule: str, width: int = 16, depth: int = 1, size: int = 32,
            **schedule) -> TrainingMemory:
    model = all_binary_mlp(width, depth)
    with training_setup(model, TrainingSpec(binary_optimizer=rule, **schedule)) as opt:
        return training_memory(model, opt, batch(size))


def saved_per_sample(width: int, depth: int) -> int:
    """Bytes autograd saves per sample of the MLP, op by op: the stem's linear saves sign(x) (its
    weight's gradient; x itself, the batch, is not counted), batch norm its input, BinReLU its
    mask (bool); each block's ApproxSign its input, its linear sign(input), then batch norm and
    BinReLU as the stem's; the classifier's ApproxSign and linear as a block's; log-softmax its
    output (nll_loss saves the labels: the batch)."""
    stem = F32 * D + F32 * width + width
    block = 2 * F32 * width + F32 * width + width
    return stem + depth * block + 2 * F32 * width + F32 * C


def saved_per_batch(width: int, depth: int) -> tuple[int, int]:
    """Bytes saved once per batch, and of them the binary weights ``scale * sign``: each batch
    norm's mean and inverse deviation, the float binary weight of every linear layer but the
    stem's (whose input needs no gradient), nll_loss's total weight (a float scalar)."""
    binarized = F32 * (depth * width * width + width * C)
    return (1 + depth) * 2 * F32 * width + binarized + F32, binarized


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_the_counts_are_the_bytes_worked_out_by_hand(optimizer) -> None:
    """A 64-16-16-10 MLP, all binary (1,440 binary weights: 64*16 + 16*16 + 16*10), SGD with
    momentum for the real parameters. Latent weights are floats under ste and reste, bits (ceil
    of n / 8 bytes per layer) and a float scale per output under bop and binsfo; momentum and
    gradient one float per trained number; Bop adds a float momentum per binary weight, BinSFO a
    float64 variance per layer."""
    n = [64 * 16, 16 * 16, 16 * C]
    outputs = [16, 16, C]
    biases = sum(outputs)  # every linear layer has one
    batch_norm = 2 * 2 * 16  # two BatchNorm1d(16): weight + bias each
    real = biases + batch_norm
    running = F32 * 2 * 2 * 16 + 2 * I64  # running mean and var, num_batches_tracked
    memory = counted(optimizer)
    if optimizer in ("ste", "reste"):
        assert memory.latent == F32 * sum(n)
        assert memory.weights == F32 * real + running
        assert memory.optimizer == memory.gradients == F32 * (sum(n) + real)
    else:
        scales = sum(outputs)
        assert memory.latent == 0
        assert memory.weights == F32 * (real + scales) + running + sum(math.ceil(k / 8) for k in n)
        assert memory.gradients == F32 * (real + scales) + F32 * sum(n)  # dL/ds until the step
        rule = F32 * sum(n) if optimizer == "bop" else 8 * len(n)
        assert memory.optimizer == F32 * (real + scales) + rule
    per_batch, binarized = saved_per_batch(16, 1)
    assert memory.activations == 32 * saved_per_sample(16, 1) + per_batch
    assert memory.binarized == binarized
    assert memory.total == (memory.weights + memory.latent + memory.optimizer + memory.gradients
                            + memory.activations)


def test_a_frozen_binary_layer_counts_as_bits_under_every_optimizer() -> None:
    """The block's 16 x 16 weight frozen under ste: stored as bits as ``train`` stores it (32
    bytes and 16 float scales among the weights, none of it latent, trained or in a gradient); its
    float weight ``scale * sign``, made without a gradient and saved by the linear layer for its
    input's gradient, is still counted among the binarized weights; the layer's input, which only
    the weight's gradient needs, is not saved."""
    model = all_binary_mlp(16, 1)
    model.blocks[0].fc.weight.requires_grad_(False)
    with training_setup(model, TrainingSpec(binary_optimizer="ste")) as optimizer:
        memory = training_memory(model, optimizer, batch(32))
    trained = 64 * 16 + 16 * C
    real = 42 + 2 * 2 * 16  # biases, batch norm
    running = F32 * 2 * 2 * 16 + 2 * I64
    assert memory.latent == F32 * trained
    assert memory.weights == F32 * real + running + 256 // 8 + F32 * 16
    assert memory.optimizer == memory.gradients == F32 * (trained + real)
    per_batch, binarized = saved_per_batch(16, 1)
    assert memory.binarized == binarized
    no_weight_gradient = F32 * 16  # the frozen linear layer does not save sign(x) for it
    assert memory.activations == 32 * (saved_per_sample(16, 1) - no_weight_gradient) + per_batch


def test_adam_keeps_two_moments_and_a_step_count_per_parameter() -> None:
    """Under BinSFO with Adam: exp_avg and exp_avg_sq per real number, a float32 step per
    parameter tensor (3 weights' scales, 3 biases, 2 x 2 batch-norm tensors: 10), 3 variances."""
    real = 42 + 42 + 2 * 2 * 16  # scales (16 + 16 + 10), biases (as many), batch norm
    assert counted("binsfo", optimizer="adam").optimizer == 2 * F32 * real + F32 * 10 + 8 * 3


def test_counting_leaves_the_training_as_it_was() -> None:
    """The step taken to count is undone: weights (bits and batch-norm statistics), optimizer and
    rule state (BinSFO's variances), gradients and the random stream (BinSFO draws its masks from
    it) are as before, so training goes on unchanged."""
    model = all_binary_mlp(16, 1)
    with training_setup(model, TrainingSpec(binary_optimizer="binsfo")) as optimizer:
        x, y = batch(32)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()  # the state exists
        torch.nn.functional.cross_entropy(model(x), y).backward()  # gradients pending
        before = {k: v.clone() for k, v in model.state_dict().items()}
        state = optimizer.state_dict()
        momenta = [s["momentum_buffer"].clone() for s in state["state"].values()]
        variances = [v.clone() for v in state["binary_optimizer"]["variances"]]
        grads = [p.grad.clone() for p in model.parameters()]
        rng = torch.get_rng_state()
        training_memory(model, optimizer, batch(32))
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
        state = optimizer.state_dict()
        assert all(torch.equal(a, s["momentum_buffer"])
                   for a, s in zip(momenta, state["state"].values(), strict=True))
        assert all(torch.equal(a, b) for a, b in zip(
            variances, state["binary_optimizer"]["variances"], strict=True))
        assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters(), strict=True))
        assert torch.equal(torch.get_rng_state(), rng)
        assert model.training


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device: max_memory_allocated unmeasured"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("optimizer", ["ste", "binsfo"])
def test_the_measured_peak_holds_what_was_counted_and_grows_with_the_batch(optimizer,
                                                                           device) -> None:
    """A 64-64x4-10 MLP. When the backward begins, the model, the optimizer's state, the batch
    and every saved tensor are alive; when it ends, the gradients instead of the saved tensors:
    the peak holds the larger. Doubling the batch from 64 adds the hand count of what 64 samples
    save and take as a batch; the peak adds 17 % more (measured on the CPU: it comes inside
    ApproxSign's backward, whose temporaries of a layer's width are alive with the saved tensors
    of the layers before)."""
    width, depth, size = 64, 4, 64
    model = all_binary_mlp(width, depth)
    schedule = TrainingSpec(binary_optimizer=optimizer)
    with training_setup(model, schedule) as opt:
        memory = training_memory(model, opt, batch(size))
    as_batch = size * (F32 * D + I64)
    peak = peak_memory(model, schedule, batch(size), device=device)
    assert peak >= (memory.weight_and_optimizer + max(memory.activations, memory.gradients)
                    + as_batch)
    added = peak_memory(model, schedule, batch(2 * size), device=device) - peak
    by_hand = size * (saved_per_sample(width, depth) + F32 * D + I64)
    assert by_hand <= added <= 1.25 * by_hand


def test_the_cpu_peak_is_the_largest_sum_of_live_bytes_inside_the_measured_part() -> None:
    """Exact bytes: 4,000 allocated before the part and kept, 8,000 + 2,000 alive together in it
    (14,000), 400 after one is freed; 40,000 alive only before it and 1 MB allocated before
    ``run`` and freed inside it count for nothing (allocated under an earlier profile, so that
    torch reports its free)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True):
        before_run = [torch.empty(250_000)]

    def run(measured) -> None:
        kept = torch.empty(1_000)
        torch.empty(10_000)  # 40,000 bytes, freed at once
        before_run.clear()
        with measured():
            a, b = torch.empty(2_000), torch.empty(500)
            del a
            c = torch.empty(100)
        del kept, b, c

    assert cpu_peak(run) == 4_000 + 8_000 + 2_000


def test_the_memory_benchmark_puts_every_optimizer_beside_reste(tmp_path) -> None:
    """benchmarks/latent_free_memory on a tiny cnn: a row per optimizer and batch, ReSTE's at
    100 %, the shares computed from the components, no latent weights under bop and binsfo, and
    the 35 % target judged from BinSFO's share."""
    import json

    from binarena.benchmarks.latent_free_memory import main

    main(["--out", str(tmp_path), "--input-shape", "1,8,8", "--channels", "4,8",
          "--blocks", "1", "--batch-sizes", "4"])
    report = json.loads((tmp_path / "latent_free_memory.json").read_text())
    rows = {r["method"]: r for r in report["rows"]}
    assert list(rows) == list(OPTIMIZERS)
    reste = rows["reste"]
    assert reste["total_pct_of_reste"] == reste["peak_pct_of_reste"] == 100.0
    for row in rows.values():
        assert row["total"] == sum(row[k] for k in ("weights", "latent", "optimizer",
                                                    "gradients", "activations"))
        assert row["weight_and_optimizer_pct_of_reste"] == pytest.approx(
            100 * (row["weights"] + row["latent"] + row["optimizer"])
            / (reste["weights"] + reste["latent"] + reste["optimizer"]))
    assert rows["bop"]["latent"] == rows["binsfo"]["latent"] == 0 < rows["ste"]["latent"]
    share = rows["binsfo"]["weight_and_optimizer_pct_of_reste"]
    assert report["target"] == {"target_pct": 35.0, "binsfo_pct": share, "holds": share <= 35}
