"""The worked examples of CONTRIBUTING.md: each is one new class (in a real contribution, one new file) plus
one registry line. ``tests/test_attack_spec.py`` and ``tests/test_contributing.py`` import and run them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import numpy as np
import torch

from robustdml.attacks import objectives as O
from robustdml.attacks.context import AttackContext
from robustdml.attacks.members import Candidates, Member, Run
from robustdml.attacks.retrieval.base import RetrievalAttack, random_others
from robustdml.attacks.units import Options, option


# ---------------------------------------------------------------- an ensemble member
class PushFromSecondNearest(Member):
    """Push the query away from its second-nearest same-class item (a toy member). Registering it is
    ``MEMBERS.add(PushFromSecondNearest.name, PushFromSecondNearest)`` (or ``@registered(MEMBERS)``); joining
    the default ensemble is one more entry in ``robustdml.attacks.members.AUTO``."""

    name = "second"
    candidates = 2  # it needs the two nearest positives of each query

    def objective(self, run: Run, gallery: torch.Tensor, candidates: Candidates) -> O.Objective:
        return O.push_from(gallery[candidates.positives[:, -1]])


# ---------------------------------------------------------------- a retrieval attack with one option
@dataclass(frozen=True)
class PullOptions(Options):
    others: int = option(1, flag="--pull-others", help="random items the query is pulled towards")


class PullTowardsRandom(RetrievalAttack):
    """Pull the query towards the mean of ``others`` random gallery items; its score is R@1 after the attack.
    Registering it is ``RETRIEVAL_ATTACKS.add(PullTowardsRandom.name, PullTowardsRandom)``; its option's flag
    then appears on ``robustdml attack`` by itself."""

    name = "pull-random"
    Options = PullOptions
    r1_score = "PULL"

    def attack(self, ctx: AttackContext, queries: np.ndarray) -> Dict[str, object]:
        others = random_others(ctx, queries, self.options.others).reshape(len(queries), -1)
        target = ctx.gallery[torch.as_tensor(others)].mean(dim=1)
        return {"embeddings": ctx.embed(ctx.perturb(queries, O.pull_to, target))}


# ---------------------------------------------------------------- a defense
from robustdml.defenses.base import Defense, StepOutput  # noqa: E402
from robustdml.options import number_option  # noqa: E402


class UniformNoiseTraining(Defense):
    """Natural training on images with uniform noise in [-width, width] (a toy defense). Registering it is
    ``DEFENSES.add(UniformNoiseTraining.name, UniformNoiseTraining)``; ``--defense uniform-noise
    --defense-option width=8/255`` then trains with it, and the config checks ``width`` by building it."""

    name = "uniform-noise"

    def __init__(self, width=4 / 255, **options):
        super().__init__(**options)
        self.width = number_option(self.name, "width", width, low=0)

    def step(self, model, images, labels, generator) -> StepOutput:
        noise = (2 * torch.rand(images.shape, generator=generator) - 1).to(images.device) * self.width
        embeddings = model((images + noise).clamp(0, 1))
        return StepOutput(loss=self.metric_loss(embeddings, labels), passes=1.0)


# ---------------------------------------------------------------- a dataset
def three_blobs(split: str, root=None, per_class: int = 30):
    """Three Gaussian blobs in 8 dimensions (a toy dataset). Registering it is one line in
    ``robustdml/data/catalog.py``: ``@_dataset("three-blobs", defaults, source, input_size=None)`` above it."""
    from robustdml.data import TensorRetrievalDataset

    generator = torch.Generator().manual_seed(0 if split == "train" else 1)
    labels = torch.arange(3).repeat_interleave(per_class)
    points = torch.sigmoid(torch.randn(len(labels), 8, generator=generator) * 0.3 + torch.eye(3, 8)[labels] * 3)
    return TensorRetrievalDataset(points, labels.numpy(), "three-blobs")


# ---------------------------------------------------------------- a suite
def blobs_suite(full: bool = False, eta=None):
    """Natural against uniform-noise training on the synthetic set (a toy suite). Registering it is
    ``@SUITES.register("toy-noise")`` above it, in a module of ``robustdml/reporting/suites/`` named in the
    package's import line."""
    from robustdml.reporting.suites.base import RunSpec, Suite, protocol_for

    base = {"dataset": "synthetic-gaussian", "epochs": 1}
    runs = [RunSpec("natural", "natural", base),
            RunSpec("noise", "uniform noise", {**base, "defense": "uniform-noise",
                                                "defense_options": {"width": 0.1}})]
    return Suite("toy-noise", "Natural against uniform-noise training.", runs,
                 protocol_for(full, max_queries=50), "full" if full else "cpu")
