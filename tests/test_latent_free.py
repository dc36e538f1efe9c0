"""The four ways to train binary weights (issue 15): ste, reste, bop, binsfo. Each rule against an
independent reference (numbers worked by hand, formulas in numpy), each optimizer training a tiny
BNN on digits well beyond what its real-valued parameters reach alone, the latent-free ones with
no float copy of a binary weight anywhere in the process between steps."""

from __future__ import annotations

import gc
import math

import numpy as np
import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from binarena.b2nn import make_switchable, set_binary, switchable_layers
from binarena.binary import BinarizableLinear
from binarena.binary_optimizers import BinSFO, Bop, ReSTE, hypermask_probabilities
from binarena.bits import PackedSigns, pack, unpack, weights_as_bits
from binarena.errors import SuiteError
from binarena.jobs import expand
from binarena.models.catalog import mlp
from binarena.registry import DATASETS
from binarena.suite import DatasetSpec, TrainingSpec, load_suite
from binarena.training import evaluate, make_optimizer, train

OPTIMIZERS = ("ste", "reste", "bop", "binsfo")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tensors this small train fastest on one thread (on a loaded machine, two take 100x as long)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def packed(signs) -> PackedSigns:
    """Signs (+-1 floats) stored as a trainable binary weight, with scale 1 per row."""
    return PackedSigns(torch.as_tensor(signs, dtype=torch.float32).clone().requires_grad_())


def test_bits_are_numpys_little_endian_packbits() -> None:
    generator = torch.Generator().manual_seed(0)
    for shape in ((21,), (3, 5, 7), (8,)):
        mask = torch.rand(shape, generator=generator) > 0.5
        bits = pack(mask)
        assert bits.dtype == torch.uint8
        assert bits.tolist() == np.packbits(mask.numpy().ravel(), bitorder="little").tolist()
        assert torch.equal(unpack(bits, mask.numel()).view(shape), mask)


def test_bop_flips_where_the_momentum_pushes_past_the_threshold() -> None:
    """gamma 0.5, threshold 0.3, two steps, worked by hand:
    step 1: m = g1 / 2 = [.5, .2, -.5, .4, -.1, -.2]; w * m = [.5, .2, .5, -.4, -.1, .2]: 0 and 2
    flip; step 2: m = (m + g2) / 2 = [.75, .4, -.15, -.1, -.15, -.55], w * m = [-.75, .4, -.15,
    .1, -.15, .55]: 1 and 5 flip (1 by momentum built over both steps; 0 does not flip back)."""
    weight = packed([[1, 1, -1], [-1, 1, -1]])
    bop = Bop([weight], threshold=0.3, gamma=0.5)
    weight.grad = torch.tensor([[1.0, 0.4, -1.0], [0.8, -0.2, -0.4]])
    bop.step()
    assert weight.signs().tolist() == [[-1, 1, 1], [-1, 1, -1]]
    assert bop.momenta[0].flatten().tolist() == pytest.approx([0.5, 0.2, -0.5, 0.4, -0.1, -0.2])
    weight.grad = torch.tensor([[1.0, 0.6, 0.2], [-0.6, -0.2, -0.9]])
    bop.step()
    assert weight.signs().tolist() == [[-1, -1, 1], [-1, 1, 1]]
    assert weight.grad is None  # taken by the step: no float gradient kept until the next


def eq9(positive: np.ndarray, grad: np.ndarray, temperature: float) -> np.ndarray:
    """BinSFO's eq. 9 in numpy: erf(max(tau g, 0)) where b = 1, -erf(min(tau g, 0)) where b = 0."""
    erf = np.vectorize(math.erf)
    scaled = temperature * grad
    return np.where(positive, erf(np.maximum(scaled, 0)), -erf(np.minimum(scaled, 0)))


def test_binsfo_draws_its_hypermask_from_eq_9_with_the_variance_of_eq_8() -> None:
    """Every column is one (b, g) pair, every row an independent draw: flip frequencies over 20,000
    rows match eq. 9 within 5 binomial standard deviations, at step 1 (sigma_0 = 1: tau =
    eta / sqrt 2) and again from the same bits at step 2, where sigma_1^2 = 1 + eta^2 var(g)."""
    g = np.array([-2, -1, -0.4, -0.1, 0, 0.1, 0.4, 1, 2] * 2)
    b = np.repeat([True, False], 9)
    eta, draws = 1.0, 20_000
    assert hypermask_probabilities(torch.tensor(b), torch.tensor(g), 0.7).numpy() == (
        pytest.approx(eq9(b, g, 0.7), abs=1e-12))
    torch.manual_seed(0)
    weight = packed(np.where(b, 1.0, -1.0)[None].repeat(draws, 0))
    start = weight.bits.clone()
    binsfo = BinSFO([weight], eta)
    variance = 1.0
    for _ in range(2):
        weight.bits.copy_(start)
        weight.grad = torch.tensor(g, dtype=torch.float32).expand(draws, -1).clone()
        binsfo.step()
        flipped = (weight.positive() != torch.tensor(b)).double().mean(0).numpy()
        p = eq9(b, g, eta / (math.sqrt(2) * math.sqrt(variance)))
        assert np.all(np.abs(flipped - p) <= 5 * np.sqrt(p * (1 - p) / draws)), (flipped, p)
        variance += eta**2 * np.var(g.astype(np.float32))
        assert binsfo.variances[0].item() == pytest.approx(variance, rel=1e-5)


def reste_reference(x: np.ndarray, o: float) -> np.ndarray:
    """ReSTE's backward: 0.1^((1-o)/o) for |x| <= 0.1, (1/o)|x|^((1-o)/o) up to 1.5, 0 beyond."""
    a = np.abs(x)
    curve = np.maximum(a, 0.1) ** ((1 - o) / o) / o
    return np.where(a <= 0.1, 0.1 ** ((1 - o) / o), np.where(a <= 1.5, curve, 0.0))


def test_reste_reshapes_the_binary_layers_latent_gradient_by_its_formula() -> None:
    """Points in every region; o = 1.5 (one step of four into a rise to 3) and o = 3 (the end).
    A full-precision layer's gradient is left alone."""
    x = np.array([-3.0, -1.5, -0.7, -0.2, -0.05, 0.0, 0.03, 0.3, 1.0, 1.49, 2.0])
    binary = BinarizableLinear(len(x), 1, bias=False, binary=True)
    real = BinarizableLinear(len(x), 1, bias=False)
    model = torch.nn.Sequential(binary, real)
    with torch.no_grad():
        binary.weight.copy_(torch.tensor(x)[None])
        real.weight.copy_(torch.tensor(x)[None])
    reste = ReSTE(model, o_max=3.0, total_steps=4)
    assert ReSTE(model, 3.0, 4).o == 1.0
    for steps, o in ((1, 1.5), (4, 3.0), (9, 3.0)):
        reste.load_state_dict({"steps": steps})
        assert reste.o == o
        for layer in model:  # d(sum of outputs)/dw = 1 through the straight-through estimator
            layer.weight.grad = torch.ones_like(layer.weight)
        reste.step()
        assert binary.weight.grad[0].numpy() == pytest.approx(reste_reference(x, o), rel=1e-6)
        assert torch.equal(real.weight.grad, torch.ones_like(real.weight))


def test_reste_runs_in_the_schedules_optimizer_step() -> None:
    """Plain SGD (lr 0.1) over two steps of a two-step training: o = 1, then o = 2; every weight's
    straight-through gradient is 1, so each step moves it by -0.1 times ReSTE's backward there
    (a weight beyond 1.5 stays where the straight-through estimator would move it)."""
    layer = BinarizableLinear(3, 1, bias=False, binary=True)
    w = np.array([2.0, 0.5, 0.05])
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(w)[None])
    schedule = TrainingSpec(lr=0.1, momentum=0, weight_decay=0, binary_optimizer="reste")
    optimizer = make_optimizer(layer, schedule, total_steps=2)
    for o in (1.0, 2.0):
        optimizer.zero_grad()
        layer(torch.ones(1, 3)).sum().backward()
        optimizer.step()
        w = w - 0.1 * reste_reference(w, o)
        assert layer.weight[0].detach().numpy() == pytest.approx(w, rel=1e-6)


@pytest.fixture(scope="module")
def digits() -> tuple[TensorDataset, TensorDataset]:
    data = DATASETS.get("digits").load(DatasetSpec(name="digits", val_size=0), None)
    return data.train, data.test


def tiny_bnn(width: int = 32, depth: int = 1, binary: str = "all") -> torch.nn.Module:
    """The catalog's MLP, every linear layer binary (stem and classifier too: only batch norm,
    biases and scales stay real) or only its blocks' (``binary="blocks"``)."""
    torch.manual_seed(0)
    model = make_switchable(mlp((1, 8, 8), 10, width=width, depth=depth))
    layers = list(switchable_layers(model))
    set_binary(model, layers if binary == "all" else layers[1:-1])
    return model


SCHEDULE = {"epochs": 5, "batch_size": 64, "optimizer": "adam", "lr": 0.01}
TINY = {"ste": {}, "reste": {}, "bop": {}, "binsfo": {"binsfo_eta": 100.0}}  # larq's Bop defaults


def accuracy_after(schedule: TrainingSpec, digits) -> float:
    model = tiny_bnn()
    keys = set(model.state_dict())
    train(model, digits[0], schedule, seed=0)
    assert set(model.state_dict()) == keys and all(m.packed is None for m in
                                                   switchable_layers(model).values())
    return evaluate(model, digits[1]).accuracy


@pytest.fixture(scope="module")
def real_parameters_alone(digits) -> float:
    """The same training with binary weights that never move (Bop that never flips): batch norm,
    biases and scales alone reach 32.8 %; chance is 10 %."""
    return accuracy_after(TrainingSpec(**SCHEDULE, binary_optimizer="bop", bop_threshold=100.0),
                          digits)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_binary_optimizer_trains_a_tiny_bnn(optimizer, digits, real_parameters_alone) -> None:
    """A 64-32-32-10 MLP, all binary, 5 epochs of digits: ste 85.0 %, reste 88.3 %, bop 85.8 %,
    binsfo 65.0 % (eta 100: the paper's 0.01 moves nothing from scratch), test accuracy."""
    schedule = TrainingSpec(**SCHEDULE, binary_optimizer=optimizer, **TINY[optimizer])
    assert accuracy_after(schedule, digits) > max(30.0, real_parameters_alone + 15)


def float_tensors(numel: int) -> list[torch.Tensor]:
    """Every floating tensor of ``numel`` elements alive in this process."""
    gc.collect()
    return [t for t in gc.get_objects() if issubclass(type(t), torch.Tensor)
            and t.is_floating_point() and t.numel() == numel]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_latent_free_optimizers_keep_binary_weights_as_bits_only(optimizer, digits) -> None:
    """Between steps, walk the model's parameters and buffers and every live tensor: under bop and
    binsfo the model holds its 23 x 23 binary weights as 67 bytes each and no float tensor of
    529 elements, bop's momenta (one per layer) are the only ones in the process and binsfo has
    none; under ste and reste the latent weights are there."""
    model = tiny_bnn(width=23, depth=2, binary="blocks")
    layers = 2
    seen: list[tuple[int, int, int]] = []

    def between_steps() -> None:
        if not seen:  # the first call comes before any step
            seen.append((-1, -1, -1))
            return
        in_model = [t for t in (*model.parameters(), *model.buffers()) if t.numel() == 529]
        floats = sum(t.is_floating_point() for t in in_model)
        bits = sum(t.dtype == torch.uint8 and t.numel() == 67 for t in model.buffers())
        seen.append((floats, bits, len(float_tensors(529))))

    schedule = TrainingSpec(**SCHEDULE, binary_optimizer=optimizer, **TINY[optimizer])
    train(model, Subset(digits[0], range(256)), schedule, seed=0, steps=4,
          before_step=between_steps)
    after_steps = seen[1:]
    if optimizer in ("ste", "reste"):
        assert all(floats == layers and bits == 0 and live >= layers
                   for floats, bits, live in after_steps), seen
    else:
        expected_live = layers if optimizer == "bop" else 0
        assert after_steps == [(0, layers, expected_live)] * 3, seen


@pytest.mark.parametrize("optimizer", ["bop", "binsfo"])
def test_a_killed_latent_free_training_resumes_to_the_same_bits(optimizer, digits, tmp_path):
    """Epoch checkpoints hold the bits, the rule's state (Bop's momenta, BinSFO's variances) and
    the random stream of BinSFO's draws: killed after epoch 2 and resumed, the training ends
    with the weights of an uninterrupted one."""
    data = Subset(digits[0], range(200))
    schedule = TrainingSpec(epochs=4, batch_size=50, binary_optimizer=optimizer,
                            bop_gamma=1e-2, binsfo_eta=100.0)
    whole = tiny_bnn(width=16)
    train(whole, data, schedule, seed=0)

    def kill_after_epoch_2(epoch: int, _loss: float) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_bnn(width=16), data, schedule, seed=0, checkpoint=tmp_path / "c.pt",
              on_epoch=kill_after_epoch_2)
    resumed = tiny_bnn(width=16)
    log = train(resumed, data, schedule, seed=0, checkpoint=tmp_path / "c.pt")
    assert log.resumed_at == 2
    a, b = whole.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["stem.1.weight"].sign(), tiny_bnn(width=16).stem[1].weight.sign())


def test_a_schedule_without_a_binary_optimizer_keeps_the_keys_recorded_before_it(write_suite):
    """Job keys pinned at commit 3890173 (as in test_pretraining): the new fields at their
    defaults leave them as they were; choosing an optimizer makes other jobs, and only the chosen
    optimizer's own hyper-parameters enter its key."""
    def key(**training) -> str:
        suite = write_suite(training={"epochs": 2, "batch_size": 64, "lr": 0.05, **training})
        return {j.label: j.key for j in expand(load_suite(suite))}["full-precision[seed=0]"]

    assert key() == "46c36dd2d7c0cedd"
    assert key(binary_optimizer="ste", binsfo_eta=5.0, bop_gamma=0.1) == "46c36dd2d7c0cedd"
    bop = key(binary_optimizer="bop")
    assert bop != key() and bop != key(binary_optimizer="binsfo")
    assert key(binary_optimizer="bop", binsfo_eta=5.0) == bop != key(binary_optimizer="bop",
                                                                    bop_gamma=0.1)


def test_a_suite_refuses_what_bits_cannot_train(write_suite) -> None:
    with pytest.raises(SuiteError, match=r"training\.precision: fp16 scales gradients"):
        load_suite(write_suite(training={"binary_optimizer": "binsfo", "precision": "fp16"}))
    with pytest.raises(SuiteError, match=r"methods\[0\]: bop trains bits on one worker"):
        load_suite(write_suite(training={"binary_optimizer": "bop"}, resources={"workers": 2}))
    with pytest.raises(ValueError, match="makes its own optimizer"):
        model = tiny_bnn(width=4)
        train(model, TensorDataset(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)),
              TrainingSpec(binary_optimizer="bop"), seed=0,
              optimizer=torch.optim.SGD(model.parameters(), lr=0.1))


def test_weights_as_bits_computes_the_function_the_float_weights_did(digits) -> None:
    """Stored, trained by nothing and handed back, the network computes what it did (the bits are
    w >= 0, the scales mean |w| per channel: the straight-through layer's own binarization)."""
    model = tiny_bnn().eval()
    x = digits[1].tensors[0][:32]
    before = model(x)
    with weights_as_bits(model) as stored:
        assert len(stored) == 3 and not any(n.endswith("weight") and p.dim() > 1
                                             for n, p in model.named_parameters())
        assert torch.allclose(model(x), before, atol=1e-6)
    assert torch.allclose(model(x), before, atol=1e-6)
