"""Defenses of Zhou & Patel (RobRank; "Enhancing Adversarial Robustness for Deep Metric Learning",
CVPR 2022): embedding-shifted triplet (EST), anti-collapse triplet (ACT), hardness manipulation (HM)
with linear gradual adversary (LGA) and intra-class structure loss (ICS).

Published defaults for 28x28 inputs: eps = 77/255 (8/255 for 224px), eta = 8 PGD steps for the
comparison at equal cost, triplet margin 0.2.
"""

from __future__ import annotations

import torch

from robustdml.attacks import objectives as O
from robustdml.defenses.base import DEFENSES, StepOutput
from robustdml.defenses.common import AdversarialDefense, clean_embeddings, one_triplet_per_anchor, squared_distance
from robustdml.losses import build_miner
from robustdml.losses.ics import intra_class_structure_loss


def _local_indices(count: int, device) -> torch.Tensor:
    return torch.arange(count, device=device)


@DEFENSES.register("est")
class EmbeddingShiftedTriplet(AdversarialDefense):
    """EST: train the triplet loss on adversarial a', p', n' that maximise ||f(x') - f(x)||."""

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
        gap = squared_distance(embeddings[:count], embeddings[count:])
        return -torch.cat([gap, gap])

    return objective


@DEFENSES.register("act")
class AntiCollapseTriplet(AdversarialDefense):
    """ACT: PGD collapses p and n towards each other; the triplet loss then separates the collapsed
    p', n' around the clean anchor: L = [d(a, p') - d(a, n') + margin]_+."""

    name = "act"

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


def lga_destination(source: torch.Tensor, destination: torch.Tensor, previous_loss: float, margin: float) -> torch.Tensor:
    """Linear gradual adversary: H_D = H_S + r (H_M - H_S), r = clip(1 - previous_loss / margin, 0, 1).

    While the loss is near the margin (the model is still learning) the adversary leaves hardness as
    it is; as the loss falls, the destination approaches the miner's hardness linearly.
    """
    ratio = min(1.0, max(0.0, 1.0 - previous_loss / margin))
    return source + ratio * (destination - source)


@DEFENSES.register("hm")
class HardnessManipulation(AdversarialDefense):
    """HM: PGD on (a, p, n) raises each triplet's hardness H = d(a,p) - d(a,n) from its source value
    H_S towards a destination H_D (from a destination miner), minimising ||max(0, H_D - H)||^2; the
    triplet loss is trained on the manipulated triplets. ``lga`` schedules H_D from the previous
    step's loss; ``ics`` adds lambda * L_ICS (lambda 0.5)."""

    name = "hm"

    def __init__(self, destination: str = "softhard", lga: bool = False, ics: bool = False,
                 ics_weight: float = 0.5, **options):
        super().__init__(**options)
        self.require_loss_kind("triplet")
        if destination not in DESTINATIONS:
            raise ValueError(f"hm: destination must be one of {DESTINATIONS}, got {destination!r}")
        self.destination = destination
        self.lga, self.ics, self.ics_weight = bool(lga), bool(ics), float(ics_weight)
        self.margin = float(getattr(self.loss_fn, "margin", 0.2))
        self.previous_loss = self.margin  # start: no manipulation under LGA

    def destination_hardness(self, clean, labels, a, p, n, generator) -> torch.Tensor:
        """Per-anchor hardness the chosen destination miner would give; the source where it has none."""
        source = squared_distance(clean[a], clean[p]).sqrt() - squared_distance(clean[a], clean[n]).sqrt()
        distances = torch.cdist(clean, clean)
        same = labels[:, None] == labels[None, :]
        if self.destination == "random":
            target = source.new_empty(len(a)).uniform_(-self.margin, self.margin, generator=None)
            return torch.maximum(target, source)
        if self.destination == "hardest":
            hardest_positive = distances.masked_fill(~same, -1).amax(dim=1)
            hardest_negative = distances.masked_fill(same, float("inf")).amin(dim=1)
            return (hardest_positive - hardest_negative)[a]
        if self.destination == "softhard":
            # semihard-like but allowed to cross zero: the hardest negative beyond the positive
            return torch.maximum(source, (distances[a, p] - distances.masked_fill(same, float("inf"))[a].amin(dim=1)))
        miner = build_miner(self.destination)
        da, dp, dn = one_triplet_per_anchor(clean, labels, miner, generator)
        table = torch.full((len(clean),), float("nan"), device=clean.device)
        table[da] = distances[da, dp] - distances[da, dn]
        mined = table[a]
        return torch.where(torch.isnan(mined), source, mined)

    def step(self, model, images, labels, generator) -> StepOutput:
        clean = clean_embeddings(model, images)
        a, p, n = one_triplet_per_anchor(clean, labels, self.miner, generator)
        source = (clean[a] - clean[p]).norm(dim=1) - (clean[a] - clean[n]).norm(dim=1)
        destination = self.destination_hardness(clean, labels, a, p, n, generator)
        if self.lga:
            destination = lga_destination(source, destination, self.previous_loss, self.margin)
        t = len(a)

        def objective(embeddings):
            hardness = (embeddings[:t] - embeddings[t:2 * t]).norm(dim=1) - (embeddings[:t] - embeddings[2 * t:]).norm(dim=1)
            shortfall = torch.relu(destination - hardness).pow(2)
            return -torch.cat([shortfall, shortfall, shortfall])

        triplet_images = torch.cat([images[a], images[p], images[n]])
        manipulated = self.engine.perturb(model, triplet_images, objective, generator)
        embeddings = model(torch.cat([manipulated, images[a]]) if self.ics else manipulated)
        index = _local_indices(t, images.device)
        all_labels = torch.cat([labels[a], labels[p], labels[n]] + ([labels[a]] if self.ics else []))
        loss = self.metric_loss(embeddings, all_labels, (index, t + index, 2 * t + index))
        info = {"hardness_source": float(source.mean()), "hardness_destination": float(destination.mean())}
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
