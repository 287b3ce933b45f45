"""What every adversarial training defense shares: the adversary (eps, eta steps, step size, start) built
from the engines, its option checks, clean embeddings for mining and targets."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from robustdml.attacks import build_engine
from robustdml.attacks import objectives as O
from robustdml.defenses.base import Defense
from robustdml.models.mode import eval_mode
from robustdml.options import bool_option, number_option, unknown_options

EPS_28PX = 77 / 255  # RobRank's eps for 28x28 inputs (8/255 for 224px)
ADVERSARY_OPTIONS = ("eps", "steps", "step_size", "norm", "engine", "random_start")


def input_size(image_shape: Optional[Sequence[int]]) -> Optional[int]:
    """The side of square image inputs (C, H, W) -> W; None for vector inputs or an unknown shape."""
    return int(image_shape[-1]) if image_shape is not None and len(image_shape) == 3 else None


def clean_embeddings(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Embeddings used to mine tuples and to set attack targets: eval mode, no graph."""
    with torch.no_grad(), eval_mode(model):
        return model(images)


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
                 image_shape: Optional[Sequence[int]] = None, **adversary):
        """``adversary``: the options of every adversarial defense, ``ADVERSARY_OPTIONS`` (eps, steps = eta,
        step_size, norm, engine, random_start); anything else is refused, naming them."""
        unknown = {key: value for key, value in adversary.items() if key not in ADVERSARY_OPTIONS}
        if unknown:
            raise unknown_options(self.name, unknown, ADVERSARY_OPTIONS)
        eps, steps, step_size = adversary.get("eps"), adversary.get("steps"), adversary.get("step_size")
        random_start = adversary.get("random_start")
        super().__init__(loss=loss, miner=miner, loss_options=loss_options, miner_options=miner_options,
                         image_shape=image_shape)
        self.steps = self.default_steps if steps is None else number_option(self.name, "steps", steps, int, low=1)
        self.eps = self.input_default_eps() if eps is None else number_option(self.name, "eps", eps, low=0)
        if step_size is not None:
            step_size = number_option(self.name, "step_size", step_size, above=0)
        self.step_size = self.input_default_step_size() if step_size is None else step_size
        self.norm = adversary.get("norm", "linf")
        self.random_start = (self.default_random_start if random_start is None
                             else bool_option(self.name, "random_start", random_start))
        self.engine = self.build_adversary(adversary.get("engine", "pgd"))

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
        return O.push_from(clean if self.random_start else O.jittered(clean, generator))

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
