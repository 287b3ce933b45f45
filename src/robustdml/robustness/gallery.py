"""Adversarial images of a few chosen queries, for the retrieval galleries a report shows: the spec's
ensemble members (``auto``'s when it runs none) at its largest eps, every chosen query attacked."""

from __future__ import annotations

import numpy as np
import torch

from robustdml.attacks.context import AttackContext
from robustdml.attacks.ensemble import EnsembleRunner
from robustdml.attacks.settings import EngineSettings
from robustdml.evaluation import compute_embeddings
from robustdml.robustness.spec import AUTO, AttackSpec


def attack_for_gallery(model, dataset, spec: AttackSpec, chosen: np.ndarray, device, seed: int = 0):
    """The clean test embeddings and labels, and the adversarial images of the ``chosen`` queries with their
    embeddings: ``(gallery, labels, images, attacked)``."""
    gallery, labels = compute_embeddings(model, dataset, device=device, progress=False)
    labels = labels.numpy()
    members = spec.members or spec.members_of(AUTO)
    context = AttackContext(model=model, dataset=dataset, gallery=gallery, labels=labels,
                            engine=EngineSettings().build(0.0), device=device, generator=torch.Generator().manual_seed(0))
    runner = EnsembleRunner(context, seed=seed)
    outcome = runner.run(chosen, spec.ensemble_settings(), max(spec.eps), members,
                         alive=np.ones(len(chosen), dtype=bool), keep_images=True)
    with torch.no_grad():
        attacked = model(outcome.images.to(device)).float().cpu()
    return gallery, labels, outcome.images, attacked
