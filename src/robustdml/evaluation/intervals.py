"""Confidence intervals: for rates measured on a finite query set (robust R@1 over n queries) and
for means of a few values (ERS over queries, differences over training seeds)."""

from __future__ import annotations

import math
import statistics
from typing import Sequence, Tuple

from scipy.stats import beta
from scipy.stats import t as student_t


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


def mean_t_interval(values: Sequence[float], level: float = 0.95) -> Tuple[float, float]:
    """Student's t-interval of the mean of ``values`` (at least two)."""
    if len(values) < 2:
        raise ValueError(f"a t-interval needs at least two values, got {len(values)}")
    mean = statistics.mean(values)
    half = float(student_t.ppf(0.5 + level / 2, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))
    return mean - half, mean + half
