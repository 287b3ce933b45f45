"""Projected gradient engines: PGD, FGSM, and the two batch-level PGD loops of the training adversaries."""

from __future__ import annotations

from typing import Optional

import torch

from robustdml.attacks.engines.base import ENGINES, JITTER, AttackEngine, ascent_direction, random_init
from robustdml.models.mode import eval_mode


@ENGINES.register("pgd")
class PGD(AttackEngine):
    """Projected gradient ascent (Madry et al.), optional uniform random start; returns the last iterate."""

    name = "pgd"

    def _perturb(self, run, images, start, generator):
        adversarial = start
        for _ in range(self.steps):
            _, grad = run.gradient(adversarial)
            if run.done:
                return adversarial
            adversarial = self.clip(images, adversarial + self.step_size * ascent_direction(grad, self.norm))
        run.check(adversarial)
        return adversarial


# Objectives such as embedding shift are stationary at the clean input (zero gradient); engines

@ENGINES.register("fgsm")
class FGSM(PGD):
    """One step of size eps from the clean input (Goodfellow et al.), its gradient taken at a point
    ``JITTER`` x eps away (or at ``start``)."""

    name = "fgsm"

    def __init__(self, eps: float, steps: int = 1, step_size: Optional[float] = None, norm: str = "linf",
                 random_start: bool = False):
        super().__init__(eps, steps=1, step_size=eps if eps > 0 else None, norm=norm, random_start=False)

    def starting_point(self, images, generator, start):
        if start is not None:
            return super().starting_point(images, generator, start)
        return self.clip(images, images + JITTER * random_init(images, self.eps, self.norm, generator))

    def _perturb(self, run, images, start, generator):
        _, grad = run.gradient(start)
        if run.done:
            return start
        adversarial = self.clip(images, images + self.step_size * ascent_direction(grad, self.norm))
        run.check(adversarial)
        return adversarial


class EarlyStopPGD(AttackEngine):
    """PGD (sign steps under l_inf) that stops as soon as every sample's objective has reached
    ``stop_at`` or the batch's mean objective changed by less than ``tolerance`` in a step, as
    RobRank's hardness manipulation does (defenses/amd.py ``HardnessManipulate``: it breaks out of
    the loop once its loss saturates, in particular once it is 0). ``steps_taken`` counts the
    gradient evaluations of the last call (the adversary's forward+backward passes).
    Its stop is batch-level (the adversary of a training step), so only ``perturb`` is its own.
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


class ChannelPGD(AttackEngine):
    """l_inf PGD with the radius, step and start given in the model's normalised input space (MDProp's
    adversary: eps 0.01 on ``(x - mean) / std``).

    A sign step of ``eps`` on ``(x - mean) / std`` is a step of ``eps * std[c]`` on channel ``c`` of
    the pixels (the sign of the gradient is the same in both spaces), so the adversary runs in
    pixel space with a per-channel radius, projects onto that box and clips to [0,1]. ``start``: the
    half-width of its uniform random start, also in normalised units.
    """

    name = "pgd-normalised"

    def __init__(self, eps: float, steps: int, step_size: float, start: float):
        super().__init__(eps, steps=steps, step_size=step_size, norm="linf", random_start=start > 0)
        self.start = float(start)

    @staticmethod
    def channel_scale(model, images: torch.Tensor) -> torch.Tensor:
        std = getattr(model, "std", None)
        if std is None:
            raise ValueError("mdprop: eps_space=normalised needs a model with a `std` buffer (EmbeddingModel); "
                             "use eps_space=pixel for other models")
        return std.to(images).view((1, -1) + (1,) * (images.dim() - 2))

    def perturb(self, model, images: torch.Tensor, objective, generator: Optional[torch.Generator] = None):
        images = images.detach()
        scale = self.channel_scale(model, images)
        radius = self.eps * scale
        noise = torch.rand(images.shape, generator=generator, dtype=images.dtype).to(images.device)
        adversarial = (images + (2 * noise - 1) * self.start * scale).clamp(0.0, 1.0)
        with eval_mode(model):
            for _ in range(self.steps):
                adversarial.requires_grad_(True)
                (grad,) = torch.autograd.grad(objective(model(adversarial)).sum(), adversarial)
                adversarial = adversarial.detach() + self.step_size * scale * grad.sign()
                adversarial = torch.minimum(torch.maximum(adversarial, images - radius), images + radius).clamp(0.0, 1.0)
        return adversarial.detach()

    def __repr__(self) -> str:
        return (f"{self.name}(eps={self.eps:.4g} x std, steps={self.steps}, step_size={self.step_size:.4g} x std, "
                f"start={self.start:.4g} x std)")
