"""Pieces every adversarial training defense shares: option checking, the PGD adversary, triplets."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from robustdml.attacks import build_engine
from robustdml.defenses.base import Defense

EPS_28PX = 77 / 255  # RobRank's eps for 28x28 inputs (8/255 for 224px)


def clean_embeddings(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Embeddings used to mine tuples and to set attack targets: eval mode, no graph."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        embeddings = model(images)
    model.train(was_training)
    return embeddings


def squared_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).sum(dim=-1)


def one_triplet_per_anchor(embeddings: torch.Tensor, labels: torch.Tensor, miner, generator: torch.Generator
                           ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mine triplets and keep one random triplet per anchor.

    Perturbations are per image, so a defense perturbs one tuple per anchor: this bounds the cost
    at B perturbed images per step, whatever the miner returns (``all`` yields O(B^3) triplets).
    """
    mined = lmu.get_all_triplets_indices(labels) if miner is None else miner(embeddings, labels)
    if len(mined) == 4:  # a pair miner
        mined = lmu.convert_to_triplets(mined, labels)
    anchors, positives, negatives = mined
    if len(anchors) == 0:  # e.g. semihard found nothing: every triplet of the batch
        anchors, positives, negatives = lmu.get_all_triplets_indices(labels)
    priority = torch.rand(len(anchors), generator=generator).to(anchors.device)
    order = torch.argsort(priority)
    first = _first_occurrence(anchors[order])  # each anchor's first triplet in a random order
    chosen = order[first]
    return anchors[chosen], positives[chosen], negatives[chosen]


def _first_occurrence(values: torch.Tensor):
    unique, inverse = torch.unique(values, return_inverse=True)
    positions = torch.arange(len(values), device=values.device)
    first = torch.full((len(unique),), len(values), device=values.device, dtype=torch.long)
    first.scatter_reduce_(0, inverse, positions, reduce="amin")
    return first


class AdversarialDefense(Defense):
    """A defense that runs a PGD-style adversary (eps, steps = eta, step_size) inside each step."""

    default_eps = EPS_28PX
    default_steps = 8

    def __init__(self, loss: str = "triplet", miner: str = "semihard", loss_options=None, miner_options=None,
                 eps: Optional[float] = None, steps: Optional[int] = None, step_size: Optional[float] = None,
                 norm: str = "linf", engine: str = "pgd", **unknown):
        if unknown:
            raise ValueError(f"{self.name}: unknown option(s) {', '.join(sorted(unknown))}")
        super().__init__(loss=loss, miner=miner, loss_options=loss_options, miner_options=miner_options)
        self.eps = self.default_eps if eps is None else float(eps)
        self.steps = self.default_steps if steps is None else int(steps)
        if self.eps < 0:
            raise ValueError(f"{self.name}: eps must be >= 0, got {self.eps}")
        if self.steps < 1:
            raise ValueError(f"{self.name}: steps must be >= 1, got {self.steps}")
        self.engine = build_engine(engine, eps=self.eps, steps=self.steps, step_size=step_size, norm=norm)

    @property
    def passes(self) -> float:
        """Forward+backward passes per step: eta for the adversary, one for training."""
        return float(self.steps + 1)

    def require_loss_kind(self, kind: str) -> None:
        if self.loss_kind != kind:
            raise ValueError(f"defense {self.name!r} needs a {kind} loss; {self.loss_name!r} is a "
                             f"{self.loss_kind} loss (use --loss {'triplet' if kind == 'triplet' else 'contrastive'})")
