"""m-per-class batches, rank-aware for torch.distributed.

Every global batch holds ``batch_size // m`` distinct classes with ``m`` images each (drawn without
replacement unless a class has fewer than ``m`` images). With ``world_size`` ranks, each rank yields
its own contiguous slice of the same global batch, so the union over ranks is exactly the batch a
single process would see with the same seed (pytorch-metric-learning has no distributed version).
"""

from __future__ import annotations

from typing import Iterator, List, Optional

import numpy as np


class MPerClassBatchSampler:
    def __init__(self, labels, m: int, batch_size: int, num_batches: Optional[int] = None, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        labels = np.asarray(labels)
        classes, inverse = np.unique(labels, return_inverse=True)
        if m < 1:
            raise ValueError(f"samples_per_class must be >= 1, got {m}")
        if batch_size % m:
            raise ValueError(f"batch_size={batch_size} must be divisible by samples_per_class={m}")
        if batch_size % world_size:
            raise ValueError(f"batch_size={batch_size} must be divisible by the number of processes {world_size}")
        if batch_size // m > len(classes):
            raise ValueError(f"batch_size={batch_size} with samples_per_class={m} needs {batch_size // m} classes per "
                             f"batch but the dataset has {len(classes)}; raise samples_per_class or lower batch_size")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} outside [0, {world_size})")
        self.m, self.batch_size, self.seed = m, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.by_class = [np.flatnonzero(inverse == c) for c in range(len(classes))]
        self.num_batches = num_batches or max(1, len(labels) // batch_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def global_batches(self) -> Iterator[List[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        per_batch = self.batch_size // self.m
        for _ in range(self.num_batches):
            batch: List[int] = []
            for c in rng.choice(len(self.by_class), size=per_batch, replace=False):
                pool = self.by_class[c]
                batch.extend(rng.choice(pool, size=self.m, replace=len(pool) < self.m).tolist())
            yield batch

    def __iter__(self) -> Iterator[List[int]]:
        share = self.batch_size // self.world_size
        for batch in self.global_batches():
            yield batch[self.rank * share: (self.rank + 1) * share]
