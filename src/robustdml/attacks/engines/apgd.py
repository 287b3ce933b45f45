"""Auto-PGD (Croce & Hein, ICML 2020) for embedding objectives."""

from __future__ import annotations

from typing import Optional

import torch

from robustdml.attacks.engines.base import ENGINES, AttackEngine, ascent_direction


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
