"""Randomized smoothing of an embedding model: g(x) = E_{delta ~ N(0, sigma^2 I)} f(x + delta).

``f`` is the base model's embedding scaled to unit length (so ||f|| <= 1, which every bound of
:mod:`robustdml.certify.bounds` needs). The noise is added in pixel units and NOT clipped to [0, 1]
(as Cohen et al. 2019 do): the certificate is a statement about the Gaussian average, whatever the
inputs it visits. ``g`` itself is estimated by Monte Carlo; every estimate here reports what it cost
in forward passes of the base model.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from robustdml.models.mode import eval_mode


def check_sigma(sigma: float) -> float:
    if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not sigma > 0 or math.isinf(sigma):
        raise ValueError(f"sigma must be a number > 0 (noise standard deviation in pixel units, e.g. 0.25), "
                         f"got {sigma!r}")
    return float(sigma)


def unit_embeddings(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(model(images), dim=-1)


def noisy(images: torch.Tensor, sigma: float, generator: Optional[torch.Generator]) -> torch.Tensor:
    """``images`` plus N(0, sigma^2) noise drawn from ``generator`` on the CPU (the same draws on any device)."""
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
    return images + sigma * noise.to(images.device)


@torch.no_grad()
def monte_carlo_mean(model: nn.Module, images: torch.Tensor, sigma: float, samples: int,
                     generator: Optional[torch.Generator], chunk: int = 4096) -> torch.Tensor:
    """The Monte Carlo estimate of g at each image: the mean of ``samples`` unit embeddings of noisy
    copies ((B, D), not normalised: its norm is < 1). Costs ``samples`` forward passes per image."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    total = None
    per_round = max(1, chunk // max(1, images.shape[0]))
    done = 0
    with eval_mode(model):
        while done < samples:
            draws = min(per_round, samples - done)
            batch = images.repeat_interleave(draws, dim=0)
            embedded = unit_embeddings(model, noisy(batch, sigma, generator))
            summed = embedded.view(images.shape[0], draws, -1).sum(dim=1)
            total = summed if total is None else total + summed
            done += draws
    return total / samples


class SmoothedEmbedding(nn.Module):
    """The smoothed model as an attack sees it: each call averages the unit embeddings of
    ``samples`` fresh noisy copies (expectation over transformation) and returns the unit vector
    of that mean, so gradients are those of the Monte Carlo estimate of g. One call costs
    ``samples`` forward (and, under an attack, backward) passes of the base model."""

    def __init__(self, base: nn.Module, sigma: float, samples: int, generator: Optional[torch.Generator] = None):
        super().__init__()
        if samples < 1:
            raise ValueError(f"samples (noise draws per attack step) must be >= 1, got {samples}")
        self.base, self.sigma, self.samples, self.generator = base, check_sigma(sigma), int(samples), generator
        # An engine restores the wrapper's mode after attacking, and with it the base's: start from the base's.
        self.train(base.training)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.repeat_interleave(self.samples, dim=0)
        embedded = unit_embeddings(self.base, noisy(batch, self.sigma, self.generator))
        return nn.functional.normalize(embedded.view(images.shape[0], self.samples, -1).mean(dim=1), dim=-1)
