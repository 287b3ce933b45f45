"""MDProp (Mao et al., "Advancing Deep Metric Learning With Adversarial Robustness", ACML 2024) and
AdvProp for DML (``advprop-d``).

MDProp trains on several input distributions, each routed through its own batch norm:
- clean images;
- STAX, single-targeted adversarial examples: each embedding pulled towards ONE other-class
  embedding (its nearest other-class item in the batch) inside the eps-ball;
- MTAX, multi-targeted adversarial examples: pulled towards the mean squared distance of its
  ``num_targets`` nearest other-class embeddings at once, i.e. into the region where classes overlap;
- UAX, unadversarial examples: pulled towards the centre of its own class (mean clean embedding of
  its class in the batch).

    L = w_clean L(clean) + w_stax L(STAX) + w_mtax L(MTAX) + w_uax L(UAX)

with the configured metric loss (and miner) on each distribution. Evaluation uses the clean BN.
Defaults: eps = 0.03 and 3 PGD steps on 28px inputs: MDProp's aim is better clean accuracy, which
calls for small perturbations (our choice; the paper tunes eps per dataset).
"""

from __future__ import annotations

from typing import Dict, Optional

import torch

from robustdml.attacks import objectives as O
from robustdml.defenses.base import DEFENSES, StepOutput
from robustdml.defenses.common import AdversarialDefense, clean_embeddings
from robustdml.models.multibn import CLEAN, convert_to_multi_bn, multi_bn_modules, use_distribution

MDPROP_DISTRIBUTIONS = (CLEAN, "stax", "mtax", "uax")


def nearest_other_class(embeddings: torch.Tensor, labels: torch.Tensor, count: int) -> torch.Tensor:
    """Indices (B, count) of each sample's ``count`` nearest embeddings of another class."""
    distances = torch.cdist(embeddings, embeddings)
    distances = distances.masked_fill(labels[:, None] == labels[None, :], float("inf"))
    available = int((labels[:, None] != labels[None, :]).sum(dim=1).min())
    if available < count:
        raise ValueError(f"mdprop: num_targets={count} but some sample has only {available} other-class items in "
                         "its batch; lower num_targets or put more classes in a batch")
    return distances.topk(count, dim=1, largest=False).indices


def class_centres(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each sample's own class centre: the mean embedding of its class in the batch, (B, E)."""
    classes, inverse = torch.unique(labels, return_inverse=True)
    sums = torch.zeros(len(classes), embeddings.shape[1], device=embeddings.device).index_add_(0, inverse, embeddings)
    counts = torch.bincount(inverse, minlength=len(classes)).clamp_min(1).unsqueeze(1)
    return (sums / counts)[inverse]


class _MultiDistributionDefense(AdversarialDefense):
    """Shared machinery: one BN per distribution, generate each distribution under its own BN."""

    distributions = (CLEAN,)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Swap the model's BNs for one BN per distribution (called by the trainer before the optimiser)."""
        if not any(True for _ in multi_bn_modules(model)):
            convert_to_multi_bn(model, self.distributions)
        return model

    def _check_prepared(self, model) -> None:
        if not any(True for _ in multi_bn_modules(model)):
            raise RuntimeError(f"{self.name}: call defense.prepare_model(model) before training (one BN per "
                               "distribution)")

    def clean_embeddings(self, model, images) -> torch.Tensor:
        with use_distribution(model, CLEAN):
            return clean_embeddings(model, images)

    def generate(self, model, name: str, images, objective, generator) -> torch.Tensor:
        with use_distribution(model, name):
            return self.engine.perturb(model, images, objective, generator)

    def loss_on(self, model, name: str, images, labels) -> torch.Tensor:
        with use_distribution(model, name):
            return self.metric_loss(model(images), labels)


@DEFENSES.register("mdprop")
class MDProp(_MultiDistributionDefense):
    name = "mdprop"
    default_eps = 0.03
    default_steps = 3
    distributions = MDPROP_DISTRIBUTIONS

    def __init__(self, num_targets: int = 3, weights: Optional[Dict[str, float]] = None, **options):
        super().__init__(**options)
        if int(num_targets) < 1:
            raise ValueError(f"mdprop: num_targets must be >= 1, got {num_targets}")
        self.num_targets = int(num_targets)
        self.weights = {name: 1.0 for name in MDPROP_DISTRIBUTIONS}
        for name, weight in (weights or {}).items():
            if name not in self.weights:
                raise ValueError(f"mdprop: weights has unknown distribution {name!r}; valid: {MDPROP_DISTRIBUTIONS}")
            if float(weight) < 0:
                raise ValueError(f"mdprop: weight of {name!r} must be >= 0, got {weight}")
            self.weights[name] = float(weight)

    @property
    def passes(self) -> float:
        return float(3 * self.steps + 4)

    def targets(self, clean: torch.Tensor, labels: torch.Tensor):
        """(STAX target (B,E), MTAX targets (B,T,E), UAX target (B,E))."""
        others = nearest_other_class(clean, labels, self.num_targets)
        return clean[others[:, 0]], clean[others], class_centres(clean, labels)

    def step(self, model, images, labels, generator) -> StepOutput:
        self._check_prepared(model)
        clean = self.clean_embeddings(model, images)
        stax_target, mtax_targets, uax_target = self.targets(clean, labels)
        generated = {
            "stax": self.generate(model, "stax", images, O.pull_to(stax_target), generator),
            "mtax": self.generate(model, "mtax", images, O.pull_to_many(mtax_targets), generator),
            "uax": self.generate(model, "uax", images, O.pull_to(uax_target), generator),
        }
        terms = {CLEAN: self.loss_on(model, CLEAN, images, labels)}
        for name, adversarial in generated.items():
            terms[name] = self.loss_on(model, name, adversarial, labels)
        loss = sum(self.weights[name] * term for name, term in terms.items())
        return StepOutput(loss=loss, passes=self.passes, info={f"loss_{k}": float(v.detach()) for k, v in terms.items()})


@DEFENSES.register("advprop-d")
class AdvPropDML(_MultiDistributionDefense):
    """AdvProp for DML: clean + embedding-shift adversarial examples, each with its own BN."""

    name = "advprop-d"
    default_eps = 0.03
    default_steps = 3
    distributions = (CLEAN, "adv")

    def __init__(self, adversarial_weight: float = 1.0, **options):
        super().__init__(**options)
        self.adversarial_weight = float(adversarial_weight)

    @property
    def passes(self) -> float:
        return float(self.steps + 2)

    def step(self, model, images, labels, generator) -> StepOutput:
        self._check_prepared(model)
        clean = self.clean_embeddings(model, images)
        adversarial = self.generate(model, "adv", images, self.shift_objective(clean, generator), generator)
        clean_loss = self.loss_on(model, CLEAN, images, labels)
        adversarial_loss = self.loss_on(model, "adv", adversarial, labels)
        return StepOutput(loss=clean_loss + self.adversarial_weight * adversarial_loss, passes=self.passes,
                          info={"loss_clean": float(clean_loss.detach()), "loss_adv": float(adversarial_loss.detach())})
