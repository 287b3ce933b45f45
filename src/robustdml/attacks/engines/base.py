"""The engine contract: how a perturbation is optimised inside an eps-ball, whatever the objective.

Conventions (torchattacks / AutoAttack, carried over to embedding objectives):
- inputs in [0,1]; adversarial inputs are clipped to [0,1] and projected onto the eps-ball
  (``linf`` or ``l2``) after every step;
- the model is put in ``eval()`` while attacked and its mode is restored afterwards; gradients are
  taken with ``torch.autograd.grad`` w.r.t. the perturbation only, so weights never receive any;
- ``objective(embeddings) -> (B,)`` per-sample losses that the engine MAXIMISES (targeted
  objectives return negative distances).
"""


from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from robustdml.models.mode import eval_mode
from robustdml.registry import Registry

Objective = Callable[[torch.Tensor], torch.Tensor]
ENGINES: Registry = Registry("attack engine")
NORMS = ("linf", "l2")
# Objectives such as embedding shift are stationary at the clean input (zero gradient); engines
# without a random start take their first gradient this small random fraction of eps away.
JITTER = 1e-3


def _flat_norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    return delta * torch.clamp(eps / (_flat_norm(delta) + 1e-12), max=1.0)


def random_init(images: torch.Tensor, eps: float, norm: str, generator: Optional[torch.Generator]) -> torch.Tensor:
    """A uniform point of the eps-ball (linf) or a random direction at a uniform radius (l2)."""
    noise = torch.rand(images.shape, generator=generator, dtype=images.dtype).to(images.device)
    if norm == "linf":
        return (2 * noise - 1) * eps
    direction = torch.randn(images.shape, generator=generator, dtype=images.dtype).to(images.device)
    radius = torch.rand(images.shape[0], generator=generator, dtype=images.dtype).to(images.device)
    return direction / (_flat_norm(direction) + 1e-12) * eps * radius.view(-1, *([1] * (images.dim() - 1)))


def ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "linf":
        return grad.sign()
    return grad / (_flat_norm(grad) + 1e-12)


def check_options(eps: float, steps: int, norm: str, step_size: Optional[float] = None) -> None:
    """Reject impossible attack settings before any work, naming the field and how to fix it."""
    if not isinstance(eps, numbers.Real) or math.isnan(eps) or eps < 0:
        raise ValueError(f"eps must be a number >= 0 (a radius in pixel units, e.g. 8/255 = 0.0314), got {eps!r}")
    if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1 (number of gradient steps), got {steps!r}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if step_size is not None and not step_size > 0:
        raise ValueError(f"step_size must be > 0 (or None for the engine's default), got {step_size!r}")


@dataclass
class AttackResult:
    """What an engine returns for a batch.

    ``adversarial``: per sample, the first iterate that met the stop criterion when one is given
    and met, otherwise the engine's answer (last iterate for PGD/FGSM, best iterate for APGD/C&W);
    ``success``: whether the stop criterion was met at some iterate (all False without one);
    ``passes``: forward+backward passes spent on each sample (the attack's cost).
    """

    adversarial: torch.Tensor
    success: torch.Tensor
    passes: torch.Tensor


class EngineRun:
    """Book-keeping of one engine run: which samples are still attacked, what each one cost, and
    the first iterate at which each met the stop criterion.

    With ``early_stop`` a sample that meets the criterion gets no further forward/backward pass:
    gradients are computed for the active rows only (the objective and criterion restricted with
    ``select``); inactive rows get loss -inf and a zero gradient, and whatever their iterate does
    afterwards is replaced by the recorded successful one in :meth:`finish`. Every per-sample
    computation is independent of the other rows, so early stop changes the cost, not the result.
    """

    def __init__(self, model, images, objective, stop, early_stop: bool):
        self.model, self.objective, self.stop = model, objective, stop
        self.early_stop = early_stop and stop is not None
        count = images.shape[0]
        self.active = torch.ones(count, dtype=torch.bool, device=images.device)
        self.success = torch.zeros(count, dtype=torch.bool, device=images.device)
        self.passes = torch.zeros(count, device=images.device)
        self.found = images.clone()

    @property
    def done(self) -> bool:
        return self.early_stop and not bool(self.active.any())

    def _restricted(self, rows: Optional[torch.Tensor]):
        if rows is None:
            return self.objective, self.stop
        if not hasattr(self.objective, "select") or (self.stop is not None and not hasattr(self.stop, "select")):
            raise TypeError("early stop needs an objective and stop criterion with select(index) "
                            "(build them with robustdml.attacks.objectives)")
        return self.objective.select(rows), (self.stop.select(rows) if self.stop is not None else None)

    def gradient(self, adversarial: torch.Tensor):
        """(losses (B,), gradient w.r.t. the input) at ``adversarial``; records stop-criterion hits."""
        rows = self.active.nonzero().squeeze(1) if self.early_stop and not bool(self.active.all()) else None
        losses = torch.full((adversarial.shape[0],), -float("inf"), device=adversarial.device)
        grad = torch.zeros_like(adversarial)
        if rows is not None and len(rows) == 0:
            return losses, grad
        objective, stop = self._restricted(rows)
        points = (adversarial if rows is None else adversarial[rows]).detach().requires_grad_(True)
        embeddings = self.model(points)
        values = objective(embeddings)
        (points_grad,) = torch.autograd.grad(values.sum(), points)
        target = slice(None) if rows is None else rows
        losses[target], grad[target] = values.detach().float(), points_grad
        self.passes[target] += 1
        if stop is not None:
            self.record(stop(embeddings.detach()), points.detach(), rows)
        return losses, grad

    def record(self, hit: torch.Tensor, points: torch.Tensor, rows: Optional[torch.Tensor]) -> None:
        index = torch.arange(len(self.success), device=hit.device) if rows is None else rows
        new = hit & ~self.success[index]
        self.success[index[new]] = True
        self.found[index[new]] = points[new]
        if self.early_stop:
            self.active[index[new]] = False

    def check(self, adversarial: torch.Tensor) -> None:
        """Evaluate the stop criterion at ``adversarial`` without a gradient (e.g. a final point)."""
        if self.stop is None:
            return
        rows = self.active.nonzero().squeeze(1) if self.early_stop else None
        if rows is not None and len(rows) == 0:
            return
        _, stop = self._restricted(rows)
        points = adversarial if rows is None else adversarial[rows]
        with torch.no_grad():
            self.record(stop(self.model(points)), points, rows)
        target = slice(None) if rows is None else rows
        self.passes[target] += 0.5  # a forward pass without backward: half of a forward+backward

    def finish(self, adversarial: torch.Tensor) -> AttackResult:
        shape = (-1,) + (1,) * (adversarial.dim() - 1)
        return AttackResult(adversarial=torch.where(self.success.view(shape), self.found, adversarial).detach(),
                            success=self.success, passes=self.passes)


class AttackEngine:
    name = "engine"

    def __init__(self, eps: float, steps: int = 10, step_size: Optional[float] = None, norm: str = "linf",
                 random_start: bool = True):
        check_options(eps=eps, steps=steps, norm=norm, step_size=step_size)
        self.eps, self.steps, self.norm, self.random_start = float(eps), int(steps), norm, random_start
        self.step_size = float(step_size) if step_size is not None else 2.5 * self.eps / self.steps

    def clip(self, images: torch.Tensor, adversarial: torch.Tensor) -> torch.Tensor:
        return (images + project(adversarial - images, self.eps, self.norm)).clamp_(0.0, 1.0)

    def starting_point(self, images: torch.Tensor, generator: Optional[torch.Generator],
                       start: Optional[torch.Tensor]) -> torch.Tensor:
        """``start`` (projected) when given, else a random point of the ball or the clean image."""
        if start is not None:
            return self.clip(images, start.to(images.device, images.dtype))
        if self.random_start:
            return self.clip(images, images + random_init(images, self.eps, self.norm, generator))
        return images.clone()

    def perturb(self, model, images: torch.Tensor, objective: Objective,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The adversarial images (the engine's answer for every sample; no stop criterion)."""
        return self.attack(model, images, objective, generator).adversarial

    def attack(self, model, images: torch.Tensor, objective: Objective, generator: Optional[torch.Generator] = None,
               stop: Optional[Objective] = None, early_stop: bool = True,
               start: Optional[torch.Tensor] = None) -> AttackResult:
        """Maximise ``objective`` inside the eps-ball around ``images``.

        ``stop(embeddings) -> (B,) bool`` marks samples for which the attack has succeeded (e.g. the
        query is misranked); their first successful iterate is kept and, with ``early_stop``, they
        get no further passes. ``start``: the starting point (projected onto the ball), overriding
        the engine's random or clean start, so that a caller can draw the random starts of a whole
        query set once and attack any subset of it with exactly the same starts.
        """
        images = images.detach()
        run = EngineRun(model, images, objective, stop, early_stop)
        if self.eps == 0:
            with eval_mode(model):
                run.check(images)
            return run.finish(images.clone())
        with eval_mode(model):
            adversarial = self._perturb(run, images, self.starting_point(images, generator, start), generator)
        return run.finish(adversarial)

    def _perturb(self, run: EngineRun, images, start, generator):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{self.name}(eps={self.eps:.4g}, steps={self.steps}, step_size={self.step_size:.4g}, norm={self.norm})"
