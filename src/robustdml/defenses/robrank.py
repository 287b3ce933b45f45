"""Defenses of Zhou & Patel (RobRank; "Enhancing Adversarial Robustness for Deep Metric Learning",
CVPR 2022): embedding-shifted triplet (EST), anti-collapse triplet (ACT), hardness manipulation (HM)
with linear gradual adversary (LGA) and intra-class structure loss (ICS).

Defaults for 28x28 inputs (Fashion-MNIST): eps = 77/255 l_inf (RobRank trains with 8/255 on 224px
images and 77/255 on 28px ones), eta = 8 PGD steps (the papers' equal-cost comparison of HM and ACT),
step size 2.5 eps / eta (the engines' default; ACT: eps / (4 eta), see its docstring),
triplet margin 0.2. Every adversary runs with the
model in eval() (batch-norm statistics untouched) and one triplet per anchor, so each step costs
eta + 1 forward+backward passes (``StepOutput.passes``).
"""

from __future__ import annotations

from typing import Optional

import torch

from robustdml.attacks import objectives as O
from robustdml.defenses.base import DEFENSES, StepOutput
from robustdml.defenses.common import (AdversarialDefense, bool_option, clean_embeddings, number_option,
                                       one_triplet_per_anchor, random_triplet_per_anchor, triplet_hardness)
from robustdml.losses import build_miner
from robustdml.losses.ics import intra_class_structure_loss


def _local_indices(count: int, device) -> torch.Tensor:
    return torch.arange(count, device=device)


@DEFENSES.register("est")
class EmbeddingShiftedTriplet(AdversarialDefense):
    """EST (embedding-shifted triplet): every image of the batch is replaced by

        x' = argmax_{||x' - x||_inf <= eps} ||f(x') - f(x)||^2

    (the embedding-shift attack, with no label information), and the triplet loss is trained on the
    adversarial batch, its triplets mined on the adversarial embeddings. Defaults: eps 77/255, eta 8.
    """

    name = "est"

    def __init__(self, **options):
        super().__init__(**options)
        self.require_loss_kind("triplet")

    def step(self, model, images, labels, generator) -> StepOutput:
        clean = clean_embeddings(model, images)
        adversarial = self.engine.perturb(model, images, O.push_from(clean), generator)
        return StepOutput(loss=self.metric_loss(model(adversarial), labels), passes=self.passes)


def _collapse_objective(count: int):
    """Over a batch [p'; n'] of 2*count images: minimise ||f(p') - f(n')||^2 (shared by both halves)."""

    def objective(embeddings):
        gap = O.squared_distance(embeddings[:count], embeddings[count:])
        return -torch.cat([gap, gap])

    return objective


@DEFENSES.register("act")
class AntiCollapseTriplet(AdversarialDefense):
    """ACT (anti-collapse triplet): for one mined triplet per anchor, PGD moves p and n towards each
    other,

        (p', n') = argmin_{||p' - p||, ||n' - n|| <= eps} ||f(p') - f(n')||^2,

    and the triplet loss with the clean anchor separates them again: L = [d(a, p') - d(a, n') + m]_+.
    Defaults: eps 77/255, eta 8, margin 0.2, step size eps / (4 eta). Both p' and n' move towards
    each other in every step, so the one-sided attacks' 2.5 eps / eta overshoots and the pair
    oscillates: on a convnet trained 120 steps on Fashion-MNIST, 8 steps at 2.5 eps / eta only took
    the mean gap ||f(p') - f(n')|| from 0.67 to 0.63 (0.26 at eps / (2 eta), 0.20 at eps / (4 eta)).
    """

    name = "act"
    default_step_ratio = 0.25

    def __init__(self, **options):
        super().__init__(**options)
        self.require_loss_kind("triplet")

    def step(self, model, images, labels, generator) -> StepOutput:
        clean = clean_embeddings(model, images)
        a, p, n = one_triplet_per_anchor(clean, labels, self.miner, generator)
        collapsed = self.engine.perturb(model, torch.cat([images[p], images[n]]), _collapse_objective(len(a)),
                                        generator)
        embeddings = model(torch.cat([images[a], collapsed]))
        t = len(a)
        tuples = (_local_indices(t, images.device), t + _local_indices(t, images.device),
                  2 * t + _local_indices(t, images.device))
        all_labels = torch.cat([labels[a], labels[p], labels[n]])
        return StepOutput(loss=self.metric_loss(embeddings, all_labels, tuples), passes=self.passes)


DESTINATIONS = ("random", "semihard", "softhard", "distance-weighted", "hardest")


def lga_ratio(previous_loss: float, margin: float) -> float:
    """LGA's interpolation weight r = clip(1 - previous_loss / margin, 0, 1)."""
    return min(1.0, max(0.0, 1.0 - previous_loss / margin))


def lga_destination(source: torch.Tensor, destination: torch.Tensor, previous_loss: float, margin: float) -> torch.Tensor:
    """Linear gradual adversary: H_D' = H_S + r (H_D - H_S), r = clip(1 - previous_loss / margin, 0, 1).

    Early in training the triplet loss is near the margin (r ~ 0): the adversary leaves hardness as it
    is. As the loss falls (the model copes), the destination approaches the destination miner's
    hardness linearly; if the manipulated triplets become too hard (loss >= margin) it backs off.
    """
    return source + lga_ratio(previous_loss, margin) * (destination - source)


@DEFENSES.register("hm")
class HardnessManipulation(AdversarialDefense):
    """HM: PGD on (a, p, n) raises each triplet's hardness H = d(a,p) - d(a,n) from its source value
    H_S (the training miner's triplet) towards a destination H_D, minimising

        L_HM = || max(0, H_D - H(a', p', n')) ||_2^2      over ||x' - x||_inf <= eps,

    then trains the triplet loss on (a', p', n'). Destinations (per anchor, from clean embeddings):
    ``random`` a uniformly random triplet's hardness; ``semihard`` / ``distance-weighted`` the
    hardness of the triplet that miner picks (the source where it picks none); ``softhard`` the
    source positive with the hardest negative, d(a,p) - min_n d(a,n) (our reading); ``hardest``
    max_p d(a,p) - min_n d(a,n). ``lga=True`` replaces H_D by H_S + r (H_D - H_S) with
    r = clip(1 - loss_prev / margin, 0, 1) (:func:`lga_destination`; loss_prev = the previous step's
    triplet loss, kept in ``state_dict`` for resume). ``ics=True`` adds ``ics_weight`` (0.5) x
    L_ICS(a', a, p') computed with the clean anchors (:mod:`robustdml.losses.ics`).

    Defaults: eps 77/255, eta 8, destination ``softhard`` (``hardest`` under LGA, the far end the
    paper interpolates to), triplet margin 0.2.
    """

    name = "hm"

    def __init__(self, destination: Optional[str] = None, lga: bool = False, ics: bool = False,
                 ics_weight: float = 0.5, **options):
        super().__init__(**options)
        self.require_loss_kind("triplet")
        self.lga = bool_option(self.name, "lga", lga)
        self.ics = bool_option(self.name, "ics", ics)
        self.ics_weight = number_option(self.name, "ics_weight", ics_weight)
        if self.ics_weight < 0:
            raise ValueError(f"hm: ics_weight must be >= 0, got {ics_weight}")
        if destination is None:
            destination = "hardest" if self.lga else "softhard"
        if destination not in DESTINATIONS:
            raise ValueError(f"hm: destination must be one of {DESTINATIONS}, got {destination!r}")
        self.destination = destination
        self.margin = float(getattr(self.loss_fn, "margin", 0.2))
        miner_options = {"margin": self.margin} if destination == "semihard" else {}  # distance-weighted has none
        self.destination_miner = (build_miner(destination, **miner_options)
                                  if destination in ("semihard", "distance-weighted") else None)
        self.previous_loss = self.margin  # before the first step: no manipulation under LGA

    def destination_hardness(self, clean, labels, a, p, n, generator) -> torch.Tensor:
        """H_D for every source triplet (a, p, n), from the clean embeddings of the batch."""
        source = triplet_hardness(clean, a, p, n)
        distances = torch.cdist(clean, clean)
        same = labels[:, None] == labels[None, :]
        hardest_negative = distances.masked_fill(same, float("inf")).amin(dim=1)
        if self.destination == "hardest":
            return distances.masked_fill(~same, -1.0).amax(dim=1)[a] - hardest_negative[a]
        if self.destination == "softhard":
            return distances[a, p] - hardest_negative[a]
        if self.destination == "random":
            da, dp, dn = random_triplet_per_anchor(labels, generator)
        else:
            da, dp, dn = one_triplet_per_anchor(clean, labels, self.destination_miner, generator)
        table = torch.full((len(clean),), float("nan"), device=clean.device)
        table[da] = triplet_hardness(clean, da, dp, dn)
        mined = table[a]
        return torch.where(torch.isnan(mined), source, mined)

    def step(self, model, images, labels, generator) -> StepOutput:
        clean = clean_embeddings(model, images)
        a, p, n = one_triplet_per_anchor(clean, labels, self.miner, generator)
        source = triplet_hardness(clean, a, p, n)
        destination = self.destination_hardness(clean, labels, a, p, n, generator)
        if self.lga:
            destination = lga_destination(source, destination, self.previous_loss, self.margin)
        t = len(a)
        index = _local_indices(t, images.device)

        def objective(embeddings):
            hardness = triplet_hardness(embeddings, index, t + index, 2 * t + index)
            shortfall = torch.relu(destination - hardness).pow(2)
            return -torch.cat([shortfall, shortfall, shortfall])

        triplet_images = torch.cat([images[a], images[p], images[n]])
        manipulated = self.engine.perturb(model, triplet_images, objective, generator)
        embeddings = model(torch.cat([manipulated, images[a]]) if self.ics else manipulated)
        all_labels = torch.cat([labels[a], labels[p], labels[n]] + ([labels[a]] if self.ics else []))
        loss = self.metric_loss(embeddings, all_labels, (index, t + index, 2 * t + index))
        info = {"hardness_source": float(source.mean()), "hardness_destination": float(destination.mean()),
                "hardness_adversarial": float(triplet_hardness(embeddings.detach(), index, t + index,
                                                               2 * t + index).mean())}
        if self.lga:
            info["lga_ratio"] = lga_ratio(self.previous_loss, self.margin)
        self.previous_loss = float(loss.detach()) * self.world_size
        if self.ics:
            ics = intra_class_structure_loss(embeddings[:t], embeddings[3 * t:], embeddings[t:2 * t], self.margin)
            loss = loss + self.ics_weight * ics / self.world_size
            info["ics"] = float(ics.detach())
        return StepOutput(loss=loss, passes=self.passes, info=info)

    def state_dict(self):
        return {"previous_loss": self.previous_loss}

    def load_state_dict(self, state):
        self.previous_loss = float(state.get("previous_loss", self.margin))
