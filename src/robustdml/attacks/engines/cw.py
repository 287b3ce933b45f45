"""Carlini & Wagner style engine: Adam on a tanh-parametrised perturbation."""

from __future__ import annotations

from typing import Optional

import torch

from robustdml.attacks.engines.base import ENGINES, JITTER, AttackEngine, project, random_init


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
