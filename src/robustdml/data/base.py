"""The dataset contract every layer above relies on.

Items are ``(image FloatTensor in [0,1], int label)``; every dataset exposes ``labels`` (np.int64,
one per item), ``num_classes``, ``image_shape`` and ``name``. In-memory datasets also offer
``get_batch(indices)`` so the trainer and evaluators skip per-item collation (it matters at
~1000 images/s on a CPU); they keep uint8 storage (4x less memory) and convert per batch.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on disk; the message lists where we looked and how to get it."""


class RetrievalDataset(Dataset):
    """Base class: subclasses set ``labels``, ``image_shape`` and ``name`` and implement ``__getitem__``."""

    name: str = "dataset"
    labels: np.ndarray
    image_shape: Tuple[int, ...]

    @property
    def num_classes(self) -> int:
        """Number of distinct labels present (subsets keep their parent's label values)."""
        return int(len(np.unique(self.labels)))

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, items={len(self)}, classes={self.num_classes}, "
                f"image_shape={tuple(self.image_shape)})")


def as_index_array(indices, size: int, what: str) -> np.ndarray:
    """``indices`` (list, ndarray or tensor) as an int64 array, checked against ``size`` with a clear error."""
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    array = np.asarray(indices)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what}: indices must be a 1-d array of integers, got shape {array.shape} "
                         f"dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if array.min() < -size or array.max() >= size:
        raise IndexError(f"{what}: index out of range for {size} items "
                         f"(min {int(array.min())}, max {int(array.max())})")
    return np.where(array < 0, array + size, array)


_UNIT_PIXELS = torch.arange(256, dtype=torch.float32) / 255.0


class TensorRetrievalDataset(RetrievalDataset):
    """Images held in memory (uint8 0..255 or float 0..1), converted to float per item / per batch."""

    def __init__(self, images: torch.Tensor, labels: Sequence[int], name: str):
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise ValueError(f"{name}: labels must be 1-d, got shape {labels.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{name}: {len(images)} images but {len(labels)} labels")
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise ValueError(f"{name}: images must be uint8 (0..255) or float (0..1), got {images.dtype}")
        self.images = images
        self.labels = labels.astype(np.int64)
        self._labels_tensor = torch.from_numpy(self.labels).to(images.device)  # batches come out together
        self.name = name
        self.image_shape = tuple(int(s) for s in images.shape[1:])

    @staticmethod
    def _to_float(images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            return images.float()
        if images.device.type != "cpu":
            # CUDA divides by a scalar as a multiply by its reciprocal (1 ulp off for half the values);
            # the table holds the CPU's exact quotients, so a batch is the same on every device.
            return _UNIT_PIXELS.to(images.device)[images.long()]
        return images.float().div_(255.0)

    def __getitem__(self, index: int):
        return self._to_float(self.images[index]), int(self.labels[index])

    def get_batch(self, indices) -> Tuple[torch.Tensor, torch.Tensor]:
        """(images FloatTensor [B, *image_shape] in [0,1], labels LongTensor [B]) for ``indices``,
        on the device the images live on (see :meth:`on_device`)."""
        index = torch.from_numpy(as_index_array(indices, len(self), self.name)).to(self.images.device)
        return self._to_float(self.images[index]), self._labels_tensor[index]

    @property
    def nbytes(self) -> int:
        return self.images.element_size() * self.images.numel()

    def on_device(self, device) -> "TensorRetrievalDataset":
        """A copy whose images (still uint8) live on ``device``, so batches are gathered and converted there.

        Why: on a GPU, indexing and converting a batch on the CPU and copying it over costs more than a
        small model's forward+backward; a uint8 copy of Fashion-MNIST takes 47 MB of GPU memory.
        """
        return TensorRetrievalDataset(self.images.to(device), self.labels, self.name)


class SubsetDataset(RetrievalDataset):
    """A view on some items of another dataset that keeps the whole contract (``get_batch`` included).

    A subset of a subset points straight at the original dataset, so chains such as
    ``limit_per_class(validation_split(...)[0], ...)`` cost one index lookup, not one per level.
    Labels keep their parent's values (they still mean the same class).
    """

    def __init__(self, parent: RetrievalDataset, indices):
        indices = as_index_array(indices, len(parent), f"subset of {parent.name}")
        if isinstance(parent, SubsetDataset):
            indices, parent = parent.indices[indices], parent.parent
        self.parent = parent
        self.indices = indices
        self.labels = parent.labels[indices]
        self.name = parent.name
        self.image_shape = parent.image_shape
        if hasattr(parent, "get_batch"):
            self.get_batch = self._get_batch

    def __getitem__(self, index: int):
        return self.parent[int(self.indices[index])]

    def _get_batch(self, indices) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.parent.get_batch(self.indices[as_index_array(indices, len(self), f"subset of {self.name}")])

    @property
    def nbytes(self) -> int:
        return getattr(self.parent, "nbytes", 0)

    def on_device(self, device) -> "SubsetDataset":
        """The same view on a copy of the parent that lives on ``device`` (see TensorRetrievalDataset)."""
        return SubsetDataset(self.parent.on_device(device), self.indices)


def movable_to_device(dataset) -> bool:
    """Whether ``dataset`` can keep its images on an accelerator (in-memory tensors, all the way down)."""
    while isinstance(dataset, SubsetDataset):
        dataset = dataset.parent
    return isinstance(dataset, TensorRetrievalDataset)


def subset(dataset: RetrievalDataset, indices) -> SubsetDataset:
    """The items ``indices`` of ``dataset`` as a dataset with the same contract."""
    return SubsetDataset(dataset, indices)
