"""Class-aware subsets: validation carved from training data, data-scarce fractions, CPU-sized subsets."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from robustdml.data.base import RetrievalDataset, SubsetDataset, subset


def _per_class_indices(labels: np.ndarray, seed: int):
    rng = np.random.default_rng(seed)
    for label in np.unique(labels):
        indices = np.flatnonzero(labels == label)
        yield label, rng.permutation(indices)


def validation_split(dataset: RetrievalDataset, fraction: float, seed: int = 0,
                     by: str = "samples") -> Tuple[SubsetDataset, SubsetDataset]:
    """(train part, validation part). ``by="samples"`` keeps ``fraction`` of every class for validation
    (same classes, as for Fashion-MNIST); ``by="classes"`` holds out whole classes (zero-shot benchmarks)."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    labels = dataset.labels
    if by == "classes":
        classes = np.random.default_rng(seed).permutation(np.unique(labels))
        held = set(classes[: max(1, int(round(len(classes) * fraction)))].tolist())
        mask = np.isin(labels, list(held))
        return subset(dataset, np.flatnonzero(~mask)), subset(dataset, np.flatnonzero(mask))
    if by != "samples":
        raise ValueError(f"by must be 'samples' or 'classes', got {by!r}")
    train, val = [], []
    for _label, indices in _per_class_indices(labels, seed):
        count = int(round(len(indices) * fraction)) if len(indices) > 1 else 0
        val.append(indices[:count])
        train.append(indices[count:])
    return subset(dataset, np.sort(np.concatenate(train))), subset(dataset, np.sort(np.concatenate(val)))


def stratified_fraction(dataset: RetrievalDataset, fraction: float, seed: int = 0) -> SubsetDataset:
    """Keep ``fraction`` of every class (at least one item each): the data-scarce setting."""
    if not 0 < fraction <= 1:
        raise ValueError(f"train fraction must be in (0, 1], got {fraction}")
    keep = [indices[: max(1, int(round(len(indices) * fraction)))]
            for _label, indices in _per_class_indices(dataset.labels, seed)]
    return subset(dataset, np.sort(np.concatenate(keep)))


def limit_per_class(dataset: RetrievalDataset, count: int, seed: int = 0) -> SubsetDataset:
    """At most ``count`` random items of every class: CPU-sized subsets that keep the class balance."""
    if count < 1:
        raise ValueError(f"per-class limit must be >= 1, got {count}")
    keep = [indices[:count] for _label, indices in _per_class_indices(dataset.labels, seed)]
    return subset(dataset, np.sort(np.concatenate(keep)))
