"""What every retrieval attack runs against: the model, the data, the clean gallery and an engine."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np
import torch

from robustdml.attacks.engines import AttackEngine
from robustdml.models.mode import eval_mode


def load_images(dataset, indices: np.ndarray) -> torch.Tensor:
    """The images of ``indices`` as one batch (datasets with ``get_batch`` skip per-item collation)."""
    if hasattr(dataset, "get_batch"):
        return dataset.get_batch(indices)[0]
    return torch.stack([dataset[int(i)][0] for i in indices])


@dataclass
class AttackContext:
    """Everything an attack needs: the model, the data, the clean gallery and the engine; ``passes`` adds
    up the forward+backward passes spent (the attack's cost)."""

    model: torch.nn.Module
    dataset: object
    gallery: torch.Tensor          # clean embeddings of the whole dataset (N, E), on CPU
    labels: np.ndarray             # (N,)
    engine: AttackEngine
    device: torch.device
    generator: torch.Generator
    passes: float = 0.0

    @cached_property
    def device_gallery(self) -> torch.Tensor:
        """The clean gallery on the attack's device, for the ranking losses."""
        return self.gallery.to(self.device)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), eval_mode(self.model):
            return self.model(images.to(self.device)).float().cpu()

    def perturb(self, indices: np.ndarray, objective_builder: Callable, *targets: torch.Tensor) -> torch.Tensor:
        """Adversarial images of ``indices``; their forward+backward passes are added to ``passes``."""
        images = load_images(self.dataset, indices).to(self.device)
        objective = objective_builder(*(t.to(self.device) for t in targets))
        result = self.engine.attack(self.model, images, objective, generator=self.generator)
        self.passes += float(result.passes.sum())
        return result.adversarial

    def distances(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, N) squared distances to the clean gallery: batch-sized, never N x N."""
        return torch.cdist(embeddings, self.gallery).pow(2)
