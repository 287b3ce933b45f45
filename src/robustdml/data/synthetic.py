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


def make_two_gaussians(split: str, dim: int = 2, samples_per_class: int = 500, seed: int = 0,
                       sigma: float = SIGMA) -> TensorRetrievalDataset:
    if dim < 1 or samples_per_class < 1:
        raise ValueError(f"synthetic-gaussian: dim and samples_per_class must be >= 1 (got {dim}, {samples_per_class})")
    # Train and test are independent draws from the same distribution.
    generator = torch.Generator().manual_seed(seed * 2 + (0 if split == "train" else 1))
    points, labels = [], []
    for label, mean in enumerate(MEANS):
        points.append((mean + sigma * torch.randn(samples_per_class, dim, generator=generator)).clamp_(0, 1))
        labels += [label] * samples_per_class
    return TensorRetrievalDataset(torch.cat(points), labels, name="synthetic-gaussian")
