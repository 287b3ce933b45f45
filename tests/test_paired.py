"""Paired comparisons: exact McNemar, Newcombe's paired interval, Holm, seeds."""

import math

import numpy as np
import pytest

from robustdml.evaluation.paired import (PairedTable, compare, holm, mcnemar_exact, over_seeds,
                                         paired_difference_interval)


def outcomes(both, only_a, only_b, neither):
    a = np.array([1] * both + [1] * only_a + [0] * only_b + [0] * neither, dtype=bool)
    b = np.array([1] * both + [0] * only_a + [1] * only_b + [0] * neither, dtype=bool)
    return a, b


def test_mcnemar_matches_the_hand_computed_binomial_tail():
    # 10 queries only A survives, 2 only B: p = 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert mcnemar_exact(10, 2) == pytest.approx(158 / 4096, rel=1e-12)
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0
    # 20 vs 0: 2 / 2**20
    assert mcnemar_exact(20, 0) == pytest.approx(2 / 2 ** 20, rel=1e-12)
    tail = sum(math.comb(30, k) for k in range(8)) / 2 ** 30
    assert mcnemar_exact(7, 23) == pytest.approx(2 * tail, rel=1e-10)


def test_compare_counts_the_discordant_queries_of_two_models():
    a, b = outcomes(both=15, only_a=40, only_b=4, neither=141)  # 55/200 vs 19/200
    result = compare(a, b)
    assert result.discordant == (40, 4)
    assert result.difference == pytest.approx(36 / 200)
    assert result.p_value == pytest.approx(mcnemar_exact(40, 4))
    assert result.low < result.difference < result.high and result.low > 0
    with pytest.raises(ValueError, match="same queries"):
        compare(a, b[:-1])


def test_holm_on_a_known_family():
    # sorted 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, then max(0.06, 0.04*1) = 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_newcombe_interval_is_sane():
    table = PairedTable(both=30, only_a=12, only_b=3, neither=155)
    low, high = paired_difference_interval(table)
    assert low < table.difference < high and -1 <= low and high <= 1
    swapped = paired_difference_interval(PairedTable(30, 3, 12, 155))
    assert swapped == pytest.approx((-high, -low))
    # no discordant queries at all: the difference 0 lies inside a short interval
    low, high = paired_difference_interval(PairedTable(100, 0, 0, 100))
    assert low <= 0 <= high and high - low < 0.05
    # all of A correct, none of B: stays inside [-1, 1]
    low, high = paired_difference_interval(PairedTable(0, 50, 0, 0))
    assert 0.85 < low <= high <= 1.0
    # a wider level gives a wider interval
    wide = paired_difference_interval(table, level=0.99)
    assert wide[0] < paired_difference_interval(table)[0]


def test_newcombe_interval_covers_the_true_difference():
    rng = np.random.default_rng(0)
    probabilities = np.array([0.15, 0.10, 0.03, 0.72])  # both, only A, only B, neither: true difference 0.07
    covered = 0
    trials = 400
    for _ in range(trials):
        counts = rng.multinomial(200, probabilities)
        low, high = paired_difference_interval(PairedTable(*map(int, counts)))
        covered += low <= 0.07 <= high
    assert covered / trials > 0.92


def test_several_seeds_widen_the_interval_with_the_seed_spread():
    tables = [PairedTable(20, 30, 5, 145), PairedTable(20, 20, 5, 155), PairedTable(20, 40, 5, 135)]
    result = over_seeds(tables)
    assert result.difference == pytest.approx(np.mean([t.difference for t in tables]))
    assert result.p_value == max(mcnemar_exact(t.only_a, t.only_b) for t in tables)
    single = over_seeds(tables[:1])
    assert single.method == "Newcombe method 10" and "3 seeds" in result.method
    same = over_seeds([tables[0]] * 3)  # no spread between seeds: a zero-width t-interval
    assert same.low == pytest.approx(same.high)
