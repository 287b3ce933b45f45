"""The wrapper every backbone shares: input normalisation, embedding head, L2 normalisation."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class EmbeddingModel(nn.Module):
    """``x in [0,1] -> normalise(mean, std) -> backbone -> linear head -> L2 normalise``.

    Keeping the pixel normalisation inside the model is what lets every attack work in pixel space.
    ``mean``/``std`` are buffers, so they travel with the checkpoint and the device.
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        embedding_dim: int,
        mean: Sequence[float],
        std: Sequence[float],
        normalize_embeddings: bool = True,
    ):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, embedding_dim)
        self.embedding_dim = embedding_dim
        self.normalize_embeddings = normalize_embeddings
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32))

    def normalize_input(self, x: torch.Tensor) -> torch.Tensor:
        view = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(view)) / self.std.view(view)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize_input(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embeddings = self.head(self.features(x))
        if self.normalize_embeddings:
            embeddings = F.normalize(embeddings, p=2, dim=1)
        return embeddings
