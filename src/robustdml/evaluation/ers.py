"""Empirical robustness score (ERS, Zhou & Patel CVPR 2022): one number summarising ten attacks,
each normalised so that 100 means "the attack changed nothing" (or, for CA+/QA+, moved the
candidate no further than its rank in a random ranking).

ERS = mean of [2*CA+, 100-CA-, 2*QA+, 100-QA-, 100*(1-TMA), 100*(2-ES:D)/2, ES:R, LTM, GTM, GTT]
with CA/QA as rank percentiles (%), TMA a cosine, ES:D a distance in [0, 2], ES:R, LTM and GTM
as R@1 after the attack (%) and GTT as retain@4 (%), as the reference computes it (robrank
tools/pjswipe.py ``ersnormalize``): no term is clipped, so a term can leave [0, 100] (e.g. 2*CA+
above 100 when the candidate ends below its random rank, 100*(1-TMA) above 100 for a negative
cosine). ``clip=True`` clips each term to [0, 100] (a reading of the paper's "0-100" scale).
The attack profile that produces the scores is :func:`robustdml.robustness.spec.ers_spec`.

Interval: every input is a mean over the attacked queries (a rank percentile, a cosine, a shift, or
100 x a 0/1 outcome per query) and every term is affine in its input, so ERS is exactly the mean over
queries of each query's own ERS (the mean of its ten terms). :func:`ers_interval` is the 95%
t-interval of that mean: it covers the sampling of queries and of each attack's random candidate or
target, which is what cutting the queries to save CPU costs in precision.
"""

from __future__ import annotations

from typing import Dict, Mapping, Sequence, Tuple

import numpy as np

from robustdml.evaluation.intervals import mean_t_interval

ERS_INPUTS = ("CA+", "CA-", "QA+", "QA-", "TMA", "ES:D", "ES:R", "LTM", "GTM", "GTT")
ERS_LEVEL = 0.95


def ers_terms(scores: Mapping[str, float], clip: bool = False) -> Dict[str, float]:
    """The ten normalised terms (100 = robust), keyed like the inputs; ``clip``: each to [0, 100]."""
    _require_every_input(scores, "ERS needs scores for {} (run those attacks: an ERS profile, AttackSpec(ers=ers_spec(28)) or --ers)")
    terms = _normalised(scores)
    if clip:
        return {key: min(100.0, max(0.0, float(value))) for key, value in terms.items()}
    return {key: float(value) for key, value in terms.items()}


def empirical_robustness_score(scores: Mapping[str, float], clip: bool = False) -> float:
    """ERS: the plain mean of the ten terms of :func:`ers_terms` (100 = no attack changed anything)."""
    terms = ers_terms(scores, clip=clip)
    return sum(terms.values()) / len(terms)


def _require_every_input(values: Mapping[str, object], message: str) -> None:
    """Raise ``message`` (its ``{}`` the missing inputs) unless ``values`` has every ERS input."""
    missing = [key for key in ERS_INPUTS if key not in values]
    if missing:
        raise ValueError(message.format(", ".join(missing)))


def _normalised(s: Mapping[str, object]) -> Dict[str, object]:
    """The reference's ``ersnormalize``, element-wise: works on means (floats) and per-query arrays."""
    return {
        "CA+": 2 * s["CA+"], "CA-": 100 - s["CA-"], "QA+": 2 * s["QA+"], "QA-": 100 - s["QA-"],
        "TMA": 100 * (1 - s["TMA"]), "ES:D": 100 * (2 - s["ES:D"]) / 2, "ES:R": s["ES:R"],
        "LTM": s["LTM"], "GTM": s["GTM"], "GTT": s["GTT"],
    }


def ers_per_query(per_query: Mapping[str, Sequence[float]]) -> np.ndarray:
    """Each query's own ERS: the mean of its ten unclipped terms, from per-query inputs on one scale
    with the scores (percentiles and R@1 in %); their mean is the ERS of the scores' means."""
    _require_every_input(per_query, "per-query ERS needs values for {}")
    arrays = {key: np.asarray(per_query[key], dtype=float) for key in ERS_INPUTS}
    lengths = {len(values) for values in arrays.values()}
    if len(lengths) != 1:
        raise ValueError(f"per-query ERS inputs must cover the same queries, got lengths "
                         f"{ {key: len(values) for key, values in arrays.items()} }")
    return np.mean(list(_normalised(arrays).values()), axis=0)


def ers_interval(per_query_ers: Sequence[float], level: float = ERS_LEVEL) -> Tuple[float, float]:
    """The ``level`` t-interval of the mean of per-query ERS values (a point with one query)."""
    values = np.asarray(per_query_ers, dtype=float)
    if values.size == 0:
        raise ValueError("an ERS interval needs at least one query")
    if values.size == 1:
        return float(values[0]), float(values[0])
    low, high = mean_t_interval(values.tolist(), level)
    return float(low), float(high)
