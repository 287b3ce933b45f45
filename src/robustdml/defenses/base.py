"""The defense contract shared by natural training and every adversarial training method.

A defense owns the metric loss (and miner) and decides which inputs the model sees in a training
step. The trainer only calls :meth:`Defense.step` and back-propagates the returned loss, so every
published method is a drop-in strategy selected by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Sequence

import torch
from torch import nn

from robustdml.losses import build_loss, build_miner, loss_kind
from robustdml.registry import Registry

DEFENSES: Registry = Registry("defense")


@dataclass
class StepOutput:
    """What one training step produced.

    ``passes`` counts forward+backward passes through the model spent on the step (1 for natural
    training, eta+1 for an eta-step adversary): the training-cost measure the papers report.
    """

    loss: torch.Tensor
    passes: float = 1.0
    info: Dict[str, float] = field(default_factory=dict)


class Defense:
    """Base class: holds the metric loss and miner; subclasses implement :meth:`step`.

    ``embedding_hook`` lets the trainer gather embeddings across ranks (DDP) before the loss sees
    them; on one process it is the identity. ``image_shape`` is the shape of one input (C, H, W) or
    (D,), given by the trainer: defaults that depend on the input size (RobRank's eps) read it.
    """

    name = "base"

    def __init__(self, loss: str = "triplet", miner: str = "semihard",
                 loss_options: Optional[Dict[str, Any]] = None, miner_options: Optional[Dict[str, Any]] = None,
                 image_shape: Optional[Sequence[int]] = None):
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        self.loss_name = loss
        self.loss_kind = loss_kind(loss)
        self.loss_fn = build_loss(loss, **(loss_options or {}))
        self.miner = build_miner(miner, **(miner_options or {}))
        self.embedding_hook: Callable = lambda embeddings, labels: (embeddings, labels)
        self.world_size = 1  # set by the trainer under torch.distributed

    def metric_loss(self, embeddings: torch.Tensor, labels: torch.Tensor, indices_tuple=None) -> torch.Tensor:
        """The configured metric loss, mining on ``embeddings`` unless tuples are given.

        Mined losses see the global batch (embeddings gathered across ranks, every rank computing
        the same loss). Explicit tuples index the local batch: the loss stays local and is divided
        by the number of ranks, so summed gradients are the mean over ranks.
        """
        if indices_tuple is not None:
            return self.loss_fn(embeddings, labels, indices_tuple) / self.world_size
        embeddings, labels = self.embedding_hook(embeddings, labels)
        if self.miner is not None:
            indices_tuple = self.miner(embeddings, labels)
        return self.loss_fn(embeddings, labels, indices_tuple)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Adapt the model before the optimiser sees its parameters (e.g. one BN per distribution)."""
        return model

    def step(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             generator: torch.Generator) -> StepOutput:
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        """Defense state that must survive a resume (e.g. LGA's previous loss)."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


def build_defense(name: str, **options) -> Defense:
    """The defense registered as ``name`` (see ``DEFENSES``) with its published defaults, overridden by ``options``."""
    return DEFENSES.get(name)(**options)
