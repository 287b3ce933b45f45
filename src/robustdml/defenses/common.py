"""Pieces every adversarial training defense shares: option checking, the PGD adversary, triplets."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from robustdml.attacks import build_engine
from robustdml.defenses.base import Defense
from robustdml.models.mode import eval_mode

EPS_28PX = 77 / 255  # RobRank's eps for 28x28 inputs (8/255 for 224px)


def clean_embeddings(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Embeddings used to mine tuples and to set attack targets: eval mode, no graph."""
    with torch.no_grad(), eval_mode(model):
        return model(images)


def triplet_hardness(embeddings: torch.Tensor, a: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Hardness H(a, p, n) = d(a, p) - d(a, n) (Euclidean, as the triplet loss sees it): the larger,
    the harder; H > -margin means the triplet loss is non-zero."""
    return (embeddings[a] - embeddings[p]).norm(dim=1) - (embeddings[a] - embeddings[n]).norm(dim=1)


def random_triplet_per_anchor(labels: torch.Tensor, generator: torch.Generator
                              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One uniformly random (positive, negative) for every anchor that has both, in O(B^2).

    Equivalent to picking one triplet per anchor uniformly from all triplets of the batch, without
    enumerating the O(B^3) triplets (B=256 with 4 classes has 3M of them).
    """
    count = len(labels)
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(count, dtype=torch.bool, device=labels.device)
    keys = torch.rand((2, count, count), generator=generator).to(labels.device)
    positives = keys[0].masked_fill(~positive, -1.0).argmax(dim=1)
    negatives = keys[1].masked_fill(same, -1.0).argmax(dim=1)
    anchors = (positive.any(dim=1) & (~same).any(dim=1)).nonzero().squeeze(1)
    return anchors, positives[anchors], negatives[anchors]


def one_index_per_value(values: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Positions of one uniformly random element for every distinct value of ``values`` (ints in
    [0, size)), ordered by value. O(len(values)): no sort of the mined triplets."""
    keys = torch.rand(len(values), generator=generator).to(values.device)
    best = torch.full((size,), -1.0, device=values.device).scatter_reduce(0, values, keys, reduce="amax")
    winners = (keys == best[values]).nonzero().squeeze(1)
    first = torch.full((size,), len(values), dtype=torch.long, device=values.device)
    first.scatter_reduce_(0, values[winners], winners, reduce="amin")  # ties (same float): the first
    return first[first < len(values)]


def one_triplet_per_anchor(embeddings: torch.Tensor, labels: torch.Tensor, miner, generator: torch.Generator
                           ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mine triplets and keep one random triplet per anchor (anchors in increasing order).

    Perturbations are per image, so a defense perturbs one tuple per anchor: this bounds the cost
    at B perturbed images per step, whatever the miner returns. ``miner=None`` (``all``) and a miner
    that finds nothing (e.g. semihard on a well-trained batch) both give a random triplet per anchor.
    """
    if miner is None:
        return random_triplet_per_anchor(labels, generator)
    mined = miner(embeddings, labels)
    if len(mined) == 4:  # a pair miner
        mined = lmu.convert_to_triplets(mined, labels)
    anchors, positives, negatives = mined
    if len(anchors) == 0:
        return random_triplet_per_anchor(labels, generator)
    chosen = one_index_per_value(anchors, len(labels), generator)
    return anchors[chosen], positives[chosen], negatives[chosen]


def number_option(defense: str, field: str, value, kind=float):
    """An option value as a number: ints/floats, numeric strings, or pixel fractions like "77/255"
    (YAML and ``--defense-option eps=8/255`` give strings). Errors name the defense and the field."""
    if isinstance(value, bool):
        raise ValueError(f"{defense}: {field} must be a number, got {value!r}")
    try:
        if isinstance(value, str) and "/" in value:
            numerator, denominator = value.split("/", 1)
            number = float(numerator) / float(denominator)
        else:
            number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(f"{defense}: {field} must be a number (e.g. 0.1 or 8/255), got {value!r}") from None
    if kind is int:
        if number != int(number):
            raise ValueError(f"{defense}: {field} must be a whole number, got {value!r}")
        return int(number)
    return number


def bool_option(defense: str, field: str, value) -> bool:
    """True/False (also the strings true/false/1/0/yes/no): ``bool("false")`` would silently be True."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{defense}: {field} must be true or false, got {value!r}")


class AdversarialDefense(Defense):
    """A defense that runs a PGD-style adversary (eps, steps = eta, step_size) inside each step.

    Unknown option names are rejected (a typo such as ``attack_rte`` would otherwise be ignored and
    train a different defense than the one asked for).
    """

    default_eps = EPS_28PX
    default_steps = 8
    # default step size = ratio * eps / steps; None = the engine's default (2.5 eps / steps, Madry et al.)
    default_step_ratio: Optional[float] = None

    def __init__(self, loss: str = "triplet", miner: str = "semihard", loss_options=None, miner_options=None,
                 eps: Optional[float] = None, steps: Optional[int] = None, step_size: Optional[float] = None,
                 norm: str = "linf", engine: str = "pgd", **unknown):
        if unknown:
            raise ValueError(f"{self.name}: unknown option(s) {', '.join(sorted(unknown))}; "
                             f"options of every adversarial defense: eps, steps, step_size, norm, engine")
        super().__init__(loss=loss, miner=miner, loss_options=loss_options, miner_options=miner_options)
        self.eps = self.default_eps if eps is None else number_option(self.name, "eps", eps)
        self.steps = self.default_steps if steps is None else number_option(self.name, "steps", steps, int)
        if self.eps < 0:
            raise ValueError(f"{self.name}: eps must be >= 0, got {self.eps}")
        if self.steps < 1:
            raise ValueError(f"{self.name}: steps must be >= 1, got {self.steps}")
        if step_size is not None:
            step_size = number_option(self.name, "step_size", step_size)
            if step_size <= 0:
                raise ValueError(f"{self.name}: step_size must be > 0, got {step_size}")
        elif self.default_step_ratio is not None:
            step_size = self.default_step_ratio * self.eps / self.steps
        self.engine = build_engine(engine, eps=self.eps, steps=self.steps, step_size=step_size, norm=norm)

    @property
    def passes(self) -> float:
        """Forward+backward passes per step: eta for the adversary, one for training."""
        return float(self.steps + 1)

    def require_loss_kind(self, kind: str) -> None:
        if self.loss_kind != kind:
            raise ValueError(f"defense {self.name!r} needs a {kind} loss; {self.loss_name!r} is a "
                             f"{self.loss_kind} loss (use --loss {'triplet' if kind == 'triplet' else 'contrastive'})")
