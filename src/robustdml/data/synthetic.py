"""The two-Gaussian set of "Adversarial Deep Metric Learning" (Panum et al.), Appendix E.

Two classes with means 0.25 and 0.75 in every dimension and standard deviation 0.025, clipped to
[0,1] so that attacks treat the vectors like pixels. Small enough to plot embeddings and their
adversarial shifts in 2-d.
"""

from __future__ import annotations

import torch

from robustdml.data.base import TensorRetrievalDataset

MEANS = (0.25, 0.75)
SIGMA = 0.025
SPLIT_OFFSETS = {"train": 0, "test": 1}


def make_two_gaussians(split: str, dim: int = 2, samples_per_class: int = 500, seed: int = 0,
                       sigma: float = SIGMA) -> TensorRetrievalDataset:
    """``samples_per_class`` points per class, float32 [N, dim] in [0,1]; labels 0 (mean 0.25), 1 (mean 0.75)."""
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"split must be one of {tuple(SPLIT_OFFSETS)}, got {split!r}")
    if int(dim) < 1:
        raise ValueError(f"synthetic-gaussian: dim must be >= 1, got {dim}")
    if int(samples_per_class) < 1:
        raise ValueError(f"synthetic-gaussian: samples_per_class must be >= 1, got {samples_per_class}")
    if not sigma > 0:
        raise ValueError(f"synthetic-gaussian: sigma must be > 0, got {sigma}")
    # Train and test are independent draws from the same distribution; the same seed gives the same points.
    generator = torch.Generator().manual_seed(int(seed) * 2 + SPLIT_OFFSETS[split])
    points, labels = [], []
    for label, mean in enumerate(MEANS):
        noise = torch.randn(int(samples_per_class), int(dim), generator=generator)
        points.append((mean + sigma * noise).clamp_(0, 1))
        labels += [label] * int(samples_per_class)
    return TensorRetrievalDataset(torch.cat(points), labels, name="synthetic-gaussian")
