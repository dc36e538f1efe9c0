"""How ``bdnn-ste`` and ``bdnn-mlp`` (``binarena.methods.bdnn.gradient``) train: Adam through
``binarena.training.train``, one epoch at a time on the job's split, keeping the weights of the
epoch with the best validation accuracy. Every epoch is checkpointed with that best epoch, so a
killed job resumes where it was and ends as an uninterrupted one would. Both train in float64,
the precision of ``network.BDNN``: the trained tensors are the BDNN measured, bounds included."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from binarena.methods.base import Result, RunContext
from binarena.methods.bdnn.data import Split, split_table, table_of
from binarena.methods.bdnn.gradient import GradientParams, SteParams
from binarena.methods.bdnn.network import BDNN
from binarena.results import atomic_write
from binarena.seeds import derive_seed
from binarena.suite import TrainingSpec
from binarena.training import evaluate, make_optimizer, train

Score = Callable[[nn.Module, np.ndarray, np.ndarray], float]  # (network, x, labels) -> accuracy %


class StraightThroughStep(torch.autograd.Function):
    """The step ``u = 1 if a >= 0 else 0`` forward; backward the clipped straight-through
    estimator: the gradient passes unchanged where |a| <= 1 and is zero elsewhere (the
    "hard tanh" STE of Courbariaux, Hubara et al., "Binarized Neural Networks", NeurIPS 2016,
    arXiv:1602.02830; after Bengio et al. 2013). The step itself has a zero gradient almost
    everywhere: without an estimator nothing before it would learn."""

    @staticmethod
    def forward(ctx, a: Tensor) -> Tensor:
        ctx.save_for_backward(a)
        return (a >= 0).to(a.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (a,) = ctx.saved_tensors
        return grad * (a.abs() <= 1).to(grad.dtype)


def step(a: Tensor) -> Tensor:
    return StraightThroughStep.apply(a)


def as_logits(margin: Tensor) -> Tensor:
    """Logits for cross-entropy: one output's margin m becomes (0, m), whose cross-entropy is
    the binary cross-entropy with logits of m."""
    return torch.cat([torch.zeros_like(margin), margin], dim=1) if margin.shape[1] == 1 else margin


def uniform(shape: tuple[int, ...], bound: float) -> nn.Parameter:
    return nn.Parameter(torch.empty(shape, dtype=torch.float64).uniform_(-bound, bound))


class SteNetwork(nn.Module):
    """A BDNN in torch: ``z_{k+1} = step(z_k @ w_k - b_k)``, weights (d_k, d_{k+1}) as in
    ``network.BDNN``. The loss sees the output layer's margins (its step is the forward pass
    ``BDNN`` measures; a prediction is their argmax, or their sign for one output)."""

    def __init__(self, layers: list[int], bias_bound: float) -> None:
        super().__init__()
        self.bias_bound = bias_bound
        # PyTorch's Linear range 1/sqrt(d_in): the first margins start mostly within the
        # estimator's window |a| <= 1
        pairs = [(d_in, d_out, d_in ** -0.5) for d_in, d_out in pairwise(layers)]
        self.weights = nn.ParameterList(uniform((d_in, d_out), r) for d_in, d_out, r in pairs)
        self.biases = nn.ParameterList(uniform((d_out,), r) for _, d_out, r in pairs)
        self.clip()

    def forward(self, x: Tensor) -> Tensor:
        z = x
        for w, b in zip(self.weights, self.biases):
            margin = z @ w - b
            z = step(margin)
        return as_logits(margin)

    @torch.no_grad()
    def clip(self) -> None:
        """Back into the BDNN's box: weights in [-1, 1], biases in [-B, B]."""
        for w in self.weights:
            w.clamp_(-1.0, 1.0)
        for b in self.biases:
            b.clamp_(-self.bias_bound, self.bias_bound)

    def bdnn(self) -> BDNN:
        return BDNN([w.detach().numpy().copy() for w in self.weights],
                    [b.detach().numpy().copy() for b in self.biases])


class TwoClassLogits(nn.Module):
    """``as_logits`` as the last module of an MLP with one output."""

    def forward(self, margin: Tensor) -> Tensor:
        return as_logits(margin)


def mlp(layers: list[int]) -> nn.Sequential:
    """Linear layers of the given widths, ReLU between them, a linear output."""
    modules: list[nn.Module] = []
    for d_in, d_out in pairwise(layers):
        modules += [nn.Linear(d_in, d_out), nn.ReLU()]
    modules[-1] = TwoClassLogits() if layers[-1] == 1 else nn.Identity()
    return nn.Sequential(*modules).double()


def tensors(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    return TensorDataset(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y))


def binary_accuracy(network: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """The BDNN's own forward pass (not the training graph) on ``x``."""
    assert isinstance(network, SteNetwork)
    return network.bdnn().accuracy(x, y)


def mlp_accuracy(network: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    return evaluate(network, tensors(x, y)).accuracy


@dataclass
class Best:
    """The epoch with the best validation accuracy so far (the first of equals), its weights."""

    epoch: int = 0
    accuracy: float = -1.0
    state: dict | None = None


def fit(ctx: RunContext, network: nn.Module, split: Split, params: GradientParams, score: Score,
        clip: Callable[[], None] | None = None) -> tuple[Best, float]:
    """Train ``network`` (``clip`` before every step and after the last) and leave it at the best
    epoch's weights; that epoch, and the seconds trained over every attempt of the job."""
    schedule = TrainingSpec(epochs=params.epochs, batch_size=params.batch_size, optimizer="adam",
                            lr=params.lr, weight_decay=params.weight_decay, label_smoothing=0.0,
                            milestones=[])
    optimizer = make_optimizer(network, schedule)
    data = tensors(split.x_train, split.y_train)
    path = ctx.checkpoints / "training.pt"
    epoch, seconds, best = 0, 0.0, Best()
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        network.load_state_dict(saved["network"])
        optimizer.load_state_dict(saved["optimizer"])
        epoch, seconds = saved["epoch"], saved["seconds"]
        best = Best(saved["best_epoch"], saved["best_accuracy"], saved["best_network"])
    while epoch < params.epochs:
        epoch += 1
        seconds += train(network, data, schedule, epochs=1, optimizer=optimizer, before_step=clip,
                         seed=derive_seed(ctx.job.seed, "bdnn/gradient", epoch)).seconds
        if clip is not None:
            clip()
        accuracy = score(network, split.x_val, split.y_val)
        if accuracy > best.accuracy:
            best = Best(epoch, accuracy, copy.deepcopy(network.state_dict()))
        buffer = io.BytesIO()
        torch.save({"network": network.state_dict(), "optimizer": optimizer.state_dict(),
                    "epoch": epoch, "seconds": seconds, "best_epoch": best.epoch,
                    "best_accuracy": best.accuracy, "best_network": best.state}, buffer)
        atomic_write(path, buffer.getvalue())
        ctx.sub_progress(epoch, params.epochs, "epochs")
    assert best.state is not None  # params.epochs >= 1
    network.load_state_dict(best.state)
    return best, seconds


def fit_and_measure(ctx: RunContext, network: nn.Module, params: GradientParams, score: Score,
                    clip: Callable[[], None] | None = None) -> Result:
    """Train on the job's split (the one ``bdnn-milp`` gets for the seed), test the best epoch."""
    split = split_table(*table_of(ctx.job.dataset, ctx.data_root), ctx.job.seed)
    best, seconds = fit(ctx, network, split, params, score, clip)
    metrics = {"accuracy": score(network, split.x_test, split.y_test),
               "val_accuracy": best.accuracy,
               "train_accuracy": score(network, split.x_train, split.y_train),
               "train_seconds": seconds,
               "parameters": float(sum(p.numel() for p in network.parameters())),
               "epochs_run": float(params.epochs),
               "best_epoch": float(best.epoch)}
    return Result(metrics=metrics, config={"layers": list(params.layers)})


def train_ste(ctx: RunContext, params: SteParams) -> Result:
    """``bdnn-ste``; its weights come back as ``network.npz`` (``BDNN.arrays``)."""
    torch.manual_seed(derive_seed(ctx.job.seed, "bdnn/gradient"))
    network = SteNetwork(params.layers, params.bias_bound)
    result = fit_and_measure(ctx, network, params, binary_accuracy, network.clip)
    buffer = io.BytesIO()
    np.savez(buffer, **network.bdnn().arrays())  # type: ignore[arg-type]  # keys are names
    result.artifacts["network.npz"] = buffer.getvalue()
    return result


def train_mlp(ctx: RunContext, params: GradientParams) -> Result:
    """``bdnn-mlp``."""
    torch.manual_seed(derive_seed(ctx.job.seed, "bdnn/gradient"))
    return fit_and_measure(ctx, mlp(params.layers), params, mlp_accuracy)
