"""Agreement statistics on published worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alignloop.consensus.agreement import (
    kendall_w,
    krippendorff_alpha,
    pairwise_agreement,
    rank_units,
)
from alignloop.consensus.rankings import RankingSet


def _from_rank_columns(columns: list[list[float]]) -> RankingSet:
    """One prompt; each column is one judge's ranks of the n objects."""
    ranks = np.array(columns, dtype=float)[None]  # (1, m, n)
    m = ranks.shape[1]
    return RankingSet(
        ranks=ranks,
        mask=np.ones((1, m), dtype=bool),
        unusable=np.zeros(ranks.shape, dtype=bool),
        labeler_ids=np.arange(m)[None],
        first_shown=np.full((1, m), -1),
    )


def test_kendalls_w_matches_proofwiki_arbitrary_example_1():
    # ProofWiki, "Kendall's Coefficient of Concordance/Examples/Arbitrary Example 1":
    # 4 judges rank 3 competitors X, Y, Z; W = 1/16.
    judges = [[1, 3, 2], [1, 2, 3], [2, 3, 1], [3, 1, 2]]
    assert kendall_w(_from_rank_columns(judges))[0] == pytest.approx(1 / 16)


def test_kendalls_w_matches_the_ten_projects_four_judges_example():
    # Classic textbook exercise (10 projects ranked by 4 judges): Σ D² = 1048, W = 12·1048 / (16·10·99).
    a = [1, 3, 4, 5, 2, 8, 6, 7, 10, 9]
    b = [2, 1, 4, 5, 6, 3, 8, 7, 10, 9]
    c = [3, 2, 1, 5, 7, 4, 6, 8, 9, 10]
    d = [4, 2, 3, 1, 6, 7, 5, 9, 8, 10]
    assert kendall_w(_from_rank_columns([a, b, c, d]))[0] == pytest.approx(12 * 1048 / (16 * 10 * 99))


def test_kendalls_w_tie_correction_makes_identical_tied_rankings_perfect():
    # Two judges give the same ranking with a tie: without the correction W = 0.9, with it 1.
    tied = [1.5, 1.5, 3.0, 4.0]
    assert kendall_w(_from_rank_columns([tied, tied]))[0] == pytest.approx(1.0)


def test_kendalls_w_is_undefined_with_one_labeler():
    assert math.isnan(kendall_w(_from_rank_columns([[1, 2, 3]]))[0])


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
# 12 units, values 1-5 with missing data. Published results: nominal .743, ordinal .815,
# interval .849.
NAN = float("nan")
KRIPPENDORFF_2011 = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
        [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
    ]
).T


@pytest.mark.parametrize(("metric", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_krippendorffs_alpha_matches_the_published_worked_example(metric, published):
    assert krippendorff_alpha(KRIPPENDORFF_2011, metric) == pytest.approx(published, abs=5e-4)


def test_krippendorffs_alpha_is_one_for_identical_rankings():
    orders = np.array([[[0, 1, 2, 3]] * 3, [[3, 2, 1, 0]] * 3])
    assert krippendorff_alpha(rank_units([RankingSet.from_orders(orders)])) == pytest.approx(1.0)


def test_pairwise_agreement_counts_labeler_pairs_ordering_a_pair_alike():
    # Labelers 1 and 2 agree on all 3 pairs; labeler 3 reverses pair (0, 1) only.
    # Pairs (0,1): 1 of 3 labeler pairs agree; (0,2) and (1,2): 3 of 3. Total 7 / 9.
    orders = np.array([[[0, 1, 2], [0, 1, 2], [1, 0, 2]]])
    assert pairwise_agreement([RankingSet.from_orders(orders)]) == pytest.approx(7 / 9)
