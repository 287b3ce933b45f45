"""ERS (Zhou & Patel, CVPR 2022) of a model: its profile's attacks run on the evaluation's queries, the
score with its 95% interval over the queries and each query's own ERS."""

from __future__ import annotations

from typing import Dict

import numpy as np

from robustdml.evaluation.ers import (ERS_INPUTS, ERS_LEVEL, empirical_robustness_score, ers_interval, ers_per_query,
                                      ers_terms)
from robustdml.robustness.result import ERSResult
from robustdml.robustness.spec import AttackSpec, is_published_ers
from robustdml.robustness.state import EvaluationState


def input_size(dataset) -> int:
    """The side of the dataset's images (the ERS profile's eps depends on it); 28 when it does not say."""
    shape = getattr(dataset, "image_shape", ())
    return shape[-1] if len(shape) == 3 else 28


def run_ers(state: EvaluationState, profile: AttackSpec) -> ERSResult:
    """Every attack of ``profile`` at each of its eps on the evaluation's queries, and the ERS of them."""
    scores: Dict[str, float] = {}
    per_query: Dict[str, np.ndarray] = {}
    rows = []
    for name in profile.attacks:
        for eps in profile.eps:
            row, _, _ = state.attack_row(name, profile, eps, per_query=per_query)
            rows.append(row)
            scores.update({k: v for k, v in row.scores.items() if k in ERS_INPUTS})
    each = ers_per_query(per_query)
    return ERSResult(ers=empirical_robustness_score(scores), terms=ers_terms(scores), scores=scores, rows=rows,
                     spec=profile.to_dict(), spec_text=profile.describe(),
                     published=is_published_ers(profile, input_size(state.dataset)),
                     interval=tuple(ers_interval(each)), level=ERS_LEVEL,
                     per_query=[round(float(v), 4) for v in each])
