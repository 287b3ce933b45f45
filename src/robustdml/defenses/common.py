"""Pieces every adversarial training defense shares: option checking, the PGD adversary, triplets."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from robustdml.attacks import build_engine
from robustdml.attacks import objectives as O
from robustdml.attacks.engines import AttackEngine, ascent_direction
from robustdml.attacks.retrieval import jittered
from robustdml.defenses.base import Defense
from robustdml.losses.tuples import pair_anchors, pick_per_row
from robustdml.models.mode import eval_mode

EPS_28PX = 77 / 255  # RobRank's eps for 28x28 inputs (8/255 for 224px)


def input_size(image_shape: Optional[Sequence[int]]) -> Optional[int]:
    """The side of square image inputs (C, H, W) -> W; None for vector inputs or an unknown shape."""
    return int(image_shape[-1]) if image_shape is not None and len(image_shape) == 3 else None


def clean_embeddings(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Embeddings used to mine tuples and to set attack targets: eval mode, no graph."""
    with torch.no_grad(), eval_mode(model):
        return model(images)


def triplet_hardness(embeddings: torch.Tensor, a: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Hardness H(a, p, n) = d(a, p) - d(a, n) (Euclidean, as the triplet loss sees it): the larger,
    the harder; H > -margin means the triplet loss is non-zero."""
    return (embeddings[a] - embeddings[p]).norm(dim=1) - (embeddings[a] - embeddings[n]).norm(dim=1)


def _positive_negative_masks(labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(positive, negative) (B, B) masks and the anchors that have both."""
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    anchors = (positive.any(dim=1) & (~same).any(dim=1)).nonzero().squeeze(1)
    return positive, ~same, anchors


def random_triplet_per_anchor(labels: torch.Tensor, generator: torch.Generator
                              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One uniformly random (positive, negative) for every anchor that has both, in O(B^2).

    Equivalent to picking one triplet per anchor uniformly from all triplets of the batch, without
    enumerating the O(B^3) triplets (B=256 with 4 classes has 3M of them).
    """
    positive, negative, anchors = _positive_negative_masks(labels)
    positives, negatives = pick_per_row(positive, generator), pick_per_row(negative, generator)
    return anchors, positives[anchors], negatives[anchors]


def sampled_triplet_per_anchor(kind: str, embeddings: torch.Tensor, labels: torch.Tensor,
                               generator: torch.Generator, margin: float = 0.2, pairs: bool = False
                               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One triplet per anchor, sampled the way RobRank's SPC-2 miners do (robrank/losses/miner.py):

    - ``random`` (``spc2-random``): a random positive and a random negative;
    - ``semihard`` (``spc2-semihard``): a random positive p, a random negative with
      d(a,p) < d(a,n) < d(a,p) + margin, else any negative;
    - ``softhard`` (``spc2-softhard``): a random negative closer than the farthest positive
      (d(a,n) < max_p d(a,p)), else any negative, and a random positive farther than the nearest
      negative (d(a,p) > min_n d(a,n)), else any positive;
    - ``hardest`` (``spc2-hard``): a random positive and the nearest negative.

    Every item with a positive and a negative is an anchor, and "a random positive" is any other item
    of its class. ``pairs=True`` (an SPC-2 batch ``[a0, p0, a1, p1, ...]``, ``sampler: pairs``) is the
    reference exactly: only the pairs' first items are anchors and "a random positive" is the pair's
    second item (softhard's soft positive is still drawn from the whole class, falling back to it).
    """
    positive, negative, anchors = _positive_negative_masks(labels)
    partner = None
    if pairs:
        firsts = pair_anchors(labels)
        anchors = firsts[negative[firsts].any(dim=1)]
        partner = torch.arange(len(labels), device=labels.device) ^ 1  # 2i <-> 2i + 1
    if kind == "random":
        if not pairs:
            return random_triplet_per_anchor(labels, generator)
        return anchors, partner[anchors], pick_per_row(negative, generator)[anchors]
    distances = torch.cdist(embeddings, embeddings)
    if kind == "softhard":
        farthest_positive = distances.masked_fill(~positive, -1.0).amax(dim=1, keepdim=True)
        nearest_negative = distances.masked_fill(~negative, float("inf")).amin(dim=1, keepdim=True)
        negatives = pick_per_row(negative & (distances < farthest_positive), generator, negative)
        soft = positive & (distances > nearest_negative)
        if pairs:
            positives = torch.where(soft.any(dim=1), pick_per_row(soft, generator), partner)
        else:
            positives = pick_per_row(soft, generator, positive)
        return anchors, positives[anchors], negatives[anchors]
    positives = partner if pairs else pick_per_row(positive, generator)
    if kind == "semihard":
        reach = distances.gather(1, positives[:, None])
        window = negative & (distances > reach) & (distances < reach + margin)
        negatives = pick_per_row(window, generator, negative)
    elif kind == "hardest":
        negatives = distances.masked_fill(~negative, float("inf")).argmin(dim=1)
    else:
        raise ValueError(f"unknown triplet sampler {kind!r}; valid: {', '.join(TRIPLET_SAMPLERS)}")
    return anchors, positives[anchors], negatives[anchors]


TRIPLET_SAMPLERS = ("random", "semihard", "softhard", "hardest")


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


class EarlyStopPGD(AttackEngine):
    """PGD (sign steps under l_inf) that stops as soon as every sample's objective has reached
    ``stop_at`` or the batch's mean objective changed by less than ``tolerance`` in a step, as
    RobRank's hardness manipulation does (defenses/amd.py ``HardnessManipulate``: it breaks out of
    the loop once its loss saturates, in particular once it is 0). ``steps_taken`` counts the
    gradient evaluations of the last call (the adversary's forward+backward passes).
    The engines' ball, clipping and starts (:class:`~robustdml.attacks.engines.AttackEngine`); only
    ``perturb(model, images, objective, generator)`` is its own (a batch-level stop, no per-sample one).
    """

    name = "pgd-early-stop"

    def __init__(self, eps: float, steps: int, step_size: Optional[float] = None, norm: str = "linf",
                 random_start: bool = False, stop_at: float = 0.0, tolerance: float = 1e-7):
        super().__init__(eps, steps=steps, step_size=step_size, norm=norm, random_start=random_start)
        self.stop_at, self.tolerance = stop_at, tolerance
        self.steps_taken = 0

    def perturb(self, model, images: torch.Tensor, objective, generator: Optional[torch.Generator] = None
                ) -> torch.Tensor:
        images = images.detach()
        adversarial = self.starting_point(images, generator, None)
        self.steps_taken, previous = 0, None
        with eval_mode(model):
            for _ in range(self.steps):
                adversarial.requires_grad_(True)
                losses = objective(model(adversarial))
                (grad,) = torch.autograd.grad(losses.sum(), adversarial)
                self.steps_taken += 1
                mean = float(losses.detach().mean())
                if bool((losses >= self.stop_at).all()) or (previous is not None
                                                             and abs(mean - previous) < self.tolerance):
                    break
                previous = mean
                adversarial = self.clip(images, adversarial.detach() + self.step_size
                                        * ascent_direction(grad, self.norm))
        return adversarial.detach()


class AdversarialDefense(Defense):
    """A defense that runs a PGD-style adversary (eps, steps = eta, step_size) inside each step.

    ``random_start``: whether the adversary starts at a uniform point of the eps-ball (the engines'
    convention) or at the clean image (RobRank's adversaries). Unknown option names are rejected (a
    typo such as ``attack_rte`` would otherwise be ignored and train a different defense than the
    one asked for).
    """

    default_eps = EPS_28PX
    default_steps = 8
    default_random_start = True

    def __init__(self, loss: str = "triplet", miner: str = "semihard", loss_options=None, miner_options=None,
                 image_shape: Optional[Sequence[int]] = None, eps: Optional[float] = None,
                 steps: Optional[int] = None, step_size: Optional[float] = None, norm: str = "linf",
                 engine: str = "pgd", random_start=None, **unknown):
        if unknown:
            raise ValueError(f"{self.name}: unknown option(s) {', '.join(sorted(unknown))}; options of every "
                             f"adversarial defense: eps, steps, step_size, norm, engine, random_start")
        super().__init__(loss=loss, miner=miner, loss_options=loss_options, miner_options=miner_options,
                         image_shape=image_shape)
        self.steps = self.default_steps if steps is None else number_option(self.name, "steps", steps, int)
        if self.steps < 1:
            raise ValueError(f"{self.name}: steps must be >= 1, got {self.steps}")
        self.eps = self.input_default_eps() if eps is None else number_option(self.name, "eps", eps)
        if self.eps < 0:
            raise ValueError(f"{self.name}: eps must be >= 0, got {self.eps}")
        if step_size is not None:
            step_size = number_option(self.name, "step_size", step_size)
            if step_size <= 0:
                raise ValueError(f"{self.name}: step_size must be > 0, got {step_size}")
        self.step_size = self.input_default_step_size() if step_size is None else step_size
        self.norm = norm
        self.random_start = (self.default_random_start if random_start is None
                             else bool_option(self.name, "random_start", random_start))
        self.engine = self.build_adversary(engine)

    def input_default_eps(self) -> float:
        """eps when none is given (RobRank's depends on the input size)."""
        return self.default_eps

    def input_default_step_size(self) -> Optional[float]:
        """Step size when none is given; None = the engine's default (2.5 eps / steps, Madry et al.)."""
        return None

    def shift_objective(self, clean: torch.Tensor, generator: torch.Generator):
        """Maximise ||f(x') - f(x)||^2 (embedding shift). The distance to the clean embedding is
        stationary at the clean image: an adversary that starts there gets a target jittered by
        +-1e-7 per coordinate (RobRank's trick, attacks/advrank.py ``embShift``) so that it moves."""
        return O.push_from(clean if self.random_start else jittered(clean, generator))

    def build_adversary(self, engine: str):
        return build_engine(engine, eps=self.eps, steps=self.steps, step_size=self.step_size, norm=self.norm,
                            random_start=self.random_start)

    @property
    def passes(self) -> float:
        """Forward+backward passes per step: eta for the adversary, one for training."""
        return float(self.steps + 1)

    def require_loss_kind(self, kind: str) -> None:
        if self.loss_kind != kind:
            raise ValueError(f"defense {self.name!r} needs a {kind} loss; {self.loss_name!r} is a "
                             f"{self.loss_kind} loss (use --loss {'triplet' if kind == 'triplet' else 'contrastive'})")
