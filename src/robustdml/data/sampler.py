"""Batch samplers, rank-aware for torch.distributed (pytorch-metric-learning has no distributed one).

Both samplers draw the GLOBAL batches of an epoch from one generator seeded with ``seed + epoch``, and
with ``world_size`` ranks each rank yields its own contiguous slice of the same global batch: the union
over ranks is exactly the batch a single process would see with the same seed.

- :class:`MPerClassBatchSampler` (``sampler: m-per-class``, the default): every global batch holds
  ``batch_size // m`` distinct classes with ``m`` items each, drawn without replacement unless a class
  has fewer than ``m`` items, laid out class by class; when ``(batch_size // world_size)`` is a
  multiple of ``m`` every slice holds whole classes (so per-rank losses still see positives).
- :class:`PairBatchSampler` (``sampler: pairs``): RobRank's SPC-2 batches (robrank/datasets/mnist.py
  ``MNISTPairDataset`` in a shuffled ``DataLoader``): each epoch walks a permutation of the training
  items in chunks of ``batch_size // 2`` anchors, each followed by a random item of its class, so a
  batch is ``[a0, p0, a1, p1, ...]`` (classes repeat across pairs); slices keep pairs together.
"""

from __future__ import annotations

import math
from typing import Iterator, List, Optional

import numpy as np
import torch

from robustdml.data.splits import indices_by_class

SAMPLERS = ("m-per-class", "pairs")


def _positive_int(value, field: str) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{field} must be a positive integer, got {value!r}")
    return int(value)


class _RankSlicedSampler:
    """What both samplers share: checks, the epoch seed, and each rank's slice of the global batch.
    A subclass implements :meth:`global_batches` (and may set ``self.num_batches`` before this
    ``__init__`` validates it). ``unit``: a rank's slice must hold a multiple of this many items."""

    unit = 1

    def __init__(self, labels, batch_size: int, num_batches: Optional[int], seed: int, rank: int, world_size: int):
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) == 0:
            raise ValueError(f"labels must be a non-empty 1-d array, got shape {labels.shape}")
        batch_size = _positive_int(batch_size, "batch_size")
        world_size = _positive_int(world_size, "world_size")
        if batch_size % world_size:
            raise ValueError(f"batch_size={batch_size} must be divisible by world_size={world_size} "
                             "(the number of processes)")
        if not 0 <= int(rank) < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        self.labels = labels
        self.by_class = indices_by_class(labels)
        self.batch_size, self.seed = batch_size, int(seed)
        self.rank, self.world_size = int(rank), world_size
        self.num_batches = _positive_int(self.default_num_batches() if num_batches is None else num_batches,
                                         "num_batches")
        self.epoch = 0

    def default_num_batches(self) -> int:
        return max(1, len(self.labels) // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Reseed for ``epoch`` (generator seed = seed + epoch): every rank draws the same global batches."""
        self.epoch = int(epoch)

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + self.epoch)

    def __len__(self) -> int:
        return self.num_batches

    def global_batches(self) -> Iterator[List[int]]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[List[int]]:
        share = self.batch_size // self.world_size
        for batch in self.global_batches():
            yield batch[self.rank * share: (self.rank + 1) * share]


class MPerClassBatchSampler(_RankSlicedSampler):
    """A batch sampler (yields lists of dataset indices) for ``DataLoader(batch_sampler=...)`` or ``get_batch``."""

    def __init__(self, labels, m: int, batch_size: int, num_batches: Optional[int] = None, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        m = _positive_int(m, "samples_per_class (m)")
        batch_size = _positive_int(batch_size, "batch_size")
        if batch_size % m:
            raise ValueError(f"batch_size={batch_size} must be divisible by samples_per_class (m)={m}")
        super().__init__(labels, batch_size, num_batches, seed, rank, world_size)
        if batch_size // m > len(self.by_class):
            raise ValueError(f"batch_size={batch_size} with samples_per_class (m)={m} needs {batch_size // m} "
                             f"classes per batch but the labels have {len(self.by_class)}; raise "
                             "samples_per_class or lower batch_size")
        self.m = m

    def global_batches(self) -> Iterator[List[int]]:
        """The full batches of this epoch, before slicing per rank."""
        generator = self.generator()
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


class PairBatchSampler(_RankSlicedSampler):
    """SPC-2 pair batches: ``batch_size // 2`` anchors, each followed by a random positive.

    Each epoch the anchors walk a random permutation of all training items, ``batch_size // 2`` per
    batch, so every item is an anchor once per epoch; the positive is drawn uniformly from the
    anchor's class, which includes the anchor itself (as the reference's ``random.choice`` over the
    class does; it is the only choice for a class of one item). By default an epoch has
    ``ceil(N / (batch_size // 2))`` batches; the last one is completed with the first anchors of the
    next permutation, so every batch is full (all ranks need the same size) and every item is an
    anchor once, or twice for the few that complete the last batch. ``num_batches`` continues the
    walk through fresh permutations (or stops it early).
    Rank slices hold whole pairs: ``batch_size // world_size`` must be even.
    """

    def __init__(self, labels, batch_size: int, num_batches: Optional[int] = None, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        batch_size = _positive_int(batch_size, "batch_size")
        if batch_size % 2:
            raise ValueError(f"batch_size={batch_size} must be even with sampler=pairs (anchor, positive pairs)")
        world_size = _positive_int(world_size, "world_size")
        if batch_size % world_size == 0 and (batch_size // world_size) % 2:
            raise ValueError(f"batch_size={batch_size} over world_size={world_size} processes gives each an odd "
                             "share: with sampler=pairs every process needs whole pairs (make batch_size / "
                             "world_size even)")
        super().__init__(labels, batch_size, num_batches, seed, rank, world_size)
        label_of = np.empty(len(self.labels), dtype=np.int64)
        for c, pool in enumerate(self.by_class):
            label_of[pool] = c
        self.class_of = label_of  # item -> position in by_class

    def default_num_batches(self) -> int:
        return max(1, math.ceil(len(self.labels) / (self.batch_size // 2)))

    def anchors(self, generator: torch.Generator) -> np.ndarray:
        """This epoch's anchors, ``num_batches * batch_size // 2`` of them: consecutive permutations."""
        needed = self.num_batches * (self.batch_size // 2)
        parts, count = [], 0
        while count < needed:
            parts.append(torch.randperm(len(self.labels), generator=generator).numpy())
            count += len(parts[-1])
        return np.concatenate(parts)[:needed]

    def global_batches(self) -> Iterator[List[int]]:
        generator = self.generator()
        anchors = self.anchors(generator)
        half = self.batch_size // 2
        sizes = np.array([len(pool) for pool in self.by_class])
        for start in range(0, len(anchors), half):
            chunk = anchors[start:start + half]
            classes = self.class_of[chunk]
            picks = (torch.rand(len(chunk), generator=generator, dtype=torch.float64).numpy()
                     * sizes[classes]).astype(np.int64)
            positives = [int(self.by_class[c][k]) for c, k in zip(classes, picks)]
            batch = np.empty(2 * len(chunk), dtype=np.int64)
            batch[0::2], batch[1::2] = chunk, positives
            yield batch.tolist()
