"""Images listed as (path, label) pairs: Tiny ImageNet's test split, whose labels sit in an
annotation file rather than in class folders. Apart from ``folders`` so that registering the
image-folder data sets imports no torch."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset


class LabelledFiles(Dataset):
    """Images listed as (path, label) pairs, loaded like torchvision's ImageFolder loads them."""

    def __init__(self, samples: list[tuple[Path, int]], transform) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        from torchvision.datasets.folder import default_loader

        path, label = self.samples[i]
        return self.transform(default_loader(str(path))), label
