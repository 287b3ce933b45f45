"""m-per-class batches, rank-aware for torch.distributed (pytorch-metric-learning has no distributed one).

Every GLOBAL batch holds ``batch_size // m`` distinct classes with ``m`` items each, drawn without
replacement unless a class has fewer than ``m`` items. Items are laid out class by class, and with
``world_size`` ranks each rank yields its own contiguous slice of the same global batch: the union over
ranks is exactly the batch a single process would see with the same seed, and when
``(batch_size // world_size)`` is a multiple of ``m`` every slice holds whole classes (so per-rank
losses still see positives).
"""

from __future__ import annotations

from typing import Iterator, List, Optional

import numpy as np
import torch

from robustdml.data.splits import indices_by_class


def _positive_int(value, field: str) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{field} must be a positive integer, got {value!r}")
    return int(value)


class MPerClassBatchSampler:
    """A batch sampler (yields lists of dataset indices) for ``DataLoader(batch_sampler=...)`` or ``get_batch``."""

    def __init__(self, labels, m: int, batch_size: int, num_batches: Optional[int] = None, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) == 0:
            raise ValueError(f"labels must be a non-empty 1-d array, got shape {labels.shape}")
        m = _positive_int(m, "samples_per_class (m)")
        batch_size = _positive_int(batch_size, "batch_size")
        world_size = _positive_int(world_size, "world_size")
        if batch_size % m:
            raise ValueError(f"batch_size={batch_size} must be divisible by samples_per_class (m)={m}")
        if batch_size % world_size:
            raise ValueError(f"batch_size={batch_size} must be divisible by world_size={world_size} "
                             "(the number of processes)")
        self.by_class = indices_by_class(labels)
        if batch_size // m > len(self.by_class):
            raise ValueError(f"batch_size={batch_size} with samples_per_class (m)={m} needs {batch_size // m} "
                             f"classes per batch but the labels have {len(self.by_class)}; raise "
                             "samples_per_class or lower batch_size")
        if not 0 <= int(rank) < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        if num_batches is None:
            num_batches = max(1, len(labels) // batch_size)
        self.num_batches = _positive_int(num_batches, "num_batches")
        self.m, self.batch_size, self.seed = m, batch_size, int(seed)
        self.rank, self.world_size = int(rank), world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reseed for ``epoch`` (generator seed = seed + epoch): every rank draws the same global batches."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def global_batches(self) -> Iterator[List[int]]:
        """The full batches of this epoch, before slicing per rank."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        classes_per_batch = self.batch_size // self.m
        for _ in range(self.num_batches):
            batch: List[int] = []
            for c in torch.randperm(len(self.by_class), generator=generator)[:classes_per_batch].tolist():
                pool = self.by_class[c]
                if len(pool) >= self.m:
                    chosen = torch.randperm(len(pool), generator=generator)[: self.m]
                else:
                    chosen = torch.randint(len(pool), (self.m,), generator=generator)
                batch.extend(pool[chosen.numpy()].tolist())
            yield batch

    def __iter__(self) -> Iterator[List[int]]:
        share = self.batch_size // self.world_size
        for batch in self.global_batches():
            yield batch[self.rank * share: (self.rank + 1) * share]
