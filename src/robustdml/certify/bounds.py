"""Certified retrieval under an l2 perturbation of the query, for the smoothed model.

Setting: the gallery holds fixed unit vectors e_j (stored once; the attacker moves the query only),
a query x is embedded by the smoothed model g, items are ranked by <g(x'), e_j> (equivalently by the
Euclidean distance to the unit vector of g(x')), the query's own item excluded.

Two facts give the certificate:

1. Monte Carlo error, dimension-free. ĝ, the mean of n i.i.d. unit vectors f(x + delta_i), satisfies
   ||ĝ - g(x)|| <= eps_n = 1/sqrt(n) + sqrt(2 ln(1/alpha) / n) with probability >= 1 - alpha
   (E||ĝ - g|| <= sqrt(E||f||^2 / n) <= 1/sqrt(n); McDiarmid's inequality with bounded differences
   2/n for the deviation). It holds for every direction at once, so one event per query covers
   every gallery pair and every radius; over Q queries alpha = (1 - confidence) / Q (union bound),
   and the whole table holds simultaneously with probability >= confidence.
2. Smoothing is Lipschitz after Phi^-1 (Salman et al. 2019, the lemma behind Cohen et al. 2019): for a unit
   direction u, h_u = (1 + <u, f>) / 2 lies in [0, 1], so Phi^-1((1 + <u, g(x)>) / 2) is
   1/sigma-Lipschitz in x. Hence for ||x' - x|| <= r:
   <u, g(x')> >= 2 Phi(Phi^-1((1 + <u, g(x)>) / 2) - r / sigma) - 1.

For a positive p and a negative n, u = (e_p - e_n) / ||e_p - e_n|| and l = <u, ĝ> - eps_n <= <u, g(x)>:
p stays ranked before n for every x' with ||x' - x|| < R_pn = sigma Phi^-1((1 + l) / 2) (0 if l <= 0).
The query is certified at radius r when some positive beats every negative: max_p min_n R_pn > r
(RetrievalGuard's criterion, Wu et al. ICML 2022, with this shift bound). The AP@R lower bound uses
m_p(r) = #{n : R_pn <= r}, the negatives that may rank before p: the i-th ranked positive has at
most m_(i) negatives before it (m sorted ascending), so AP@R >= (1/R) sum_{i : i + m_(i) <= R} i / (i + m_(i)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from scipy.stats import norm


def mean_error_bound(samples: int, alpha: float) -> float:
    """eps_n: ||ĝ - g|| <= eps_n with probability >= 1 - alpha for the mean of ``samples`` unit vectors."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return 1 / math.sqrt(samples) + math.sqrt(2 * math.log(1 / alpha) / samples)


def largest_certifiable_radius(sigma: float, error: float) -> float:
    """No pair margin can exceed 1 - error after the Monte Carlo error, so no radius beyond
    sigma Phi^-1(1 - error / 2) is ever certified (0 when error >= 2)."""
    return float(sigma * norm.ppf(1 - error / 2)) if error < 2 else 0.0


def radius_of_margin(margin: np.ndarray, sigma: float) -> np.ndarray:
    """R = sigma Phi^-1((1 + margin) / 2) where margin > 0, else 0."""
    margin = np.asarray(margin, dtype=np.float64)
    radius = sigma * norm.ppf(np.clip((1 + margin) / 2, 0.5, 1 - 1e-16))
    return np.where(margin > 0, radius, 0.0)


@dataclass
class QueryCertificate:
    """One query's certificate: ``margin`` = max_p min_n l_pn (its certified radius is
    ``radius_of_margin(margin)``) and the AP@R lower bound at each requested radius."""

    margin: float
    ap_lower: np.ndarray


def ap_lower_bound(pair_radii: np.ndarray, radius: float) -> float:
    """The AP@R lower bound at ``radius`` from the (P, N) matrix of R_pn (P = R positives)."""
    positives = pair_radii.shape[0]
    if positives == 0:
        return float("nan")
    may_precede = np.sort((pair_radii <= radius).sum(axis=1))
    rank = np.arange(1, positives + 1)
    position = rank + may_precede
    return float(np.where(position <= positives, rank / position, 0.0).sum() / positives)


def certify_query(estimate: torch.Tensor, gallery: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
                  error: float, sigma: float, radii: Sequence[float]) -> QueryCertificate:
    """The certificate of one query from its Monte Carlo mean ``estimate`` (D,), the unit ``gallery``
    (N, D), the indices of its positives and negatives (its own item in neither) and eps_n."""
    if len(positives) == 0 or len(negatives) == 0:
        return QueryCertificate(margin=-1.0, ap_lower=np.full(len(radii), np.nan if len(positives) == 0 else 1.0))
    scores = gallery @ estimate
    pos, neg = gallery[positives], gallery[negatives]
    gap = (2 - 2 * pos @ neg.T).clamp(min=0).sqrt()                      # ||e_p - e_n||
    difference = scores[positives][:, None] - scores[negatives][None, :]
    margins = torch.where(gap > 1e-6, difference / gap.clamp(min=1e-6), torch.full_like(gap, -1.0)) - error
    margins = margins.double().cpu().numpy()
    pair_radii = radius_of_margin(margins, sigma)
    return QueryCertificate(margin=float(margins.min(axis=1).max()),
                            ap_lower=np.array([ap_lower_bound(pair_radii, r) for r in radii]))


def certified_fraction(margins: np.ndarray, radius: float, sigma: float) -> float:
    """The share of queries certified at ``radius`` (R@1 lower bound): certified radius > ``radius``."""
    return float((radius_of_margin(margins, sigma) > radius).mean())
