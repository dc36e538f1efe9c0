"""Augmentations keep shapes, change images per sample, and repeat under a seed."""

from __future__ import annotations

import pytest
import torch

from binarena.augment import AUGMENTATIONS, augment


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_each_augmentation(name):
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    out = augment(x, [name])
    assert out.shape == x.shape and torch.isfinite(out).all()
    changed = [(not torch.equal(a, b)) for a, b in zip(out, x)]
    assert 0 < sum(changed)  # something moved
    if name != "horizontal-flip":
        assert sum(changed) >= 14  # per-sample randomness: nearly every image differs
    torch.manual_seed(0)
    assert torch.equal(augment(x, [name]), out)


def test_flip_is_a_mirror_or_nothing():
    torch.manual_seed(1)
    x = torch.rand(32, 1, 8, 8)
    out = augment(x, ["horizontal-flip"])
    for a, b in zip(out, x):
        assert torch.equal(a, b) or torch.equal(a, b.flip(-1))


def test_crop_shifts_content_by_at_most_the_padding():
    torch.manual_seed(2)
    x = torch.zeros(8, 1, 32, 32)
    x[:, :, 16, 16] = 1.0
    out = augment(x, ["random-crop"])
    for image in out:
        ys, xs = torch.nonzero(image[0], as_tuple=True)
        assert len(ys) <= 1 and (len(ys) == 0 or (abs(ys[0] - 16) <= 4 and abs(xs[0] - 16) <= 4))
