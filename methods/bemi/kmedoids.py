"""k-medoids for BeMi's training images (the paper's future work, section 5): r images per class
that stand for the class, the medoids of r clusters of its training images.

The alternating algorithm (Park and Jun 2009; "Voronoi iteration"): start from k-medoids++ seeds
(D^2 sampling, like k-means++), then assign every image to its nearest medoid and move each medoid to
the member of its cluster with the least total distance to the others, until nothing changes.
Euclidean distances on the raw pixels. It reaches a fixed point (each medoid the best of its
cluster, each image with its nearest medoid), not necessarily the global optimum.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` and of ``b`` (float64, via one matmul)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def cost(points: np.ndarray, medoids: np.ndarray) -> float:
    """Total distance of every point to its nearest medoid (indices into ``points``)."""
    return float(distances(points, points[medoids]).min(axis=1).sum())


def kmedoids(points: np.ndarray, k: int, seed: int, max_iter: int = 100) -> np.ndarray:
    """Indices of ``k`` medoids among the rows of ``points``, sorted."""
    n = len(points)
    if not 1 <= k <= n:
        raise ValueError(f"k = {k} medoids asked of {n} points")
    rng = np.random.default_rng(seed)
    medoids = [int(rng.integers(n))]
    nearest = distances(points, points[medoids])[:, 0]
    for _ in range(1, k):
        weight = nearest ** 2
        total = weight.sum()
        # every point already a medoid (or duplicates only): take any other point
        pick = int(rng.choice(n, p=weight / total)) if total > 0 else \
            int(rng.choice(np.setdiff1d(np.arange(n), medoids)))
        medoids.append(pick)
        nearest = np.minimum(nearest, distances(points, points[[pick]])[:, 0])
    current = np.array(medoids)
    for it in range(max_iter):
        assign = distances(points, points[current]).argmin(axis=1)
        assign[current] = np.arange(k)  # a medoid belongs to its own cluster (ties between copies)
        moved = current.copy()
        for c in range(k):
            members = np.flatnonzero(assign == c)
            within = distances(points[members], points[members]).sum(axis=1)
            best = members[np.isclose(within, within.min(), rtol=0, atol=1e-9)]
            # keep the medoid on a tie, so the iteration cannot cycle
            moved[c] = current[c] if current[c] in best else best[0]
        if np.array_equal(moved, current):
            log.debug("k-medoids: fixed point after %d iterations", it)
            break
        current = moved
    return np.sort(current)


def class_medoids(images: np.ndarray, labels: np.ndarray, classes: list[int], per_class: int,
                  seed: int) -> np.ndarray:
    """Indices (into ``images``) of ``per_class`` medoids of every class's images."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in classes:
        pool = np.flatnonzero(labels == c)
        chosen.append(pool[kmedoids(images[pool], per_class, int(rng.integers(2 ** 63)))])
    return np.concatenate(chosen)
