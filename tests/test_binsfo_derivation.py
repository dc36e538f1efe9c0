"""BinSFO's derivation checked by Monte Carlo (Shibuya et al., ICASSP 2025, eq. 7): on Gaussian
latent weights and gradients (eq. 8), the bits BinSFO draws (eq. 9, sigma by eq. 8's recursion)
have the expectation of the bits latent-weight SGD gives, w_t = w_{t-1} - eta g, binarized.

Unconditionally both expectations are 1/2 for any rule symmetric in the sign, so eq. 7 is
checked as eq. 9 was derived, given b_{t-1} and g: per sign b of the previous bits and per
twentieth of the gradients (quantile bins), the share of +1 bits of the SGD flow and of BinSFO's
(the production ``BinSFO`` on ``PackedSigns``) agree within 5 standard errors of their difference
(binomial, from the two shares and the cell's count: about 5,000). A wrong temperature or a
missed variance update moves the shares by 10+ errors."""

from __future__ import annotations

import math

import pytest
import torch

from binarena.binary_optimizers import BinSFO
from binarena.bits import PackedSigns, pack

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (400, 500)  # 200,000 weights
BINS, TOLERANCE = 20, 5.0  # gradient bins per sign; standard errors


def disagreements(previous: torch.Tensor, grad: torch.Tensor, sgd: torch.Tensor,
                  binsfo: torch.Tensor) -> list[tuple[float, float, float]]:
    """(SGD share, BinSFO share, standard error) of every (sign, gradient bin) cell where the
    shares differ by more than ``TOLERANCE`` errors."""
    bad = []
    for sign in (True, False):
        cell = previous == sign
        g = grad[cell]
        edges = torch.quantile(g[torch.randperm(len(g))[:100_000]],
                               torch.linspace(0, 1, BINS + 1)[1:-1])
        which = torch.bucketize(g, edges)
        for k in range(BINS):
            inside = which == k
            n = int(inside.sum())
            p = sgd[cell][inside].double().mean().item()
            q = binsfo[cell][inside].double().mean().item()
            error = math.sqrt((p * (1 - p) + q * (1 - q)) / n)
            if abs(p - q) > TOLERANCE * error + 1e-12:
                bad.append((p, q, error))
    return bad


def test_binsfo_keeps_the_expected_bits_of_latent_weight_sgd_eq_7() -> None:
    """Two steps, eta = 1 and gradients of deviation 1 (flips are frequent): step 1 from latent
    weights N(0, 1) (sigma_0 = 1); step 2 from the SGD flow's weights w_1 = w_0 - g_1, which are
    N(0, 2), BinSFO's sigma_1^2 = 1 + var(g_1) by eq. 8."""
    torch.manual_seed(0)
    eta = 1.0
    latent = torch.randn(SHAPE)
    weight = PackedSigns(latent.clone().requires_grad_())
    binsfo = BinSFO([weight], eta)
    for _ in range(2):
        grad = torch.randn(SHAPE)
        weight.bits.copy_(pack(latent >= 0))
        weight.grad = grad.clone()
        binsfo.step()
        after = latent - eta * grad
        assert disagreements(latent >= 0, grad, after >= 0, weight.positive()) == []
        latent = after
    assert binsfo.variances[0].item() == pytest.approx(latent.var().item(), rel=0.02)
