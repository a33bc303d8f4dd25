"""Recovery: simulated labelers with a known truth; the consensus and the outlier rule must find it.

5 labelers (noise 0.5, one misreader who ranks by the opposite of the judge) each rank
the K = 4 completions of 100 prompts; judge scores are uniform in [−1, 1] like VADER's.
"""

from __future__ import annotations

import numpy as np

from alignloop.consensus.aggregate import aggregate, scores_to_ranks
from alignloop.consensus.quality import kendall_tau_b, labeler_quality, quality_weights
from alignloop.consensus.rankings import RankingSet
from alignloop.task_types import simulated_orders

N_LABELERS, MISREADER, N_PROMPTS, K, NOISE = 5, 0, 100, 4, 0.5


def simulate(seed: int, overlap: int = N_LABELERS):
    rng = np.random.default_rng(seed)
    truth = rng.uniform(-1, 1, size=(N_PROMPTS, K))
    labelers = np.sort(np.stack([rng.permutation(N_LABELERS)[:overlap] for _ in range(N_PROMPTS)]), axis=1)
    orders = np.empty((N_PROMPTS, overlap, K), dtype=np.int64)
    for slot in range(overlap):
        for lid in range(N_LABELERS):
            rows = labelers[:, slot] == lid
            orders[rows, slot] = simulated_orders(truth[rows], NOISE, rng, misreader=lid == MISREADER)
    rs = RankingSet.from_orders(orders, labeler_ids=labelers)
    quality = labeler_quality([rs], {i: f"sim-{i}" for i in range(N_LABELERS)})
    consensus = aggregate(rs, weights=quality_weights(rs, quality))
    return truth, rs, quality, consensus


def test_consensus_agrees_with_the_truth_better_than_any_single_labeler():
    for seed in range(20):
        truth, rs, _, consensus = simulate(seed)
        true_ranks = scores_to_ranks(truth)
        consensus_tau = np.nanmean(kendall_tau_b(consensus.ranks, true_ranks))
        for lid in range(N_LABELERS):
            prompts, slots = np.nonzero(rs.labeler_ids == lid)
            labeler_tau = np.nanmean(kendall_tau_b(rs.ranks[prompts, slots], true_ranks[prompts]))
            assert consensus_tau > labeler_tau, (seed, lid, consensus_tau, labeler_tau)


def test_misreader_is_flagged_and_honest_labelers_are_not():
    flagged = np.zeros(N_LABELERS, dtype=int)
    for seed in range(20):
        _, _, quality, _ = simulate(seed)
        flagged += [q.flagged for q in quality]
    assert flagged[MISREADER] >= 19
    honest = np.delete(flagged, MISREADER)
    assert honest.max() <= 1, flagged


def test_misreader_is_flagged_when_each_prompt_has_only_three_labelers():
    flagged = np.zeros(N_LABELERS, dtype=int)
    for seed in range(20):
        _, _, quality, _ = simulate(seed, overlap=3)
        flagged += [q.flagged for q in quality]
    assert flagged[MISREADER] >= 19
    assert np.delete(flagged, MISREADER).max() <= 1, flagged


def test_misreader_gets_a_negative_shrunk_tau_with_a_reason():
    _, _, quality, _ = simulate(0)
    misreader = quality[MISREADER]
    assert misreader.tau_shrunk < 0
    assert "disagrees" in misreader.reason
    assert all(q.tau_shrunk > 0.2 for q in quality if q.labeler_id != MISREADER)
