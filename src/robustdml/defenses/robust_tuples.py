"""Robust pair/triplet training (Panum et al., "Adversarial Deep Metric Learning", ICLR 2021 submission).

For every training tuple, with probability ``attack_rate`` = P(gamma=1) (default 0.5), one member
is replaced by its adversarial version (their eq. 14). Perturbing the positive p (default):

    p' = argmax_{||p' - p|| <= eps}  d(f(p'), f(a)) - d(f(p'), f(n))

(pushed away from its anchor, pulled towards the negative); ``perturb="anchor"`` does the same to the
anchor w.r.t. (p, n), and ``perturb="negative"`` pulls n towards a and away from... nothing else:
n' = argmax -d(f(n'), f(a)). Formulation 3 adds lambda * max_{z in eps-ball} ||f(z) - f(x)|| over the
batch (an embedding-shift penalty). PGD with 5 steps by default.
"""

from __future__ import annotations

from typing import Optional

import torch

from robustdml.attacks import objectives as O
from robustdml.defenses.base import DEFENSES, StepOutput
from robustdml.defenses.common import AdversarialDefense, clean_embeddings, one_triplet_per_anchor

PERTURB_TARGETS = ("positive", "anchor", "negative")


class _RobustTuples(AdversarialDefense):
    default_eps = 0.1
    default_steps = 5
    kind = "triplet"

    def __init__(self, attack_rate: float = 0.5, perturb: str = "positive", formulation: int = 2,
                 shift_weight: float = 1.0, **options):
        super().__init__(**options)
        self.require_loss_kind(self.kind)
        if not 0.0 <= float(attack_rate) <= 1.0:
            raise ValueError(f"{self.name}: attack_rate must be in [0, 1], got {attack_rate}")
        if perturb not in PERTURB_TARGETS:
            raise ValueError(f"{self.name}: perturb must be one of {PERTURB_TARGETS}, got {perturb!r}")
        if formulation not in (2, 3):
            raise ValueError(f"{self.name}: formulation must be 2 (tuple perturbation) or 3 (+ shift term)")
        self.attack_rate = float(attack_rate)
        self.perturb = perturb
        self.formulation = formulation
        self.shift_weight = float(shift_weight)

    @property
    def passes(self) -> float:
        return float(self.steps * self.attack_rate + 1 + (self.steps if self.formulation == 3 else 0))

    def _objective(self, clean: torch.Tensor, a, p, n):
        if self.perturb == "positive":
            return O.misrank(clean[a], clean[n])        # away from anchor, towards negative
        if self.perturb == "anchor":
            return O.misrank(clean[p], clean[n])
        return O.pull_to(clean[a])                       # negative towards the anchor

    def step(self, model, images, labels, generator) -> StepOutput:
        clean = clean_embeddings(model, images)
        a, p, n = one_triplet_per_anchor(clean, labels, self.miner, generator)
        attacked = torch.rand(len(a), generator=generator).to(images.device) < self.attack_rate
        member = {"positive": p, "anchor": a, "negative": n}[self.perturb]
        batch = images
        tuples = [a.clone(), p.clone(), n.clone()]
        if attacked.any():
            sel = attacked.nonzero().squeeze(1)
            adversarial = self.engine.perturb(model, images[member[sel]],
                                              self._objective(clean, a[sel], p[sel], n[sel]), generator)
            batch = torch.cat([images, adversarial])
            slot = {"anchor": 0, "positive": 1, "negative": 2}[self.perturb]
            tuples[slot][sel] = len(images) + torch.arange(len(sel), device=images.device)
        all_labels = torch.cat([labels, labels[member[attacked]]]) if attacked.any() else labels
        embeddings = model(batch)
        loss = self.metric_loss(embeddings, all_labels, tuple(tuples))
        info = {"attacked_fraction": float(attacked.float().mean())}
        if self.formulation == 3:
            shifted = self.engine.perturb(model, images, O.push_from(clean), generator)
            shift = (model(shifted) - embeddings[: len(images)]).norm(dim=1).mean()
            loss = loss + self.shift_weight * shift
            info["shift"] = float(shift.detach())
        return StepOutput(loss=loss, passes=self.passes, info=info)


@DEFENSES.register("robust-triplet")
class RobustTriplet(_RobustTuples):
    """Triplet loss on tuples whose positive (or anchor/negative) is adversarial with P(gamma=1)."""

    name = "robust-triplet"
    kind = "triplet"


@DEFENSES.register("robust-pair")
class RobustPair(_RobustTuples):
    """Contrastive (pair) loss on pairs (a, p) and (a, n) built from the same perturbed tuples."""

    name = "robust-pair"
    kind = "pair"

    def __init__(self, loss: str = "contrastive", **options):
        super().__init__(loss=loss, **options)
