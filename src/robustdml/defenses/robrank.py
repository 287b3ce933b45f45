"""Defenses of Zhou & Patel (RobRank; "Enhancing Adversarial Robustness for Deep Metric Learning",
CVPR 2022): embedding-shifted triplet (EST), anti-collapse triplet (ACT), hardness manipulation (HM)
with linear gradual adversary (LGA) and intra-class structure loss (ICS).

Defaults follow the reference code (github.com/cdluminate/robrank at 38ec207):
- the adversary (``robrank/configs/configs_rank.py``): eps 77/255 with a fixed step of 3/255 for
  inputs of at most 32 px (Fashion-MNIST, MNIST), eps 8/255 with a step of 1/255 above (224 px);
  eta = 32 PGD steps (``advtrain_pgditer``; the paper's equal-cost comparison uses 8:
  ``--attack-steps 8``); one step (eta = 1) is FGSM with a step of eps. The step is not a fraction
  of eps: the adversary's reach eta x step (96/255 at eta 32 on 28 px) can exceed eps.
  The input size comes from the trainer (``image_shape``); without it the 28 px values apply.
- every adversary starts at the clean image (no random start), takes sign steps and is clipped to
  the eps-ball and [0, 1], with the model in eval() (batch-norm statistics untouched).
- losses on explicit triplets (ACT, HM, ICS) are the mean over all triplets, as
  ``F.triplet_margin_loss`` in the reference (pytorch-metric-learning's triplet loss would average
  over the non-zero ones only); margin 0.2 (the loss's margin). EST trains the configured metric
  loss: ``--loss-option reduction=mean`` makes it the reference's mean over all triplets too.
- the reference's recipe (``ptripletN``: SPC-2 pair batches, the ``spc2-random`` miner, the mean over
  all triplets) is ``sampler: pairs``, ``miner: spc2-random``, ``loss_options: {reduction: mean}``
  (what ``robustdml benchmark robrank-fashion`` trains). With the ``spc2-random`` miner every
  defense here forms its triplets as the reference does on such batches: one per pair (2i, 2i + 1),
  anchored at 2i (EST: the miner on the adversarial batch; ACT: the miner on the clean batch; HM:
  its source and destination samplers restricted to the pairs, see :class:`HardnessManipulation`).
Each option can still be set (``--eps``, ``--attack-steps``, ``--step-size``,
``--defense-option random_start=true``). A step costs eta + 1 forward+backward passes
(``StepOutput.passes``; HM stops early, see :class:`HardnessManipulation`).
"""

from __future__ import annotations

from typing import Optional

import torch

from robustdml.attacks import objectives as O
from robustdml.defenses.base import DEFENSES, StepOutput
from robustdml.attacks.engines import EarlyStopPGD
from robustdml.defenses.adversarial import EPS_28PX, AdversarialDefense, clean_embeddings, input_size
from robustdml.losses.triplets import (TRIPLET_SAMPLERS, one_triplet_per_anchor, sampled_triplet_per_anchor,
                                       triplet_hardness)
from robustdml.options import bool_option, number_option
from robustdml.losses import build_miner
from robustdml.losses.ics import intra_class_structure_loss
from robustdml.losses.tuples import SPC2RandomMiner

SMALL_INPUT = 32  # the reference's 28x28 profile applies up to this side (configs_rank.py)
EPS_224PX, STEP_28PX, STEP_224PX = 8 / 255, 3 / 255, 1 / 255


def _local_indices(count: int, device) -> torch.Tensor:
    return torch.arange(count, device=device)


class RobRankDefense(AdversarialDefense):
    """Shared by EST, ACT and HM: the reference's adversary settings and its triplet loss."""

    default_steps = 32
    default_random_start = False

    def __init__(self, **options):
        super().__init__(**options)
        self.require_loss_kind("triplet")
        self.margin = float(getattr(self.loss_fn, "margin", 0.2))

    def small_inputs(self) -> bool:
        size = input_size(self.image_shape)
        return size is None or size <= SMALL_INPUT

    def input_default_eps(self) -> float:
        return EPS_28PX if self.small_inputs() else EPS_224PX

    def input_default_step_size(self) -> float:
        if self.steps == 1:
            return self.eps  # the reference's FGSM case (pgditer == 1)
        return STEP_28PX if self.small_inputs() else STEP_224PX

    @property
    def pair_batches(self) -> bool:
        """Whether batches are SPC-2 pairs ``[a0, p0, a1, p1, ...]``: the training miner is ``spc2-random``
        (which refuses any other layout), so the triplet samplers keep to the pairs as the reference's do."""
        return isinstance(self.miner, SPC2RandomMiner)

    def triplet_loss(self, embeddings: torch.Tensor, a, p, n) -> torch.Tensor:
        """mean over ALL triplets of [d(a,p) - d(a,n) + margin]_+ (local batch; summed over ranks)."""
        return torch.relu(triplet_hardness(embeddings, a, p, n) + self.margin).mean() / self.world_size


@DEFENSES.register("est")
class EmbeddingShiftedTriplet(RobRankDefense):
    """EST (embedding-shifted triplet; reference: defenses/est.py ``est_training_step``): every image
    of the batch is replaced by

        x' = argmax_{||x' - x||_inf <= eps} ||f(x') - f(x)||

    (the embedding-shift attack, no label information; the reference maximises the non-squared
    distance, we the squared one: the same sign steps) and the metric loss, with the training miner,
    is trained on the adversarial embeddings only. The distance is stationary at the clean start, so
    its target is jittered by +-1e-7 per coordinate (the reference's ``embShift`` does the same in
    its first iteration; ours keeps the jitter, a shift of ~1e-7, for every step).
    """

    name = "est"

    def step(self, model, images, labels, generator) -> StepOutput:
        clean = clean_embeddings(model, images)
        adversarial = self.engine.perturb(model, images, self.shift_objective(clean, generator), generator)
        return StepOutput(loss=self.metric_loss(model(adversarial), labels), passes=self.passes)


def _collapse_objective(count: int):
    """Over a batch [p'; n'] of 2*count images: minimise ||f(p') - f(n')||^2 (shared by both halves)."""

    def objective(embeddings):
        gap = O.squared_distance(embeddings[:count], embeddings[count:])
        return -torch.cat([gap, gap])

    return objective


@DEFENSES.register("act")
class AntiCollapseTriplet(RobRankDefense):
    """ACT (anti-collapse triplet; reference: defenses/pnp.py ``pnp_training_step`` and
    ``PositiveNegativePerplexing.pncollapse``): triplets are mined on the clean embeddings with the
    training miner, one kept per anchor (:func:`~robustdml.losses.triplets.one_triplet_per_anchor`;
    with ``miner: spc2-random`` on pair batches that is every mined triplet, (2i, 2i + 1, a random
    negative), as the reference's ``ptripletN`` recipe mines; with the default ``semihard`` miner, a
    random one of each anchor's semihard triplets), PGD moves each p and n towards each other,

        (p', n') = argmin_{||p' - p||, ||n' - n|| <= eps} ||f(p') - f(n')||,

    and the triplet loss with the clean anchor separates them again:
    L = mean [d(a, p') - d(a, n') + m]_+ over all triplets, no clean loss term.
    Defaults: the reference's (module docstring): eps 77/255, 32 steps of 3/255 from the clean image.
    Before following the reference we stepped eps / (4 eta) from a random start, because both p' and
    n' move towards each other in every step and 2.5 eps / eta made the pair oscillate; that reading
    is ``--step-size`` (e.g. 0.0024 for eps / (4 eta) at eta 32) with ``random_start=true``.
    """

    name = "act"

    def step(self, model, images, labels, generator) -> StepOutput:
        clean = clean_embeddings(model, images)
        a, p, n = one_triplet_per_anchor(clean, labels, self.miner, generator)
        collapsed = self.engine.perturb(model, torch.cat([images[p], images[n]]), _collapse_objective(len(a)),
                                        generator)
        embeddings = model(torch.cat([images[a], collapsed]))
        index = _local_indices(len(a), images.device)
        loss = self.triplet_loss(embeddings, index, len(a) + index, 2 * len(a) + index)
        return StepOutput(loss=loss, passes=self.passes)


DESTINATIONS = TRIPLET_SAMPLERS + ("distance-weighted",)
SOURCES = DESTINATIONS + ("miner",)


def lga_destination(previous_loss: float, margin: float) -> float:
    """LGA's destination hardness H_D = -margin * clip(l_prev, 0, margin) / margin = -clip(l_prev, 0, margin)
    (reference: defenses/amd.py ``HardnessManipulate``, ``gradual`` with ``_G == 4``, margin 0.2).

    While the model cannot cope (previous triplet loss >= margin) H_D = -margin, the hardness at
    which a triplet's loss becomes non-zero; as the loss falls to 0, H_D rises linearly to 0
    (d(a,p) = d(a,n)). Triplets already harder than H_D are left as they are.
    """
    return -min(max(previous_loss, 0.0), margin)


@DEFENSES.register("hm")
class HardnessManipulation(RobRankDefense):
    """HM (reference: defenses/amd.py ``hm_training_step`` and ``MadryInnerMax.HardnessManipulate``,
    method ``ET``): PGD on the source triplet (a, p, n) raises its hardness H = d(a,p) - d(a,n)
    towards a destination H_D, minimising

        L_HM = mean( min(0, H(a', p', n') - H_D)^2 )      over ||x' - x||_inf <= eps,

    and stops as soon as L_HM reaches 0 (or stops changing); then the triplet loss is trained on
    (a', p', n'), mean over all triplets. ``StepOutput.passes`` counts the steps actually taken.

    - ``source`` (default ``softhard``, the reference's source miner, which overrides the loss's own
      miner): how the source triplet of each anchor is sampled, one of ``random``, ``semihard``,
      ``softhard``, ``hardest`` (:func:`~robustdml.losses.triplets.sampled_triplet_per_anchor`),
      ``distance-weighted`` (pytorch-metric-learning's miner) or ``miner`` (the training miner).
    - ``destination`` (default ``semihard``): H_D of each anchor is the hardness of a second triplet
      of that anchor sampled this way (clean embeddings); the source's where none is found.
    - ``lga=true`` (linear gradual adversary): H_D = -clip(l_prev, 0, margin) instead
      (:func:`lga_destination`; l_prev = the previous step's adversarial triplet loss, kept in
      ``state_dict`` for resume); no destination sampler is used then.
    - SPC-2 pair batches (training miner ``spc2-random``, ``sampler: pairs``): the source and
      destination triplets are anchored at the pairs' first items only, with the pair's second item
      as the positive (softhard: a soft positive of the class, else the pair's), as the reference's
      ``spc2-*`` miners; otherwise every item with a positive and a negative is an anchor.
    - ``ics=true`` adds ``ics_weight`` (0.5; the reference uses 0.05 on SOP) x L_ICS
      (:mod:`robustdml.losses.ics`: [d(a, a') - d(a, p)]_+ with the clean a and p).
    The paper's HM (the reference's ``ghmetsmi``) is ``lga=true ics=true``. ``source=miner`` (the
    training miner's triplets as source) is a reading of the paper the reference code does not take.
    """

    name = "hm"

    def __init__(self, source: str = "softhard", destination: Optional[str] = None, lga: bool = False,
                 ics: bool = False, ics_weight: float = 0.5, **options):
        super().__init__(**options)
        self.lga = bool_option(self.name, "lga", lga)
        self.ics = bool_option(self.name, "ics", ics)
        self.ics_weight = number_option(self.name, "ics_weight", ics_weight)
        if self.ics_weight < 0:
            raise ValueError(f"hm: ics_weight must be >= 0, got {ics_weight}")
        if source not in SOURCES:
            raise ValueError(f"hm: source must be one of {SOURCES}, got {source!r}")
        if self.lga and destination is not None:
            raise ValueError("hm: destination has no effect with lga=true (LGA sets H_D from the previous loss)")
        destination = destination or "semihard"
        if destination not in DESTINATIONS:
            raise ValueError(f"hm: destination must be one of {DESTINATIONS}, got {destination!r}")
        self.source, self.destination = source, destination
        self.distance_miner = build_miner("distance-weighted")
        self.previous_loss = self.margin  # before the first step: H_D = -margin under LGA

    def build_adversary(self, engine: str):
        if engine != "pgd":
            return super().build_adversary(engine)
        return EarlyStopPGD(self.eps, self.steps, self.step_size, self.norm, self.random_start)

    def triplets(self, kind: str, clean, labels, generator):
        """One triplet per anchor, sampled as ``kind`` says (see the class docstring)."""
        if kind == "miner":
            return one_triplet_per_anchor(clean, labels, self.miner, generator)
        if kind == "distance-weighted":
            return one_triplet_per_anchor(clean, labels, self.distance_miner, generator)
        return sampled_triplet_per_anchor(kind, clean, labels, generator, self.margin, pairs=self.pair_batches)

    def destination_hardness(self, clean, labels, a, p, n, generator) -> torch.Tensor:
        """H_D for every source triplet (a, p, n), from the clean embeddings of the batch."""
        source = triplet_hardness(clean, a, p, n)
        if self.lga:
            return torch.full_like(source, lga_destination(self.previous_loss, self.margin))
        da, dp, dn = self.triplets(self.destination, clean, labels, generator)
        table = torch.full((len(clean),), float("nan"), device=clean.device)
        table[da] = triplet_hardness(clean, da, dp, dn)
        mined = table[a]
        return torch.where(torch.isnan(mined), source, mined)

    def step(self, model, images, labels, generator) -> StepOutput:
        clean = clean_embeddings(model, images)
        a, p, n = self.triplets(self.source, clean, labels, generator)
        source = triplet_hardness(clean, a, p, n)
        destination = self.destination_hardness(clean, labels, a, p, n, generator)
        t = len(a)
        index = _local_indices(t, images.device)

        def objective(embeddings):
            hardness = triplet_hardness(embeddings, index, t + index, 2 * t + index)
            shortfall = torch.relu(destination - hardness).pow(2)
            return -torch.cat([shortfall, shortfall, shortfall])

        manipulated = self.engine.perturb(model, torch.cat([images[a], images[p], images[n]]), objective, generator)
        steps = self.engine.steps_taken if isinstance(self.engine, EarlyStopPGD) else self.steps
        embeddings = model(torch.cat([manipulated, images[a], images[p]]) if self.ics else manipulated)
        loss = self.triplet_loss(embeddings, index, t + index, 2 * t + index)
        info = {"hardness_source": float(source.mean()), "hardness_destination": float(destination.mean()),
                "hardness_adversarial": float(triplet_hardness(embeddings.detach(), index, t + index,
                                                               2 * t + index).mean()),
                "adversary_steps": float(steps)}
        self.previous_loss = float(loss.detach()) * self.world_size
        if self.ics:
            ics = intra_class_structure_loss(embeddings[3 * t:4 * t], embeddings[:t], embeddings[4 * t:])
            loss = loss + self.ics_weight * ics / self.world_size
            info["ics"] = float(ics.detach())
        return StepOutput(loss=loss, passes=float(steps + 1), info=info)

    def state_dict(self):
        return {"previous_loss": self.previous_loss}

    def load_state_dict(self, state):
        self.previous_loss = float(state.get("previous_loss", self.margin))
