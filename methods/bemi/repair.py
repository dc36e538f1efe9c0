"""A start the printed Max-Margin and Min-Weight can use: a local repair of a network so that every
hidden neuron is at least its margin away from the switching point on the given images.

The printed M-M (5c-5e) asks ``pre >= m`` of an active neuron and ``pre <= -m`` of an inactive one
with ``m >= eps``, so a hidden pre-activation of 0 on a confident image (common: S-M allows it)
makes S-M's network infeasible as M-M's start. The printed M-W (7d) asks ``pre <= -eps - m`` with
M-M's margins, which M-M's own network breaks wherever a margin is tight on the negative side. The
models stay as printed; this only looks, weight by weight, for a nearby network that satisfies
them, to hand to the solver as its first incumbent.

The search: neuron by neuron, layer by layer, the candidate changes of one column of weights
(every column when a neuron has few inputs, else one weight by +-1), each scored by a true forward
pass on all images: first the outputs that miss their bound, then the hidden (image, neuron) pairs
that do, then how many weights changed. The best candidate is taken while it improves the score.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

EXHAUSTIVE = 4096  # enumerate every column of a neuron with at most this many ((2P + 1) ** fan-in)


@dataclass(frozen=True)
class Bounds:
    """What a start must satisfy: hidden layer l's neuron j on image k is fine when active with
    ``pre >= floor[l][j]`` or inactive with ``pre <= ceil[l][j]``; output j when
    ``y * pre >= out_floor[j] + out_below * (y < 0)``."""

    floor: list[np.ndarray]
    ceil: list[np.ndarray]
    out_floor: np.ndarray
    out_below: float = 0.0


def violations(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, bounds: Bounds
               ) -> tuple[int, int]:
    """(outputs that miss their bound, hidden (image, neuron) pairs that miss theirs)."""
    z, hidden = x, 0
    for l, w in enumerate(weights[:-1]):
        a = z @ w
        hidden += int(np.count_nonzero(_bad(a, bounds.floor[l], bounds.ceil[l])))
        z = np.where(a >= 0, 1.0, -1.0)
    out = y * (z @ weights[-1])
    return int(np.count_nonzero(out < _out_floor(y, bounds) - 1e-9)), hidden


def _bad(a: np.ndarray, floor: np.ndarray, ceil: np.ndarray) -> np.ndarray:
    return np.where(a >= 0, a < floor - 1e-9, a > ceil + 1e-9)


def _out_floor(y: np.ndarray, bounds: Bounds) -> np.ndarray:
    return bounds.out_floor + bounds.out_below * (y < 0)


def _columns(column: np.ndarray, p: int) -> np.ndarray:
    """Candidate columns (C, n_in): all of them for a small fan-in, else each weight moved by +-1."""
    n = len(column)
    if (2 * p + 1) ** n <= EXHAUSTIVE:
        return np.array(list(itertools.product(range(-p, p + 1), repeat=n)), dtype=np.int64)
    moves = []
    for delta in (1, -1):
        cand = np.repeat(column[None, :], n, axis=0) + delta * np.eye(n, dtype=np.int64)
        moves.append(cand[np.abs(cand[np.arange(n), np.arange(n)]) <= p])
    return np.concatenate(moves)


def _scores(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, bounds: Bounds, layer: int,
            j: int, columns: np.ndarray) -> np.ndarray:
    """(C, 3) scores of the network with neuron (layer, j)'s column replaced by each candidate."""
    z = x
    hidden = np.zeros(len(columns))
    for l in range(layer):
        a = z @ weights[l]
        hidden += np.count_nonzero(_bad(a, bounds.floor[l], bounds.ceil[l]))
        z = np.where(a >= 0, 1.0, -1.0)
    a = np.broadcast_to(z @ weights[layer], (len(columns), len(z), weights[layer].shape[1])).copy()
    a[:, :, j] = (z @ columns.T).T  # (C, t, n_l)
    for l in range(layer, len(weights) - 1):
        if l > layer:
            a = z @ weights[l]
        hidden += np.count_nonzero(_bad(a, bounds.floor[l], bounds.ceil[l]), axis=(-2, -1))
        z = np.where(a >= 0, 1.0, -1.0)
    out = y * (z @ weights[-1])
    missed = np.count_nonzero(out < _out_floor(y, bounds) - 1e-9, axis=(-2, -1))
    changed = np.count_nonzero(columns != weights[layer][:, j], axis=1)
    return np.stack([np.broadcast_to(missed, len(columns)), hidden, changed], axis=1)


def repair(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, p: int, bounds: Bounds,
           rounds: int = 3) -> list[np.ndarray]:
    """A network near ``weights`` (per layer, integers in [-P, P]) that breaks fewer of
    ``bounds`` on images ``x`` (t, n_0) with targets ``y`` (t, n_L); ``weights`` when none is
    found. Only hidden neurons' columns change (the outputs are scored, not edited)."""
    current = [w.astype(np.int64).copy() for w in weights]
    score = (*violations(current, x, y, bounds), 0)
    for _ in range(rounds):
        before = score
        for layer in range(len(current) - 1):
            for j in range(current[layer].shape[1]):
                while score[0] + score[1] > 0:
                    columns = _columns(current[layer][:, j], p)
                    scores = _scores(current, x, y, bounds, layer, j, columns)
                    best = min(range(len(columns)), key=lambda c: tuple(scores[c]))
                    if tuple(scores[best][:2]) >= score[:2]:
                        break
                    current[layer][:, j] = columns[best]
                    score = (int(scores[best][0]), int(scores[best][1]), 0)
        if score[:2] == (0, 0) or score[:2] == before[:2]:
            break
    return current
