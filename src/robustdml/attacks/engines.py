"""Attack engines: how a perturbation is optimised inside an eps-ball, whatever the objective.

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


class _Run:
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
        run = _Run(model, images, objective, stop, early_stop)
        if self.eps == 0:
            with eval_mode(model):
                run.check(images)
            return run.finish(images.clone())
        with eval_mode(model):
            adversarial = self._perturb(run, images, self.starting_point(images, generator, start), generator)
        return run.finish(adversarial)

    def _perturb(self, run: _Run, images, start, generator):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{self.name}(eps={self.eps:.4g}, steps={self.steps}, step_size={self.step_size:.4g}, norm={self.norm})"


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
# without a random start take their first gradient this small random fraction of eps away.
JITTER = 1e-3


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


@ENGINES.register("apgd")
class APGD(AttackEngine):
    """Auto-PGD (Croce & Hein, ICML 2020) on an embedding objective, following AutoAttack's code.

    Step size starts at 2*eps; momentum 0.75 (none on the first step); checkpoints after 22% of the
    budget, then windows shrinking by 3% of the budget down to 6% (AutoAttack's integer rule, which
    gives 22, 41, 57, 70, ... for 100 steps). At a checkpoint a sample's step is halved, and the
    sample restarts from its best point, when
      1. fewer than ``rho`` (75%) of the steps since the last checkpoint increased its loss over the
         previous iterate, or
      2. its step was not halved at the last checkpoint and its best loss has not improved since.
    Returns the best iterate (highest objective) of every sample, so more steps never hurt.
    ``steps`` counts the gradient steps; one extra gradient is taken at the starting point.
    """

    name = "apgd"
    momentum = 0.75

    def __init__(self, eps: float, steps: int = 10, step_size: Optional[float] = None, norm: str = "linf",
                 random_start: bool = True, rho: float = 0.75):
        super().__init__(eps, steps, step_size, norm, random_start)
        if not 0 < rho <= 1:
            raise ValueError(f"rho must be in (0, 1] (fraction of steps that must increase the loss), got {rho!r}")
        self.rho = float(rho)
        self.step_size = float(step_size) if step_size is not None else 2.0 * self.eps

    def checkpoints(self) -> list:
        """Iterations (1-based counts of steps taken) at which the step size is reconsidered."""
        window = max(int(0.22 * self.steps), 1)
        shortest, shrink = max(int(0.06 * self.steps), 1), max(int(0.03 * self.steps), 1)
        points, position = [], window
        while position <= self.steps:
            points.append(position)
            window = max(window - shrink, shortest)
            position += window
        return points

    def _perturb(self, run, images, start, generator):
        shape = (-1,) + (1,) * (images.dim() - 1)
        batch = images.shape[0]
        current = start
        step = torch.full((batch,), self.step_size, device=images.device, dtype=images.dtype)
        loss, grad = run.gradient(current)
        best_loss, best, best_grad = loss.clone(), current.clone(), grad.clone()
        previous, previous_loss = current.clone(), loss.clone()
        increases = torch.zeros(batch, device=images.device)
        best_at_checkpoint = best_loss.clone()
        halved_at_checkpoint = torch.zeros(batch, dtype=torch.bool, device=images.device)
        checkpoints, last_checkpoint = set(self.checkpoints()), 0
        for iteration in range(self.steps):
            if run.done:
                break
            z = self.clip(images, current + step.view(shape) * ascent_direction(grad, self.norm))
            momentum = self.momentum if iteration > 0 else 1.0
            candidate = self.clip(images, current + momentum * (z - current) + (1 - momentum) * (current - previous))
            previous, current = current, candidate
            loss, grad = run.gradient(current)
            increases += (loss > previous_loss).float()
            previous_loss = loss
            better = loss > best_loss
            best_loss = torch.where(better, loss, best_loss)
            best = torch.where(better.view(shape), current, best)
            best_grad = torch.where(better.view(shape), grad, best_grad)
            if iteration + 1 in checkpoints:
                window = iteration + 1 - last_checkpoint
                oscillating = increases <= self.rho * window
                stalled = ~halved_at_checkpoint & (best_loss <= best_at_checkpoint)
                halve = oscillating | stalled
                step = torch.where(halve, step / 2, step)
                current = torch.where(halve.view(shape), best, current)
                grad = torch.where(halve.view(shape), best_grad, grad)
                halved_at_checkpoint = halve
                increases.zero_()
                best_at_checkpoint = best_loss.clone()
                last_checkpoint = iteration + 1
        return best


@ENGINES.register("cw")
class CW(AttackEngine):
    """Carlini & Wagner style: Adam on a tanh-parametrised perturbation minimising
    ``||delta||_p - c * objective``, kept inside the eps-ball; returns each sample's best iterate
    (highest objective) within the bounded iteration budget. Adam's state couples the steps of a
    sample, so a stop criterion records hits but every sample keeps its full budget (no early stop)."""

    name = "cw"

    def __init__(self, eps: float, steps: int = 30, step_size: Optional[float] = None, norm: str = "linf",
                 random_start: bool = False, c: float = 10.0):
        super().__init__(eps, steps, step_size, norm, random_start)
        # Adam moves each coordinate of w by about lr per step: reach tanh saturation within the budget.
        self.step_size = float(step_size) if step_size is not None else max(0.1, 2.5 / self.steps)
        self.c = float(c)

    def starting_point(self, images, generator, start):
        """A point of the tanh parametrisation: w with eps * tanh(w) = the starting perturbation."""
        if start is not None:
            delta = (self.clip(images, start.to(images.device, images.dtype)) - images) / self.eps
            return torch.atanh(delta.clamp(-1 + 1e-6, 1 - 1e-6))
        scale = 0.5 if self.random_start else JITTER
        return random_init(images, 1.0, "linf", generator) * scale

    def _perturb(self, run, images, start, generator):
        shape = (-1,) + (1,) * (images.dim() - 1)
        w = start.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([w], lr=self.step_size)
        best = images.clone()
        best_loss = torch.full((images.shape[0],), -float("inf"), device=images.device)
        for _ in range(self.steps):
            delta = project(self.eps * torch.tanh(w), self.eps, self.norm)
            adversarial = (images + delta).clamp(0.0, 1.0)
            embeddings = run.model(adversarial)
            losses = run.objective(embeddings)
            size = delta.flatten(1).abs().amax(1) if self.norm == "linf" else delta.flatten(1).norm(dim=1)
            total = (size - self.c * losses).sum()
            (grad,) = torch.autograd.grad(total, w)
            run.passes += 1
            if run.stop is not None:
                run.record(run.stop(embeddings.detach()), adversarial.detach(), None)
            optimizer.zero_grad(set_to_none=True)
            w.grad = grad
            optimizer.step()
            with torch.no_grad():
                better = losses.detach() > best_loss
                best_loss = torch.where(better, losses.detach(), best_loss)
                best = torch.where(better.view(shape), adversarial.detach(), best)
        return self.clip(images, best)

    def attack(self, model, images, objective, generator=None, stop=None, early_stop=True, start=None):
        return super().attack(model, images, objective, generator, stop=stop, early_stop=False, start=start)


def build_engine(name: str, **options) -> AttackEngine:
    return ENGINES.get(name)(**options)
