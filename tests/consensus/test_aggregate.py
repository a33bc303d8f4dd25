"""Aggregation: Ranked Pairs on a textbook cycle, Bradley–Terry, ties, flags, and properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from alignloop.consensus.aggregate import aggregate, bradley_terry_scores, preference_counts
from alignloop.consensus.rankings import RankingSet, ranks_to_tiers, tiers_to_ranks


def ranking_set(rankings: list[list[list[int]]], ids: list[int], unusable=None) -> RankingSet:
    """One prompt judged by len(rankings) labelers, each a list of tiers of ids."""
    unusable = unusable or [[] for _ in rankings]
    ranks = np.stack([tiers_to_ranks(t, ids, u) for t, u in zip(rankings, unusable)])[None]
    flags = np.array([[[c in u for c in ids] for u in unusable]])
    r = len(rankings)
    return RankingSet(
        ranks=ranks,
        mask=np.ones((1, r), dtype=bool),
        unusable=flags,
        labeler_ids=np.arange(r)[None],
        first_shown=np.full((1, r), -1),
    )


def test_ranked_pairs_breaks_a_condorcet_cycle_at_its_weakest_majority():
    # The three-way cycle of Tideman (1987): 4 voters A>B>C, 3 B>C>A, 2 C>A>B.
    # Majorities: B>C by 5, A>B by 3, C>A by 1. Ranked Pairs locks B>C, then A>B, and drops
    # C>A because it would close the cycle, giving A > B > C (worked by hand).
    a, b, c = 1, 2, 3
    votes = [[[a], [b], [c]]] * 4 + [[[b], [c], [a]]] * 3 + [[[c], [a], [b]]] * 2
    cons = aggregate(ranking_set(votes, [a, b, c]), method="ranked_pairs")
    assert ranks_to_tiers(cons.ranks[0], [a, b, c]) == [[a], [b], [c]]


def test_ranked_pairs_follows_the_condorcet_winner_even_against_borda():
    # 3 voters A>B>C, 2 voters B>C>A: A beats B and C by majority (3-2) though B has more Borda points.
    a, b, c = 10, 11, 12
    votes = [[[a], [b], [c]]] * 3 + [[[b], [c], [a]]] * 2
    cons = aggregate(ranking_set(votes, [a, b, c]), method="ranked_pairs")
    assert ranks_to_tiers(cons.ranks[0], [a, b, c]) == [[a], [b], [c]]


def test_ranked_pairs_borda_tiebreak_never_merges_two_locked_levels():
    # Three voters 3>2>0>1, 2>1>3>0, 0>1>3>2 with near-equal weights: every pair has a strict
    # majority and the locked order is 0 > 1 > 3 > 2, but the Borda sums favour 3 over 1
    # by almost a full point; the tie-break must not bring them level (found by hypothesis).
    rs = RankingSet.from_orders(np.array([[[3, 2, 0, 1], [2, 1, 3, 0], [0, 1, 3, 2]]]))
    weights = np.array([[1.00077681, 1.00058639, 1.0008687]])
    cons = aggregate(rs, method="ranked_pairs", weights=weights)
    np.testing.assert_array_equal(cons.ranks[0], [1.0, 2.0, 4.0, 3.0])


def test_bradley_terry_recovers_known_strengths_from_counts():
    # Counts drawn exactly from strengths 4:2:1 (P(i>j) = γi/(γi+γj)), 21 comparisons per pair.
    gamma = np.array([4.0, 2.0, 1.0])
    counts = np.zeros((1, 3, 3))
    for i in range(3):
        for j in range(3):
            if i != j:
                counts[0, i, j] = 21 * gamma[i] / (gamma[i] + gamma[j])
    log_strength = bradley_terry_scores(counts, prior=0.0)
    np.testing.assert_allclose(np.exp(log_strength[0] - log_strength[0, 2]), gamma, rtol=1e-6)


def test_ties_count_half_to_each_side():
    rs = ranking_set([[[1, 2], [3]]], [1, 2, 3])
    counts = preference_counts(rs)
    assert counts[0, 0, 1] == counts[0, 1, 0] == 0.5
    assert counts[0, 0, 2] == 1.0 and counts[0, 2, 0] == 0.0


@pytest.mark.parametrize("method", ["ranked_pairs", "bradley_terry", "plackett_luce"])
def test_answers_every_labeler_placed_level_make_no_consensus_pair(method):
    """Labelers who tie two answers (the same tier in each ranking) but disagree about the others: the two
    stay level in the consensus, so no chosen/rejected pair is made of them, and every other pair is."""
    from alignloop.pairs.build import consensus_pairs

    votes = [[[1, 3], [2], [4]], [[2], [1, 3], [4]], [[4], [1, 3], [2]]]
    rs = ranking_set(votes, [1, 2, 3, 4])
    cons = aggregate(rs, method=method)
    assert cons.ranks[0, 0] == cons.ranks[0, 2]
    pairs = consensus_pairs(rs, cons.ranks, cons.unusable, np.ones((1, 3)))
    made = {frozenset((int(c), int(r))) for c, r in zip(pairs.chosen, pairs.rejected)}
    assert frozenset((0, 2)) not in made and len(made) == 5


def test_flagged_completion_ranks_below_every_unflagged_one():
    # Everyone ranks 3 first, but one labeler flags it unusable: it must end up last.
    votes = [[[3], [1], [2]], [[3], [2], [1]], [[3], [1], [2]]]
    cons = aggregate(ranking_set(votes, [1, 2, 3], unusable=[[3], [], []]), method="ranked_pairs")
    tiers = ranks_to_tiers(cons.ranks[0], [1, 2, 3])
    assert tiers[-1] == [3]
    assert cons.unusable[0].tolist() == [False, False, True]


def test_zero_weight_removes_a_labeler_and_their_flags():
    votes = [[[1], [2], [3]], [[1], [2], [3]], [[3], [2], [1]]]
    rs = ranking_set(votes, [1, 2, 3], unusable=[[], [], [1]])
    cons = aggregate(rs, weights=np.array([[1.0, 1.0, 0.0]]))
    assert ranks_to_tiers(cons.ranks[0], [1, 2, 3]) == [[1], [2], [3]]
    assert not cons.unusable.any()


# ---- properties ------------------------------------------------------------------------------

ranking_with_ties = st.integers(2, 7).flatmap(
    lambda k: st.tuples(
        st.permutations(list(range(k))),
        st.lists(st.booleans(), min_size=k - 1, max_size=k - 1),  # True: tie with the previous
    )
)


def _tiers(order: list[int], tie_with_previous: list[bool], allow_ties: bool) -> list[list[int]]:
    tiers = [[order[0]]]
    for item, tie in zip(order[1:], tie_with_previous):
        if tie and allow_ties:
            tiers[-1].append(item)
        else:
            tiers.append([item])
    return tiers


@given(
    ranking_with_ties,
    st.integers(1, 6),
    st.sampled_from(["ranked_pairs", "bradley_terry", "plackett_luce"]),
    st.booleans(),
)
def test_unanimous_rankings_aggregate_to_themselves(case, n_labelers, method, allow_ties):
    order, ties = case
    tiers = _tiers(list(order), ties, allow_ties)
    ids = sorted(order)
    cons = aggregate(ranking_set([tiers] * n_labelers, ids), method=method)
    expected = [sorted(t) for t in tiers]
    assert [sorted(t) for t in ranks_to_tiers(cons.ranks[0], ids)] == expected


@given(
    st.integers(2, 6).flatmap(lambda k: st.lists(st.permutations(list(range(k))), min_size=2, max_size=7)),
    st.randoms(use_true_random=False),
    st.sampled_from(["ranked_pairs", "bradley_terry", "plackett_luce"]),
)
def test_aggregation_does_not_depend_on_the_order_labelers_are_listed(orders, rnd, method):
    ids = list(range(len(orders[0])))
    votes = [[[c] for c in order] for order in orders]
    shuffled = list(votes)
    rnd.shuffle(shuffled)
    a = aggregate(ranking_set(votes, ids), method=method)
    b = aggregate(ranking_set(shuffled, ids), method=method)
    np.testing.assert_array_equal(a.ranks, b.ranks)


def test_rankings_of_many_prompts_are_aggregated_independently():
    rng = np.random.default_rng(0)
    orders = np.stack([[rng.permutation(4) for _ in range(3)] for _ in range(50)])
    together = aggregate(RankingSet.from_orders(orders)).ranks
    one_by_one = np.concatenate([aggregate(RankingSet.from_orders(orders[i : i + 1])).ranks for i in range(50)])
    np.testing.assert_array_equal(together, one_by_one)


def test_plackett_luce_fit_maximises_the_ranking_likelihood():
    # Compare the MM fit (no prior) with a direct numerical maximisation of the PL log-likelihood.
    from scipy.optimize import minimize

    from alignloop.consensus.aggregate import plackett_luce_scores

    rng = np.random.default_rng(3)
    orders = np.array([[rng.permutation(4) for _ in range(12)]])  # 12 strict rankings of 4
    rs = RankingSet.from_orders(orders)

    def negative_log_likelihood(theta: np.ndarray) -> float:
        total = 0.0
        for order in orders[0]:
            utilities = theta[order]
            for stage in range(3):
                total += utilities[stage] - np.log(np.exp(utilities[stage:]).sum())
        return -total

    direct = minimize(negative_log_likelihood, np.zeros(4), method="BFGS").x
    fitted = plackett_luce_scores(rs, prior=0.0)[0]
    np.testing.assert_allclose(fitted - fitted.mean(), direct - direct.mean(), atol=1e-4)


def test_plackett_luce_with_two_completions_is_the_win_ratio():
    from alignloop.consensus.aggregate import plackett_luce_scores

    orders = np.array([[[0, 1], [0, 1], [0, 1], [1, 0]]])
    strengths = np.exp(plackett_luce_scores(RankingSet.from_orders(orders), prior=0.0)[0])
    assert strengths[0] / strengths[1] == pytest.approx(3.0)
