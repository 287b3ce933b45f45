"""Paired comparisons between the runs of a report, for the key findings.

Every run of a report is attacked on the same queries (the query sample depends on the attack seed
and the test split only), so two runs' robust R@1 at an eps are compared query by query: the
paired difference with Newcombe's 95% interval and the exact McNemar p-value
(:mod:`robustdml.evaluation.paired`), Holm-adjusted over every comparison the findings show. With
several attack seeds, one paired table per seed (:func:`~robustdml.evaluation.paired.over_seeds`).

A pair is compared only when both results keep per-query outcomes (``worst_case[eps].correct``)
and attacked the same queries (``queries``); results saved without them give None,
and the findings fall back to comparing marginal intervals, saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from robustdml.evaluation.paired import PairedComparison, PairedTable, holm, over_seeds
from robustdml.reporting.model import RunSummary
from robustdml.robustness.result import RobustnessResult

SIGNIFICANCE = 0.05


def _outcomes(result: RobustnessResult, eps: float) -> Optional[np.ndarray]:
    """The per-query worst-case outcomes at ``eps`` of one stored result (None when it kept none)."""
    entry = result.at(eps)
    return None if entry is None or entry.correct is None else np.asarray(entry.correct, dtype=bool)


def _same_queries(a: RobustnessResult, b: RobustnessResult) -> bool:
    return bool(a.queries) and a.queries == b.queries


def paired(run_a: RunSummary, run_b: RunSummary, eps: float) -> Optional[PairedComparison]:
    """Robust R@1 of ``run_a`` minus ``run_b``'s at ``eps``, paired by query (and by attack seed);
    None unless every seed of both has per-query outcomes on the same queries."""
    by_seed = {result.settings.seed: result for result in run_b.robustness}
    tables = []
    for report in run_a.robustness:
        other = by_seed.get(report.settings.seed)
        if other is None or not _same_queries(report, other):
            return None
        mine, theirs = _outcomes(report, eps), _outcomes(other, eps)
        if mine is None or theirs is None or mine.shape != theirs.shape:
            return None
        tables.append(PairedTable.of(mine, theirs))
    return over_seeds(tables) if tables else None


@dataclass(frozen=True)
class Judged:
    """One comparison of the findings: A - B at ``eps`` and its Holm-adjusted p-value."""

    eps: float
    a: RunSummary
    b: RunSummary
    comparison: PairedComparison
    adjusted_p: float

    @property
    def significant(self) -> bool:
        return self.adjusted_p < SIGNIFICANCE

    def text(self) -> str:
        return self.comparison.text(self.adjusted_p)


class Family:
    """The comparisons a findings box shows, Holm-adjusted together (each unordered pair at an eps once)."""

    def __init__(self, wanted: Sequence[Tuple[float, RunSummary, RunSummary]]):
        found: Dict[Tuple[float, str, str], Tuple[float, RunSummary, RunSummary, PairedComparison]] = {}
        self.complete = True
        for eps, a, b in wanted:
            key = (eps,) + tuple(sorted((str(a.path), str(b.path))))
            if key in found:
                continue
            comparison = paired(a, b, eps)
            if comparison is None:
                self.complete = False
                continue
            found[key] = (eps, a, b, comparison)
        entries = list(found.values())
        adjusted = holm([entry[3].p_value for entry in entries])
        self.judged = [Judged(eps, a, b, c, p) for (eps, a, b, c), p in zip(entries, adjusted)]

    def __len__(self) -> int:
        return len(self.judged)

    def get(self, eps: float, a: RunSummary, b: RunSummary) -> Optional[Judged]:
        """A - B at ``eps`` (sign flipped when the family holds B - A)."""
        for judged in self.judged:
            if judged.eps != eps:
                continue
            if judged.a is a and judged.b is b:
                return judged
            if judged.a is b and judged.b is a:
                c = judged.comparison
                flipped = PairedComparison(-c.difference, -c.high, -c.low, c.p_value,
                                           tuple(PairedTable(t.both, t.only_b, t.only_a, t.neither) for t in c.tables),
                                           c.method)
                return Judged(eps, a, b, flipped, judged.adjusted_p)
        return None


def baseline_run(runs: Sequence[RunSummary]) -> Optional[RunSummary]:
    """The first naturally trained run: what "does defense X beat natural training" compares with."""
    return next((run for run in runs if run.config.defense == "natural"), None)


def ranked(runs: Sequence[RunSummary], eps: float) -> List[RunSummary]:
    """The runs with a robust R@1 at ``eps``, highest first."""
    scored = [run for run in runs if run.robust_r1(eps)]
    return sorted(scored, key=lambda run: -run.robust_r1(eps).value)


def wanted_comparisons(runs: Sequence[RunSummary], eps_list: Sequence[float]
                       ) -> List[Tuple[float, RunSummary, RunSummary]]:
    """Per eps: every run against natural training, and the highest run against each other run."""
    baseline = baseline_run(runs)
    wanted = []
    for eps in eps_list:
        order = ranked(runs, eps)
        if baseline in order:
            wanted += [(eps, run, baseline) for run in order if run is not baseline]
        if order:
            wanted += [(eps, order[0], run) for run in order[1:]]
    return wanted
