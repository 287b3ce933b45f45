"""Paired comparisons of two models attacked on the same queries.

Two robust R@1 measured on the SAME queries are not independent samples: most queries are
survived (or broken) by both models, and only the discordant queries carry information about the
difference. Comparing marginal intervals throws that away; the tools here use it:

- :func:`mcnemar_exact`: exact McNemar test, i.e. the two-sided binomial test of the discordant
  counts ``b`` (only A correct) and ``c`` (only B correct) against p = 1/2
  (``scipy.stats.binomtest``, p = min(1, 2 P(X <= min(b, c))) with X ~ Bin(b + c, 1/2));
- :func:`paired_difference_interval`: the interval of the difference of the two proportions,
  Newcombe's hybrid score method 10 for paired data (Newcombe 1998, "Improved confidence intervals
  for the difference between binomial proportions based on paired data", Statistics in Medicine
  17:2635-2650; the form given in Altman et al., *Statistics with Confidence*, 2nd ed., ch. 6):
  the Wilson intervals of both proportions combined with the estimated correlation phi of the
  paired outcomes. Unlike the Wald interval it stays inside [-1, 1] and keeps its coverage near
  0 and 1 (robust R@1 near 0 is common);
- :func:`holm`: Holm's step-down adjustment of a family of p-values (Holm 1979), which controls the
  family-wise error rate for any dependence between the tests;
- :func:`over_seeds`: the difference when several (training or attack) seeds exist: one paired
  table per seed; the interval is the t-interval of the per-seed differences (it contains the
  seed-to-seed variance, as the seed grid does), the p-value the largest of the seeds'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
from scipy.stats import binomtest

from robustdml.evaluation.intervals import mean_t_interval

LEVEL = 0.95


@dataclass(frozen=True)
class PairedTable:
    """The 2x2 table of two models' per-query outcomes on the same queries.

    ``both``: correct for A and B; ``only_a``: A correct, B wrong (McNemar's b); ``only_b``: B correct,
    A wrong (c); ``neither``: both wrong."""

    both: int
    only_a: int
    only_b: int
    neither: int

    @classmethod
    def of(cls, a_correct, b_correct) -> "PairedTable":
        """From two boolean (or 0/1) arrays over the same queries, in the same order."""
        a, b = np.asarray(a_correct).astype(bool), np.asarray(b_correct).astype(bool)
        if a.shape != b.shape or a.ndim != 1:
            raise ValueError(f"paired outcomes need two 1-d arrays over the same queries, got shapes {a.shape} "
                             f"and {b.shape}")
        if len(a) == 0:
            raise ValueError("paired outcomes need at least one query")
        return cls(int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum()), int((~a & ~b).sum()))

    @property
    def n(self) -> int:
        return self.both + self.only_a + self.only_b + self.neither

    @property
    def difference(self) -> float:
        """rate(A) - rate(B) = (b - c) / n."""
        return (self.only_a - self.only_b) / self.n


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (1.0 when there are none)."""
    if only_a < 0 or only_b < 0:
        raise ValueError(f"discordant counts must be >= 0, got {only_a} and {only_b}")
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    return float(binomtest(min(only_a, only_b), discordant, 0.5).pvalue)


def _wilson(successes: int, trials: int, level: float) -> Tuple[float, float]:
    interval = binomtest(successes, trials).proportion_ci(confidence_level=level, method="wilson")
    return float(interval.low), float(interval.high)


def paired_difference_interval(table: PairedTable, level: float = LEVEL) -> Tuple[float, float]:
    """Newcombe's method 10 interval for rate(A) - rate(B) on paired outcomes (see the module docstring)."""
    n = table.n
    p1, p2 = (table.both + table.only_a) / n, (table.both + table.only_b) / n
    l1, u1 = _wilson(table.both + table.only_a, n, level)
    l2, u2 = _wilson(table.both + table.only_b, n, level)
    margins = ((table.both + table.only_a) * (table.only_b + table.neither) * (table.both + table.only_b)
               * (table.only_a + table.neither))
    cross = table.both * table.neither - table.only_a * table.only_b
    # Newcombe's correction of phi's numerator: shrunk by n/2 towards 0 when positive.
    numerator = max(cross - n / 2, 0.0) if cross > 0 else float(cross)
    phi = numerator / math.sqrt(margins) if margins > 0 else 0.0
    delta = p1 - p2
    low = delta - math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    high = delta + math.sqrt(max((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2, 0.0))
    return max(low, -1.0), min(high, 1.0)


def holm(p_values: Sequence[float]) -> List[float]:
    """Holm-adjusted p-values, in the input order: the k-th smallest (k = 0, 1, ...) is multiplied by
    (m - k), made non-decreasing along the sorted order and capped at 1. Rejecting where the adjusted
    p < alpha keeps the chance of any false rejection in the family below alpha."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class PairedComparison:
    """A - B on the same queries: the difference (fraction), its interval, the McNemar p-value and
    the tables it came from (one per seed)."""

    difference: float
    low: float
    high: float
    p_value: float
    tables: Tuple[PairedTable, ...]
    method: str

    @property
    def discordant(self) -> Tuple[int, int]:
        """(only A correct, only B correct), summed over the seeds."""
        return sum(t.only_a for t in self.tables), sum(t.only_b for t in self.tables)

    def text(self, adjusted_p: Optional[float] = None) -> str:
        """``+18.0 points [+12.9, +23.0], McNemar p = 1.2e-09 (Holm-adjusted 3.6e-09)``."""
        p = f"McNemar p = {_p_text(self.p_value)}"
        if adjusted_p is not None:
            p += f" (Holm-adjusted {_p_text(adjusted_p)})"
        return (f"{100 * self.difference:+.1f} points [{100 * self.low:+.1f}, {100 * self.high:+.1f}], {p}")


def _p_text(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def compare(a_correct, b_correct, level: float = LEVEL) -> PairedComparison:
    """A - B from one pair of per-query outcome arrays (the same queries, in the same order)."""
    table = PairedTable.of(a_correct, b_correct)
    low, high = paired_difference_interval(table, level)
    return PairedComparison(table.difference, low, high, mcnemar_exact(table.only_a, table.only_b), (table,),
                            "Newcombe method 10")


def over_seeds(tables: Sequence[PairedTable], level: float = LEVEL) -> PairedComparison:
    """A - B from one paired table per seed.

    One seed: :func:`compare`'s answer. Several: the mean of the per-seed differences with the
    t-interval over seeds (seed-to-seed variance included; wide for few seeds: t = 4.30 with 3), and
    as p-value the largest of the per-seed McNemar p-values, so a difference is called significant
    only when every seed shows it (an intersection-union test, conservative).
    """
    if not tables:
        raise ValueError("over_seeds needs at least one paired table")
    if len(tables) == 1:
        table = tables[0]
        low, high = paired_difference_interval(table, level)
        return PairedComparison(table.difference, low, high, mcnemar_exact(table.only_a, table.only_b),
                                tuple(tables), "Newcombe method 10")
    differences = [t.difference for t in tables]
    low, high = mean_t_interval(differences, level)
    p_value = max(mcnemar_exact(t.only_a, t.only_b) for t in tables)
    return PairedComparison(float(np.mean(differences)), max(low, -1.0), min(high, 1.0), p_value, tuple(tables),
                            f"t-interval over {len(tables)} seeds")
