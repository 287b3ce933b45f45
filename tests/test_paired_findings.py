"""The key findings compare runs attacked on the same queries query by query (paired), not by
whether marginal intervals overlap."""

import numpy as np
import pytest

from robustdml.evaluation.paired import holm, mcnemar_exact
from robustdml.reporting.comparisons import Family, paired, wanted_comparisons
from test_reporting import PROTOCOL, _findings, fake_run

QUERIES = list(range(0, 600, 2))  # the same 300 attacked test items for every run


def with_outcomes(run, outcomes):
    """Give a fake run per-query worst-case outcomes ``{eps: bool array}`` on QUERIES."""
    for report in run.robustness:
        report.queries = list(QUERIES)
        for eps, correct in outcomes.items():
            report.at(eps).correct = [bool(c) for c in correct]
    return run


def outcomes(both, only_a, only_b, n=300):
    """(A, B) per-query outcomes with the given concordant / discordant counts."""
    a = np.zeros(n, bool)
    b = np.zeros(n, bool)
    a[:both + only_a] = True
    b[:both] = True
    b[both + only_a:both + only_a + only_b] = True
    return a, b


def two_runs(tmp_path, est_hits=(15, 40, 4)):
    est_05, natural_05 = outcomes(100, 25, 20)
    est_10, natural_10 = outcomes(*est_hits)
    natural = with_outcomes(fake_run(tmp_path, "natural", 0.80, {0.05: (int(natural_05.sum()), 300),
                                                                 0.1: (int(natural_10.sum()), 300)}),
                            {0.05: natural_05, 0.1: natural_10})
    est = with_outcomes(fake_run(tmp_path, "EST", 0.70, {0.05: (int(est_05.sum()), 300),
                                                         0.1: (int(est_10.sum()), 300)}, defense="est"),
                        {0.05: est_05, 0.1: est_10})
    return natural, est


def test_first_finding_is_the_paired_comparison_with_natural_training(tmp_path):
    natural, est = two_runs(tmp_path)
    box, text = _findings([natural, est])
    first = next(block for block in box.blocks if hasattr(block, "items")).items[0]
    assert first.startswith("eps 0.05, against natural training (natural 40.0%; paired on the same queries)")
    # the family: EST vs natural at eps 0.05 and 0.1 (the leader comparisons are the same pairs)
    family = Family(wanted_comparisons([natural, est], PROTOCOL.eps_list))
    assert len(family) == 2
    p_05, p_10 = mcnemar_exact(25, 20), mcnemar_exact(40, 4)
    adjusted = holm([p_05, p_10])
    judged = family.get(0.1, est, natural)
    assert judged.comparison.discordant == (40, 4) and judged.comparison.p_value == pytest.approx(p_10)
    assert judged.adjusted_p == pytest.approx(adjusted[1])
    assert "**EST** 18.3%, **beats** it: +12.0 points [" in text
    assert "eps 0.1: **EST** is the most robust" in text
    assert "EST** 41.7%, not distinguishable: +1.7 points [" in text
    assert "eps 0.05: **no clear leader**" in text
    basis = box.blocks[-1].text
    assert "Holm-adjusted over the 2 comparisons shown" in basis


def test_a_paired_leader_where_marginal_intervals_overlap(tmp_path):
    # 120 vs 100 of 300: the Clopper-Pearson intervals overlap, but B survives only where A does
    a, b = outcomes(100, 20, 0)
    runs = [with_outcomes(fake_run(tmp_path, name, 0.8, {0.05: (int(x.sum()), 300), 0.1: (int(x.sum()), 300)},
                                   defense="est" if name == "A" else "natural"), {0.05: x, 0.1: x})
            for name, x in (("A", a), ("B", b))]
    assert runs[0].robust_r1(0.05).overlaps(runs[1].robust_r1(0.05))
    _, text = _findings(runs)
    assert "eps 0.05: **A** is the most robust" in text and "no clear leader" not in text
    assert paired(runs[0], runs[1], 0.05).p_value == pytest.approx(2 / 2 ** 20)


def test_results_without_per_query_outcomes_fall_back_to_marginal_intervals(tmp_path):
    natural, est = two_runs(tmp_path)
    for report in natural.robustness:
        report.queries = []
    box, text = _findings([natural, est])
    assert "against natural training" not in text and "eps 0.1: **EST** is the most robust, " in text
    assert "saved without per-query outcomes" in box.blocks[-1].text


def test_different_queries_are_never_paired(tmp_path):
    natural, est = two_runs(tmp_path)
    est.robustness[0].queries = list(range(300))
    assert paired(est, natural, 0.1) is None
