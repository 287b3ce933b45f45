"""The state of one robustness evaluation: the model, its clean gallery, the attacked queries and the
ensemble runner, with one method per kind of attack row (an ensemble entry, a retrieval attack)."""

from __future__ import annotations

import time
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from robustdml.attacks.context import AttackContext
from robustdml.attacks.ensemble import EnsembleRunner
from robustdml.attacks.settings import EngineSettings
from robustdml.evaluation import compute_embeddings
from robustdml.robustness.result import AttackRow, Rate
from robustdml.robustness.spec import AttackSpec
from robustdml.progress import progress_bar

# One attack's row, its per-query correctness (None for attacks that only produce scores) and AP@R.
RowResult = Tuple[AttackRow, Optional[np.ndarray], Optional[np.ndarray]]


def attacked_queries(size: int, max_queries: Optional[int], seed: int) -> np.ndarray:
    """The sorted indices of the test items an evaluation attacks: ``max_queries`` of ``size`` drawn with
    ``seed`` (None: all). Benchmarks use it to attack exactly the queries of a report."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).numpy()
    return np.sort(order[:max_queries] if max_queries else order)


class EvaluationState:
    """What every attack of one evaluation shares: model, clean gallery (each query's own copy excluded when
    ranking), queries, the progress bar and the ensemble runner."""

    def __init__(self, model, dataset, spec: AttackSpec, seed: int, device, batch_size: int, progress: bool):
        self.model, self.dataset, self.spec, self.seed = model, dataset, spec, seed
        self.device, self.batch_size = device, batch_size
        self.gallery, labels = compute_embeddings(model, dataset, batch_size=batch_size, device=device,
                                                  progress=progress)
        self.labels = labels.numpy()
        self.queries = attacked_queries(len(self.labels), spec.max_queries, seed)
        self.bar = progress_bar(desc="attacking", unit="query", disable=not progress, leave=False)
        self.runner = EnsembleRunner(self.context(EngineSettings(), 0.0), seed=seed, batch_size=batch_size,
                                     progress=self.bar.update)

    def context(self, settings: EngineSettings, eps: float) -> AttackContext:
        return AttackContext(model=self.model, dataset=self.dataset, gallery=self.gallery, labels=self.labels,
                             engine=settings.build(eps), device=self.device,
                             generator=torch.Generator().manual_seed(self.seed))

    def ensemble_row(self, name: str, spec: AttackSpec, eps: float) -> RowResult:
        """The entry ``name`` of ``spec.attacks`` that is an ensemble (``auto``) or one member, at ``eps``."""
        members = spec.members_of(name)
        self.bar.set_postfix(attack=name, eps=f"{eps:.3g}")
        started = time.perf_counter()
        outcome = self.runner.run(self.queries, spec.ensemble_settings(), eps, members)
        row = AttackRow(attack=name, eps=eps, passes_per_query=float(outcome.passes.mean()),
                        seconds=time.perf_counter() - started, r1=Rate.of(outcome.correct),
                        map_r=float(np.nanmean(outcome.ap)), broken_by=outcome.counts(),
                        after=outcome.after_member([m.name for m in members]) if len(members) > 1 else {})
        return row, outcome.correct, outcome.ap

    def attack_row(self, name: str, spec: AttackSpec, eps: float,
                   per_query: Optional[Dict[str, np.ndarray]] = None) -> RowResult:
        """The retrieval attack ``name`` at ``eps`` on every query; ``per_query`` (a dict), when given,
        receives the attack's per-query ERS inputs."""
        self.bar.set_postfix(attack=name, eps=f"{eps:.3g}")
        started = time.perf_counter()
        ctx = self.context(spec.engine_settings(), eps)
        outcome = spec.unit(name).run(ctx, self.queries, batch_size=self.batch_size, progress=self.bar.update)
        if per_query is not None:
            per_query.update(outcome.per_query)
        row = AttackRow(attack=name, eps=eps, passes_per_query=ctx.passes / len(self.queries),
                        seconds=time.perf_counter() - started,
                        r1=None if outcome.correct is None else Rate.of(outcome.correct),
                        map_r=outcome.map_r, scores=dict(outcome.scores))
        return row, outcome.correct, outcome.ap
