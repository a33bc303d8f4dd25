"""Property: at the usual overlaps the outlier rule finds the misreader and spares the honest.

Random mixes like the demo's: 96 prompts of K = 4 answers whose judge scores are uniform in
[-1, 1] (VADER's range), labelers drawing Plackett–Luce rankings at temperature 0.15 (the
demo's noise), one of them ranking by the opposite of the criterion, ties allowed (answers
the labeler perceives within 0.1 of each other are placed level) and 20 % of the rankings
missing. At overlap 3, 4 and 5 the misreader must be flagged and no honest labeler may be,
in at least 95 % of the random cases.
"""

from __future__ import annotations

import numpy as np
import pytest

from alignloop.consensus.quality import labeler_quality
from alignloop.consensus.rankings import RankingSet

N_PROMPTS, K, NOISE, TIE_WITHIN, MISSING, CASES = 96, 4, 0.15, 0.1, 0.2, 200


def _ranks_with_ties(utility: np.ndarray) -> np.ndarray:
    """Mid-ranks (K,) of one labeler's perceived utilities; neighbours within TIE_WITHIN share a tier."""
    order = np.argsort(-utility, kind="stable")
    ranks = np.empty(K)
    tier = [order[0]]
    position = 0
    for prev, item in zip(order[:-1], order[1:]):
        if utility[prev] - utility[item] < TIE_WITHIN:
            tier.append(item)
            continue
        ranks[tier] = position + (len(tier) + 1) / 2
        position += len(tier)
        tier = [item]
    ranks[tier] = position + (len(tier) + 1) / 2
    return ranks


def _random_case(rng: np.random.Generator, overlap: int) -> tuple[RankingSet, int, int]:
    n_labelers = int(rng.integers(overlap, overlap + 4))
    misreader = int(rng.integers(n_labelers))
    truth = rng.uniform(-1, 1, size=(N_PROMPTS, K))
    ranks = np.zeros((N_PROMPTS, overlap, K))
    labelers = np.sort(np.stack([rng.permutation(n_labelers)[:overlap] for _ in range(N_PROMPTS)]), axis=1)
    for p in range(N_PROMPTS):
        for slot, lid in enumerate(labelers[p]):
            sign = -1.0 if lid == misreader else 1.0
            ranks[p, slot] = _ranks_with_ties(sign * truth[p] + NOISE * rng.gumbel(size=K))
    mask = rng.random((N_PROMPTS, overlap)) >= MISSING
    rs = RankingSet(
        ranks=ranks,
        mask=mask,
        unusable=np.zeros((N_PROMPTS, overlap, K), dtype=bool),
        labeler_ids=labelers.astype(np.int64),
        first_shown=np.full((N_PROMPTS, overlap), -1, dtype=np.int64),
    )
    return rs, n_labelers, misreader


@pytest.mark.parametrize("overlap", [3, 4, 5])
def test_the_misreader_is_flagged_and_no_honest_labeler_is(overlap: int) -> None:
    rng = np.random.default_rng(1000 + overlap)
    failures = []
    for case in range(CASES):
        rs, n_labelers, misreader = _random_case(rng, overlap)
        quality = labeler_quality([rs], {i: f"sim-{i}" for i in range(n_labelers)})
        flagged = {q.labeler_id for q in quality if q.flagged}
        if flagged != {misreader}:
            failures.append((case, n_labelers, misreader, sorted(flagged)))
        honest = [q for q in quality if q.labeler_id != misreader]
        assert all(q.n_judgements > 0 for q in honest), (case, quality)  # nobody is left without peers
    assert len(failures) <= 0.05 * CASES, failures
