"""Rankings as arrays: many prompts' judgements in one ``RankingSet`` so every statistic is vectorised.

A ranking is a list of tiers, best to worst, of completion ids (``[[12], [10, 13], [11]]``).
Inside a ``RankingSet`` it becomes a row of mid-ranks (1 = best; tied completions share
the mean of the positions they span: ``12 → 1, 10 → 2.5, 13 → 2.5, 11 → 4``).
Completions a labeler flagged unusable are moved below all the completions they did
not flag (keeping their relative order), so a flagged completion is never preferred.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

import numpy as np


@dataclass
class RankingSet:
    """Rankings of P prompts, each with the same K completions, by up to R labelers.

    Slots ``r`` of a prompt are filled left to right; ``mask`` says which are used.
    Values in unused slots are meaningless and never read.
    """

    ranks: np.ndarray  # (P, R, K) float64 mid-ranks, 1 = best
    mask: np.ndarray  # (P, R) bool: slot r of prompt p holds a ranking
    unusable: np.ndarray  # (P, R, K) bool: labeler in slot r flagged completion k unusable
    labeler_ids: np.ndarray  # (P, R) int64: labeler of each slot, -1 where unused
    first_shown: np.ndarray  # (P, R) int64: index k of the completion shown first, -1 when unknown

    @property
    def n_prompts(self) -> int:
        return self.ranks.shape[0]

    @property
    def k(self) -> int:
        return self.ranks.shape[2]

    def with_mask(self, mask: np.ndarray) -> RankingSet:
        """The same rankings with only the slots in ``mask`` (P, R) counted."""
        return replace(self, mask=self.mask & mask)

    @classmethod
    def from_orders(
        cls,
        orders: np.ndarray,
        labeler_ids: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> RankingSet:
        """Strict rankings given as item indices best→worst, ``orders`` (P, R, K) int.

        The fast path for simulations and benchmarks: no ties, no flags.
        """
        orders = np.asarray(orders, dtype=np.int64)
        ranks = np.empty(orders.shape, dtype=np.float64)
        positions = np.broadcast_to(np.arange(1, orders.shape[2] + 1, dtype=np.float64), orders.shape)
        np.put_along_axis(ranks, orders, positions, axis=2)
        return cls.from_ranks(ranks, labeler_ids, mask)

    @classmethod
    def from_ranks(
        cls,
        ranks: np.ndarray,
        labeler_ids: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> RankingSet:
        """Rankings given as mid-ranks (P, R, K), 1 = best, ties allowed; no flags."""
        ranks = np.asarray(ranks, dtype=np.float64)
        p, r, k = ranks.shape
        if labeler_ids is None:
            labeler_ids = np.broadcast_to(np.arange(r, dtype=np.int64), (p, r)).copy()
        if mask is None:
            mask = np.ones((p, r), dtype=bool)
        return cls(
            ranks=ranks,
            mask=np.asarray(mask, dtype=bool),
            unusable=np.zeros((p, r, k), dtype=bool),
            labeler_ids=np.asarray(labeler_ids, dtype=np.int64),
            first_shown=np.full((p, r), -1, dtype=np.int64),
        )


def tiers_to_ranks(tiers: Sequence[Sequence[int]], ids: Sequence[int], unusable: Collection[int] = ()) -> np.ndarray:
    """Mid-ranks (K,) of ``ids`` under ``tiers``; flagged ids are moved below the others.

    ``tiers`` must contain every id exactly once (the labeling app enforces this).
    """
    flagged = set(unusable)
    ordered = [[c for c in tier if c not in flagged] for tier in tiers]
    ordered += [[c for c in tier if c in flagged] for tier in tiers]
    index = {c: i for i, c in enumerate(ids)}
    ranks = np.empty(len(ids), dtype=np.float64)
    start = 0
    for tier in ordered:
        if not tier:
            continue
        mid = start + (len(tier) + 1) / 2
        for c in tier:
            ranks[index[c]] = mid
        start += len(tier)
    return ranks


def ranks_to_tiers(ranks: np.ndarray, ids: Sequence[int]) -> list[list[int]]:
    """Tiers best→worst of ``ids`` from one row of mid-ranks (K,); equal ranks share a tier."""
    order = np.argsort(ranks, kind="stable")
    tiers: list[list[int]] = []
    last = None
    for i in order:
        if last is None or ranks[i] != last:
            tiers.append([])
            last = ranks[i]
        tiers[-1].append(int(ids[i]))
    return tiers


def pair_signs(ranks: np.ndarray) -> np.ndarray:
    """sign(rank_j − rank_i) for every ordered pair: +1 where i is ranked above j.

    ``ranks`` (..., K) → (..., K, K); the diagonal and ties are 0.
    """
    return np.sign(ranks[..., None, :] - ranks[..., :, None])


def upper_pairs(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (i, j) of the K·(K−1)/2 unordered pairs with i < j."""
    return np.triu_indices(k, 1)
