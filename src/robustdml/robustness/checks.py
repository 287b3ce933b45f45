"""The checks that say whether a robustness number can be trusted (as AutoAttack's ``checks.py`` does for
classifiers), and the escalation that answers a failed convergence check with a stronger attack.

- convergence: a probe subset is re-attacked with one more restart of every member, twice as long; if that
  lowers robust R@1 on the probe by more than one point, every surviving query gets that stronger attack
  (an escalation, at most ``spec.escalations``) and the probe checks again; a last failed check is a
  warning naming the members that had not converged;
- eps monotonicity: robust R@1 must not rise with eps;
- an unbounded attack (eps = 1, clean start) must drive R@1 to near 0, or gradients are masked.
"""

from __future__ import annotations

import time
from typing import Dict, List

import numpy as np

from robustdml.attacks.members import Margin
from robustdml.attacks.settings import EngineSettings, EnsembleSettings
from robustdml.robustness.result import AttackRow, ConvergenceCheck, Rate, RobustnessResult
from robustdml.robustness.spec import AttackSpec
from robustdml.robustness.state import EvaluationState, RowResult

UNBOUNDED_EPS = 1.0
NEAR_ZERO_R1 = 0.05
CONVERGENCE_TOLERANCE = 0.01   # more than one point of robust R@1 lost to a stronger attack: not converged
MONOTONE_TOLERANCE = 0.02
UNBOUNDED_PROBE = 200


class UntrustworthyEvaluation(UserWarning):
    """A check failed: the robustness numbers may overstate the model's robustness."""


def escalations_text(count: int) -> str:
    """``1 escalation`` / ``2 escalations``: how many times an eps was re-attacked after a failed check."""
    return f"{count} escalation{'s' if count > 1 else ''}"


def _stronger_runs(state: EvaluationState, spec: AttackSpec, level: int):
    """The attack of escalation ``level`` (>= 1): every ensemble member once more, 2**level times the steps,
    from the fresh random start of restart number ``spec.restarts + level - 1``. The check at level k - 1
    and the escalation to level k run exactly this attack (same seeded starts), so an escalation reproduces
    the check on the probe and extends it to every query."""
    stronger = spec.stronger(level)
    settings = stronger.ensemble_settings()
    runs = state.runner.runs_of(stronger.members, settings, first_restart=spec.restarts + level - 1)
    return stronger, settings, runs


def convergence_check(state: EvaluationState, spec: AttackSpec, eps: float, correct: np.ndarray,
                      level: int = 0) -> ConvergenceCheck:
    """Re-attack a probe subset with one more restart of every ensemble member, twice as long as the
    strongest attack so far (``level``: escalations already applied to every query).

    Only the probe queries that survived the evaluation need it (the others are already broken), so the
    check costs little where the evaluation already succeeded. The new runs start from fresh random points
    (restart numbers after the evaluation's), so the per-query worst case of both is the evaluation with one
    more restart of twice the steps; the drop is the share of the probe it breaks on top of the evaluation.
    """
    generator = np.random.default_rng(state.seed + 1)
    positions = np.sort(generator.permutation(len(state.queries))[:spec.probe_queries])
    stronger, settings, runs = _stronger_runs(state, spec, level + 1)
    outcome = state.runner.run(state.queries[positions], settings, eps, alive=correct[positions], runs=runs)
    before, after = correct[positions].mean(), outcome.correct.mean()
    extra = int(correct[positions].sum() - outcome.correct.sum())
    return ConvergenceCheck(probe=len(positions), r1=float(before), stronger_r1=float(after),
                            drop=float(before - after),
                            converged=extra <= CONVERGENCE_TOLERANCE * len(positions) + 1e-9,
                            stronger=stronger.describe(), passes_per_query=float(outcome.passes.mean()),
                            newly_broken_by=outcome.member_counts())


def escalate(state: EvaluationState, spec: AttackSpec, eps: float, correct: np.ndarray, level: int) -> RowResult:
    """After a failed convergence check: attack every query that still survives with the check's stronger
    attack (escalation ``level``), so the reported robust R@1 is the stronger figure, not a warning beside a
    weaker one."""
    stronger, settings, runs = _stronger_runs(state, spec, level)
    state.bar.set_postfix(attack=f"escalation {level}", eps=f"{eps:.3g}")
    started = time.perf_counter()
    outcome = state.runner.run(state.queries, settings, eps, alive=correct, runs=runs)
    row = AttackRow(attack=f"auto, escalation {level}", eps=eps, passes_per_query=float(outcome.passes.mean()),
                    seconds=time.perf_counter() - started, r1=Rate.of(outcome.correct),
                    map_r=float(np.nanmean(outcome.ap)), broken_by=outcome.counts(), stronger=stronger.describe())
    return row, outcome.correct, outcome.ap


def unbounded_check(state: EvaluationState) -> float:
    """Robust R@1 under an unbounded margin attack (eps = 1, APGD from the clean image) on a probe.

    No random start: at eps = 1 a random image alone already ruins retrieval, which would hide masked
    gradients. Expected near 0; anything else means the gradients do not lead anywhere.
    """
    engine = EngineSettings("apgd", steps=max(20, state.spec.steps // 2), random_start=False)
    outcome = state.runner.run(state.queries[:UNBOUNDED_PROBE], EnsembleSettings(engine), UNBOUNDED_EPS, (Margin(),))
    return float(outcome.correct.mean())


def problems(result: RobustnessResult) -> List[str]:
    """Every failed check of ``result``, in words a person can act on."""
    found: List[str] = []
    for eps, check in sorted(result.convergence.items()):
        if not check.converged:
            culprits = ", ".join(f"{member} ({count} more)" for member, count in check.newly_broken_by.items())
            escalated = len(check.escalations)
            after = (f" even after {escalations_text(escalated)} (every surviving query "
                     f"re-attacked up to {check.escalations[-1].attack})" if escalated else "")
            found.append(
                f"eps {eps:.4g}: the attack has not converged{after}: one more restart with twice the steps "
                f"({check.stronger}) lowered robust R@1 on {check.probe} probe queries from "
                f"{100 * check.r1:.1f} to {100 * check.stronger_r1:.1f} (more than "
                f"{100 * CONVERGENCE_TOLERANCE:.0f} point); not converged: {culprits}. Raise --steps / --restarts.")
    curves: Dict[str, list] = {"worst case": [(eps, v.r1.value) for eps, v in result.worst_case.items()]}
    for row in result.rows:
        if row.r1 is not None:
            curves.setdefault(row.attack, []).append((row.eps, row.r1.value))
    for name, curve in curves.items():
        curve = sorted(curve)
        for (eps_a, r_a), (eps_b, r_b) in zip(curve, curve[1:]):
            if r_b > r_a + MONOTONE_TOLERANCE:
                found.append(f"{name}: robust R@1 rises from {100 * r_a:.1f} to {100 * r_b:.1f} as eps grows "
                             f"from {eps_a:.3g} to {eps_b:.3g}")
    unbounded = result.settings.unbounded_r1
    if unbounded is not None and unbounded > NEAR_ZERO_R1:
        found.append(f"an unbounded attack (eps={UNBOUNDED_EPS}, margin, APGD from the clean image) leaves R@1 at "
                     f"{100 * unbounded:.1f}% (expected near 0): gradients may be masked")
    return found
