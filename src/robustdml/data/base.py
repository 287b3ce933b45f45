"""The dataset contract every layer above relies on.

Items are ``(image FloatTensor in [0,1], int label)``; every dataset exposes ``labels`` (np.int64),
``num_classes``, ``image_shape`` and ``name``. In-memory datasets also offer ``get_batch(indices)``
so the trainer and evaluators skip per-item collation (it matters at ~1000 images/s on a CPU).
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on disk; the message lists where we looked and how to get it."""


class RetrievalDataset(Dataset):
    name: str = "dataset"
    labels: np.ndarray
    image_shape: Tuple[int, ...]

    @property
    def num_classes(self) -> int:
        return int(len(np.unique(self.labels)))

    def __len__(self) -> int:
        return len(self.labels)


class TensorRetrievalDataset(RetrievalDataset):
    """Images held in memory (uint8 0..255 or float 0..1), converted to float per batch."""

    def __init__(self, images: torch.Tensor, labels: Sequence[int], name: str):
        if len(images) != len(labels):
            raise ValueError(f"{name}: {len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self._labels_tensor = torch.from_numpy(self.labels)
        self.name = name
        self.image_shape = tuple(images.shape[1:])

    def _to_float(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            return images.float().div_(255.0)
        return images.float()

    def __getitem__(self, index: int):
        return self._to_float(self.images[index]), int(self.labels[index])

    def get_batch(self, indices) -> Tuple[torch.Tensor, torch.Tensor]:
        indices = torch.as_tensor(indices, dtype=torch.long)
        return self._to_float(self.images[indices]), self._labels_tensor[indices]


class SubsetDataset(RetrievalDataset):
    """A view on some items of another dataset that keeps the whole contract (get_batch included)."""

    def __init__(self, parent: RetrievalDataset, indices):
        self.parent = parent
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = parent.labels[self.indices]
        self.name = parent.name
        self.image_shape = parent.image_shape
        if hasattr(parent, "get_batch"):
            self.get_batch = self._get_batch

    def __getitem__(self, index: int):
        return self.parent[int(self.indices[index])]

    def _get_batch(self, indices):
        return self.parent.get_batch(self.indices[np.asarray(indices, dtype=np.int64)])


def subset(dataset: RetrievalDataset, indices) -> SubsetDataset:
    return SubsetDataset(dataset, indices)
