"""Confidence intervals for rates measured on a finite query set (robust R@1 over n queries)."""

from __future__ import annotations

from typing import Tuple

from scipy.stats import beta


def binomial_interval(successes: int, trials: int, level: float = 0.95) -> Tuple[float, float]:
    """Clopper-Pearson ("exact") interval for a binomial rate, as fractions in [0, 1].

    Conservative: its coverage is at least ``level`` for every true rate, which matters for the
    small query sets of CPU-sized evaluations (e.g. 300 queries: about +-5 points around 50%).
    """
    if trials < 1:
        raise ValueError(f"a rate needs at least one trial, got {trials}")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, {trials}], got {successes}")
    tail = (1 - level) / 2
    low = 0.0 if successes == 0 else float(beta.ppf(tail, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(beta.ppf(1 - tail, successes + 1, trials - successes))
    return low, high
