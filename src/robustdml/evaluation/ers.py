"""Empirical robustness score (ERS, Zhou & Patel CVPR 2022): one number in [0, 100] summarising
ten attacks, each normalised so that 100 means "the attack changed nothing".

ERS = mean of [2*CA+, 100-CA-, 2*QA+, 100-QA-, 100*(1-TMA), 100*(2-ES:D)/2, ES:R, LTM, GTM, GTT]
with CA/QA as rank percentiles (%), TMA a cosine, ES:D a distance in [0, 2] and ES:R, LTM, GTM,
GTT in percent. Each term is clipped to [0, 100]. The attack profile that produces the scores is
:func:`robustdml.attacks.spec.ers_spec`.
"""

from __future__ import annotations

from typing import Dict, Mapping

ERS_INPUTS = ("CA+", "CA-", "QA+", "QA-", "TMA", "ES:D", "ES:R", "LTM", "GTM", "GTT")


def ers_terms(scores: Mapping[str, float]) -> Dict[str, float]:
    """The ten normalised terms (each in [0, 100], 100 = robust), keyed like the inputs."""
    missing = [key for key in ERS_INPUTS if key not in scores]
    if missing:
        raise ValueError(f"ERS needs scores for {', '.join(missing)} (run those attacks, e.g. with_ers=True)")
    s = scores
    terms = {
        "CA+": 2 * s["CA+"], "CA-": 100 - s["CA-"], "QA+": 2 * s["QA+"], "QA-": 100 - s["QA-"],
        "TMA": 100 * (1 - s["TMA"]), "ES:D": 100 * (2 - s["ES:D"]) / 2, "ES:R": s["ES:R"],
        "LTM": s["LTM"], "GTM": s["GTM"], "GTT": s["GTT"],
    }
    return {key: min(100.0, max(0.0, float(value))) for key, value in terms.items()}


def empirical_robustness_score(scores: Mapping[str, float]) -> float:
    terms = ers_terms(scores)
    return sum(terms.values()) / len(terms)
