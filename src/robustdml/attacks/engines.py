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

import contextlib
from typing import Callable, Optional

import torch

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


@contextlib.contextmanager
def attack_mode(model: torch.nn.Module):
    """Model in eval() during the attack, previous mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


class AttackEngine:
    name = "engine"

    def __init__(self, eps: float, steps: int = 10, step_size: Optional[float] = None, norm: str = "linf",
                 random_start: bool = True):
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if step_size is not None and step_size <= 0:
            raise ValueError(f"step_size must be > 0, got {step_size}")
        self.eps, self.steps, self.norm, self.random_start = float(eps), int(steps), norm, random_start
        self.step_size = float(step_size) if step_size is not None else 2.5 * self.eps / self.steps

    def losses(self, model, adversarial: torch.Tensor, objective: Objective) -> torch.Tensor:
        return objective(model(adversarial))

    def gradient(self, model, adversarial: torch.Tensor, objective: Objective):
        adversarial = adversarial.detach().requires_grad_(True)
        losses = self.losses(model, adversarial, objective)
        (grad,) = torch.autograd.grad(losses.sum(), adversarial)
        return losses.detach(), grad

    def clip(self, images: torch.Tensor, adversarial: torch.Tensor) -> torch.Tensor:
        return (images + project(adversarial - images, self.eps, self.norm)).clamp_(0.0, 1.0)

    def perturb(self, model, images: torch.Tensor, objective: Objective,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        images = images.detach()
        if self.eps == 0:
            return images.clone()
        with attack_mode(model):
            return self._perturb(model, images, objective, generator).detach()

    def _perturb(self, model, images, objective, generator):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{self.name}(eps={self.eps:.4g}, steps={self.steps}, step_size={self.step_size:.4g}, norm={self.norm})"


@ENGINES.register("pgd")
class PGD(AttackEngine):
    """Projected gradient ascent (Madry et al.), optional uniform random start."""

    name = "pgd"

    def _perturb(self, model, images, objective, generator):
        adversarial = images.clone()
        if self.random_start:
            adversarial = self.clip(images, images + random_init(images, self.eps, self.norm, generator))
        for _ in range(self.steps):
            _, grad = self.gradient(model, adversarial, objective)
            adversarial = self.clip(images, adversarial + self.step_size * ascent_direction(grad, self.norm))
        return adversarial


# Objectives such as embedding shift are stationary at the clean input (zero gradient); engines
# without a random start take their first gradient this small random fraction of eps away.
JITTER = 1e-3


@ENGINES.register("fgsm")
class FGSM(PGD):
    """One step of size eps from the clean input (Goodfellow et al.)."""

    name = "fgsm"

    def __init__(self, eps: float, steps: int = 1, step_size: Optional[float] = None, norm: str = "linf",
                 random_start: bool = False):
        super().__init__(eps, steps=1, step_size=eps if eps > 0 else None, norm=norm, random_start=False)

    def _perturb(self, model, images, objective, generator):
        start = self.clip(images, images + JITTER * random_init(images, self.eps, self.norm, generator))
        _, grad = self.gradient(model, start, objective)
        return self.clip(images, images + self.step_size * ascent_direction(grad, self.norm))


@ENGINES.register("apgd")
class APGD(AttackEngine):
    """Auto-PGD (Croce & Hein 2020) on an embedding objective.

    First step 2*eps, momentum 0.75, checkpoints p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06);
    at a checkpoint the step of a sample is halved when fewer than 75% of the steps since the last
    checkpoint improved its loss, or when neither its step nor its best loss changed; halving
    restarts it from its best point. Returns the best iterate of every sample.
    """

    name = "apgd"
    rho = 0.75
    momentum = 0.75

    def __init__(self, eps: float, steps: int = 10, step_size: Optional[float] = None, norm: str = "linf",
                 random_start: bool = True):
        super().__init__(eps, steps, step_size, norm, random_start)
        self.step_size = float(step_size) if step_size is not None else 2.0 * self.eps

    def checkpoints(self):
        points = [0, 0.22]
        while points[-1] < 1:
            points.append(points[-1] + max(points[-1] - points[-2] - 0.03, 0.06))
        return sorted({int(round(p * self.steps)) for p in points[1:] if p <= 1})

    def _perturb(self, model, images, objective, generator):
        shape = (-1,) + (1,) * (images.dim() - 1)
        batch = images.shape[0]
        current = images.clone()
        if self.random_start:
            current = self.clip(images, images + random_init(images, self.eps, self.norm, generator))
        step = torch.full((batch,), self.step_size, device=images.device)
        loss, grad = self.gradient(model, current, objective)
        best_loss, best = loss.clone(), current.clone()
        best_grad = grad.clone()
        previous = current.clone()
        improved_since = torch.zeros(batch, device=images.device)
        loss_at_checkpoint, step_at_checkpoint = best_loss.clone(), step.clone()
        checkpoints, last_checkpoint = set(self.checkpoints()), 0
        for iteration in range(self.steps):
            z = self.clip(images, current + step.view(shape) * ascent_direction(grad, self.norm))
            momentum = self.momentum if iteration > 0 else 1.0
            candidate = self.clip(images, current + momentum * (z - current) + (1 - momentum) * (current - previous))
            previous, current = current, candidate
            loss, grad = self.gradient(model, current, objective)
            better = loss > best_loss
            improved_since += better.float()
            best_loss = torch.where(better, loss, best_loss)
            best = torch.where(better.view(shape), current, best)
            best_grad = torch.where(better.view(shape), grad, best_grad)
            if iteration + 1 in checkpoints:
                span = iteration + 1 - last_checkpoint
                too_few = improved_since < self.rho * span
                stalled = (step == step_at_checkpoint) & (best_loss == loss_at_checkpoint)
                halve = too_few | stalled
                step_at_checkpoint = step.clone()
                step = torch.where(halve, step / 2, step)
                current = torch.where(halve.view(shape), best, current)
                grad = torch.where(halve.view(shape), best_grad, grad)
                improved_since.zero_()
                loss_at_checkpoint = best_loss.clone()
                last_checkpoint = iteration + 1
        return best


@ENGINES.register("cw")
class CW(AttackEngine):
    """Carlini & Wagner style: Adam on a tanh-parametrised perturbation minimising
    ``||delta||_p - c * objective``, kept inside the eps-ball; returns each sample's best iterate
    (highest objective) within the bounded iteration budget."""

    name = "cw"

    def __init__(self, eps: float, steps: int = 30, step_size: Optional[float] = None, norm: str = "linf",
                 random_start: bool = False, c: float = 10.0):
        super().__init__(eps, steps, step_size, norm, random_start)
        # Adam moves each coordinate of w by about lr per step: reach tanh saturation within the budget.
        self.step_size = float(step_size) if step_size is not None else max(0.1, 2.5 / self.steps)
        self.c = float(c)

    def _perturb(self, model, images, objective, generator):
        shape = (-1,) + (1,) * (images.dim() - 1)
        scale = 0.5 if self.random_start else JITTER
        w = random_init(images, 1.0, "linf", generator) * scale
        w.requires_grad_(True)
        optimizer = torch.optim.Adam([w], lr=self.step_size)
        best = images.clone()
        best_loss = torch.full((images.shape[0],), -float("inf"), device=images.device)
        for _ in range(self.steps):
            delta = project(self.eps * torch.tanh(w), self.eps, self.norm)
            adversarial = (images + delta).clamp(0.0, 1.0)
            losses = objective(model(adversarial))
            size = delta.flatten(1).abs().amax(1) if self.norm == "linf" else delta.flatten(1).norm(dim=1)
            total = (size - self.c * losses).sum()
            (grad,) = torch.autograd.grad(total, w)
            optimizer.zero_grad(set_to_none=True)
            w.grad = grad
            optimizer.step()
            with torch.no_grad():
                better = losses.detach() > best_loss
                best_loss = torch.where(better, losses.detach(), best_loss)
                best = torch.where(better.view(shape), adversarial.detach(), best)
        return self.clip(images, best)


def build_engine(name: str, **options) -> AttackEngine:
    return ENGINES.get(name)(**options)
