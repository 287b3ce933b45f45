"""The attack side of the bracket: l2 attacks on the SAME smoothed model that is certified.

APGD (l2, from :mod:`robustdml.attacks.engines`) maximises the ranking margin of
:mod:`robustdml.attacks.objectives` (nearest of the query's ``candidates`` nearest positives
against the nearest of its nearest negatives) through :class:`~robustdml.certify.smoothing.SmoothedEmbedding`,
i.e. with the gradient of an expectation over ``eot_samples`` noise draws per step (EOT). The
adversarial query is then judged by the smoothed model itself: a fresh Monte Carlo estimate of g
with as many samples as the certificate uses. A query broken at a radius stays broken at every
larger one (the same point lies in the larger ball), so outcomes are the per-query worst case over
the radii up to each one; the attacked R@1 is an upper bound on the smoothed model's robust R@1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from robustdml.attacks import objectives as O
from robustdml.attacks.engines import build_engine
from robustdml.certify.smoothing import SmoothedEmbedding


@dataclass
class AttackSettings:
    """How the smoothed model is attacked at each radius."""

    engine: str = "apgd"
    steps: int = 50
    eot_samples: int = 8        # noise draws averaged per attack step
    candidates: int = 10        # nearest positives / negatives in the margin objective

    def __post_init__(self):
        for name in ("steps", "eot_samples", "candidates"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"attack {name} must be an integer >= 1, got {value!r}")

    def describe(self) -> str:
        return (f"{self.engine.upper()}-{self.steps}, l2, random start, EOT over {self.eot_samples} noise draws "
                f"per step, margin over {self.candidates} nearest positives/negatives")


def margin_targets(estimates: torch.Tensor, gallery: torch.Tensor, labels: np.ndarray, query_labels: np.ndarray,
                   own: np.ndarray, candidates: int):
    """(B, k, D) nearest positives and negatives of each query by its smoothed score, own item excluded."""
    scores = estimates @ gallery.T
    scores[torch.arange(len(own)), torch.as_tensor(own)] = -float("inf")
    same = torch.as_tensor(labels[None, :] == query_labels[:, None])
    k_pos = max(1, min(candidates, int(same.sum(1).min()) - 1))
    k_neg = max(1, min(candidates, int((~same).sum(1).min())))
    positives = scores.masked_fill(~same, -float("inf")).topk(k_pos, dim=1).indices
    negatives = scores.masked_fill(same, -float("inf")).topk(k_neg, dim=1).indices
    return gallery[positives], gallery[negatives]


def attack_batch(base: torch.nn.Module, images: torch.Tensor, targets, sigma: float, radius: float,
                 settings: AttackSettings, generator: Optional[torch.Generator]):
    """Adversarial images within ``radius`` (l2, pixel units) and the base-model passes each cost."""
    smoothed = SmoothedEmbedding(base, sigma, settings.eot_samples, generator)
    engine = build_engine(settings.engine, eps=radius, steps=settings.steps, norm="l2", random_start=True)
    result = engine.attack(smoothed, images, O.ranking_margin(*targets), generator=generator, early_stop=False)
    return result.adversarial, result.passes.cpu().numpy() * settings.eot_samples
