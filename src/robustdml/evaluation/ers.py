"""Empirical robustness score (ERS, Zhou & Patel CVPR 2022): one number summarising ten attacks,
each normalised so that 100 means "the attack changed nothing" (or, for CA+/QA+, moved the
candidate no further than its rank in a random ranking).

ERS = mean of [2*CA+, 100-CA-, 2*QA+, 100-QA-, 100*(1-TMA), 100*(2-ES:D)/2, ES:R, LTM, GTM, GTT]
with CA/QA as rank percentiles (%), TMA a cosine, ES:D a distance in [0, 2], ES:R, LTM and GTM
as R@1 after the attack (%) and GTT as retain@4 (%), as the reference computes it (robrank
tools/pjswipe.py ``ersnormalize``): no term is clipped, so a term can leave [0, 100] (e.g. 2*CA+
above 100 when the candidate ends below its random rank, 100*(1-TMA) above 100 for a negative
cosine). ``clip=True`` clips each term to [0, 100] (our earlier reading).
The attack profile that produces the scores is :func:`robustdml.attacks.spec.ers_spec`.
"""

from __future__ import annotations

from typing import Dict, Mapping

ERS_INPUTS = ("CA+", "CA-", "QA+", "QA-", "TMA", "ES:D", "ES:R", "LTM", "GTM", "GTT")


def ers_terms(scores: Mapping[str, float], clip: bool = False) -> Dict[str, float]:
    """The ten normalised terms (100 = robust), keyed like the inputs; ``clip``: each to [0, 100]."""
    missing = [key for key in ERS_INPUTS if key not in scores]
    if missing:
        raise ValueError(f"ERS needs scores for {', '.join(missing)} (run those attacks, e.g. with_ers=True)")
    s = scores
    terms = {
        "CA+": 2 * s["CA+"], "CA-": 100 - s["CA-"], "QA+": 2 * s["QA+"], "QA-": 100 - s["QA-"],
        "TMA": 100 * (1 - s["TMA"]), "ES:D": 100 * (2 - s["ES:D"]) / 2, "ES:R": s["ES:R"],
        "LTM": s["LTM"], "GTM": s["GTM"], "GTT": s["GTT"],
    }
    if clip:
        return {key: min(100.0, max(0.0, float(value))) for key, value in terms.items()}
    return {key: float(value) for key, value in terms.items()}


def empirical_robustness_score(scores: Mapping[str, float], clip: bool = False) -> float:
    terms = ers_terms(scores, clip=clip)
    return sum(terms.values()) / len(terms)
