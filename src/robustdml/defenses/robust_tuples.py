"""Robust pair/triplet training (Panum et al., "Adversarial Deep Metric Learning", ICLR 2021 submission).

For every training tuple (one mined triplet per anchor), with probability ``attack_rate`` = P(gamma=1)
(default 0.5, drawn from the run generator) one member is replaced by its adversarial version
(their eq. 14). Perturbing the positive p (default):

    p' = argmax_{||p' - p||_inf <= eps}  d(f(p'), f(a)) - d(f(p'), f(n))

(pushed away from its anchor, pulled towards the negative). ``perturb="anchor"``:
a' = argmax d(f(a'), f(p)) - d(f(a'), f(n)); ``perturb="negative"``: n' = argmax -d(f(n'), f(a))
(the negative pulled onto the anchor). ``robust-triplet`` trains the triplet loss on (a, p', n);
``robust-pair`` the contrastive loss on the pairs (a, p') and (a, n) of the same tuples.

Formulation 3 adds an embedding-shift penalty over the batch:

    L = L_metric + lambda * mean_x max_{||z - x|| <= eps} ||f(z) - f(x)||      (lambda = ``shift_weight``)

Defaults (our reading for 28x28 inputs): eps 0.1 (l_inf, pixel units), PGD 5 steps, step size
2.5 eps / steps, attack_rate 0.5, perturb positive, formulation 2, lambda 1.
"""

from __future__ import annotations

import torch

from robustdml.attacks import objectives as O
from robustdml.defenses.base import DEFENSES, StepOutput
from robustdml.defenses.adversarial import AdversarialDefense, clean_embeddings
from robustdml.losses.triplets import one_triplet_per_anchor
from robustdml.options import number_option

PERTURB_TARGETS = ("positive", "anchor", "negative")


class _RobustTuples(AdversarialDefense):
    default_eps = 0.1
    default_steps = 5
    kind = "triplet"

    def __init__(self, attack_rate: float = 0.5, perturb: str = "positive", formulation: int = 2,
                 shift_weight: float = 1.0, **options):
        super().__init__(**options)
        self.require_loss_kind(self.kind)
        self.attack_rate = number_option(self.name, "attack_rate", attack_rate, low=0, high=1)
        if not 0.0 <= self.attack_rate <= 1.0:
            raise ValueError(f"{self.name}: attack_rate must be in [0, 1], got {attack_rate}")
        if perturb not in PERTURB_TARGETS:
            raise ValueError(f"{self.name}: perturb must be one of {PERTURB_TARGETS}, got {perturb!r}")
        self.formulation = number_option(self.name, "formulation", formulation, int)
        if self.formulation not in (2, 3):
            raise ValueError(f"{self.name}: formulation must be 2 (tuple perturbation) or 3 (+ shift term), "
                             f"got {formulation!r}")
        self.shift_weight = number_option(self.name, "shift_weight", shift_weight)
        if self.shift_weight < 0:
            raise ValueError(f"{self.name}: shift_weight (lambda) must be >= 0, got {shift_weight}")
        self.perturb = perturb

    def _objective(self, clean: torch.Tensor, a, p, n):
        if self.perturb == "positive":
            return O.misrank(clean[a], clean[n])        # away from anchor, towards negative
        if self.perturb == "anchor":
            return O.misrank(clean[p], clean[n])        # away from positive, towards negative
        return O.pull_to(clean[a])                       # negative towards the anchor

    def step(self, model, images, labels, generator) -> StepOutput:
        """Cost (``passes``, in whole-batch forward+backward passes): eta x the attacked fraction
        (the adversary only sees the attacked tuples' members) + 1 training pass, + eta for the
        formulation-3 shift adversary (whose images join the training pass)."""
        count = len(images)
        clean = clean_embeddings(model, images)
        a, p, n = one_triplet_per_anchor(clean, labels, self.miner, generator)
        attacked = torch.rand(len(a), generator=generator).to(images.device) < self.attack_rate
        member = {"positive": p, "anchor": a, "negative": n}[self.perturb]
        slot = {"anchor": 0, "positive": 1, "negative": 2}[self.perturb]
        tuples = [a.clone(), p.clone(), n.clone()]
        batch, batch_labels = [images], [labels]
        selected = attacked.nonzero().squeeze(1)
        if len(selected):
            adversarial = self.engine.perturb(model, images[member[selected]],
                                              self._objective(clean, a[selected], p[selected], n[selected]),
                                              generator)
            tuples[slot][selected] = count + torch.arange(len(selected), device=images.device)
            batch.append(adversarial)
            batch_labels.append(labels[member[selected]])
        passes = self.steps * len(selected) / count + 1.0
        if self.formulation == 3:
            batch.append(self.engine.perturb(model, images, self.shift_objective(clean, generator), generator))
            passes += self.steps
        embeddings = model(torch.cat(batch))
        tuple_count = count + len(selected)
        loss = self.metric_loss(embeddings[:tuple_count], torch.cat(batch_labels), tuple(tuples))
        info = {"attacked_fraction": float(attacked.float().mean()) if len(a) else 0.0}
        if self.formulation == 3:
            shift = (embeddings[tuple_count:] - embeddings[:count]).norm(dim=1).mean()
            loss = loss + self.shift_weight * shift / self.world_size
            info["shift"] = float(shift.detach())
        return StepOutput(loss=loss, passes=passes, info=info)


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
