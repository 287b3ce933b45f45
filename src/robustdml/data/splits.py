"""Class-aware splits: the zero-shot class split, validation carved from training data (checkpoints are
never selected on test), data-scarce fractions and CPU-sized subsets.

All randomness goes through a ``torch.Generator`` seeded with ``seed``: same seed, same split.
"""

from __future__ import annotations

from typing import Iterator, List, Tuple

import numpy as np
import torch

from robustdml.data.base import RetrievalDataset, SubsetDataset, subset


def zero_shot_split(labels) -> Tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices): items of the first half of the sorted classes train, the rest test.

    The DML convention for CUB-200-2011 (classes 1-100 / 101-200) and CARS196 (1-98 / 99-196): test
    classes are never seen in training. With an odd number of classes the test half gets the extra one.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError(f"a zero-shot split needs at least 2 classes, got {len(classes)}")
    in_train = np.isin(labels, classes[: len(classes) // 2])
    return np.flatnonzero(in_train), np.flatnonzero(~in_train)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def indices_by_class(labels) -> List[np.ndarray]:
    """The item indices of every class (classes in sorted order), in one sort: O(N log N) even for
    SOP's 11,318 classes, where one ``labels == c`` scan per class would be quadratic."""
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    boundaries = np.flatnonzero(np.diff(labels[order])) + 1
    return np.split(order, boundaries) if len(order) else []


def _shuffled_per_class(labels: np.ndarray, seed: int) -> Iterator[np.ndarray]:
    """Every class's indices in a seeded random order (classes in sorted order)."""
    generator = _generator(seed)
    for indices in indices_by_class(labels):
        yield indices[torch.randperm(len(indices), generator=generator).numpy()]


def validation_split(dataset: RetrievalDataset, fraction: float, seed: int = 0,
                     by: str = "samples") -> Tuple[SubsetDataset, SubsetDataset]:
    """(train part, validation part) of a TRAINING set.

    ``by="samples"``: ``fraction`` of every class goes to validation (same classes; Fashion-MNIST).
    ``by="classes"``: ``fraction`` of the classes is held out whole (zero-shot benchmarks, where test
    classes are unseen, so validation classes must be unseen too).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    labels = dataset.labels
    if by == "classes":
        classes = np.unique(labels)
        if len(classes) < 2:
            raise ValueError(f"validation_split(by='classes') needs at least 2 classes, {dataset.name} has "
                             f"{len(classes)}")
        count = min(len(classes) - 1, max(1, int(round(len(classes) * fraction))))
        held = classes[torch.randperm(len(classes), generator=_generator(seed))[:count].numpy()]
        in_val = np.isin(labels, held)
        return subset(dataset, np.flatnonzero(~in_val)), subset(dataset, np.flatnonzero(in_val))
    if by != "samples":
        raise ValueError(f"validation_split: by must be 'samples' or 'classes', got {by!r}")
    train, val = [], []
    for indices in _shuffled_per_class(labels, seed):
        # A class with a single item stays in training: it could not be retrieved in validation anyway.
        count = min(len(indices) - 1, int(round(len(indices) * fraction)))
        val.append(indices[:count])
        train.append(indices[count:])
    val_indices = np.sort(np.concatenate(val))
    if len(val_indices) == 0:
        raise ValueError(f"validation fraction {fraction} leaves no validation items in {dataset.name} "
                         f"({len(dataset)} items); raise the fraction")
    return subset(dataset, np.sort(np.concatenate(train))), subset(dataset, val_indices)


def stratified_fraction(dataset: RetrievalDataset, fraction: float, seed: int = 0) -> SubsetDataset:
    """Keep ``fraction`` of every class (at least one item each): the data-scarce ``--train-fraction``."""
    if not 0 < fraction <= 1:
        raise ValueError(f"train fraction must be in (0, 1], got {fraction}")
    keep = [indices[: max(1, int(round(len(indices) * fraction)))]
            for indices in _shuffled_per_class(dataset.labels, seed)]
    return subset(dataset, np.sort(np.concatenate(keep)))


def limit_per_class(dataset: RetrievalDataset, count: int, seed: int = 0) -> SubsetDataset:
    """At most ``count`` random items of every class: CPU-sized subsets that keep the class balance."""
    if int(count) < 1:
        raise ValueError(f"per-class limit must be >= 1, got {count}")
    keep = [indices[: int(count)] for indices in _shuffled_per_class(dataset.labels, seed)]
    return subset(dataset, np.sort(np.concatenate(keep)))
