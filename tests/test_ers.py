"""ERS arithmetic on hand-made numbers (RobRank's normalisation) and the published attack profiles."""

import pytest

from robustdml.evaluation.ers import ERS_INPUTS, empirical_robustness_score, ers_interval, ers_per_query, ers_terms

PERFECT = {"CA+": 50, "CA-": 0, "QA+": 50, "QA-": 0, "TMA": 0, "ES:D": 0, "ES:R": 100, "LTM": 100, "GTM": 100,
           "GTT": 100}
BROKEN = {"CA+": 0, "CA-": 100, "QA+": 0, "QA-": 100, "TMA": 1, "ES:D": 2, "ES:R": 0, "LTM": 0, "GTM": 0, "GTT": 0}
MIXED = {"CA+": 25, "CA-": 40, "QA+": 10, "QA-": 30, "TMA": 0.5, "ES:D": 1.0, "ES:R": 20, "LTM": 30, "GTM": 10,
         "GTT": 60}


def test_an_untouched_model_scores_100_and_a_fully_broken_one_0():
    assert empirical_robustness_score(PERFECT) == pytest.approx(100)
    assert empirical_robustness_score(BROKEN) == pytest.approx(0)


def test_each_term_follows_the_published_normalisation():
    terms = ers_terms(MIXED)
    assert terms == pytest.approx({"CA+": 50, "CA-": 60, "QA+": 20, "QA-": 70, "TMA": 50, "ES:D": 50, "ES:R": 20,
                                   "LTM": 30, "GTM": 10, "GTT": 60})
    assert empirical_robustness_score(MIXED) == pytest.approx(42.0)  # mean of the ten terms above


def test_only_one_term_moves_when_one_score_moves():
    # ES:D 0.5 -> 100 * (2 - 0.5) / 2 = 75: +25 on one term of ten -> ERS +2.5
    assert empirical_robustness_score({**MIXED, "ES:D": 0.5}) == pytest.approx(42.0 + 2.5)
    # TMA 0.8 -> 20: -30 on one term -> ERS -3
    assert empirical_robustness_score({**MIXED, "TMA": 0.8}) == pytest.approx(42.0 - 3.0)


def test_terms_are_not_clipped_unless_asked():
    """The reference (tools/pjswipe.py ersnormalize) averages the raw terms."""
    assert ers_terms({**MIXED, "CA+": 80})["CA+"] == 160  # a candidate pushed below its random rank
    assert ers_terms({**MIXED, "TMA": -0.5})["TMA"] == 150  # negative cosine
    assert empirical_robustness_score({**MIXED, "CA+": 80}) == pytest.approx(42.0 + 11.0)
    assert ers_terms({**MIXED, "CA+": 80}, clip=True)["CA+"] == 100
    assert ers_terms({**MIXED, "TMA": -0.5}, clip=True)["TMA"] == 100
    assert ers_terms({**MIXED, "ES:D": 2.5}, clip=True)["ES:D"] == 0
    assert empirical_robustness_score({**MIXED, "CA+": 80}, clip=True) == pytest.approx(42.0 + 5.0)


@pytest.mark.parametrize("missing", ERS_INPUTS)
def test_a_missing_score_is_named(missing):
    with pytest.raises(ValueError, match=missing.replace("+", r"\+")):
        empirical_robustness_score({k: v for k, v in MIXED.items() if k != missing})


def test_the_mean_of_per_query_ers_is_the_ers_of_the_mean_scores():
    """Every term is affine in its input, so ERS of the means = mean of the queries' own ERS."""
    per_query = {key: [PERFECT[key], BROKEN[key], MIXED[key]] for key in ERS_INPUTS}
    each = ers_per_query(per_query)
    assert each == pytest.approx([100, 0, 42])
    means = {key: sum(values) / 3 for key, values in per_query.items()}
    assert each.mean() == pytest.approx(empirical_robustness_score(means))


def test_the_ers_interval_is_the_t_interval_of_the_per_query_mean():
    low, high = ers_interval([0.0, 10.0, 20.0])  # mean 10, std 10, t(0.975, 2) = 4.3027
    assert (low, high) == pytest.approx((10 - 4.3027 * 10 / 3 ** 0.5, 10 + 4.3027 * 10 / 3 ** 0.5), abs=1e-3)
    assert ers_interval([7.0]) == (7.0, 7.0)
    narrow = ers_interval([0.0, 10.0, 20.0] * 30)  # more queries, same spread: a narrower interval
    assert low < narrow[0] < 10 < narrow[1] < high
    with pytest.raises(ValueError, match="at least one query"):
        ers_interval([])


def test_per_query_inputs_must_be_complete_and_cover_the_same_queries():
    complete = {key: [MIXED[key]] * 3 for key in ERS_INPUTS}
    with pytest.raises(ValueError, match="GTT"):
        ers_per_query({key: v for key, v in complete.items() if key != "GTT"})
    with pytest.raises(ValueError, match="same queries"):
        ers_per_query({**complete, "LTM": [30, 30]})
