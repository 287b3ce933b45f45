"""MDProp (Mao et al., "Advancing Deep Metric Learning With Adversarial Robustness", ACML 2024) and
AdvProp for DML (``advprop-d``).

MDProp trains on several input distributions, each routed through its own batch norm, and evaluates
with the clean (main) one.

Defaults: what the reference code (github.com/intherejeet/MDProp) does
- targets are random permutations of the clean embeddings of the images being perturbed, labels
  unused (a permutation may map an image to itself: the reference keeps such fixed points);
- STAX (single-targeted adversarial examples) are pulled towards 1 target, MTAX (multi-targeted)
  towards ``num_targets`` = 5 targets at once; both descend ``(mean_t ||e_t - f(x')||)^2``. The
  reference squares the batch mean of that distance; as the adversary takes sign steps with the model
  in eval mode (samples independent), the per-sample form used here gives the same steps;
- the target embeddings and the adversary see the model through the BN of the distribution being
  generated (STAX BN for STAX, MTAX BN for MTAX), in eval mode;
- l_inf eps 0.01 in the model's *normalised* input space, i.e. eps * std per channel in pixels
  (0.0035 for the 28px convnet, std 0.353; about 0.58/255 for ImageNet's std); one PGD step of size
  eps from a uniform start in +-0.05 eps; pixels stay in [0,1];
- the training batch is ``[clean; STAX of the first half; MTAX of the second half]`` (2B images), one
  forward in which each block runs through its own BN (main, STAX, MTAX) and one metric loss over the
  whole batch with labels ``[y; y_first_half; y_second_half]``: distributions are weighted by their
  share of the batch, and mining pairs items across distributions.

Our options (``--defense-option KEY=VALUE``), each a reason to depart from the reference
- ``targets=nearest-other-class``: each image's nearest other-class embeddings in its batch are its
  targets (a reading of the paper, which says targets come from other classes; the reference ignores
  labels);
- ``num_targets=N``: MTAX targets (the paper's ablation varies it);
- ``eps_space=pixel``: eps in pixel units, one radius for every channel, with any ``engine``/``norm``
  (to compare with the pixel-space eps of the other defenses; the reference's normalised eps is tiny
  in pixels);
- ``steps=K`` (and ``step_size``): a stronger adversary (step size eps/K in the reference's rule;
  with ``eps_space=pixel`` the engine's default 2.5 eps/K);
- ``mix=separate`` (with ``weights={clean: w, stax: w, ...}``): every image gets a copy of every
  distribution, each distribution has its own forward and loss, L = sum_d w_d L(d) (a reading of the
  paper, which writes the loss per distribution);
- ``uax=true``: UAX, unadversarial examples pulled towards the centre of their own class (mean
  embedding of the class among the images perturbed), with a BN of their own. This is OUR reading of
  the paper: the reference code has no UAX path. With ``mix=joint`` the batch is then split in thirds.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from robustdml.defenses.base import DEFENSES, StepOutput
from robustdml.attacks.engines import ChannelPGD
from robustdml.defenses.adversarial import AdversarialDefense, clean_embeddings
from robustdml.options import bool_option, number_option
from robustdml.models.multibn import CLEAN, convert_to_multi_bn, multi_bn_modules, use_distribution, use_segments

TARGET_RULES = ("random", "nearest-other-class")
EPS_SPACES = ("normalised", "pixel")
MIXES = ("joint", "separate")
START_FRACTION = 0.05  # the reference starts from uniform noise in +-0.0005 for eps 0.01


def nearest_other_class(embeddings: torch.Tensor, labels: torch.Tensor, count: int) -> torch.Tensor:
    """Indices (B, count) of each sample's ``count`` nearest embeddings of another class."""
    distances = torch.cdist(embeddings, embeddings)
    distances = distances.masked_fill(labels[:, None] == labels[None, :], float("inf"))
    available = int((labels[:, None] != labels[None, :]).sum(dim=1).min())
    if available < count:
        raise ValueError(f"mdprop: num_targets={count} but some sample has only {available} other-class items in "
                         "its batch; lower num_targets or put more classes in a batch")
    return distances.topk(count, dim=1, largest=False).indices


def random_permutations(size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """(size, count) indices: column t is an independent uniform permutation of range(size)."""
    return torch.stack([torch.randperm(size, generator=generator) for _ in range(count)], dim=1)


def class_centres(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each sample's own class centre: the mean embedding of its class in the batch, (B, E)."""
    classes, inverse = torch.unique(labels, return_inverse=True)
    sums = torch.zeros(len(classes), embeddings.shape[1], device=embeddings.device).index_add_(0, inverse, embeddings)
    counts = torch.bincount(inverse, minlength=len(classes)).clamp_min(1).unsqueeze(1)
    return (sums / counts)[inverse]


def pull_towards(targets: torch.Tensor):
    """MDProp's adversary objective (maximised): ``-(mean_t ||e_t - f(x')||)^2``, targets (B, T, E)."""
    targets = targets.detach()
    return lambda embeddings: -(embeddings[:, None, :] - targets).norm(dim=2).mean(dim=1).pow(2)


class _MultiDistributionDefense(AdversarialDefense):
    """Shared machinery: one BN per distribution, generate each distribution under its own BN."""

    distributions: Tuple[str, ...] = (CLEAN,)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Swap the model's BNs for one BN per distribution (called by the trainer before the optimiser)."""
        if not any(True for _ in multi_bn_modules(model)):
            convert_to_multi_bn(model, self.distributions)
        return model

    def _check_prepared(self, model) -> None:
        if not any(True for _ in multi_bn_modules(model)):
            raise RuntimeError(f"{self.name}: call defense.prepare_model(model) before training (one BN per "
                               "distribution)")

    def clean_embeddings(self, model, images, name: str = CLEAN) -> torch.Tensor:
        """Eval-mode embeddings of unperturbed ``images`` through the ``name`` BN."""
        with use_distribution(model, name):
            return clean_embeddings(model, images)

    def generate(self, model, name: str, images, objective, generator) -> torch.Tensor:
        with use_distribution(model, name):
            return self.engine.perturb(model, images, objective, generator)

    def loss_on(self, model, name: str, images, labels) -> torch.Tensor:
        with use_distribution(model, name):
            return self.metric_loss(model(images), labels)


def _choice(field: str, value: str, valid: Tuple[str, ...]) -> str:
    value = {"normalized": "normalised"}.get(str(value), str(value))
    if value not in valid:
        raise ValueError(f"mdprop: {field} must be one of {', '.join(valid)}, got {value!r}")
    return value


@DEFENSES.register("mdprop")
class MDProp(_MultiDistributionDefense):
    name = "mdprop"
    default_eps = 0.01  # in the space named by eps_space (normalised by default)
    default_steps = 1

    def __init__(self, targets: str = "random", num_targets=5, eps_space: str = "normalised", uax=False,
                 mix: str = "joint", weights: Optional[Dict[str, float]] = None, **options):
        self.target_rule = _choice("targets", targets, TARGET_RULES)
        self.eps_space = _choice("eps_space", eps_space, EPS_SPACES)
        self.mix = _choice("mix", mix, MIXES)
        self.num_targets = number_option("mdprop", "num_targets", num_targets, int)
        if self.num_targets < 1:
            raise ValueError(f"mdprop: num_targets must be >= 1, got {num_targets}")
        self.adversarial = ("stax", "mtax") + (("uax",) if bool_option("mdprop", "uax", uax) else ())
        self.distributions = (CLEAN,) + self.adversarial
        if self.eps_space == "normalised":
            for field, value, only in (("engine", options.get("engine", "pgd"), "pgd"),
                                       ("norm", options.get("norm", "linf"), "linf")):
                if value != only:
                    raise ValueError(f"mdprop: {field}={value!r} needs eps_space=pixel (the normalised-space "
                                     f"adversary is the reference's {only})")
        super().__init__(**options)
        if self.eps_space == "normalised":
            given = options.get("step_size")
            step_size = self.eps / self.steps if given is None else number_option(self.name, "step_size", given)
            self.engine = ChannelPGD(self.eps, self.steps, step_size, start=START_FRACTION * self.eps)
        if weights and self.mix != "separate":
            raise ValueError("mdprop: weights apply to mix=separate (mix=joint has one loss over the whole batch)")
        self.weights = {name: 1.0 for name in self.distributions}
        for name, weight in (weights or {}).items():
            if name not in self.weights:
                raise ValueError(f"mdprop: weights has unknown distribution {name!r}; valid: {self.distributions}")
            if float(weight) < 0:
                raise ValueError(f"mdprop: weight of {name!r} must be >= 0, got {weight}")
            self.weights[name] = float(weight)

    @property
    def passes(self) -> float:
        """joint: every image perturbed once (``steps``) plus a 2B-image training pass; separate: every
        distribution perturbs and trains on the whole batch."""
        if self.mix == "joint":
            return float(self.steps + 2)
        return float(len(self.adversarial) * (self.steps + 1) + 1)

    def parts(self, size: int) -> List[Tuple[str, slice]]:
        """Which images each adversarial distribution perturbs: contiguous blocks of the batch
        (``mix=joint``: first half STAX, second half MTAX) or all of it (``mix=separate``)."""
        if self.mix == "separate":
            return [(name, slice(0, size)) for name in self.adversarial]
        count = len(self.adversarial)
        bounds = [i * size // count for i in range(count + 1)]
        return [(name, slice(bounds[i], bounds[i + 1])) for i, name in enumerate(self.adversarial)]

    def targets(self, name: str, pool: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Targets (n, T, E) for the ``name`` examples of images whose clean embeddings are ``pool`` (n, E)."""
        if name == "uax":
            return class_centres(pool, labels)[:, None]
        count = 1 if name == "stax" else self.num_targets
        if self.target_rule == "random":
            order = random_permutations(len(pool), count, generator).to(pool.device)
        else:
            order = nearest_other_class(pool, labels, count)
        return pool[order]

    def adversarial_examples(self, model, images, labels, generator) -> List[Tuple[str, torch.Tensor, torch.Tensor]]:
        """(distribution, generated images, their labels) for every adversarial distribution."""
        generated = []
        for name, block in self.parts(len(images)):
            pool = self.clean_embeddings(model, images[block], name)
            goal = self.targets(name, pool, labels[block], generator)
            generated.append((name, self.generate(model, name, images[block], pull_towards(goal), generator),
                              labels[block]))
        return generated

    def step(self, model, images, labels, generator) -> StepOutput:
        self._check_prepared(model)
        generated = self.adversarial_examples(model, images, labels, generator)
        if self.mix == "joint":
            batch = torch.cat([images] + [adversarial for _, adversarial, _ in generated])
            batch_labels = torch.cat([labels] + [block_labels for _, _, block_labels in generated])
            with use_segments(model, [(CLEAN, len(images))] + [(name, len(a)) for name, a, _ in generated]):
                loss = self.metric_loss(model(batch), batch_labels)
            return StepOutput(loss=loss, passes=self.passes, info={"loss_joint": float(loss.detach())})
        terms = {CLEAN: self.loss_on(model, CLEAN, images, labels)}
        for name, adversarial, block_labels in generated:
            terms[name] = self.loss_on(model, name, adversarial, block_labels)
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
