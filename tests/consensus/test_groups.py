"""Groups of labelers: two consistent tastes are reported as groups, a misreader is still flagged.

The simulated project: 7 labelers rank the K = 4 answers of 300 prompts, each prompt going to
3 of them (the default overlap), so each labeler ranks about 130 prompts and every two share
about 40. Three labelers judge by taste A, three by taste B, and one misreader ranks by the
opposite of A. Judge scores are normal with standard deviation 0.5 (the spread of the built-in
judges' [−1, 1] scores), B correlated ``rho`` with A; each labeler has their own noise,
uniform in [0.15, 0.5] (the demo's to the recovery test's), and ranks by Plackett–Luce.
"""

from __future__ import annotations

import numpy as np
import pytest

from alignloop.consensus.groups import find_groups
from alignloop.consensus.quality import labeler_quality
from alignloop.consensus.rankings import RankingSet
from alignloop.task_types import simulated_orders

N_PROMPTS, K, OVERLAP, SEEDS = 300, 4, 3, 40
GROUP_A, GROUP_B, MISREADER = [0, 1, 2], [3, 4, 5], 6


def simulate(seed: int, rho: float, tastes: list[str], n_prompts: int = N_PROMPTS) -> RankingSet:
    """Rankings by labelers whose tastes are ``tastes[i]``: "A", "B" or "-A" (the misreader)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 0.5, size=(n_prompts, K))
    b = rho * a + np.sqrt(1 - rho**2) * rng.normal(0, 0.5, size=(n_prompts, K))
    noise = rng.uniform(0.15, 0.5, size=len(tastes))
    labelers = np.sort(np.argsort(rng.random((n_prompts, len(tastes))), axis=1)[:, :OVERLAP], axis=1)
    orders = np.empty((n_prompts, OVERLAP, K), dtype=np.int64)
    for slot in range(OVERLAP):
        for lid, taste in enumerate(tastes):
            rows = labelers[:, slot] == lid
            scores = b[rows] if taste == "B" else a[rows]
            orders[rows, slot] = simulated_orders(scores, noise[lid], rng, misreader=taste == "-A")
    return RankingSet.from_orders(orders, labeler_ids=labelers)


TWO_GROUPS_AND_A_MISREADER = ["A"] * 3 + ["B"] * 3 + ["-A"]


def test_two_groups_are_found_and_only_the_misreader_is_flagged_in_95_percent_of_seeds():
    """Independent tastes (rho = 0, like warmth and following the asked-for format)."""
    names = {i: f"sim-{i}" for i in range(7)}
    failures = []
    for seed in range(SEEDS):
        rs = simulate(seed, 0.0, TWO_GROUPS_AND_A_MISREADER)
        groups = find_groups([rs], names)
        quality = labeler_quality([rs], names, groups=groups)
        found = sorted(g.labeler_ids for g in groups.groups)
        flagged = [q.labeler_id for q in quality if q.flagged]
        if found != [GROUP_A, GROUP_B] or flagged != [MISREADER]:
            failures.append((seed, found, flagged))
    assert len(failures) <= 0.05 * SEEDS, failures


@pytest.mark.parametrize("rho", [0.3, -0.3])
def test_related_tastes_are_still_two_groups_and_the_misreader_in_none(rho):
    """Tastes that overlap (0.3) or pull apart (−0.3: the misreader then half-agrees with B)."""
    failures = []
    for seed in range(SEEDS):
        groups = find_groups([simulate(seed, rho, TWO_GROUPS_AND_A_MISREADER)], range(7))
        found = sorted(g.labeler_ids for g in groups.groups)
        if found != [GROUP_A, GROUP_B] or list(groups.no_group) != [MISREADER]:
            failures.append((seed, found, list(groups.no_group)))
    assert len(failures) <= 0.05 * SEEDS, failures


def test_a_consistent_minority_is_a_group_not_a_pair_of_outliers():
    """Four labelers of taste A, two of a taste opposed to it: pooled, the two look like misreaders."""
    tastes = ["A"] * 4 + ["B"] * 2
    names = {i: f"sim-{i}" for i in range(6)}
    pooled_flags = grouped_flags = found_two = 0
    for seed in range(10):
        rs = simulate(seed, -0.6, tastes)
        groups = find_groups([rs], names)
        found_two += sorted(g.labeler_ids for g in groups.groups) == [[0, 1, 2, 3], [4, 5]]
        pooled_flags += sum(q.flagged for q in labeler_quality([rs], names))
        grouped_flags += sum(q.flagged for q in labeler_quality([rs], names, groups=groups))
    assert found_two >= 9
    assert pooled_flags >= 10  # the old rule flags the minority ...
    assert grouped_flags <= 1  # ... the groups keep them


def test_one_taste_stays_one_group_with_the_misreader_outside():
    """Everyone judging by A (the recovery test's project): no split, so the outlier rule is unchanged."""
    for seed in range(SEEDS):
        groups = find_groups([simulate(seed, 0.0, ["A"] * 6 + ["-A"], n_prompts=100)], range(7))
        assert not groups.split, (seed, groups.groups)
        assert MISREADER in groups.no_group, (seed, groups.groups)


def test_agreement_is_pooled_over_shared_prompts_and_shrunk_when_few():
    """Labelers 0 and 1 always agree, 2 always reverses them: mean tau over all pairs −1/3."""
    few = find_groups([RankingSet.from_orders(np.array([[[0, 1, 2], [0, 1, 2], [2, 1, 0]]] * 3))], range(3))
    pairs = few.agreement
    assert pairs.shared[0, 1] == 3 and pairs.tau_sum[0, 1] == pytest.approx(3.0)
    assert pairs.tau_sum[0, 2] == pytest.approx(-3.0)
    assert pairs.mean == pytest.approx(-1 / 3)
    assert pairs.shrunk(3.0, 3.0, 5.0) == pytest.approx((3 - 5 / 3) / 8)  # 0.17: three prompts are too few
    assert few.groups == []
    many = find_groups([RankingSet.from_orders(np.array([[[0, 1, 2], [0, 1, 2], [2, 1, 0]]] * 10))], range(3))
    assert [g.labeler_ids for g in many.groups] == [[0, 1]]  # (10 − 5/3) / 15 = 0.56
    assert "agrees with no group" in many.no_group[2]
