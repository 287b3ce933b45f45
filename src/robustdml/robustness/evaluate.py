"""Robustness evaluation of an embedding model under an :class:`AttackSpec`.

For every eps: each attack of the spec (``auto`` = the ensemble of :mod:`robustdml.attacks.ensemble`) over
a seeded random query set, ranked against the clean gallery with each query's own copy excluded; the
per-query worst case over all of them (the headline robust R@1) with its 95% Clopper-Pearson interval and
its cost in forward+backward passes per query; then the checks of :mod:`robustdml.robustness.checks`
(convergence with escalation, eps monotonicity, an unbounded attack) and, optionally, the ERS profile on
the same queries. The result is one typed :class:`RobustnessResult`.
"""

from __future__ import annotations

import time
import warnings
from typing import Optional

import numpy as np
import torch

from robustdml.evaluation import retrieval_metrics
from robustdml.version import __version__
from robustdml.robustness.checks import (UntrustworthyEvaluation, convergence_check, escalate, problems,
                                         unbounded_check)
from robustdml.robustness.ers_profile import run_ers
from robustdml.robustness.result import Escalation, Rate, RobustnessResult, Settings, WorstCase
from robustdml.robustness.spec import AttackSpec
from robustdml.robustness.state import EvaluationState, RowResult


def _versions():
    return {"robustdml": __version__, "torch": torch.__version__}


class _WorstCase:
    """The per-query worst case at one eps, folded over every attack row as it comes."""

    def __init__(self, result: RobustnessResult, correct: np.ndarray, ap: np.ndarray):
        self.result, self.correct, self.ap, self.passes = result, correct.copy(), ap.copy(), 0.0

    def absorb(self, outcome: RowResult) -> None:
        row, correct, ap = outcome
        self.result.rows.append(row)
        self.passes += row.passes_per_query
        if correct is not None:
            self.correct &= correct
            self.ap = np.fmin(self.ap, ap)

    def entry(self) -> WorstCase:
        return WorstCase(Rate.of(self.correct), float(np.nanmean(self.ap)), self.passes,
                         correct=self.correct.astype(bool).tolist())


def _check_and_escalate(state: EvaluationState, spec: AttackSpec, eps: float, worst: _WorstCase):
    """The convergence check at ``eps``, with up to ``spec.escalations`` stronger attacks on every surviving
    query while it fails."""
    check = convergence_check(state, spec, eps, worst.correct)
    history = []
    while not check.converged and len(history) < spec.escalations:
        r1_before = float(worst.correct.mean())
        outcome = escalate(state, spec, eps, worst.correct, level=len(history) + 1)
        history.append(Escalation(attack=outcome[0].stronger, r1_before=r1_before, r1=outcome[0].r1.value,
                                  passes_per_query=outcome[0].passes_per_query, failed_check=check.failed()))
        worst.absorb(outcome)
        check = convergence_check(state, spec, eps, worst.correct, level=len(history))
    check.escalations = history
    return check


def evaluate_robustness(model: torch.nn.Module, dataset, spec: Optional[AttackSpec] = None, *, seed: int = 0,
                        device="cpu", batch_size: int = 256, progress: bool = True) -> RobustnessResult:
    """Attack ``model`` on ``dataset`` as ``spec`` says (default: the ``auto`` ensemble at eps 0.01, 0.05,
    0.1 on every item) and report the damage, its cost, its confidence and its checks.

    Queries: a random subset of ``spec.max_queries`` items drawn with ``seed`` (None: all); gallery: the
    whole CLEAN dataset, each query's own clean copy excluded. Every option is checked (by
    :class:`AttackSpec`) before any work. A failed check is a :class:`UntrustworthyEvaluation` warning and
    stays in the result's ``warnings``.
    """
    spec = AttackSpec() if spec is None else spec
    if not isinstance(spec, AttackSpec):
        raise TypeError(f"spec must be an AttackSpec (robustdml.robustness.spec), got {type(spec).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    model = model.to(device)
    started = time.perf_counter()
    state = EvaluationState(model, dataset, spec, seed, device, batch_size, progress)
    queries, gallery, labels = state.queries, state.gallery, state.labels
    clean = retrieval_metrics(gallery[queries], labels[queries], gallery, labels, exclude_index=queries,
                              per_query=True)
    result = RobustnessResult(
        clean=Rate.of(clean["correct@1"]), clean_map=float(clean["mAP@R"]),
        settings=Settings(spec=spec.to_dict(), spec_key=spec.key(), spec_text=spec.describe(), seed=seed,
                          queries=len(queries), gallery=len(labels), versions=_versions()),
        queries=[int(q) for q in queries])
    for eps in spec.eps if spec.attacks else ():  # attacks=() with an ERS profile: ERS only
        worst = _WorstCase(result, clean["correct@1"], clean["ap@r"])
        for name in spec.attacks:
            is_ensemble = bool(spec.members_of(name))
            worst.absorb(state.ensemble_row(name, spec, eps) if is_ensemble else state.attack_row(name, spec, eps))
        if spec.probe_queries and spec.members:
            result.convergence[eps] = _check_and_escalate(state, spec, eps, worst)
        result.worst_case[eps] = worst.entry()
    if spec.ers is not None:
        result.ers = run_ers(state, spec.ers)
    if spec.sanity_checks:
        result.settings.unbounded_r1 = unbounded_check(state)
    state.bar.close()
    result.settings.seconds = time.perf_counter() - started
    for problem in problems(result):
        warnings.warn(problem, UntrustworthyEvaluation, stacklevel=2)
        result.warnings.append(problem)
    return result
